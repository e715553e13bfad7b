"""get_cfg / merge_from_file / merge_from_list: _BASE_ recursion, overrides and errors that name key and file."""

import glob
import os

import pytest

from det_dcn.config import get_cfg

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_get_cfg_returns_independent_copies():
    a, b = get_cfg(), get_cfg()
    a.MODEL.RESNETS.DEPTH = 101
    a.MODEL.RESNETS.OUT_FEATURES.append("res5")
    assert b.MODEL.RESNETS.DEPTH == 50 and get_cfg().MODEL.RESNETS.OUT_FEATURES == ["res4"]


def test_base_recursion_is_relative_to_each_file(tmp_path):
    _write(tmp_path / "root" / "base.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 101\n    NORM: 'GN'\nSOLVER:\n  BASE_LR: 0.5\n")
    _write(tmp_path / "root" / "sub" / "mid.yaml",
           "_BASE_: '../base.yaml'\nMODEL:\n  RESNETS:\n    NORM: 'BN'\n  FPN:\n    OUT_CHANNELS: 128\n")
    child = _write(tmp_path / "other" / "child.yaml",
                   "_BASE_: '../root/sub/mid.yaml'\nMODEL:\n  FPN:\n    OUT_CHANNELS: 64\n")
    cfg = get_cfg()
    old_cwd = os.getcwd()
    os.chdir(tmp_path / "root")  # relative to the files, not to the working directory
    try:
        cfg.merge_from_file(str(child))
    finally:
        os.chdir(old_cwd)
    assert cfg.MODEL.RESNETS.DEPTH == 101  # from the grandparent
    assert cfg.MODEL.RESNETS.NORM == "BN"  # the parent overrides the grandparent
    assert cfg.MODEL.FPN.OUT_CHANNELS == 64  # the child overrides the parent
    assert cfg.SOLVER.BASE_LR == 0.5
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is True  # untouched default


def test_nested_dicts_merge_instead_of_replacing(tmp_path):
    _write(tmp_path / "base.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 101\n")
    child = _write(tmp_path / "child.yaml", "_BASE_: base.yaml\nMODEL:\n  RESNETS:\n    NORM: 'BN'\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(child))
    assert (cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.NORM) == (101, "BN")


def test_overrides():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
                         "[False, True, True, True]", "SOLVER.STEPS", "(10, 20)", "MODEL.WEIGHTS", "a/b.pth"])
    assert cfg.MODEL.RESNETS.DEPTH == 18
    assert cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE == [False, True, True, True]
    assert tuple(cfg.SOLVER.STEPS) == (10, 20)
    assert cfg.MODEL.WEIGHTS == "a/b.pth"


def test_odd_override_list():
    with pytest.raises(ValueError, match="KEY VALUE"):
        get_cfg().merge_from_list(["MODEL.RESNETS.DEPTH"])


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    path = _write(tmp_path / "bad.yaml", "MODEL:\n  RESNETS:\n    DEPHT: 50\n")
    with pytest.raises(ValueError) as info:
        get_cfg().merge_from_file(str(path))
    assert "DEPHT" in str(info.value) and "bad.yaml" in str(info.value)


def test_unknown_key_in_base_names_base_file(tmp_path):
    _write(tmp_path / "base.yaml", "MODEL:\n  FPN:\n    NOT_A_KEY: 1\n")
    path = _write(tmp_path / "child.yaml", "_BASE_: base.yaml\n")
    with pytest.raises(ValueError) as info:
        get_cfg().merge_from_file(str(path))
    assert "NOT_A_KEY" in str(info.value) and "child.yaml" in str(info.value)


def test_wrong_type_in_file_names_key_and_file(tmp_path):
    path = _write(tmp_path / "bad_type.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 'fifty'\n")
    with pytest.raises(ValueError) as info:
        get_cfg().merge_from_file(str(path))
    assert "DEPTH" in str(info.value) and "bad_type.yaml" in str(info.value)


def test_unknown_and_mistyped_override_name_the_key():
    with pytest.raises(ValueError, match="MODEL.RESNETS.DEPHT"):
        get_cfg().merge_from_list(["MODEL.RESNETS.DEPHT", "50"])
    with pytest.raises(ValueError, match="DEPTH"):
        get_cfg().merge_from_list(["MODEL.RESNETS.DEPTH", "'fifty'"])


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ValueError, match="nope.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "nope.yaml"))
    path = _write(tmp_path / "child.yaml", "_BASE_: missing_base.yaml\n")
    with pytest.raises(ValueError, match="missing_base.yaml"):
        get_cfg().merge_from_file(str(path))


def test_invalid_yaml_names_file(tmp_path):
    path = _write(tmp_path / "broken.yaml", "MODEL: [unclosed\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        get_cfg().merge_from_file(str(path))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)),
                         ids=lambda p: os.path.relpath(p, os.path.join(REPO, "configs")))
def test_every_shipped_config_loads(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.MODEL.BACKBONE.NAME in ("build_resnet_fpn_backbone", "build_resnet_backbone")


def test_coco_configs_use_the_1x_schedule():
    for name in ["faster_rcnn_R_50_FPN_1x", "faster_rcnn_R_101_FPN_1x", "faster_rcnn_R_50_DC5_1x",
                 "faster_rcnn_R_50_FPN_dconv_c3-c5_1x", "faster_rcnn_R_50_FPN_mdconv_c3-c5_1x",
                 "faster_rcnn_R_50_FPN_dpool_1x", "faster_rcnn_R_50_FPN_mdpool_1x",
                 "faster_rcnn_R_50_FPN_mdconv_c3-c5_mdpool_1x"]:
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(REPO, "configs", "COCO-Detection", name + ".yaml"))
        s = cfg.SOLVER
        assert (s.IMS_PER_BATCH, s.BASE_LR, s.MAX_ITER, tuple(s.STEPS)) == (16, 0.02, 90000, (60000, 80000)), name
        assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (640, 672, 704, 736, 768, 800), name
        assert tuple(cfg.DATASETS.TRAIN) == ("coco_2017_train",) and tuple(cfg.DATASETS.TEST) == ("coco_2017_val",)
        if "dconv" in name or "mdconv" in name:
            assert cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE == [False, True, True, True]
            assert cfg.MODEL.RESNETS.DEFORM_MODULATED == name.startswith("faster_rcnn_R_50_FPN_mdconv")
        if "pool" in name:
            expected = "DeformRoIPool" if "_dpool" in name else "ModulatedDeformRoIPool"
            assert cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE == expected, name


def test_every_shipped_config_builds_its_backbone():
    """Backbone-only build of each config (narrowed so it is fast); the full model is tested by the heads."""
    from det_dcn.modeling.backbone import build_backbone

    for path in sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)):
        cfg = get_cfg()
        cfg.merge_from_file(path)
        cfg.merge_from_list(["MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
                             "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
                             "MODEL.FPN.OUT_CHANNELS", 32 if cfg.MODEL.FPN.NORM == "GN" else 16])  # GN: 32 groups
        if cfg.MODEL.RESNETS.NORM == "GN":
            continue
        model = build_backbone(cfg)
        assert model.output_shape(), path
