"""Every op runs under CPU bfloat16 autocast (computed in float32 inside) and stays close to float32."""

import torch

from det_dcn.layers import (DeformConv2dPack, ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack, ROIAlign,
                            ROIPool, deform_roi_pool)

ROIS = torch.tensor([[0, 1.0, 1.0, 20.0, 22.0], [1, 3.5, 0.0, 14.0, 31.0]])


def _close(a, b, tol=0.05):
    scale = b.abs().max().clamp(min=1e-3)
    assert (a.float() - b.float()).abs().max() <= tol * scale, (a.float() - b.float()).abs().max()


def test_roi_ops_under_bf16_autocast():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16)
    offset = torch.randn(2, 2, 3, 3) * 0.3
    ref = deform_roi_pool(x, ROIS, offset, 3, 0.5)
    pack = ModulatedDeformRoIPoolPack(3, 4, 8, spatial_scale=0.5)
    torch.nn.init.normal_(pack.offset_fc[4].weight, std=0.01)
    ref_pack = pack(x, ROIS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = deform_roi_pool(x, ROIS, offset.bfloat16(), 3, 0.5)
        out_bf16_input = deform_roi_pool(x.bfloat16(), ROIS, offset, 3, 0.5)
        out_pack = pack(x, ROIS)
        align = ROIAlign(3, 0.5, 0)(x.bfloat16(), ROIS)
        pool = ROIPool(3, 0.5)(x.bfloat16(), ROIS)
    assert out.dtype == torch.float32 and out_bf16_input.dtype == torch.bfloat16 and align.dtype == torch.bfloat16
    _close(out, ref)
    _close(out_bf16_input, ref)
    _close(out_pack, ref_pack)
    _close(align, ROIAlign(3, 0.5, 0)(x, ROIS))
    _close(pool, ROIPool(3, 0.5)(x, ROIS))


def test_deform_conv_under_bf16_autocast_with_backward():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    for m in (DeformConv2dPack(4, 6, 3, padding=1, deform_groups=2),
              ModulatedDeformConv2dPack(4, 6, 3, padding=2, dilation=2, bias=True)):
        torch.nn.init.normal_(m.conv_offset.weight, std=0.05)
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        assert out.dtype == torch.bfloat16  # like any convolution under autocast
        _close(out, ref)
        out.float().sum().backward()
        assert torch.isfinite(m.weight.grad).all() and m.conv_offset.weight.grad.abs().sum() > 0


def test_half_precision_inputs_without_autocast():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16)
    out = deform_roi_pool(x.bfloat16(), ROIS.bfloat16(), None, 3, 0.5)
    assert out.dtype == torch.bfloat16
    _close(out, deform_roi_pool(x, ROIS, None, 3, 0.5))
