"""Deformable RoI pooling in plain PyTorch: the CPU path and the reference every fused path is tested against.

Every bin value is a weighted sum of feature-map pixels (bilinear weights of its samples, divided by the sample
count), so the whole op is one ``F.embedding_bag(mode="sum", per_sample_weights=...)`` over the channels-last
feature map: a fused gather + weighted sum whose autograd gives the exact input gradient, and, through the
differentiable bilinear weights, the exact offset gradient. RoIs are grouped by their sample grid (adaptive
sampling gives each RoI its own) so no padding samples are computed; memory is O(entries + output).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

def _axis_weights(pos: torch.Tensor, size: int, slopes: bool = False):
    """Bilinear neighbours along one axis, exactly as torchvision's roi_align samples.

    Args:
        pos (Tensor[...]): sample coordinates (pixel centres at integers).
        size (int): extent of the feature map along this axis.
        slopes (bool): also return the weights' derivative with respect to ``pos``.

    Returns:
        low, high (LongTensor[...]): neighbouring pixel indices, clamped into [0, size - 1].
        w_low, w_high (Tensor[...]): their weights; 0 outside [-1, size], where the sample is dropped.
        slope (Tensor[...] or None): d w_high / d pos = -d w_low / d pos, the derivative autograd gives.
    """
    inside = ((pos >= -1.0) & (pos <= size)).to(pos.dtype)
    # Inside the band [-1, 0] and [size - 1, size] the sample is clamped onto the border pixel.
    p = pos.clamp(min=0.0, max=size - 1)
    low = p.detach().floor()
    frac = p - low
    low = low.long()
    high = (low + 1).clamp(max=size - 1)
    # autograd's clamp passes the gradient on [0, size - 1], both ends included
    slope = inside * ((pos >= 0.0) & (pos <= size - 1)).to(pos.dtype) if slopes else None
    return low, high, (1.0 - frac) * inside, frac * inside, slope


def _axis_taps(pos: torch.Tensor, size: int, slopes: bool = False):
    """Pixels (taps) and weights along one axis for every bin's samples, merged where samples share pixels.

    Args:
        pos (Tensor[..., g]): the g sample coordinates of each bin along this axis.
        size (int): extent of the feature map along this axis.
        slopes (bool): also return the weights' derivative with respect to a shift of all the bin's samples.

    Returns:
        taps (LongTensor[..., L]): pixel indices in [0, size - 1].
        weight (Tensor[..., L]): summed bilinear weights of the bin's samples on those pixels.
        L is 2 * g, or less when the samples of a bin span few pixels (adaptive sampling spaces them <= 1 pixel
        apart, so L <= g + 1): fewer gather entries, same sums.
        slope (Tensor[..., L] or None): d weight / d shift.
    """
    g = pos.shape[-1]
    low, high, w_low, w_high, d = _axis_weights(pos, size, slopes)
    # samples are monotone along a bin (decreasing for a negative-size RoI), so the ends bound the range
    base = torch.minimum(low[..., :1], low[..., -1:])
    window = int((torch.maximum(high[..., :1], high[..., -1:]) - base).max()) + 1 if pos.numel() else 1
    if window >= 2 * g:
        return torch.cat((low, high), -1), torch.cat((w_low, w_high), -1), None if d is None else torch.cat((-d, d), -1)

    def merged(w_low, w_high):
        return pos.new_zeros(*pos.shape[:-1], window).scatter_add(-1, low - base, w_low).scatter_add(-1, high - base,
                                                                                                    w_high)
    taps = (base + torch.arange(window, device=pos.device)).clamp(max=size - 1)  # weight 0 past the border
    return taps, merged(w_low, w_high), None if d is None else merged(-d, d)


def _group_entries(batch: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, bin_h: torch.Tensor,
                   bin_w: torch.Tensor, grid_h: int, grid_w: int, height: int, width: int, slopes: bool = False):
    """Gather entries of the bins of RoIs that share one sample grid.

    Args:
        batch (LongTensor[r]): image index of each RoI.
        y0, x0 (Tensor[r, PH, PW]): top-left corner of every (shifted) bin.
        bin_h, bin_w (Tensor[r]): bin size.
        grid_h, grid_w (int): samples per bin along y and x (>= 1).
        slopes (bool): also return each weight's derivatives with respect to its bin's x0 and y0.

    Returns:
        index (LongTensor[r * PH * PW * K]): rows of the channels-last map, K = Ly * Lx entries per bin.
        weight (Tensor[r * PH * PW * K]): bilinear weight / sample count (0 for dropped samples).
        K (int): entries per bin.
        slope (Tensor[2, r * PH * PW * K] or None): (d weight / d x0, d weight / d y0).
    """
    r = y0.shape[0]
    steps_h = (torch.arange(grid_h, dtype=y0.dtype, device=y0.device) + 0.5) / grid_h
    steps_w = (torch.arange(grid_w, dtype=x0.dtype, device=x0.device) + 0.5) / grid_w
    ys = y0.unsqueeze(-1) + steps_h * bin_h.view(r, 1, 1, 1)  # [r, PH, PW, gh]
    xs = x0.unsqueeze(-1) + steps_w * bin_w.view(r, 1, 1, 1)  # [r, PH, PW, gw]
    rows, wy, sy = _axis_taps(ys, height, slopes)  # [r, PH, PW, Ly]
    cols, wx, sx = _axis_taps(xs, width, slopes)  # [r, PH, PW, Lx]
    rows = rows + (batch * height).view(r, 1, 1, 1)
    index = rows.unsqueeze(-1) * width + cols.unsqueeze(-2)  # [r, PH, PW, Ly, Lx]
    weight = (wy / (grid_h * grid_w)).unsqueeze(-1) * wx.unsqueeze(-2)
    slope = None
    if slopes:
        slope = torch.stack(((wy / (grid_h * grid_w)).unsqueeze(-1) * sx.unsqueeze(-2),
                             (sy / (grid_h * grid_w)).unsqueeze(-1) * wx.unsqueeze(-2))).view(2, -1)
    return index.reshape(-1), weight.reshape(-1), rows.shape[-1] * cols.shape[-1], slope


def _roi_extent(rois: torch.Tensor, spatial_scale: float):
    """(start, size) (Tensor[R, 2] each, (x, y) in feature-map pixels) of the RoIs."""
    start = rois[:, 1:3] * spatial_scale - 0.5
    return start, rois[:, 3:5] * spatial_scale - 0.5 - start


def _bins_plan(rois: torch.Tensor, offset: Optional[torch.Tensor], output_size: Tuple[int, int],
               spatial_scale: float, sampling_ratio: int, gamma: float, height: int, width: int,
               slopes: bool = False):
    """Gather plan of every bin: which pixels of the channels-last map it sums, with which weights.

    Args:
        rois (Tensor[R, 5]) with R > 0, offset (Tensor[R, 2, PH, PW] or None): as :func:`deform_roi_pool_torch`.
        slopes (bool): also return the weights' derivatives with respect to their bin's position.

    Returns:
        index (LongTensor[E]): rows of the [N * H * W, C] channels-last map.
        weight (Tensor[E]): bilinear weight / sample count; differentiable with respect to ``offset``.
        bag_offsets (LongTensor[R * PH * PW]): where each bin's entries start (bins in RoI order, row-major).
        slope (Tensor[2, E] or None): (d weight / d x0, d weight / d y0), x0 / y0 the bin's shifted corner; the
            offset gradient without autograd (:func:`_offset_grad`).
    """
    ph, pw = output_size
    dtype = rois.dtype
    rois = rois.detach()
    num_rois = rois.shape[0]
    start, size = _roi_extent(rois, spatial_scale)  # (x, y)
    bin_w, bin_h = size[:, 0] / pw, size[:, 1] / ph
    if sampling_ratio > 0:
        grid_w = grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.long, device=rois.device)
    else:  # zero or negative size: no samples, the bin is 0 (the divisor is clamped to 1 below)
        grid_h = torch.ceil(size[:, 1] / ph).clamp(min=0).long()
        grid_w = torch.ceil(size[:, 0] / pw).clamp(min=0).long()
    iy = torch.arange(ph, dtype=dtype, device=rois.device).view(1, ph, 1)
    ix = torch.arange(pw, dtype=dtype, device=rois.device).view(1, 1, pw)
    y0 = start[:, 1].view(-1, 1, 1) + iy * bin_h.view(-1, 1, 1)
    x0 = start[:, 0].view(-1, 1, 1) + ix * bin_w.view(-1, 1, 1)
    y0, x0 = y0.expand(num_rois, ph, pw), x0.expand(num_rois, ph, pw)
    if offset is not None:
        x0 = x0 + gamma * size[:, 0].view(-1, 1, 1) * offset[:, 0].to(dtype)
        y0 = y0 + gamma * size[:, 1].view(-1, 1, 1) * offset[:, 1].to(dtype)
    batch = rois[:, 0].long()

    # One embedding_bag over all bins (bags of up to 4 * gh * gw entries, empty for RoIs without samples), so the
    # backward builds a single feature-map gradient.
    key = grid_h * (int(grid_w.max()) + 1) + grid_w
    indices, weights, slope_parts, sizes, order = [], [], [], [], []
    for k in torch.unique(key).tolist():
        sel = torch.nonzero(key == k).squeeze(1)
        gh, gw = int(grid_h[sel[0]]), int(grid_w[sel[0]])
        order.append(sel)
        entries = 0
        if gh > 0 and gw > 0:
            index, weight, entries, slope = _group_entries(batch[sel], y0[sel], x0[sel], bin_h[sel], bin_w[sel], gh,
                                                           gw, height, width, slopes)
            indices.append(index)
            weights.append(weight)
            slope_parts.append(slope)
        sizes.append(torch.full((sel.numel() * ph * pw,), entries, dtype=torch.long, device=sel.device))
    # Entries are built group by group; reorder them (cheap: a few bytes per entry) so that the bags come out in
    # RoI order, instead of permuting the much larger output.
    order = torch.cat(order)
    bins = (order.view(-1, 1) * (ph * pw) + torch.arange(ph * pw, device=order.device)).view(-1)
    sizes = torch.cat(sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    bin_pos = torch.empty_like(bins)
    bin_pos[bins] = torch.arange(bins.numel(), device=bins.device)  # RoI-order bin -> its group-order position
    sizes, starts = sizes[bin_pos], starts[bin_pos]
    offsets = torch.cumsum(sizes, 0) - sizes
    if not indices:  # no samples anywhere; empty bags still connect the offsets to the graph
        return (sizes.new_zeros(0), y0.new_zeros(0) + y0[:, :0].sum() + x0[:, :0].sum(), offsets,
                y0.new_zeros(2, 0) if slopes else None)
    perm = torch.repeat_interleave(starts - offsets, sizes) + torch.arange(int(sizes.sum()), device=sizes.device)
    # index_select: a plain gather, several times faster than advanced indexing here
    return (torch.cat(indices).index_select(0, perm), torch.cat(weights).index_select(0, perm), offsets,
            torch.cat(slope_parts, 1).index_select(1, perm) if slopes else None)


def _channels_last_rows(input: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> the [N * H * W, C] table the plan indexes."""
    n, c, height, width = input.shape
    return input.permute(0, 2, 3, 1).reshape(n * height * width, c)


def deform_roi_pool_torch_forward(input: torch.Tensor, rois: torch.Tensor, offset: Optional[torch.Tensor],
                                  output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int,
                                  gamma: float, keep_plan: bool = False):
    """:func:`deform_roi_pool_torch`'s output and, when ``keep_plan``, the gather plan it ran (for the backward:
    :func:`deform_roi_pool_torch_backward`), else None.

    Returns:
        out (Tensor[R, C, PH, PW]);
        plan (index (LongTensor[E]), weight (Tensor[E]), bag_offsets (LongTensor[R * PH * PW]), slope
            (Tensor[2, E]), table (Tensor[N * H * W, C], the channels-last map the offset gradient reads)) or None;
            see :func:`_bins_plan`. Without offsets, slope and table are Tensor[0].
    """
    n, c, height, width = input.shape
    ph, pw = output_size
    num_rois = rois.shape[0]
    if num_rois == 0:
        # A zero connected to input keeps the result in the graph, as torchvision's roi_align does.
        out = input.new_zeros(0, c, ph, pw) + input.reshape(-1)[:1].sum() * 0
        plan = (rois.new_zeros(0, dtype=torch.long), input.new_zeros(0), rois.new_zeros(0, dtype=torch.long),
                input.new_zeros((2, 0) if offset is not None else (0,)),
                input.new_zeros((n * height * width, c) if offset is not None else (0,)))
        return out, plan if keep_plan else None
    slopes = keep_plan and offset is not None
    index, weight, offsets, slope = _bins_plan(rois.to(input.dtype), offset, output_size, spatial_scale,
                                               sampling_ratio, gamma, height, width, slopes)
    table = _channels_last_rows(input)
    out = F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=weight)
    out = out.view(num_rois, ph, pw, c).permute(0, 3, 1, 2).contiguous()
    if not keep_plan:
        return out, None
    if not slopes:
        return out, (index, weight, offsets, input.new_zeros(0), input.new_zeros(0))
    return out, (index, weight, offsets, slope, table)


def deform_roi_pool_torch(input: torch.Tensor, rois: torch.Tensor, offset: Optional[torch.Tensor],
                          output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int,
                          gamma: float) -> torch.Tensor:
    """Plain PyTorch deformable RoI pooling (mmcv semantics); arguments already validated. Differentiable with
    autograd (the reference); the registered op's backward is :func:`deform_roi_pool_torch_backward`.

    Args:
        input (Tensor[N, C, H, W]): float32 or float64 feature map.
        rois (Tensor[R, 5]): (batch_index, x1, y1, x2, y2) in image coordinates.
        offset (Tensor[R, 2, PH, PW] or None): normalised bin shifts, channel 0 along x, 1 along y.
        output_size ((int, int)): (PH, PW).

    Returns:
        Tensor[R, C, PH, PW]
    """
    return deform_roi_pool_torch_forward(input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma)[0]


def _offset_grad(grad_weight: torch.Tensor, slope: torch.Tensor, offset2bag: torch.Tensor, rois: torch.Tensor,
                 offset: torch.Tensor, spatial_scale: float, gamma: float) -> torch.Tensor:
    """The offset gradient from the bag weights' gradient (Tensor[E]) and the plan's slopes (Tensor[2, E]): the
    chain rule autograd applies through :func:`_bins_plan` (a bin is shifted by gamma * RoI size * offset).

    Returns:
        Tensor[R, 2, PH, PW]
    """
    r, _, ph, pw = offset.shape
    per_bin = grad_weight.new_zeros(2, r * ph * pw).index_add_(1, offset2bag, slope * grad_weight)
    _, size = _roi_extent(rois.detach().to(grad_weight.dtype), spatial_scale)
    return (per_bin.view(2, r, ph, pw).permute(1, 0, 2, 3) * (gamma * size).view(r, 2, 1, 1)).to(offset.dtype)


def deform_roi_pool_torch_backward(grad: torch.Tensor, input: torch.Tensor, rois: torch.Tensor,
                                   offset: Optional[torch.Tensor], output_size: Tuple[int, int],
                                   spatial_scale: float, sampling_ratio: int, gamma: float, input_grad: bool,
                                   offset_grad: bool, plan: Optional[Tuple[torch.Tensor, ...]] = None):
    """Gradients of :func:`deform_roi_pool_torch` without re-running its gather: ``embedding_bag``'s own backward
    kernels run on the plan, the ones autograd runs, so the numbers are autograd's. The plan is the forward's
    (:func:`deform_roi_pool_torch_forward`) when given, else rebuilt under autograd (cheap next to the gather: a
    few numbers per entry, none per channel).

    Args:
        grad (Tensor[R, C, PH, PW]): gradient of the output; the others as :func:`deform_roi_pool_torch`.
        input_grad, offset_grad (bool): which gradients to compute.

    Returns:
        grad_input (Tensor[N, C, H, W] or None; channels-last strides when computed), grad_offset
        (Tensor[R, 2, PH, PW] or None)
    """
    n, c, height, width = input.shape
    grad_input = torch.zeros_like(input) if input_grad else None
    want_offset = offset_grad and offset is not None
    grad_offset = torch.zeros_like(offset) if want_offset else None
    if rois.shape[0] == 0 or not (input_grad or want_offset):
        return grad_input, grad_offset
    leaf = slope = table = None
    if plan is not None:
        index, weight, offsets, slope, table = plan
    else:
        leaf = offset.detach().requires_grad_() if want_offset else None
        with torch.enable_grad():
            index, weight, offsets, _ = _bins_plan(rois.to(input.dtype), leaf if want_offset else offset,
                                                   output_size, spatial_scale, sampling_ratio, gamma, height, width)
    if index.numel() == 0:
        return grad_input, grad_offset
    g = grad.permute(0, 2, 3, 1).reshape(-1, c).contiguous()  # one row per bin, RoI order
    sizes = torch.diff(offsets, append=offsets.new_tensor([index.numel()]))
    offset2bag = torch.repeat_interleave(torch.arange(offsets.numel(), device=offsets.device), sizes,
                                         output_size=index.numel())
    if input_grad:
        rows = torch.ops.aten._embedding_bag_dense_backward(g, index, offset2bag, sizes, sizes.new_zeros(0),
                                                            n * height * width, False, 0, weight.detach(), -1)
        grad_input = rows.view(n, height, width, c).permute(0, 3, 1, 2)  # channels-last strides, as autograd's
    if want_offset:
        grad_weight = torch.ops.aten._embedding_bag_per_sample_weights_backward(
            g, _channels_last_rows(input) if table is None else table, index, offsets, offset2bag, 0, -1)
        if slope is not None:
            grad_offset = _offset_grad(grad_weight, slope, offset2bag, rois, offset, spatial_scale, gamma)
        elif weight.requires_grad:
            (grad_offset,) = torch.autograd.grad(weight, leaf, grad_weight)
    return grad_input, grad_offset
