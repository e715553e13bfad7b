"""Slow export checks: every COCO-Detection config through torch.export, and tools/export.py + tools/demo.py --onnx
end to end (pytest -m slow)."""

import glob
import json
import os
import subprocess
import sys

import cv2
import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.deploy.export import export_program
from det_dcn.testing import calibrate_frozen_bn
from det_dcn.modeling import build_model

from deploy_helpers import REPO, VARIANTS, count_matched, eager_detections, make_image, random_detector, variant_cfg

COCO_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "COCO-Detection", "*.yaml")))


@pytest.mark.slow
@pytest.mark.parametrize("config", COCO_CONFIGS, ids=os.path.basename)
def test_coco_config_exports_with_same_detections(config):
    cfg = get_cfg()
    cfg.merge_from_file(config)
    # a smaller test size keeps the eager comparison cheap; the traced graph is the same for any size
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", 256, "INPUT.MAX_SIZE_TEST", 400])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = make_image(230, 310, seed=3)
    calibrate_frozen_bn(model, [{"image": torch.from_numpy(image.transpose(2, 0, 1).copy())}])
    module = export_program(model, cfg).module()
    for i, (h, w) in enumerate([(230, 310), (300, 200)]):
        bgr = make_image(h, w, seed=i)
        expected = eager_detections(model, bgr, cfg.INPUT.FORMAT)
        rgb = bgr[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else bgr
        with torch.no_grad():
            got = dict(zip(("boxes", "scores", "classes"), (t.numpy() for t in module(torch.from_numpy(rgb.copy())))))
        assert len(expected["scores"]) > 0
        assert count_matched(expected, got) >= 0.99 * len(expected["scores"])


@pytest.mark.slow
def test_export_tool_and_demo_onnx(tmp_path):
    cfg = variant_cfg("dpool")
    weights = str(tmp_path / "weights.pth")
    torch.save({"model": random_detector(cfg).state_dict()}, weights)
    env = {**os.environ, "PYTHONPATH": REPO}
    onnx_path = str(tmp_path / "model.onnx")
    config, overrides = VARIANTS["dpool"]  # the tools must build the model the weights are for (BatchNorm)
    config = os.path.join(REPO, "configs", "quickstart", config)
    overrides = [str(v) for v in overrides]
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), "--config-file", config,
                    "--output", onnx_path, "MODEL.WEIGHTS", weights, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.3",
                    *overrides], check=True, env=env, timeout=3000)
    image = str(tmp_path / "image.png")
    cv2.imwrite(image, make_image(200, 260, seed=0))
    out = tmp_path / "demo"
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "demo.py"), "--config-file", config, "--input", image,
                    "--output", str(out), "--onnx", onnx_path, "--confidence-threshold", "0.3", *overrides],
                   check=True, env=env, timeout=600)
    record = json.loads((out / "image.json").read_text())
    assert len(record["boxes"]) == len(record["scores"]) > 0
