"""FPN: levels, strides, names, exact top-down computation, P6, fuse types, init, size divisibility."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from det_dcn.modeling.backbone import FPN, LastLevelMaxPool, ShapeSpec, build_backbone

from backbone_test_utils import randomize_, small_cfg


def fpn_cfg(depth=18, **fpn):
    cfg = small_cfg(depth, OUT_FEATURES=["res2", "res3", "res4", "res5"])
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    for k, v in fpn.items():
        cfg.MODEL.FPN[k] = v
    return cfg


def test_levels_and_names():
    model = build_backbone(fpn_cfg())
    assert isinstance(model, FPN)
    assert model.output_shape() == {f"p{k}": ShapeSpec(channels=16, stride=2 ** k) for k in range(2, 7)}
    assert model.size_divisibility == 32
    names = set(model.state_dict())
    for k in range(2, 6):
        assert {f"fpn_lateral{k}.weight", f"fpn_lateral{k}.bias", f"fpn_output{k}.weight",
                f"fpn_output{k}.bias"} <= names
    assert "bottom_up.res2.0.conv1.weight" in names and "bottom_up.stem.conv1.norm.weight" in names
    assert not any(k.startswith("_") for k in names)


@pytest.mark.parametrize("fuse_type", ["sum", "avg"])
@pytest.mark.parametrize("size", [(64, 96), (70, 45)])
def test_matches_reference_computation(fuse_type, size):
    model = randomize_(build_backbone(fpn_cfg(FUSE_TYPE=fuse_type))).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        out = model(x)
        c = model.bottom_up(x)
        # Independent reference: lateral 1x1 + nearest upsampling of the coarser merged map to the exact size.
        merged = {}
        for k in (5, 4, 3, 2):
            lat = model.get_submodule(f"fpn_lateral{k}")
            lateral = F.conv2d(c[f"res{k}"], lat.weight, lat.bias)
            if k < 5:
                up = F.interpolate(merged[k + 1], size=lateral.shape[-2:], mode="nearest")
                lateral = lateral + up
                if fuse_type == "avg":
                    lateral = lateral / 2
            merged[k] = lateral
        for k in (2, 3, 4, 5):
            o = model.get_submodule(f"fpn_output{k}")
            torch.testing.assert_close(out[f"p{k}"], F.conv2d(merged[k], o.weight, o.bias, padding=1))
        torch.testing.assert_close(out["p6"], out["p5"][:, :, ::2, ::2])
    for k in range(2, 7):
        assert out[f"p{k}"].shape[-2:] == tuple(-(-s // 2 ** k) for s in size)


def test_last_level_max_pool():
    x = torch.randn(1, 2, 5, 4)
    (p6,) = LastLevelMaxPool()(x)
    assert torch.equal(p6, x[:, :, ::2, ::2])


def test_init_is_c2_xavier():
    torch.manual_seed(0)
    cfg = fpn_cfg(OUT_CHANNELS=256)
    model = build_backbone(cfg)
    w = model.fpn_output3.weight  # fan_in = 256 * 9; kaiming_uniform(a=1): bound sqrt(3 / fan_in)
    bound = (3.0 / (256 * 9)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert torch.all(model.fpn_output3.bias == 0) and torch.all(model.fpn_lateral2.bias == 0)


def test_norm_removes_bias():
    model = build_backbone(fpn_cfg(NORM="GN", OUT_CHANNELS=32))
    assert model.fpn_lateral2.bias is None and isinstance(model.fpn_lateral2.norm, nn.GroupNorm)
    assert torch.isfinite(model(torch.randn(1, 3, 64, 64))["p6"]).all()


def test_subset_of_levels():
    cfg = fpn_cfg()
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    model = build_backbone(cfg)
    assert list(model.output_shape()) == ["p3", "p4", "p5", "p6"]
    assert not hasattr(model, "fpn_lateral2")


def test_fpn_backward_reaches_every_trainable_parameter():
    cfg = fpn_cfg(depth=50)
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    model = build_backbone(cfg).train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert name.startswith(("bottom_up.stem.", "bottom_up.res2.")), name
