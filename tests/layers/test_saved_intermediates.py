"""What the forward ops keep for their backward ops: the deformed columns (deform_conv2d) and the gather plan
(deform_roi_pool) are extra outputs of the forward op, kept only when a gradient will need them. The backward
from kept intermediates must equal the backward that rebuilds them (the op called without keeping) and plain
autograd on the reference code; inference must keep nothing."""

import pytest
import torch

from det_dcn.layers import ROIAlign, _ops, deform_conv2d, deform_roi_pool
from det_dcn.layers.deform_conv_torch import deform_conv2d_torch
from det_dcn.layers.deform_roi_pool_torch import deform_roi_pool_torch

# a plain box, one crossing the border, one with x2 < x1 (negative size), a degenerate one (no samples when
# adaptive), one in the second image
ROIS = torch.tensor([[0, 1.0, 1.0, 12.0, 14.0], [1, -6.0, 3.0, 9.0, 21.0], [0, 9.0, 2.0, 3.0, 8.0],
                     [1, 5.0, 5.0, 5.0, 5.0], [1, 3.5, 0.0, 9.0, 15.0]], dtype=torch.float64)


def _record_keeping(monkeypatch, op_name, output):
    """Wraps ``_ops.<op_name>``; returns the list that records, per call, whether its ``output`` was kept."""
    kept = []
    op = getattr(_ops, op_name)

    def spy(*args):
        out = op(*args)
        kept.append(out[output].numel() > 0)
        return out

    monkeypatch.setattr(_ops, op_name, spy)
    return kept


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
    kept = _record_keeping(monkeypatch, "_deform_conv2d", 1)
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


def _pool_inputs(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 10, generator=g, dtype=dtype, requires_grad=True)
    offset = (torch.randn(5, 2, 2, 3, generator=g, dtype=dtype) * 0.7).requires_grad_()
    return x, ROIS.to(dtype), offset


@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("with_offset", [True, False])
def test_pool_backward_from_kept_plan_equals_rebuilt_and_autograd(sampling_ratio, with_offset):
    x, rois, offset = _pool_inputs()
    offset = offset if with_offset else None
    leaves = [x] + ([offset] if with_offset else [])
    params = ([2, 3], 0.75, sampling_ratio, 0.3)
    grad = torch.randn(5, 3, 2, 3, dtype=torch.float64)
    results = []
    for keep in (True, False):
        out, index, weight, bag_offsets, slope, table = _ops._deform_roi_pool(x, rois, offset, *params, keep)
        assert bag_offsets.numel() == (5 * 6 if keep else 0) and index.shape == weight.shape
        assert slope.shape == ((2, index.numel()) if keep and with_offset else (0,))
        assert table.shape == ((2 * 9 * 10, 3) if keep and with_offset else (0,))
        results.append([out, *torch.autograd.grad(out, leaves, grad)])
    out = deform_roi_pool_torch(x, rois, offset, *params)
    results.append([out, *torch.autograd.grad(out, leaves, grad)])
    for kept, rebuilt, reference in zip(*results):
        torch.testing.assert_close(kept, rebuilt)
        torch.testing.assert_close(kept, reference)


def test_pool_gradcheck_from_kept_plan():
    x, rois, offset = _pool_inputs()
    torch.autograd.gradcheck(lambda x, o: _ops._deform_roi_pool(x, rois, o, [2, 3], 0.75, 0, 0.3, True)[0],
                             (x, offset))


def test_pool_keeps_plan_only_for_a_gradient(monkeypatch):
    kept = _record_keeping(monkeypatch, "_deform_roi_pool", 3)
    x, rois, offset = _pool_inputs(torch.float32)
    deform_roi_pool(x, rois, offset, (2, 3), 0.75)  # training
    ROIAlign((2, 3), 0.75, 0, aligned=True)(x, rois[[0, 1, 3, 4]])  # input gradient only (ordered boxes)
    with torch.no_grad():  # inference
        deform_roi_pool(x, rois, offset, (2, 3), 0.75)
    deform_roi_pool(x.detach(), rois, offset.detach(), (2, 3), 0.75)  # nothing requires grad
    assert kept == [True, True, False, False]


def test_opcheck_keeping_plan():
    x, rois, offset = _pool_inputs(torch.float32)
    torch.library.opcheck(torch.ops.det_dcn.deform_roi_pool.default, (x, rois, offset, [2, 3], 0.75, 0, 0.3, True))
