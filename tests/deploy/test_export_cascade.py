"""A Cascade R-CNN exports to plain ONNX: onnxruntime gives DefaultPredictor's detections (three box stages, each
refining the previous one's boxes, traced for one image of any size)."""

import numpy as np
import pytest
import torch

from det_dcn.deploy import OnnxPredictor
from det_dcn.deploy.export import export_onnx
from det_dcn.engine.predictor import DefaultPredictor
from det_dcn.modeling import build_model

from deploy_helpers import count_matched, make_image, variant_cfg

pytest.importorskip("onnxruntime")


def test_cascade_rcnn_onnx_gives_default_predictor_detections(tmp_path):
    cfg = variant_cfg("plain", ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # class scores that differ between boxes (a fresh head scores every class ~1/K)
        for predictor in model.roi_heads.box_predictor:
            predictor.cls_score.weight.normal_(0, 0.05)
            predictor.cls_score.bias[-1] = 1.0
    weights = str(tmp_path / "cascade.pth")
    torch.save({"model": model.state_dict()}, weights)
    cfg.MODEL.WEIGHTS = weights
    eager = DefaultPredictor(cfg)
    onnx_path = str(tmp_path / "cascade.onnx")
    export_onnx(eager.model, cfg, onnx_path)
    runtime = OnnxPredictor(onnx_path)
    total = matched = 0
    for i, (h, w) in enumerate([(160, 213), (200, 150), (123, 321)]):
        image = make_image(h, w, seed=i)
        expected = {k: v.numpy() for k, v in eager(image).items()}
        got = runtime(image)
        assert got["boxes"].dtype == np.float32 and got["boxes"].shape == (len(got["scores"]), 4)
        total += len(expected["scores"])
        matched += count_matched(expected, got)
    assert total >= 5, "the random model must give detections, or the comparison is empty"
    assert matched >= 0.99 * total, f"{matched} of {total} detections matched"
