"""det_dcn's operators in torch's operator registry (namespace ``det_dcn``), so that autograd, autocast,
``torch.compile`` and ``torch.export`` treat them like torchvision's ops:

- ``det_dcn::deform_roi_pool(input, rois, offset?, output_size, spatial_scale, sampling_ratio, gamma,
  keep_plan=False) -> (output, *plan)`` and its ``det_dcn::deform_roi_pool_backward``;
- ``det_dcn::deform_conv2d(input, offset, mask?, weight, bias?, stride, padding, dilation, keep_columns=False)
  -> (output, columns)`` and its ``det_dcn::deform_conv2d_backward``.

The forward ops return what their backward needs as extra outputs (torch.library's way of saving intermediates):
the gather plan, the deformed columns. They are kept only when asked (else empty tensors); the Python entry points
:func:`deform_roi_pool_op` / :func:`deform_conv2d_op`, which every layer calls, return the output alone and ask
only when a gradient will need them, so inference keeps nothing. The backward ops rebuild what was not kept.

Each op has one kernel for every device; it asks ``_dispatch.implementation`` which implementation to run there
(torch / Triton / torchvision). Fake kernels give the output shapes to the tracers (the real kernels read RoI
values on the host, which a graph must not see). Autocast is declared here, once: the ops run in float32 with
autocast off (float64 stays float64). Arguments are validated by the public functions and modules, not here.
Shapes are documented on :func:`det_dcn.layers.deform_roi_pool` and :class:`det_dcn.layers.DeformConv2d`.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _dispatch
from .deform_conv_torch import deform_conv2d_torch_backward, deform_conv2d_torch_forward
from .deform_roi_pool_torch import (deform_roi_pool_torch, deform_roi_pool_torch_backward,
                                    deform_roi_pool_torch_forward)


def _fresh(t: Tensor) -> Tensor:
    """An op's output must not be a view (autograd forbids in-place changes of a custom op's view outputs, e.g. a
    residual ``out += x``): ``.contiguous()`` of an already contiguous permutation (1x1 maps) returns one."""
    return t.clone() if t._base is not None else t


def _empty_if_none(t: Optional[Tensor], like: Tensor) -> Tensor:
    # op outputs must be tensors: an unneeded gradient is returned as an empty one
    return like.new_empty(0) if t is None else _fresh(t)


def _with_autograd(fn, *args):
    """``fn(*args)`` with autograd recording on. A kernel runs below the autograd dispatch key (nothing records
    there); the torch backward kernels use autograd for the cheap, offset-dependent part of their gradients."""
    exclude = torch._C._dispatch_tls_local_exclude_set().remove(torch._C.DispatchKey.AutogradFunctionality)
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude), torch.enable_grad():
        return fn(*args)


def _run_fused(op: str, fused, plain, *args):
    """``fused(*args)``; on a Triton compiler error under "auto", logs once and runs ``plain`` from now on."""
    try:
        return fused(*args)
    except Exception as e:  # noqa: BLE001 - re-raised unless it is the compiler's own error
        if _dispatch.requested(op) != "auto" or not _dispatch.is_compiler_error(e):
            raise
        _dispatch.compiler_failed(op, e)
    return plain(*args)


# ---------------------------------------------------------------------------------------------- deform_roi_pool
def _keeps_plan(keep: bool, device_type: str) -> bool:
    # only the torch implementation has a plan to keep (the Triton kernels gather without one)
    return keep and _dispatch.implementation("deform_roi_pool", device_type) == "torch"


@torch.library.custom_op("det_dcn::deform_roi_pool", mutates_args=())
def _deform_roi_pool(input: Tensor, rois: Tensor, offset: Optional[Tensor], output_size: Sequence[int],
                     spatial_scale: float, sampling_ratio: int, gamma: float,
                     keep_plan: bool = False) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(output [R, C, PH, PW], index [E], weight [E], bag_offsets [R * PH * PW], slope [2, E], table
    [N * H * W, C]): the gather plan the backward needs (``deform_roi_pool_torch_forward``; slope and table are
    [0] without offsets), kept only when ``keep_plan`` (and the torch implementation runs), else empty tensors.
    E is data-dependent."""
    args = (input, rois, offset, tuple(output_size), spatial_scale, sampling_ratio, gamma)
    if _dispatch.implementation("deform_roi_pool", input.device.type) == "triton":
        from .deform_roi_pool_triton import deform_roi_pool_triton_forward
        out = _run_fused("deform_roi_pool", deform_roi_pool_triton_forward, deform_roi_pool_torch, *args)
        plan = None
    else:
        out, plan = deform_roi_pool_torch_forward(*args, keep_plan)
    if plan is None:
        empty = input.new_empty(0, dtype=torch.long)
        plan = (empty, input.new_empty(0), empty.clone(), input.new_empty(0), input.new_empty(0))
    return (_fresh(out), *(_fresh(t) for t in plan))


@_deform_roi_pool.register_fake
def _(input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma, keep_plan=False):
    out = input.new_empty(rois.shape[0], input.shape[1], output_size[0], output_size[1])
    if not _keeps_plan(keep_plan, input.device.type):
        return (out, input.new_empty(0, dtype=torch.long), input.new_empty(0), input.new_empty(0, dtype=torch.long),
                input.new_empty(0), input.new_empty(0))
    entries = torch.library.get_ctx().new_dynamic_size()
    bins = rois.shape[0] * output_size[0] * output_size[1]
    n, c, height, width = input.shape
    return (out, input.new_empty(entries, dtype=torch.long), input.new_empty(entries),
            input.new_empty(bins, dtype=torch.long), input.new_empty((2, entries) if offset is not None else (0,)),
            input.new_empty((n * height * width, c) if offset is not None else (0,)))


def deform_roi_pool_op(input: Tensor, rois: Tensor, offset: Optional[Tensor], output_size: Sequence[int],
                       spatial_scale: float, sampling_ratio: int, gamma: float) -> Tensor:
    """``det_dcn::deform_roi_pool``'s output. The gather plan is kept for the backward only when a gradient will
    be computed (grad mode on, ``input`` or ``offset`` requires grad): inference pays no memory for it. Never
    while tracing: the plan's size depends on the RoIs, and such an output breaks a torch.compile graph (unless
    ``capture_dynamic_output_shape_ops``); there the backward rebuilds it."""
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
    keep = not tracing and torch.is_grad_enabled() and (input.requires_grad or (offset is not None and
                                                                                 offset.requires_grad))
    return _deform_roi_pool(input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma, keep)[0]


def _plan_kept(plan: Sequence[Tensor]) -> bool:
    return len(plan) == 5 and plan[2].numel() > 0  # bag offsets: one per bin when kept


def _pool_grad_format(plan: Sequence[Tensor]) -> torch.memory_format:
    """Memory format of the input gradient, the same in the real and the fake kernel. The torch path computes it
    channels-last (it gathers from a channels-last copy of the input); with a kept plan (eager mode only) it is
    returned so, as autograd would, sparing a transposing copy (its consumer, e.g. autograd's accumulation, reads
    either layout); else contiguous, the layout torch.compile's graphs expect."""
    return torch.channels_last if _plan_kept(plan) else torch.contiguous_format


@torch.library.custom_op("det_dcn::deform_roi_pool_backward", mutates_args=())
def deform_roi_pool_backward_op(grad: Tensor, input: Tensor, rois: Tensor, offset: Optional[Tensor],
                                output_size: Sequence[int], spatial_scale: float, sampling_ratio: int, gamma: float,
                                input_grad: bool, offset_grad: bool,
                                plan: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    """(grad_input [N, C, H, W], grad_offset [R, 2, PH, PW]); empty where not asked for. ``plan``: the forward's
    kept gather plan, or ``[]`` (then rebuilt)."""
    args = (grad, input, rois, offset, tuple(output_size), spatial_scale, sampling_ratio, gamma, input_grad,
            offset_grad)
    if _dispatch.implementation("deform_roi_pool", input.device.type) == "triton":
        from .deform_roi_pool_triton import deform_roi_pool_triton_backward
        grads = _run_fused("deform_roi_pool", deform_roi_pool_triton_backward,
                           lambda *a: _with_autograd(deform_roi_pool_torch_backward, *a), *args)
    else:
        grads = _with_autograd(deform_roi_pool_torch_backward, *args, tuple(plan) if _plan_kept(plan) else None)
    grad_input = None if grads[0] is None else grads[0].contiguous(memory_format=_pool_grad_format(plan))
    return _empty_if_none(grad_input, input), _empty_if_none(grads[1], input)


@deform_roi_pool_backward_op.register_fake
def _(grad, input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma, input_grad, offset_grad,
      plan):
    want_offset = offset_grad and offset is not None
    return (torch.empty_like(input, memory_format=_pool_grad_format(plan)) if input_grad else input.new_empty(0),
            torch.empty_like(offset) if want_offset else input.new_empty(0))


def _roi_pool_setup(ctx, inputs, output):
    input, rois, offset, *params = inputs
    plan = output[1:]
    ctx.mark_non_differentiable(*plan)
    ctx.set_materialize_grads(False)  # no zero gradients for the plan
    ctx.save_for_backward(input, rois, offset, *plan)
    ctx.params = params[:4]


def _roi_pool_backward(ctx, grad, *_plan_grads):
    if grad is None:  # the output is not in the graph being differentiated (grads are not materialised)
        return (None,) * 8
    input, rois, offset, *plan = ctx.saved_tensors
    want_input, want_offset = ctx.needs_input_grad[0], offset is not None and ctx.needs_input_grad[2]
    grad_input, grad_offset = deform_roi_pool_backward_op(grad, input, rois, offset, *ctx.params, want_input,
                                                          want_offset, plan)
    return (grad_input if want_input else None, None, grad_offset if want_offset else None) + (None,) * 5


_deform_roi_pool.register_autograd(_roi_pool_backward, setup_context=_roi_pool_setup)


# ------------------------------------------------------------------------------------------------ deform_conv2d
def _torchvision_args(input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
                      stride, padding, dilation):
    """Arguments of ``torchvision::deform_conv2d`` (and its backward) after ``input``."""
    kh, kw = weight.shape[2:]
    groups = input.shape[1] // weight.shape[1]
    offset_groups = offset.shape[1] // (2 * kh * kw)
    mask_ = input.new_zeros(input.shape[0], 1) if mask is None else mask  # torchvision's "no mask"
    bias_ = input.new_zeros(weight.shape[0]) if bias is None else bias
    return (weight, offset, mask_, bias_, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
            groups, offset_groups, mask is not None)


def _keeps_columns(keep: bool, device_type: str) -> bool:
    # only the torch implementation has columns to keep (torchvision's backward recomputes its own)
    return keep and _dispatch.implementation("deform_conv2d", device_type) == "torch"


@torch.library.custom_op("det_dcn::deform_conv2d", mutates_args=())
def _deform_conv2d(input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
                   stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                   keep_columns: bool = False) -> Tuple[Tensor, Tensor]:
    """(output [N, C_out, H_out, W_out], columns): the columns (Tensor[N * H_out * W_out * kh * kw * dg,
    C_in / dg]) are the deformed im2col the weight gradient needs, kept only when ``keep_columns`` (and the
    torch implementation runs), else empty."""
    if _dispatch.implementation("deform_conv2d", input.device.type) == "torchvision":
        return _fresh(torch.ops.torchvision.deform_conv2d(
            input, *_torchvision_args(input, offset, mask, weight, bias, stride, padding, dilation))), input.new_empty(0)
    out, bags = deform_conv2d_torch_forward(input, offset, mask, weight, bias, tuple(stride), tuple(padding),
                                            tuple(dilation))
    return _fresh(out), bags if keep_columns else input.new_empty(0)


@_deform_conv2d.register_fake
def _(input, offset, mask, weight, bias, stride, padding, dilation, keep_columns=False):
    out = input.new_empty(input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3])
    if not _keeps_columns(keep_columns, input.device.type):
        return out, input.new_empty(0)
    k = weight.shape[2] * weight.shape[3]
    dg = offset.shape[1] // (2 * k)
    return out, input.new_empty(offset.shape[0] * offset.shape[2] * offset.shape[3] * k * dg, input.shape[1] // dg)


def deform_conv2d_op(input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
                     stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """``det_dcn::deform_conv2d``'s output. The columns are kept for the backward only when a weight gradient will
    be computed (grad mode on, ``weight.requires_grad``): inference and frozen layers pay no memory for them."""
    keep = torch.is_grad_enabled() and weight.requires_grad
    return _deform_conv2d(input, offset, mask, weight, bias, stride, padding, dilation, keep)[0]


@torch.library.custom_op("det_dcn::deform_conv2d_backward", mutates_args=())
def deform_conv2d_backward_op(grad: Tensor, input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
                              bias: Optional[Tensor], stride: Sequence[int], padding: Sequence[int],
                              dilation: Sequence[int], needs: Sequence[bool],
                              columns: Optional[Tensor] = None) -> List[Tensor]:
    """[grad_input, grad_offset, grad_mask, grad_weight, grad_bias]; empty where ``needs`` is False or the
    argument is None. ``columns``: the forward's, when kept (else rebuilt if the weight needs a gradient)."""
    if _dispatch.implementation("deform_conv2d", input.device.type) == "torchvision":
        gi, gw, go, gm, gb = torch.ops.torchvision._deform_conv2d_backward(
            grad, input, *_torchvision_args(input, offset, mask, weight, bias, stride, padding, dilation))
        grads = [gi, go, gm if mask is not None else None, gw, gb if bias is not None else None]
    else:
        bags = columns if columns is not None and columns.numel() > 0 else None
        grads = _with_autograd(deform_conv2d_torch_backward, grad, input, offset, mask, weight, bias, tuple(stride),
                               tuple(padding), tuple(dilation), tuple(needs), bags)
    return [_fresh(g.contiguous()) if g is not None and need else input.new_empty(0) for g, need in zip(grads, needs)]


@deform_conv2d_backward_op.register_fake
def _(grad, input, offset, mask, weight, bias, stride, padding, dilation, needs, columns=None):
    return [torch.empty_like(t) if t is not None and need else input.new_empty(0)
            for t, need in zip((input, offset, mask, weight, bias), needs)]


def _conv_setup(ctx, inputs, output):
    input, offset, mask, weight, bias, *params = inputs
    columns = output[1]
    ctx.mark_non_differentiable(columns)
    ctx.set_materialize_grads(False)  # else autograd allocates a zero gradient as large as the columns
    ctx.save_for_backward(input, offset, mask, weight, bias, columns)
    ctx.params = params[:3]


def _conv_backward(ctx, grad, _grad_columns):
    if grad is None:  # the output is not in the graph being differentiated (grads are not materialised)
        return (None,) * 9
    *saved, columns = ctx.saved_tensors
    needs = [ctx.needs_input_grad[i] and saved[i] is not None for i in range(5)]
    grads = deform_conv2d_backward_op(grad, *saved, *ctx.params, needs, columns)
    return tuple(g if need else None for g, need in zip(grads, needs)) + (None, None, None, None)


_deform_conv2d.register_autograd(_conv_backward, setup_context=_conv_setup)

for _op in ("det_dcn::deform_roi_pool", "det_dcn::deform_conv2d"):
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast(_op, _device, torch.float32)
