"""CUDA: every config's detector gives the CPU detector's detections, and trains under fp16 autocast."""

import os
import time

import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.modeling import build_model

from heads_test_utils import REPO, all_config_files, calibrate_frozen_bn, synthetic_batch, tiny_cfg

pytestmark = pytest.mark.cuda

CONFIGS = all_config_files()
IDS = [os.path.relpath(f, os.path.join(REPO, "configs")) for f in CONFIGS]


@pytest.mark.parametrize("config_file", CONFIGS, ids=IDS)
def test_cuda_matches_cpu_and_trains_with_amp(config_file):
    torch.manual_seed(0)
    cfg = tiny_cfg(config_file, ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.2])
    model = build_model(cfg)
    batch = synthetic_batch(2)
    calibrate_frozen_bn(model, batch)
    model.eval()
    inputs = [{"image": x["image"]} for x in batch]
    with torch.no_grad():
        cpu_out = model(inputs)
        model.cuda()
        cuda_out = model(inputs)
    for a, b in zip(cpu_out, cuda_out):
        assert b["boxes"].is_cuda
        # The top detections agree (further down, near-ties in scores may reorder NMS survivors).
        k = min(10, len(a["scores"]), len(b["scores"]))
        assert k > 0
        torch.testing.assert_close(b["scores"][:k].cpu(), a["scores"][:k], rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(b["boxes"][:k].cpu(), a["boxes"][:k], rtol=1e-3, atol=2e-2)
        assert torch.equal(b["classes"][:k].cpu(), a["classes"][:k])

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.autocast("cuda", dtype=torch.float16):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in params)


def test_full_size_r50_fpn_on_cuda():
    """The shipped R50-FPN at COCO size: a training step (2 images, 800 x 1216) and inference, with peak memory."""
    cfg = get_cfg()
    cfg.merge_from_file(f"{REPO}/configs/COCO-Detection/faster_rcnn_R_50_FPN_mdconv_c3-c5_mdpool_1x.yaml")
    cfg.MODEL.DEVICE = "cuda"
    model = build_model(cfg)
    batch = synthetic_batch(2, size=(800, 1216))
    calibrate_frozen_bn(model, batch)
    torch.cuda.reset_peak_memory_stats()
    model.train()
    for step in range(3):  # the last step is timed (the first ones warm up cuDNN and the allocator)
        torch.cuda.synchronize()
        start = time.perf_counter()
        losses = model(batch)
        sum(losses.values()).backward()
        torch.cuda.synchronize()
        train_s = time.perf_counter() - start
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = model([{"image": batch[0]["image"]}])
            torch.cuda.synchronize()
            infer_s = time.perf_counter() - start
    assert out[0]["boxes"].shape[1] == 4
    print(f"R50-FPN mdconv+mdpool: train step (2 x 800x1216) {train_s * 1000:.0f} ms, inference (1 image) "
          f"{infer_s * 1000:.0f} ms, peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
