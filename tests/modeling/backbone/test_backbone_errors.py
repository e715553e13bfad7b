"""Invalid backbone configurations fail at build time with a ValueError naming the key, value and what's allowed."""

import pytest

from det_dcn.modeling.backbone import build_backbone

from backbone_test_utils import small_cfg


def _fpn(cfg):
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    return cfg


CASES = {
    "depth": (lambda c: c.MODEL.RESNETS.merge_from_list(["DEPTH", 42]), ["MODEL.RESNETS.DEPTH", "42", "101"]),
    "res5_dilation": (lambda c: c.MODEL.RESNETS.merge_from_list(["RES5_DILATION", 4]),
                      ["MODEL.RESNETS.RES5_DILATION", "4", "1", "2"]),
    "deform_len": (lambda c: setattr(c.MODEL.RESNETS, "DEFORM_ON_PER_STAGE", [False, True, True]),
                   ["MODEL.RESNETS.DEFORM_ON_PER_STAGE", "4 booleans"]),
    "deform_type": (lambda c: setattr(c.MODEL.RESNETS, "DEFORM_ON_PER_STAGE", [0, 1, 1, 1]),
                    ["MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[0, 1, 1, 1]"]),
    "multi_grid_len": (lambda c: setattr(c.MODEL.RESNETS, "RES5_MULTI_GRID", [1, 2, 4]),
                       ["MODEL.RESNETS.RES5_MULTI_GRID", "[1, 2, 4]", "2 positive integers"]),
    "multi_grid_value": (lambda c: setattr(c.MODEL.RESNETS, "RES5_MULTI_GRID", [1, 0]),
                         ["MODEL.RESNETS.RES5_MULTI_GRID", "positive"]),
    "dropblock_prob": (lambda c: c.MODEL.RESNETS.DROPBLOCK.merge_from_list(["PROB", 1.0]),
                       ["MODEL.RESNETS.DROPBLOCK.PROB", "1.0", "[0, 1)"]),
    "dropblock_size": (lambda c: c.MODEL.RESNETS.DROPBLOCK.merge_from_list(["BLOCK_SIZE", 4]),
                       ["MODEL.RESNETS.DROPBLOCK.BLOCK_SIZE", "4", "odd"]),
    "dropblock_stages": (lambda c: setattr(c.MODEL.RESNETS.DROPBLOCK, "ON_PER_STAGE", [True, True]),
                         ["MODEL.RESNETS.DROPBLOCK.ON_PER_STAGE", "4 booleans"]),
    "dropblock_warmup": (lambda c: c.MODEL.RESNETS.DROPBLOCK.merge_from_list(["WARMUP_ITERS", -1]),
                         ["MODEL.RESNETS.DROPBLOCK.WARMUP_ITERS", "-1", ">= 0"]),
    "groups_basic": (lambda c: setattr(c.MODEL.RESNETS, "NUM_GROUPS", 32),
                     ["MODEL.RESNETS.NUM_GROUPS", "32", "basic blocks"]),
    "groups_zero": (lambda c: (setattr(c.MODEL.RESNETS, "DEPTH", 50), setattr(c.MODEL.RESNETS, "NUM_GROUPS", 0)),
                    ["MODEL.RESNETS.NUM_GROUPS", ">= 1"]),
    "freeze_at": (lambda c: setattr(c.MODEL.BACKBONE, "FREEZE_AT", 6), ["MODEL.BACKBONE.FREEZE_AT", "6", "0..5"]),
    "norm": (lambda c: setattr(c.MODEL.RESNETS, "NORM", "LayerNorm"), ["MODEL.RESNETS.NORM", "LayerNorm", "GN"]),
    "gn_channels": (lambda c: setattr(c.MODEL.RESNETS, "NORM", "GN"), ["MODEL.RESNETS.NORM", "GN", "[16]", "32"]),
    "out_features": (lambda c: setattr(c.MODEL.RESNETS, "OUT_FEATURES", ["res6"]),
                     ["MODEL.RESNETS.OUT_FEATURES", "res6", "res5"]),
    "out_features_empty": (lambda c: setattr(c.MODEL.RESNETS, "OUT_FEATURES", []), ["MODEL.RESNETS.OUT_FEATURES"]),
    "deform_groups": (lambda c: (setattr(c.MODEL.RESNETS, "DEFORM_ON_PER_STAGE", [False, False, False, True]),
                                 setattr(c.MODEL.RESNETS, "DEFORM_NUM_GROUPS", 3)),
                      ["MODEL.RESNETS.DEFORM_NUM_GROUPS", "3", "128", "res5"]),
    "stem_channels": (lambda c: setattr(c.MODEL.RESNETS, "STEM_OUT_CHANNELS", 0),
                      ["MODEL.RESNETS.STEM_OUT_CHANNELS", "0"]),
    "backbone_name": (lambda c: setattr(c.MODEL.BACKBONE, "NAME", "build_vgg"),
                      ["MODEL.BACKBONE.NAME", "build_vgg", "build_resnet_fpn_backbone"]),
    "fpn_missing_feature": (lambda c: (_fpn(c), setattr(c.MODEL.FPN, "IN_FEATURES", ["res3", "res4", "res6"])),
                            ["MODEL.FPN.IN_FEATURES", "res6", "MODEL.RESNETS.OUT_FEATURES"]),
    "fpn_feature_not_output": (lambda c: (_fpn(c), setattr(c.MODEL.RESNETS, "OUT_FEATURES", ["res4", "res5"])),
                               ["MODEL.FPN.IN_FEATURES", "res2", "missing"]),
    "fpn_dc5": (lambda c: (_fpn(c), setattr(c.MODEL.RESNETS, "RES5_DILATION", 2)),
                ["MODEL.FPN.IN_FEATURES", "[4, 8, 16, 16]", "RES5_DILATION"]),
    "fpn_fuse": (lambda c: (_fpn(c), setattr(c.MODEL.FPN, "FUSE_TYPE", "max")), ["MODEL.FPN.FUSE_TYPE", "max"]),
    "fpn_gn": (lambda c: (_fpn(c), setattr(c.MODEL.FPN, "NORM", "GN")), ["MODEL.FPN.NORM", "OUT_CHANNELS=16"]),
    "fpn_norm": (lambda c: (_fpn(c), setattr(c.MODEL.FPN, "NORM", "LN")), ["MODEL.FPN.NORM", "LN", "GN"]),
    "fpn_no_p5": (lambda c: (_fpn(c), setattr(c.MODEL.FPN, "IN_FEATURES", ["res2", "res3", "res4"])),
                  ["MODEL.FPN.IN_FEATURES", "p5"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_raises_value_error(case):
    mutate, fragments = CASES[case]
    cfg = small_cfg(18)
    mutate(cfg)
    with pytest.raises(ValueError) as info:
        build_backbone(cfg)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_forward_rejects_non_4d_input():
    import torch

    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        build_backbone(small_cfg(18))(torch.zeros(3, 32, 32))
