"""Fused deformable RoI pooling for CUDA: two Triton kernels (forward; backward for input and offset).

One program computes a contiguous chunk of one RoI's [C, PH * PW] output (lanes = (channel, bin) pairs, like
torchvision's roi_align threads), so the RoI's geometry and sample grid are scalars, no lane is padding except in
the RoI's last chunk, and loads and stores are as coalesced as torchvision's. The backward adds the input gradient
with atomics (as roi_align) and each lane's offset-gradient contribution with one atomic per direction.
Sampling rules are those of ``deform_roi_pool_torch`` (the reference this path is tested against): torchvision's
bilinear sampling, 0 outside [-1, H] x [-1, W], clamped onto the border inside that band. The kernels also run
under ``TRITON_INTERPRET=1`` on CPU tensors, which is how the index arithmetic is tested without a GPU.
"""

import contextlib
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

# Output elements (channel, bin) of one RoI that one program computes.
_BLOCK = 512


@triton.jit
def _sample(y, x, H, W):
    """Bilinear neighbours of one sample per lane (y, x: vectors over lanes), torchvision's rules."""
    dt = y.dtype
    inside = (y >= -1.0) & (y <= H) & (x >= -1.0) & (x <= W)
    yc = tl.minimum(tl.maximum(y, 0.0), (H - 1).to(dt))
    xc = tl.minimum(tl.maximum(x, 0.0), (W - 1).to(dt))
    y_low = yc.to(tl.int32)  # yc >= 0: truncation is floor
    x_low = xc.to(tl.int32)
    y_high = tl.minimum(y_low + 1, H - 1)
    x_high = tl.minimum(x_low + 1, W - 1)
    ly = yc - y_low.to(dt)
    lx = xc - x_low.to(dt)
    # the clamp has zero derivative outside [0, size - 1]
    dy_ok = inside & (y >= 0.0) & (y <= H - 1)
    dx_ok = inside & (x >= 0.0) & (x <= W - 1)
    return inside, y_low, y_high, x_low, x_high, ly, lx, dy_ok, dx_ok


@triton.jit
def _bins(geom_ptr, meta_ptr, offset_ptr, r, C, NBINS: tl.constexpr, PW: tl.constexpr, HAS_OFFSET: tl.constexpr,
          BLOCK: tl.constexpr):
    """Lanes of one program: a chunk of RoI r's flattened (channel, bin) output, and each lane's bin corner."""
    idx = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = idx < C * NBINS
    c = idx // NBINS
    k = idx % NBINS
    # geom: x_start, y_start, bin_w, bin_h, gamma * roi_w, gamma * roi_h; meta: batch, grid_h, grid_w
    g = geom_ptr + r * 6
    bin_w = tl.load(g + 2)
    bin_h = tl.load(g + 3)
    dt = bin_w.dtype
    bx = tl.load(g) + (k % PW).to(dt) * bin_w
    by = tl.load(g + 1) + (k // PW).to(dt) * bin_h
    if HAS_OFFSET:
        off = offset_ptr + r.to(tl.int64) * 2 * NBINS
        bx += tl.load(g + 4) * tl.load(off + k, mask=ok, other=0.0)
        by += tl.load(g + 5) * tl.load(off + NBINS + k, mask=ok, other=0.0)
    batch = tl.load(meta_ptr + r * 3).to(tl.int64)
    gh = tl.load(meta_ptr + r * 3 + 1)
    gw = tl.load(meta_ptr + r * 3 + 2)
    return idx, ok, c, k, bx, by, bin_w, bin_h, batch, gh, gw


@triton.jit
def _deform_roi_pool_fwd(input_ptr, geom_ptr, meta_ptr, offset_ptr, out_ptr, C, H, W,
                         NBINS: tl.constexpr, PW: tl.constexpr, HAS_OFFSET: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    idx, ok, c, k, bx, by, bin_w, bin_h, batch, gh, gw = _bins(geom_ptr, meta_ptr, offset_ptr, r, C, NBINS, PW,
                                                               HAS_OFFSET, BLOCK)
    dt = bin_w.dtype
    plane = input_ptr + (batch * C + c.to(tl.int64)) * H * W
    acc = tl.zeros([BLOCK], dtype=dt)
    # float sample counters (i + 0.5) carried through the loops, in the geometry's dtype
    fy = tl.zeros_like(bin_h) + 0.5
    for iy in range(0, gh):
        y = by + fy / gh.to(dt) * bin_h
        fx = tl.zeros_like(bin_w) + 0.5
        for ix in range(0, gw):
            x = bx + fx / gw.to(dt) * bin_w
            inside, y_low, y_high, x_low, x_high, ly, lx, dy_ok, dx_ok = _sample(y, x, H, W)
            m = ok & inside
            hy = 1.0 - ly
            hx = 1.0 - lx
            v1 = tl.load(plane + y_low * W + x_low, mask=m, other=0.0)
            v2 = tl.load(plane + y_low * W + x_high, mask=m, other=0.0)
            v3 = tl.load(plane + y_high * W + x_low, mask=m, other=0.0)
            v4 = tl.load(plane + y_high * W + x_high, mask=m, other=0.0)
            acc += hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4
            fx += 1.0
        fy += 1.0
    count = tl.maximum(gh * gw, 1).to(dt)
    tl.store(out_ptr + r.to(tl.int64) * C * NBINS + idx, acc / count, mask=ok)


@triton.jit
def _deform_roi_pool_bwd(input_ptr, geom_ptr, meta_ptr, offset_ptr, grad_out_ptr, grad_input_ptr,
                         grad_offset_ptr, C, H, W, NBINS: tl.constexpr, PW: tl.constexpr,
                         HAS_OFFSET: tl.constexpr, INPUT_GRAD: tl.constexpr, OFFSET_GRAD: tl.constexpr,
                         BLOCK: tl.constexpr):
    r = tl.program_id(0)
    idx, ok, c, k, bx, by, bin_w, bin_h, batch, gh, gw = _bins(geom_ptr, meta_ptr, offset_ptr, r, C, NBINS, PW,
                                                               HAS_OFFSET, BLOCK)
    dt = bin_w.dtype
    count = tl.maximum(gh * gw, 1).to(dt)
    g = tl.load(grad_out_ptr + r.to(tl.int64) * C * NBINS + idx, mask=ok, other=0.0) / count
    rows = (batch * C + c.to(tl.int64)) * H * W
    plane = input_ptr + rows
    grad_plane = grad_input_ptr + rows
    acc_dx = tl.zeros([BLOCK], dtype=dt)
    acc_dy = tl.zeros([BLOCK], dtype=dt)
    fy = tl.zeros_like(bin_h) + 0.5
    for iy in range(0, gh):
        y = by + fy / gh.to(dt) * bin_h
        fx = tl.zeros_like(bin_w) + 0.5
        for ix in range(0, gw):
            x = bx + fx / gw.to(dt) * bin_w
            inside, y_low, y_high, x_low, x_high, ly, lx, dy_ok, dx_ok = _sample(y, x, H, W)
            m = ok & inside
            hy = 1.0 - ly
            hx = 1.0 - lx
            p1 = y_low * W + x_low
            p2 = y_low * W + x_high
            p3 = y_high * W + x_low
            p4 = y_high * W + x_high
            if INPUT_GRAD:
                tl.atomic_add(grad_plane + p1, g * hy * hx, mask=m)
                tl.atomic_add(grad_plane + p2, g * hy * lx, mask=m)
                tl.atomic_add(grad_plane + p3, g * ly * hx, mask=m)
                tl.atomic_add(grad_plane + p4, g * ly * lx, mask=m)
            if OFFSET_GRAD:
                v1 = tl.load(plane + p1, mask=m, other=0.0)
                v2 = tl.load(plane + p2, mask=m, other=0.0)
                v3 = tl.load(plane + p3, mask=m, other=0.0)
                v4 = tl.load(plane + p4, mask=m, other=0.0)
                acc_dx += tl.where(dx_ok, g * (hy * (v2 - v1) + ly * (v4 - v3)), 0.0)
                acc_dy += tl.where(dy_ok, g * (hx * (v3 - v1) + lx * (v4 - v2)), 0.0)
            fx += 1.0
        fy += 1.0
    if OFFSET_GRAD:
        # one atomic per (channel, bin): lanes of a warp hit distinct bins, the channels add up across warps
        goff = grad_offset_ptr + r.to(tl.int64) * 2 * NBINS
        tl.atomic_add(goff + k, acc_dx * tl.load(geom_ptr + r * 6 + 4), mask=ok)
        tl.atomic_add(goff + NBINS + k, acc_dy * tl.load(geom_ptr + r * 6 + 5), mask=ok)


def _geometry(rois: torch.Tensor, output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int,
              gamma: float):
    """Per-RoI constants, computed with the reference's formulas in the input's dtype.

    Returns:
        geom (Tensor[R, 6]): x_start, y_start, bin_w, bin_h, gamma * roi_w, gamma * roi_h.
        meta (IntTensor[R, 3]): batch index, grid_h, grid_w.
    """
    ph, pw = output_size
    start = rois[:, 1:3] * spatial_scale - 0.5
    size = rois[:, 3:5] * spatial_scale - 0.5 - start
    bin_w, bin_h = size[:, 0] / pw, size[:, 1] / ph
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(bin_w, sampling_ratio, dtype=torch.int32)
    else:
        grid_h = torch.ceil(size[:, 1] / ph).clamp(min=0).to(torch.int32)
        grid_w = torch.ceil(size[:, 0] / pw).clamp(min=0).to(torch.int32)
    geom = torch.stack([start[:, 0], start[:, 1], bin_w, bin_h, gamma * size[:, 0], gamma * size[:, 1]], 1)
    meta = torch.stack([rois[:, 0].to(torch.int32), grid_h, grid_w], 1)
    return geom.contiguous(), meta.contiguous()


def _block(channels: int, bins: int) -> int:
    return min(_BLOCK, triton.next_power_of_2(channels * bins))


def _on_device(input: torch.Tensor):
    """Launches on ``input``'s GPU (not the current one); a no-op for CPU tensors (interpreter)."""
    return torch.cuda.device(input.device) if input.is_cuda else contextlib.nullcontext()


def deform_roi_pool_triton_forward(input: torch.Tensor, rois: torch.Tensor, offset: Optional[torch.Tensor],
                                   output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int,
                                   gamma: float) -> torch.Tensor:
    """Same contract as ``deform_roi_pool_torch`` (validated float32/float64 arguments on one device), no autograd.

    Args:
        input (Tensor[N, C, H, W]), rois (Tensor[R, 5]), offset (Tensor[R, 2, PH, PW] or None)

    Returns:
        Tensor[R, C, PH, PW]
    """
    input = input.contiguous()
    offset = None if offset is None else offset.contiguous()
    geom, meta = _geometry(rois.detach(), output_size, spatial_scale, sampling_ratio, gamma)
    n, c, h, w = input.shape
    num_rois, bins = rois.shape[0], output_size[0] * output_size[1]
    out = input.new_empty(num_rois, c, *output_size)
    block = _block(c, bins)
    if num_rois > 0 and c > 0:
        with _on_device(input):
            _deform_roi_pool_fwd[(num_rois, triton.cdiv(c * bins, block))](
                input, geom, meta, input if offset is None else offset, out, c, h, w,
                NBINS=bins, PW=output_size[1], HAS_OFFSET=offset is not None, BLOCK=block)
    return out


def deform_roi_pool_triton_backward(grad: torch.Tensor, input: torch.Tensor, rois: torch.Tensor,
                                    offset: Optional[torch.Tensor], output_size: Tuple[int, int],
                                    spatial_scale: float, sampling_ratio: int, gamma: float, input_grad: bool,
                                    offset_grad: bool):
    """Gradients for the forward above (same contract as ``deform_roi_pool_torch_backward``).

    Returns:
        grad_input (Tensor[N, C, H, W] or None), grad_offset (Tensor[R, 2, PH, PW] or None)
    """
    input = input.contiguous()
    offset = None if offset is None else offset.contiguous()
    geom, meta = _geometry(rois.detach(), output_size, spatial_scale, sampling_ratio, gamma)
    n, c, h, w = input.shape
    num_rois, bins = geom.shape[0], output_size[0] * output_size[1]
    want_offset = offset is not None and offset_grad
    grad_input = torch.zeros_like(input) if input_grad else None
    grad_offset = torch.zeros_like(offset) if want_offset else None
    block = _block(c, bins)
    if num_rois > 0 and c > 0 and (input_grad or want_offset):
        with _on_device(input):
            _deform_roi_pool_bwd[(num_rois, triton.cdiv(c * bins, block))](
                input, geom, meta, input if offset is None else offset, grad.contiguous(),
                input if grad_input is None else grad_input, input if grad_offset is None else grad_offset,
                c, h, w, NBINS=bins, PW=output_size[1], HAS_OFFSET=offset is not None,
                INPUT_GRAD=input_grad, OFFSET_GRAD=want_offset, BLOCK=block)
    return grad_input, grad_offset


class _DeformRoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, offset, *params):
        ctx.save_for_backward(input, rois, offset)
        ctx.params = params
        return deform_roi_pool_triton_forward(input, rois, offset, *params)

    @staticmethod
    def backward(ctx, grad_out):
        input, rois, offset = ctx.saved_tensors
        grad_input, grad_offset = deform_roi_pool_triton_backward(
            grad_out, input, rois, offset, *ctx.params, ctx.needs_input_grad[0], ctx.needs_input_grad[2])
        return (grad_input, None, grad_offset) + (None,) * len(ctx.params)


def deform_roi_pool_triton(*args) -> torch.Tensor:
    """:func:`deform_roi_pool_triton_forward` with autograd but outside the op registry, for the interpreter check."""
    return _DeformRoIPoolFunction.apply(*args)
