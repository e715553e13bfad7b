"""detectron2's own Faster R-CNN config files (key-for-key copies in detectron2_configs/) load unchanged, build the
model they describe, and refuse the parts det_dcn does not have with one line naming the key."""

import glob
import os

import pytest
import torch

from det_dcn.config import ConfigError, get_cfg
from det_dcn.config.compat import _PARTS, check_supported_parts
from det_dcn.modeling import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
D2 = os.path.join(HERE, "detectron2_configs")
FASTER_RCNN = sorted(glob.glob(os.path.join(D2, "COCO-Detection", "faster_rcnn_*.yaml")))
CASCADE = os.path.join(D2, "Misc", "cascade_mask_rcnn_R_50_FPN_1x.yaml")
BUILDABLE = [f for f in FASTER_RCNN if "_C4_" not in f] + [CASCADE, os.path.join(D2, "Misc",
                                                                                "mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml")]
# Narrow the widths so a CPU builds and runs each in about a second; the structure (depth, groups, dilation, DCN,
# FPN or not, heads) stays the config's.
NARROW = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
          "MODEL.RESNETS.WIDTH_PER_GROUP", 4, "MODEL.FPN.OUT_CHANNELS", 16, "MODEL.ROI_BOX_HEAD.FC_DIM", 32,
          "MODEL.ROI_HEADS.NUM_CLASSES", 3, "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 96]


def _load(path, overrides=()):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(overrides))
    return cfg


def _name(path):
    return os.path.relpath(path, D2)


def test_the_copies_cover_every_family():
    names = {_name(f) for f in FASTER_RCNN}
    for n in ("R_50_FPN_1x", "R_50_FPN_3x", "R_101_FPN_3x", "X_101_32x8d_FPN_3x", "R_50_DC5_1x", "R_101_DC5_3x",
              "R_50_C4_1x"):
        assert f"COCO-Detection/faster_rcnn_{n}.yaml" in names


@pytest.mark.parametrize("path", FASTER_RCNN + BUILDABLE[-2:], ids=_name)
def test_loads_unchanged_with_detectron2_meaning(path):
    cfg = _load(path)
    assert cfg.MODEL.WEIGHTS.startswith("detectron2://ImageNetPretrained/")
    # Defaults a detectron2 file relies on are detectron2's: BGR caffe-style input, stride in the 1x1, PIL resize.
    assert cfg.INPUT.FORMAT == "BGR" and cfg.MODEL.RESNETS.STRIDE_IN_1X1 == ("X_101" not in path)
    assert cfg.INPUT.RESIZE_STYLE == "detectron2"
    assert cfg.MODEL.ROI_MASK_HEAD.NAME == "MaskRCNNConvUpsampleHead"  # carried, ignored
    if "DC5" in path:  # Base-RCNN-DilatedC5.yaml relies on detectron2's default backbone
        assert cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone"
    if "_C4_" in path:
        assert cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone" and cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeads"


@pytest.mark.parametrize("path", BUILDABLE, ids=_name)
def test_builds_and_detects(path):
    overrides = NARROW + (["MODEL.MASK_ON", False] if "mask_rcnn" in path else [])
    cfg = _load(path, overrides)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    body = getattr(model.backbone, "bottom_up", model.backbone)
    if "FPN" in path:
        assert model.backbone is not body and sorted(model.backbone.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    else:  # DC5: the bare ResNet, one res5 map at stride 16
        assert model.backbone is body and {k: s.stride for k, s in body.output_shape().items()} == {"res5": 16}
        assert body.res5[0].conv2.dilation == (2, 2)
    assert body.res5[0].conv2.groups == (32 if "X_101" in path else 1)
    assert len(body.res4) == (23 if "_101_" in path else 6)
    deform = [hasattr(getattr(body, s)[0].conv2, "conv_offset") for s in ("res2", "res3", "res4", "res5")]
    assert deform == ([False, True, True, True] if "dconv" in path else [False] * 4)
    if path == CASCADE:  # three box stages, as detectron2 builds them from this file
        assert type(model.roi_heads).__name__ == "CascadeROIHeads" and len(model.roi_heads.box_head) == 3
        assert model.roi_heads.box_predictor[2].bbox_pred.out_features == 4
    image = torch.randint(0, 255, (3, 80, 100), dtype=torch.uint8)
    with torch.no_grad():
        out = model([{"image": image}])[0]
    assert set(out) == {"boxes", "scores", "classes"} and out["boxes"].shape[1] == 4


def test_mask_on_is_refused_at_build_time_naming_the_key():
    cfg = _load(BUILDABLE[-1], NARROW)
    with pytest.raises(ConfigError, match=r"^MODEL.MASK_ON=True is not supported: det_dcn detects boxes only"):
        build_model(cfg)


def test_c4_head_is_refused_naming_the_key_and_what_is_registered():
    cfg = _load(os.path.join(D2, "COCO-Detection", "faster_rcnn_R_50_C4_1x.yaml"), NARROW)
    with pytest.raises(ValueError, match=r"MODEL.ROI_HEADS.NAME='Res5ROIHeads' is not registered; registered: "
                                         r"\['CascadeROIHeads', 'StandardROIHeads'\]"):
        build_model(cfg)


@pytest.mark.parametrize("key", [k for k, _, _ in _PARTS])
def test_every_unsupported_part_is_refused_when_on_and_ignored_when_off(key):
    cfg = get_cfg()
    check_supported_parts(cfg)  # all off by default
    on = {bool: True, float: 0.5, int: 8, str: "high", list: [["bbox", "AP", 38.0, 0.2]]}
    parent = cfg
    for part in key.split(".")[:-1]:
        parent = parent[part]
    leaf = key.split(".")[-1]
    parent[leaf] = on[type(parent[leaf])]
    with pytest.raises(ConfigError) as e:
        check_supported_parts(cfg)
    assert str(e.value).startswith(f"{key}=") and "\n" not in str(e.value)


def test_unknown_keys_still_fail(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("MODEL:\n  ROI_MASK_HEAD:\n    NUM_CONVS: 4\n")
    with pytest.raises(ConfigError, match="ROI_MASK_HEAD.NUM_CONVS"):
        get_cfg().merge_from_file(str(path))


def test_ints_are_accepted_for_float_keys(tmp_path):
    path = tmp_path / "ints.yaml"
    path.write_text("MODEL:\n  PROPOSAL_GENERATOR:\n    MIN_SIZE: 0\nSOLVER:\n  BASE_LR: 1\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE == 0.0 and isinstance(cfg.SOLVER.BASE_LR, float)
