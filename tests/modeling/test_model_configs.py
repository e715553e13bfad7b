"""Every shipped config builds, trains two steps with finite losses and gradients reaching every trainable
parameter (DCN offsets and deformable-pooling offset branches included), and runs inference."""

import os

import pytest
import torch

from det_dcn.modeling import build_model

from heads_test_utils import REPO, all_config_files, calibrate_frozen_bn, synthetic_batch, single_thread, tiny_cfg  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIGS = all_config_files()
LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}


def loss_keys(cfg) -> set:
    """The losses a config's model returns: the box losses once per stage for Cascade R-CNN."""
    if cfg.MODEL.ROI_HEADS.NAME != "CascadeROIHeads":
        return LOSS_KEYS
    stages = range(len(cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS))
    return {"loss_rpn_cls", "loss_rpn_loc"} | {f"loss_{n}_stage{k}" for n in ("cls", "box_reg") for k in stages}


def test_configs_exist():
    names = {os.path.relpath(f, REPO) for f in CONFIGS}
    assert "configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml" in names
    assert "configs/COCO-Detection/faster_rcnn_R_50_DC5_1x.yaml" in names


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda f: os.path.relpath(f, os.path.join(REPO, "configs")))
def test_config_trains_and_infers(config_file):
    torch.manual_seed(0)
    cfg = tiny_cfg(config_file)
    model = build_model(cfg)
    batch = synthetic_batch(2)
    calibrate_frozen_bn(model, batch)
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    opt = torch.optim.SGD(trainable.values(), lr=1e-3, momentum=0.0)

    # Step 1 makes the zero-initialised last layers of offset branches non-zero; only then do the layers before
    # them receive gradient, so the check is on step 2.
    for step in range(2):
        opt.zero_grad()
        losses = model(batch)
        assert set(losses) == loss_keys(cfg)
        for k, v in losses.items():
            assert v.dim() == 0 and torch.isfinite(v), (k, v)
        sum(losses.values()).backward()
        if step == 1:
            no_grad = [n for n, p in trainable.items() if p.grad is None or not torch.any(p.grad != 0)]
            assert not no_grad, f"parameters without gradient: {no_grad}"
            assert all(torch.isfinite(p.grad).all() for p in trainable.values())
        opt.step()

    if cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE[1]:
        offsets = [n for n in trainable if "conv_offset" in n]
        assert offsets, "a DCN config without conv_offset parameters"
    if "Deform" in cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE:
        levels = len(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        assert len({n.split(".offset_fc")[0] for n in trainable if ".offset_fc" in n}) == levels

    model.eval()
    img = batch[0]["image"]
    with torch.no_grad():
        out = model([{"image": img}, {"image": img, "height": 192, "width": 256}])
    for r, (h, w) in zip(out, [(96, 128), (192, 256)]):
        assert set(r) == {"boxes", "scores", "classes"}
        assert r["boxes"].shape == (len(r["scores"]), 4) and r["classes"].dtype == torch.int64
        assert len(r["scores"]) <= cfg.TEST.DETECTIONS_PER_IMAGE
        assert torch.isfinite(r["boxes"]).all()
        assert (r["boxes"][:, 0::2] >= 0).all() and (r["boxes"][:, 0::2] <= w + 1e-3).all()
        assert (r["boxes"][:, 1::2] >= 0).all() and (r["boxes"][:, 1::2] <= h + 1e-3).all()
        assert ((r["scores"] > cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST) & (r["scores"] <= 1)).all()
        assert ((r["classes"] >= 0) & (r["classes"] < cfg.MODEL.ROI_HEADS.NUM_CLASSES)).all()
    # The second output is the first at twice the size.
    if len(out[0]["boxes"]):
        torch.testing.assert_close(out[1]["boxes"], out[0]["boxes"] * 2)


def test_bfloat16_autocast_on_cpu():
    """The engine's AMP mode on CPU: a training step and inference of the DCNv2 + mdpool detector under bf16."""
    torch.manual_seed(0)
    cfg = tiny_cfg(f"{REPO}/configs/COCO-Detection/faster_rcnn_R_50_FPN_mdconv_c3-c5_mdpool_1x.yaml")
    model = build_model(cfg)
    batch = synthetic_batch(2)
    calibrate_frozen_bn(model, batch)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch)
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (out,) = model([{"image": batch[0]["image"]}])
    assert out["boxes"].dtype == torch.float32 and len(out["boxes"]) > 0
    assert torch.isfinite(out["boxes"]).all()
