"""det_dcn.layers.ASPP: shapes, a plain reference, float64 gradients, identity at init (residual), and the res5
plugin (MODEL.RESNETS.RES5_ASPP_RATES) loading a DC5 checkpoint with unchanged outputs."""

import pytest
import torch
from torch.nn import functional as F

from det_dcn.layers import ASPP
from det_dcn.modeling import build_backbone
from tests.quickstart_cfg import quickstart_cfg


@pytest.mark.parametrize("rates, pooling, norm", [((1,), False, ""), ((2, 4, 6), True, "BN"), ((3, 6), True, "GN")])
def test_shapes(rates, pooling, norm):
    aspp = ASPP(32, 64, rates, norm=norm, image_pooling=pooling, branch_channels=32)
    y = aspp(torch.randn(2, 32, 7, 11))
    assert y.shape == (2, 64, 7, 11)
    assert len(aspp.branches) == 1 + len(rates) and (aspp.image_pooling is not None) == pooling


def test_matches_a_plain_reference():
    torch.manual_seed(0)
    aspp = ASPP(8, 6, (2, 3), norm="", branch_channels=5).double()
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    outs = []
    for branch, rate in zip(aspp.branches, (1, 2, 3)):
        conv = branch[0]
        k = conv.weight.shape[-1]
        outs.append(F.relu(F.conv2d(x, conv.weight, conv.bias, padding=rate * (k // 2), dilation=rate)))
    pool = aspp.image_pooling[0]
    pooled = F.relu(F.conv2d(x.mean((2, 3), keepdim=True), pool.weight, pool.bias))
    outs.append(pooled.expand(-1, -1, 9, 10))
    proj = aspp.project[0]
    ref = F.relu(F.conv2d(torch.cat(outs, 1), proj.weight, proj.bias))
    torch.testing.assert_close(aspp(x), ref)


def test_gradcheck_float64():
    torch.manual_seed(0)
    aspp = ASPP(3, 4, (1, 2), norm="", branch_channels=2).double()
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: aspp(t), (x,))


@pytest.mark.parametrize("norm", ["BN", "GN", "FrozenBN", ""])
def test_residual_starts_as_identity_and_learns(norm):
    torch.manual_seed(0)
    aspp = ASPP(32, 32, (2, 4), norm=norm, residual=True)
    x = torch.rand(2, 32, 6, 8)  # >= 0, as after a ReLU
    assert torch.equal(aspp(x), x) and torch.equal(aspp.eval()(x), x)
    aspp.train()
    opt = torch.optim.SGD(aspp.parameters(), lr=0.1)
    (aspp(x) - 1).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(aspp(x), x)  # the zero-initialised map is trainable, not stuck at zero


def test_bad_arguments():
    with pytest.raises(ValueError, match="rates"):
        ASPP(8, 8, [])
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        ASPP(8, 16, (2,), residual=True)


def _dc5(*opts):
    return quickstart_cfg("faster_rcnn_shapes_dc5", *opts)


def test_res5_plugin_loads_a_dc5_checkpoint_with_identical_outputs():
    torch.manual_seed(0)
    plain = build_backbone(_dc5()).eval()
    with_aspp = build_backbone(_dc5("MODEL.RESNETS.RES5_ASPP_RATES", "[3, 6, 9]")).eval()
    result = with_aspp.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith("res5.2.aspp.") for k in result.missing_keys)
    x = torch.randn(1, 3, 64, 96)
    torch.testing.assert_close(with_aspp(x)["res5"], plain(x)["res5"], rtol=0, atol=0)
    assert with_aspp.output_shape()["res5"].stride == 16


def test_res5_aspp_rates_are_validated():
    with pytest.raises(ValueError, match="MODEL.RESNETS.RES5_ASPP_RATES"):
        build_backbone(_dc5("MODEL.RESNETS.RES5_ASPP_RATES", "[0, 2]"))
