"""What the forward ops keep for their backward ops: the deformed columns (deform_conv2d) and the gather plan
(deform_roi_pool) are extra outputs of the forward op, kept only when a gradient will need them. The backward
from kept intermediates must equal the backward that rebuilds them (the op called without keeping) and plain
autograd on the reference code; inference must keep nothing."""

import pytest
import torch

from det_dcn.layers import _ops, deform_conv2d
from det_dcn.layers.deform_conv_torch import deform_conv2d_torch


def _conv_inputs(groups, dg, modulated, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 7, generator=g, dtype=dtype, requires_grad=True)
    offset = (torch.randn(2, 2 * dg * 9, 6, 7, generator=g, dtype=dtype) * 1.5).requires_grad_()
    mask = torch.rand(2, dg * 9, 6, 7, generator=g, dtype=dtype).requires_grad_() if modulated else None
    weight = torch.randn(6, 4 // groups, 3, 3, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(6, generator=g, dtype=dtype, requires_grad=True)
    return x, offset, mask, weight, bias


@pytest.mark.parametrize("groups,dg,modulated", [(1, 1, False), (2, 2, True), (1, 2, True)])
def test_conv_backward_from_kept_columns_equals_rebuilt_and_autograd(groups, dg, modulated):
    x, offset, mask, weight, bias = inputs = _conv_inputs(groups, dg, modulated)
    leaves = [t for t in inputs if t is not None]
    params = ([1, 1], [1, 1], [1, 1])
    grad = torch.randn(2, 6, 6, 7, dtype=torch.float64)
    results = []
    for keep in (True, False):
        out, columns = _ops._deform_conv2d(*inputs, *params, keep)
        assert columns.numel() == (2 * 6 * 7 * 9 * 4 if keep else 0)  # N * H_out * W_out * K * C_in
        results.append([out, *torch.autograd.grad(out, leaves, grad)])
    out = deform_conv2d_torch(*inputs, *params)
    results.append([out, *torch.autograd.grad(out, leaves, grad)])
    for kept, rebuilt, reference in zip(*results):
        torch.testing.assert_close(kept, rebuilt, rtol=0, atol=0)
        torch.testing.assert_close(kept, reference)


def test_conv_keeps_columns_only_for_a_weight_gradient(monkeypatch):
    kept = []
    op = _ops._deform_conv2d

    def spy(*args):
        out = op(*args)
        kept.append(out[1].numel() > 0)
        return out

    monkeypatch.setattr(_ops, "_deform_conv2d", spy)
    x, offset, mask, weight, bias = _conv_inputs(1, 1, True, torch.float32)
    deform_conv2d(x, offset, weight, bias, 1, 1, mask=mask)  # training: the weight gradient needs the columns
    with torch.no_grad():  # inference
        deform_conv2d(x, offset, weight, bias, 1, 1, mask=mask)
    deform_conv2d(x, offset, weight.detach(), bias, 1, 1, mask=mask)  # frozen weight: input gradients only
    assert kept == [True, False, False]


def test_opcheck_keeping_columns():
    x, offset, mask, weight, bias = _conv_inputs(2, 2, True, torch.float32)
    torch.library.opcheck(torch.ops.det_dcn.deform_conv2d.default,
                          (x, offset, mask, weight, bias, [1, 1], [1, 1], [1, 1], True))
