"""ResNet backbone: shapes and strides per depth, DC5, multi-grid, stride placement, freezing, init, names."""

import pytest
import torch
from torch import nn

from det_dcn.layers import DropBlock2d, FrozenBatchNorm2d
from det_dcn.modeling.backbone import BACKBONE_REGISTRY, Backbone, ShapeSpec, build_backbone

from backbone_test_utils import small_cfg

STRIDES = {"stem": 4, "res2": 4, "res3": 8, "res4": 16, "res5": 32}


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_output_shapes_and_strides(depth):
    cfg = small_cfg(depth)
    model = build_backbone(cfg).eval()
    assert isinstance(model, Backbone)
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
    assert [len(getattr(model, f"res{i}")) for i in range(2, 6)] == blocks
    res2 = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    channels = {"stem": 16, "res2": res2, "res3": 2 * res2, "res4": 4 * res2, "res5": 8 * res2}
    shapes = model.output_shape()
    assert shapes == {k: ShapeSpec(channels=channels[k], stride=STRIDES[k]) for k in STRIDES}
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    for name, feat in out.items():
        assert feat.shape == (2, channels[name], 64 // STRIDES[name], 96 // STRIDES[name]), name


def test_odd_input_sizes_round_up():
    model = build_backbone(small_cfg(18)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 37))
    assert out["res5"].shape[-2:] == (3, 2)  # ceil(65/32), ceil(37/32)


def test_only_needed_stages_are_built():
    cfg = small_cfg(50, OUT_FEATURES=["res3"])
    model = build_backbone(cfg)
    assert model.stage_names == ["res2", "res3"] and not hasattr(model, "res4")
    assert list(model(torch.randn(1, 3, 32, 32))) == ["res3"]


def test_stem_and_res2_channels_honoured_for_basic_blocks():
    cfg = small_cfg(18, STEM_OUT_CHANNELS=32, RES2_OUT_CHANNELS=32)
    shapes = build_backbone(cfg).output_shape()
    assert [shapes[k].channels for k in STRIDES] == [32, 32, 64, 128, 256]


def test_groups_and_width_per_group():
    cfg = small_cfg(50, NUM_GROUPS=4, WIDTH_PER_GROUP=4)
    model = build_backbone(cfg)
    conv2 = model.res3[0].conv2
    assert conv2.groups == 4 and conv2.in_channels == 4 * 4 * 2 and conv2.out_channels == 32


@pytest.mark.parametrize("depth", [18, 50])
def test_dc5_keeps_stride_16(depth):
    cfg = small_cfg(depth, RES5_DILATION=2)
    model = build_backbone(cfg).eval()
    assert model.output_shape()["res5"].stride == 16
    assert model.res5[0].stride == 1
    for block in model.res5:
        convs = [block.conv1, block.conv2] if depth == 18 else [block.conv2]
        for conv in convs:
            assert conv.dilation == (2, 2) and conv.padding == (2, 2) and conv.stride == (1, 1)
    for block in model.res4:  # res4 untouched
        assert block.conv2.dilation == (1, 1)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out["res5"].shape[-2:] == out["res4"].shape[-2:] == (4, 6)


def test_multi_grid_sets_per_block_dilation():
    cfg = small_cfg(50, RES5_DILATION=2, RES5_MULTI_GRID=[1, 2, 4])
    model = build_backbone(cfg).eval()
    assert [b.conv2.dilation for b in model.res5] == [(2, 2), (4, 4), (8, 8)]
    assert [b.conv2.padding for b in model.res5] == [(2, 2), (4, 4), (8, 8)]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))["res5"].shape[-2:] == (4, 4)
    cfg = small_cfg(18, RES5_MULTI_GRID=[1, 3])  # stride-32 res5 with multi-grid is also allowed
    model = build_backbone(cfg)
    assert [b.conv2.dilation for b in model.res5] == [(1, 1), (3, 3)]


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_placement(stride_in_1x1):
    model = build_backbone(small_cfg(50, STRIDE_IN_1X1=stride_in_1x1))
    block = model.res3[0]
    assert block.conv1.stride == ((2, 2) if stride_in_1x1 else (1, 1))
    assert block.conv2.stride == ((1, 1) if stride_in_1x1 else (2, 2))
    assert block.shortcut.stride == (2, 2)
    assert model.res2[0].conv1.stride == model.res2[0].conv2.stride == (1, 1)


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 5])
def test_freeze_at(freeze_at):
    cfg = small_cfg(50, OUT_FEATURES=["res5"])
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    model = build_backbone(cfg)
    frozen_prefixes = (["stem."] if freeze_at >= 1 else []) + [f"res{k}." for k in range(2, freeze_at + 1)]
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(tuple(frozen_prefixes))), name
    for name, m in model.named_modules():
        if name.endswith("norm"):
            frozen = name.startswith(tuple(frozen_prefixes))
            assert isinstance(m, FrozenBatchNorm2d if frozen else nn.BatchNorm2d), name
    # Frozen params keep their values after a training step; the frozen norms ignore batch statistics.
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(torch.randn(2, 3, 32, 32))["res5"]
    if out.requires_grad:
        out.sum().backward()
    after = model.state_dict()
    for k in before:
        if k.startswith(tuple(frozen_prefixes)):
            assert torch.equal(before[k], after[k]), k


def test_init_msra_and_norm():
    torch.manual_seed(0)
    cfg = small_cfg(50)
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 64
    model = build_backbone(cfg)
    w = model.res4[0].conv2.weight  # 3x3, 256 -> 256: fan_out = 256 * 9
    assert abs(w.std().item() - (2.0 / (256 * 9)) ** 0.5) < 0.05 * (2.0 / (256 * 9)) ** 0.5
    assert abs(w.mean().item()) < 1e-3
    norm = model.res4[0].conv2.norm
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert model.res4[0].conv2.bias is None


def test_state_dict_names_follow_detectron2():
    keys = set(build_backbone(small_cfg(50)).state_dict())
    for key in ["stem.conv1.weight", "stem.conv1.norm.weight", "stem.conv1.norm.running_var",
                "res2.0.shortcut.weight", "res2.0.shortcut.norm.bias", "res2.0.conv1.weight",
                "res2.0.conv2.norm.running_mean", "res2.0.conv3.weight", "res5.2.conv3.norm.weight"]:
        assert key in keys, key
    assert "res2.1.shortcut.weight" not in keys
    keys18 = set(build_backbone(small_cfg(18)).state_dict())
    assert "res2.0.shortcut.weight" not in keys18  # 16 -> 16 channels, stride 1: identity
    assert {"res3.0.shortcut.weight", "res3.0.conv1.weight", "res3.0.conv2.norm.weight"} <= keys18
    assert not any(k.startswith("res3.0.conv3") for k in keys18)


@pytest.mark.parametrize("norm", ["FrozenBN", "GN", ""])
def test_norm_choices(norm):
    cfg = small_cfg(50, NORM=norm, STEM_OUT_CHANNELS=32, RES2_OUT_CHANNELS=64, WIDTH_PER_GROUP=32)
    model = build_backbone(cfg)
    expected = {"FrozenBN": FrozenBatchNorm2d, "GN": nn.GroupNorm}.get(norm)
    assert (model.stem.conv1.norm is None) if expected is None else isinstance(model.stem.conv1.norm, expected)
    out = model(torch.randn(1, 3, 32, 32))
    assert torch.isfinite(out["res5"]).all()


@pytest.mark.parametrize("depth", [18, 50])
def test_dropblock_after_the_blocks_of_the_chosen_stages_leaves_weights_and_eval_unchanged(depth):
    plain = build_backbone(small_cfg(depth))
    cfg = small_cfg(depth)
    cfg.MODEL.RESNETS.DROPBLOCK.merge_from_list(["PROB", 0.2, "BLOCK_SIZE", 3, "ON_PER_STAGE",
                                                 [False, True, False, True], "WARMUP_ITERS", 5])
    model = build_backbone(cfg)
    placed = {name: (m.p, m.block_size, m.warmup_iters) for name, m in model.named_modules()
              if isinstance(m, DropBlock2d)}
    blocks = {"res3": len(model.res3), "res5": len(model.res5)}
    assert placed == {f"{stage}.{b}.drop_block": (0.2, 3, 5) for stage, n in blocks.items() for b in range(n)}
    assert model.state_dict().keys() == plain.state_dict().keys()  # detectron2 checkpoints still load
    model.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    plain.eval(), model.eval()
    with torch.no_grad():
        for name, feature in model(x).items():
            torch.testing.assert_close(feature, plain(x)[name], rtol=0, atol=0)
    model.train(), plain.train()
    torch.manual_seed(0)
    dropped = model(x)["res3"]
    # in training res3 has zeroed squares that the same weights without DropBlock do not have
    assert (dropped == 0).sum() > (plain(x)["res3"] == 0).sum()


def test_syncbn_builds():
    model = build_backbone(small_cfg(18, NORM="SyncBN"))
    assert isinstance(model.res2[0].conv1.norm, nn.SyncBatchNorm)


def test_registry_has_both_builders():
    assert "build_resnet_backbone" in BACKBONE_REGISTRY
    assert "build_resnet_fpn_backbone" in BACKBONE_REGISTRY


def test_torchvision_resnet_numerics():
    """Same weights, same outputs as torchvision's resnet18/resnet50 trunk (pytorch style, BN in eval)."""
    import torchvision

    for depth, ctor in [(18, torchvision.models.resnet18), (50, torchvision.models.resnet50)]:
        tv = ctor(weights=None).eval()
        cfg = small_cfg(depth, STEM_OUT_CHANNELS=64, RES2_OUT_CHANNELS=64 if depth == 18 else 256,
                        WIDTH_PER_GROUP=64, STRIDE_IN_1X1=False, OUT_FEATURES=["res5"])
        ours = build_backbone(cfg).eval()
        from det_dcn.checkpoint.convert import convert_torchvision_resnet

        state, unmatched = convert_torchvision_resnet(tv.state_dict())
        assert unmatched == ["fc.bias", "fc.weight"]
        missing, unexpected = ours.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            t = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
            torch.testing.assert_close(ours(x)["res5"], t, rtol=1e-4, atol=1e-5)
