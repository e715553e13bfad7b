"""DeformRoIPoolPack / ModulatedDeformRoIPoolPack: zero init, gradient flow to the offset/mask branches, keys."""

import torch
from torchvision.ops import roi_align

from det_dcn.layers import DeformRoIPoolPack, ModulatedDeformRoIPoolPack

ROIS = torch.tensor([[0, 2.0, 3.0, 20.0, 25.0], [1, 0.0, 0.0, 31.0, 31.0], [0, 10.5, 4.2, 18.9, 30.1]])


def _input():
    return torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)


def test_pack_zero_init_equals_plain_pooling_and_grads_reach_offset_fc():
    x = _input()
    pack = DeformRoIPoolPack((3, 3), output_channels=4, deform_fc_channels=16, spatial_scale=0.5)
    out = pack(x, ROIS)
    torch.testing.assert_close(out, roi_align(x, ROIS, (3, 3), 0.5, 0, aligned=True))
    out.pow(2).sum().backward()
    fc = pack.offset_fc
    # zero last layer: only it gets a gradient on the first step; the earlier layers see W_last^T g = 0
    assert fc[4].weight.grad.abs().sum() > 0 and fc[4].bias.grad.abs().sum() > 0
    assert (fc[0].weight.grad == 0).all() and (fc[2].weight.grad == 0).all()
    assert x.grad.abs().sum() > 0


def test_modulated_pack_zero_init_is_half_and_grads_reach_both_branches():
    x = _input()
    pack = ModulatedDeformRoIPoolPack((3, 3), output_channels=4, deform_fc_channels=16, spatial_scale=0.5,
                                      sampling_ratio=2)
    out = pack(x, ROIS)
    torch.testing.assert_close(out, 0.5 * roi_align(x, ROIS, (3, 3), 0.5, 2, aligned=True))
    out.pow(2).sum().backward()
    assert pack.offset_fc[4].weight.grad.abs().sum() > 0
    assert pack.mask_fc[2].weight.grad.abs().sum() > 0 and pack.mask_fc[2].bias.grad.abs().sum() > 0
    assert (pack.mask_fc[0].weight.grad == 0).all() and (pack.offset_fc[0].weight.grad == 0).all()


def test_trained_pack_moves_bins():
    torch.manual_seed(0)
    x = _input().detach()
    pack = DeformRoIPoolPack(3, 4, 16, spatial_scale=0.5)
    torch.nn.init.normal_(pack.offset_fc[4].weight, std=0.1)
    assert not torch.allclose(pack(x, ROIS), roi_align(x, ROIS, 3, 0.5, 0, aligned=True))


def test_pack_gradcheck_float64():
    torch.manual_seed(0)
    x = _input().detach()[:, :, ::2, ::2].double().requires_grad_()
    pack = ModulatedDeformRoIPoolPack(2, 4, 8, spatial_scale=0.25).double()
    for p in pack.parameters():
        torch.nn.init.normal_(p, std=0.05)
    rois = ROIS.double()
    assert torch.autograd.gradcheck(lambda a: pack(a, rois), (x,), fast_mode=True)


def test_state_dict_keys_match_mmcv():
    keys = list(ModulatedDeformRoIPoolPack(7, 8, 32).state_dict())
    assert keys == ["offset_fc.0.weight", "offset_fc.0.bias", "offset_fc.2.weight", "offset_fc.2.bias",
                    "offset_fc.4.weight", "offset_fc.4.bias", "mask_fc.0.weight", "mask_fc.0.bias",
                    "mask_fc.2.weight", "mask_fc.2.bias"]
    pack = DeformRoIPoolPack(7, 8, 32)
    assert list(pack.state_dict()) == keys[:6]
    assert pack.offset_fc[0].weight.shape == (32, 7 * 7 * 8) and pack.offset_fc[4].weight.shape == (98, 32)
