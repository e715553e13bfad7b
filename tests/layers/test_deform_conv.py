"""DeformConv2d / ModulatedDeformConv2d and their Pack modules: conv2d equality at zero offset, gradcheck of
every tensor argument, groups, deform_groups, dilation, stride, keys."""

import pytest
import torch
import torch.nn.functional as F

from det_dcn.layers import DeformConv2d, DeformConv2dPack, ModulatedDeformConv2d, ModulatedDeformConv2dPack

CONFIGS = [  # in, out, kernel, stride, padding, dilation, groups, deform_groups
    (4, 6, 3, 1, 1, 1, 1, 1),
    (4, 6, 3, 2, 2, 2, 2, 2),
    (6, 4, (3, 2), (1, 2), (2, 1), (2, 1), 2, 3),
    (4, 4, 1, 1, 0, 1, 4, 4),
]


def _conv(m, x):
    return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_zero_offset_equals_conv2d(cfg):
    cin, cout, k, s, p, d, g, dg = cfg
    torch.manual_seed(0)
    x = torch.randn(2, cin, 9, 10, dtype=torch.float64)
    dcn = DeformConv2d(cin, cout, k, s, p, d, g, dg).double()
    mdcn = ModulatedDeformConv2d(cin, cout, k, s, p, d, g, dg, bias=True).double()
    torch.nn.init.normal_(mdcn.bias)
    kh, kw = dcn.kernel_size
    oh, ow = dcn.output_hw(9, 10)
    offset = torch.zeros(2, 2 * dg * kh * kw, oh, ow, dtype=torch.float64)
    mask = torch.ones(2, dg * kh * kw, oh, ow, dtype=torch.float64)
    torch.testing.assert_close(dcn(x, offset), _conv(dcn, x))
    torch.testing.assert_close(mdcn(x, offset, mask), _conv(mdcn, x))


def test_integer_offset_is_a_shifted_conv():
    # offset (dy, dx) = (0, 1) at every kernel point == conv2d of the input shifted left by one pixel (the zero
    # padding moves with it: none on the left, two columns on the right)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 7, 8, dtype=torch.float64)
    dcn = DeformConv2d(3, 5, 3, padding=1).double()
    offset = torch.zeros(1, 18, 7, 8, dtype=torch.float64)
    offset[:, 1::2] = 1.0
    shifted = F.pad(x, (0, 2, 1, 1))
    torch.testing.assert_close(dcn(x, offset), F.conv2d(shifted, dcn.weight))


@pytest.mark.parametrize("cfg", CONFIGS[:3])
def test_gradcheck_all_arguments(cfg):
    cin, cout, k, s, p, d, g, dg = cfg
    torch.manual_seed(1)
    m = ModulatedDeformConv2d(cin, cout, k, s, p, d, g, dg, bias=True).double()
    kh, kw = m.kernel_size
    oh, ow = m.output_hw(4, 4)
    x = torch.randn(1, cin, 4, 4, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(1, 2 * dg * kh * kw, oh, ow, dtype=torch.float64) * 0.7).requires_grad_()
    mask = torch.rand(1, dg * kh * kw, oh, ow, dtype=torch.float64).requires_grad_()
    # weight and bias are inputs too: gradcheck perturbs them in place, the module reads them
    assert torch.autograd.gradcheck(lambda a, o, mk, w, b: m(a, o, mk), (x, offset, mask, m.weight, m.bias))
    dcn = DeformConv2d(cin, cout, k, s, p, d, g, dg, bias=True).double()
    assert torch.autograd.gradcheck(lambda a, o, w, b: dcn(a, o), (x, offset, dcn.weight, dcn.bias))


def test_pack_zero_init_equals_conv_and_grads_reach_conv_offset():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    pack = DeformConv2dPack(4, 6, 3, padding=2, dilation=2, deform_groups=2)
    mpack = ModulatedDeformConv2dPack(4, 6, 3, stride=2, padding=1, deform_groups=2, bias=True)
    torch.testing.assert_close(pack(x), _conv(pack, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mpack(x), 0.5 * F.conv2d(x, mpack.weight, None, 2, 1) + mpack.bias.view(1, -1, 1, 1),
                               rtol=1e-5, atol=1e-5)
    (pack(x).pow(2).sum() + mpack(x).pow(2).sum()).backward()
    assert pack.conv_offset.weight.grad.abs().sum() > 0
    assert mpack.conv_offset.weight.grad.abs().sum() > 0 and mpack.conv_offset.bias.grad.abs().sum() > 0
    assert mpack.conv_offset.out_channels == 3 * 2 * 9 and pack.conv_offset.out_channels == 2 * 2 * 9
    assert pack.conv_offset.dilation == (2, 2) and mpack.conv_offset.stride == (2, 2)


def test_modulated_pack_layout_matches_mmcv():
    # offset = cat(o1, o2), mask = sigmoid(third chunk), computed by hand from conv_offset's output
    torch.manual_seed(0)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    m = ModulatedDeformConv2dPack(4, 3, 3, padding=1, deform_groups=2).double()
    torch.nn.init.normal_(m.conv_offset.weight, std=0.1)
    o1, o2, logits = m.conv_offset(x).chunk(3, dim=1)
    expected = ModulatedDeformConv2d.forward(m, x, torch.cat([o1, o2], 1), logits.sigmoid())
    torch.testing.assert_close(m(x), expected)


def test_state_dict_keys():
    assert list(DeformConv2d(4, 4, 3).state_dict()) == ["weight"]
    assert list(ModulatedDeformConv2d(4, 4, 3, bias=True).state_dict()) == ["weight", "bias"]
    assert list(DeformConv2dPack(4, 4, 3).state_dict()) == ["weight", "conv_offset.weight", "conv_offset.bias"]
    assert list(ModulatedDeformConv2dPack(4, 4, 3, bias=True).state_dict()) == [
        "weight", "bias", "conv_offset.weight", "conv_offset.bias"]
    assert DeformConv2d(4, 6, 3, groups=2).weight.shape == (6, 2, 3, 3)


def test_full_gradcheck_tiny():
    # full (non-projected) Jacobian check on a tiny layer with groups, deform_groups and dilation
    torch.manual_seed(2)
    m = ModulatedDeformConv2d(2, 2, 2, padding=1, dilation=2, groups=2, deform_groups=2, bias=True).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(1, 16, 3, 3, dtype=torch.float64) * 0.7).requires_grad_()
    mask = torch.rand(1, 8, 3, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, o, mk, w, b: m(a, o, mk), (x, offset, mask, m.weight, m.bias))


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("modulated", [False, True])
def test_torch_path_equals_torchvision(cfg, modulated):
    # the CPU path against torchvision's kernel, outputs and all gradients, offsets reaching far outside the input
    from torchvision.ops import deform_conv2d

    from det_dcn.layers.deform_conv_torch import deform_conv2d_torch
    cin, cout, k, s, p, d, g, dg = cfg
    torch.manual_seed(3)
    m = DeformConv2d(cin, cout, k, s, p, d, g, dg, bias=True).double()
    torch.nn.init.normal_(m.bias)
    kh, kw = m.kernel_size
    oh, ow = m.output_hw(7, 6)
    x = torch.randn(2, cin, 7, 6, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(2, 2 * dg * kh * kw, oh, ow, dtype=torch.float64) * 3).requires_grad_()
    mask = torch.rand(2, dg * kh * kw, oh, ow, dtype=torch.float64, requires_grad=True) if modulated else None
    ref = deform_conv2d(x, offset, m.weight, m.bias, m.stride, m.padding, m.dilation, mask)
    out = deform_conv2d_torch(x, offset, mask, m.weight, m.bias, m.stride, m.padding, m.dilation)
    torch.testing.assert_close(out, ref)
    inputs = [x, offset, m.weight, m.bias] + ([mask] if modulated else [])
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(a, b)


def test_impl_switch(monkeypatch):
    torch.manual_seed(0)
    m = ModulatedDeformConv2dPack(4, 4, 3, padding=1)
    torch.nn.init.normal_(m.conv_offset.weight, std=0.3)
    x = torch.randn(1, 4, 6, 6)
    out = m(x)
    monkeypatch.setenv("DET_DCN_DEFORM_CONV_IMPL", "torchvision")
    torch.testing.assert_close(m(x), out, rtol=1e-5, atol=1e-5)
