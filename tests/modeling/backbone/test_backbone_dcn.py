"""Deformable stages: zero-initialised offsets make a DCN backbone with the plain weights equal the plain one;
the offset branch learns (gets gradients); freezing covers it; the 3x3 chosen in basic blocks is conv2."""

import pytest
import torch

from det_dcn.layers import DeformConv2dPack, ModulatedDeformConv2dPack
from det_dcn.modeling.backbone import build_backbone

from backbone_test_utils import randomize_, small_cfg

DCN_C3_C5 = [False, True, True, True]


def _pair(depth, modulated, fpn=False, **extra):
    """(plain model, DCN model with the plain model's weights), float64, eval."""
    cfg = small_cfg(depth, **extra)
    if fpn:
        cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    plain = randomize_(build_backbone(cfg)).double().eval()
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = DCN_C3_C5
    cfg.MODEL.RESNETS.DEFORM_MODULATED = modulated
    dcn = build_backbone(cfg).double().eval()
    missing, unexpected = dcn.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(".conv2.conv_offset." in k for k in missing), missing
    return plain, dcn


@pytest.mark.parametrize("depth", [18, 50])
def test_dcn_v1_with_plain_weights_equals_plain(depth):
    plain, dcn = _pair(depth, modulated=False)
    x = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    with torch.no_grad():
        a, b = plain(x), dcn(x)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-9)
    assert (a["res5"].abs() > 0).any()


@pytest.mark.parametrize("depth", [18, 50])
def test_dcn_v2_with_plain_weights_equals_plain_with_halved_3x3(depth):
    """The modulated conv starts with mask sigmoid(0) = 0.5 everywhere (mmcv / detectron2 init), so the DCNv2
    backbone equals the plain backbone whose deformable-position 3x3 weights are halved; exactly that."""
    plain, dcn = _pair(depth, modulated=True)
    with torch.no_grad():
        for stage in ("res3", "res4", "res5"):
            for block in getattr(plain, stage):
                block.conv2.weight.mul_(0.5)
    x = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    with torch.no_grad():
        a, b = plain(x), dcn(x)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("modulated", [False, True])
def test_dcn_fpn_with_plain_weights(modulated):
    plain, dcn = _pair(50, modulated=modulated, fpn=True)
    if modulated:
        with torch.no_grad():
            for stage in ("res3", "res4", "res5"):
                for block in getattr(plain.bottom_up, stage):
                    block.conv2.weight.mul_(0.5)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        a, b = plain(x), dcn(x)
    for name in ["p2", "p3", "p4", "p5", "p6"]:
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("depth,modulated", [(18, False), (18, True), (50, False), (50, True)])
def test_modules_and_gradients_reach_conv_offset(depth, modulated):
    cfg = small_cfg(depth, DEFORM_ON_PER_STAGE=DCN_C3_C5, DEFORM_MODULATED=modulated, DEFORM_NUM_GROUPS=2)
    model = randomize_(build_backbone(cfg)).train()
    pack = ModulatedDeformConv2dPack if modulated else DeformConv2dPack
    for stage in ("res2", "res3", "res4", "res5"):
        for block in getattr(model, stage):
            assert isinstance(block.conv2, pack) == (stage != "res2")
            assert not isinstance(block.conv1, (DeformConv2dPack, ModulatedDeformConv2dPack))
    conv2 = model.res4[0].conv2
    assert conv2.deform_groups == 2 and conv2.conv_offset.out_channels == (3 if modulated else 2) * 2 * 9
    assert torch.all(conv2.conv_offset.weight == 0) and torch.all(conv2.conv_offset.bias == 0)
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        if "conv_offset" in name:
            assert p.grad.abs().sum() > 0, name


def test_dilated_deformable_res5():
    cfg = small_cfg(50, DEFORM_ON_PER_STAGE=DCN_C3_C5, RES5_DILATION=2, RES5_MULTI_GRID=[1, 2, 1])
    model = build_backbone(cfg).eval()
    assert [b.conv2.dilation for b in model.res5] == [(2, 2), (4, 4), (2, 2)]
    assert [b.conv2.conv_offset.dilation for b in model.res5] == [(2, 2), (4, 4), (2, 2)]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out["res5"].shape[-2:] == out["res4"].shape[-2:]


def test_freeze_covers_offset_branch():
    cfg = small_cfg(50, DEFORM_ON_PER_STAGE=DCN_C3_C5)
    cfg.MODEL.BACKBONE.FREEZE_AT = 3
    model = build_backbone(cfg)
    assert not any(p.requires_grad for p in model.res3.parameters())
    assert model.res4[0].conv2.conv_offset.weight.requires_grad


@pytest.mark.parametrize("norm", ["", "GN", "FrozenBN"])
@pytest.mark.parametrize("depth", [18, 50])
def test_backward_with_every_norm(norm, depth):
    """The blocks add the shortcut in place; autograd must accept that for every norm and for DCN outputs."""
    cfg = small_cfg(depth, NORM=norm, DEFORM_ON_PER_STAGE=[True, True, True, True], DEFORM_MODULATED=depth == 50,
                    STEM_OUT_CHANNELS=32, RES2_OUT_CHANNELS=32 if depth == 18 else 64, WIDTH_PER_GROUP=32)
    model = build_backbone(cfg).train()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    sum(v.square().mean() for v in model(x).values()).backward()
    assert x.grad is not None
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
