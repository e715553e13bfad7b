"""Bad configs fail at build time with a message that names the key, the value and what was expected."""

import pytest
import torch

from det_dcn.modeling import build_model

from heads_test_utils import REPO, single_thread, tiny_cfg  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

FPN = f"{REPO}/configs/Base-RCNN-FPN.yaml"
DC5 = f"{REPO}/configs/Base-RCNN-DilatedC5.yaml"


@pytest.mark.parametrize("config,overrides,match", [
    (FPN, ["MODEL.ROI_BOX_HEAD.POOLER_TYPE", "RoIAlign"],
     r"POOLER_TYPE='RoIAlign' is not registered; registered: \[.*'DeformRoIPool'.*'ROIAlignV2'"),
    (FPN, ["MODEL.ROI_HEADS.NUM_CLASSES", 0], r"NUM_CLASSES must be >= 1.*got 0"),
    (FPN, ["MODEL.RPN.IN_FEATURES", ["p2", "p7"]], r"MODEL.RPN.IN_FEATURES=\['p2', 'p7'\] names \['p7'\].*'p6'"),
    (FPN, ["MODEL.ROI_HEADS.IN_FEATURES", ["res4"]], r"MODEL.ROI_HEADS.IN_FEATURES=\['res4'\] names \['res4'\]"),
    (FPN, ["MODEL.ROI_HEADS.IN_FEATURES", []], r"MODEL.ROI_HEADS.IN_FEATURES is empty"),
    (FPN, ["MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64], [128]]],
     r"SIZES has 3 lists but the anchor generator has 5 feature levels"),
    (FPN, ["MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64, 96], [128], [256], [512]]],
     r"same number of anchors per location.*\[3, 6, 3, 3, 3\]"),
    (FPN, ["MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p4"]], "consecutive levels"),
    (FPN, ["MODEL.ROI_BOX_HEAD.NUM_FC", 0], "NUM_CONV \\+ NUM_FC > 0"),
    (FPN, ["MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "l2"], r"BBOX_REG_LOSS_TYPE must be one of .*got 'l2'"),
    (FPN, ["MODEL.RPN.BBOX_REG_LOSS_TYPE", "l2"], r"MODEL.RPN.BBOX_REG_LOSS_TYPE"),
    (FPN, ["MODEL.RPN.IOU_LABELS", [0, 1]], "one label more than thresholds"),
    (FPN, ["MODEL.ROI_HEADS.POSITIVE_FRACTION", 1.5], r"POSITIVE_FRACTION must be in \[0, 1\], got 1.5"),
    (FPN, ["MODEL.ROI_HEADS.NAME", "Res5ROIHeads"], r"ROI_HEADS.NAME='Res5ROIHeads'.*CascadeROIHeads.*StandardROIHeads"),
    (FPN, ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads"], "CLS_AGNOSTIC_BBOX_REG True"),
    (FPN, ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True,
           "MODEL.ROI_HEADS.IOU_THRESHOLDS", [0.6]], r"IOU_THRESHOLDS \[0.6\] must be \[0.5\]"),
    (FPN, ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True,
           "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", [0.5, 0.6]], "one value per stage"),
    (FPN, ["MODEL.PROPOSAL_GENERATOR.NAME", "SS"], r"PROPOSAL_GENERATOR.NAME='SS'.*'RPN'"),
    (FPN, ["MODEL.RPN.HEAD_NAME", "X"], r"RPN.HEAD_NAME='X'.*StandardRPNHead"),
    (FPN, ["MODEL.ROI_BOX_HEAD.NAME", "X"], r"ROI_BOX_HEAD.NAME='X'.*FastRCNNConvFCHead"),
    (FPN, ["MODEL.META_ARCHITECTURE", "RetinaNet"], r"META_ARCHITECTURE='RetinaNet'.*GeneralizedRCNN"),
    (FPN, ["MODEL.ROI_BOX_HEAD.POOLER_LEVEL_MAPPER", "caffe2"], "POOLER_LEVEL_MAPPER"),
    (FPN, ["INPUT.FORMAT", "YUV"], "INPUT.FORMAT"),
    (FPN, ["MODEL.PIXEL_STD", [1.0, 0.0, 1.0]], "PIXEL_STD must be positive"),
    # DC5 on two levels with different channel counts: the shared RPN head cannot take both
    (DC5, ["MODEL.RESNETS.OUT_FEATURES", ["res4", "res5"], "MODEL.RPN.IN_FEATURES", ["res4", "res5"],
           "MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64]]], r"same\s+channel count; got channels \[128, 256\]"),
])
def test_bad_config(config, overrides, match):
    cfg = tiny_cfg(config, overrides)
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_gpu():
    cfg = tiny_cfg(FPN, ["MODEL.DEVICE", "cuda"])
    with pytest.raises(ValueError, match="MODEL.DEVICE='cuda' but CUDA is not available"):
        build_model(cfg)
