"""A tiny ResNet-18-FPN Faster R-CNN overfits four synthetic images: the whole training path is wired right."""

import pytest
import torch

from det_dcn.modeling import build_model
from det_dcn.modeling.box_ops import pairwise_iou

from heads_test_utils import REPO, calibrate_frozen_bn, single_thread, synthetic_batch, tiny_cfg  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


def test_tiny_model_overfits():
    torch.manual_seed(0)
    cfg = tiny_cfg(f"{REPO}/configs/Base-RCNN-FPN.yaml", [
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16, "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
        "MODEL.FPN.OUT_CHANNELS", 16, "MODEL.BACKBONE.FREEZE_AT", 0,
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 64,
    ])
    model = build_model(cfg)
    batch = synthetic_batch(4, size=(64, 64))
    calibrate_frozen_bn(model, batch)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    history = []
    for _ in range(100):
        losses = model(batch)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < 0.5 * first, f"total loss {first:.3f} -> {last:.3f}"

    # The trained model finds its training objects: each image's best-scoring detections hit a ground-truth box.
    model.eval()
    with torch.no_grad():
        outputs = model([{"image": x["image"]} for x in batch])
    hits = 0
    for x, out in zip(batch, outputs):
        if len(out["boxes"]):
            hits += int(pairwise_iou(out["boxes"][:3], x["boxes"]).max() > 0.5)
    assert hits >= 3, f"only {hits} of 4 images have a top-3 detection with IoU > 0.5"
