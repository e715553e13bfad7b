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

def _axis_weights(pos: torch.Tensor, size: int):
    """Bilinear neighbours along one axis, exactly as torchvision's roi_align samples.

    Args:
        pos (Tensor[...]): sample coordinates (pixel centres at integers).
        size (int): extent of the feature map along this axis.

    Returns:
        low, high (LongTensor[...]): neighbouring pixel indices, clamped into [0, size - 1].
        w_low, w_high (Tensor[...]): their weights; 0 outside [-1, size], where the sample is dropped.
    """
    inside = ((pos >= -1.0) & (pos <= size)).to(pos.dtype)
    # Inside the band [-1, 0] and [size - 1, size] the sample is clamped onto the border pixel.
    p = pos.clamp(min=0.0, max=size - 1)
    low = p.detach().floor()
    frac = p - low
    low = low.long()
    high = (low + 1).clamp(max=size - 1)
    return low, high, (1.0 - frac) * inside, frac * inside


def _axis_taps(pos: torch.Tensor, size: int):
    """Pixels (taps) and weights along one axis for every bin's samples, merged where samples share pixels.

    Args:
        pos (Tensor[..., g]): the g sample coordinates of each bin along this axis.
        size (int): extent of the feature map along this axis.

    Returns:
        taps (LongTensor[..., L]): pixel indices in [0, size - 1].
        weight (Tensor[..., L]): summed bilinear weights of the bin's samples on those pixels.
        L is 2 * g, or less when the samples of a bin span few pixels (adaptive sampling spaces them <= 1 pixel
        apart, so L <= g + 1): fewer gather entries, same sums.
    """
    g = pos.shape[-1]
    low, high, w_low, w_high = _axis_weights(pos, size)
    # samples are monotone along a bin (decreasing for a negative-size RoI), so the ends bound the range
    base = torch.minimum(low[..., :1], low[..., -1:])
    window = int((torch.maximum(high[..., :1], high[..., -1:]) - base).max()) + 1 if pos.numel() else 1
    if window >= 2 * g:
        return torch.cat((low, high), -1), torch.cat((w_low, w_high), -1)
    weight = pos.new_zeros(*pos.shape[:-1], window)
    weight = weight.scatter_add(-1, low - base, w_low).scatter_add(-1, high - base, w_high)
    taps = (base + torch.arange(window, device=pos.device)).clamp(max=size - 1)  # weight 0 past the border
    return taps, weight


def _group_entries(batch: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, bin_h: torch.Tensor,
                   bin_w: torch.Tensor, grid_h: int, grid_w: int, height: int, width: int):
    """Gather entries of the bins of RoIs that share one sample grid.

    Args:
        batch (LongTensor[r]): image index of each RoI.
        y0, x0 (Tensor[r, PH, PW]): top-left corner of every (shifted) bin.
        bin_h, bin_w (Tensor[r]): bin size.
        grid_h, grid_w (int): samples per bin along y and x (>= 1).

    Returns:
        index (LongTensor[r * PH * PW * K]): rows of the channels-last map, K = Ly * Lx entries per bin.
        weight (Tensor[r * PH * PW * K]): bilinear weight / sample count (0 for dropped samples).
        K (int): entries per bin.
    """
    r = y0.shape[0]
    steps_h = (torch.arange(grid_h, dtype=y0.dtype, device=y0.device) + 0.5) / grid_h
    steps_w = (torch.arange(grid_w, dtype=x0.dtype, device=x0.device) + 0.5) / grid_w
    ys = y0.unsqueeze(-1) + steps_h * bin_h.view(r, 1, 1, 1)  # [r, PH, PW, gh]
    xs = x0.unsqueeze(-1) + steps_w * bin_w.view(r, 1, 1, 1)  # [r, PH, PW, gw]
    rows, wy = _axis_taps(ys, height)  # [r, PH, PW, Ly]
    cols, wx = _axis_taps(xs, width)  # [r, PH, PW, Lx]
    rows = rows + (batch * height).view(r, 1, 1, 1)
    index = rows.unsqueeze(-1) * width + cols.unsqueeze(-2)  # [r, PH, PW, Ly, Lx]
    weight = (wy / (grid_h * grid_w)).unsqueeze(-1) * wx.unsqueeze(-2)
    return index.reshape(-1), weight.reshape(-1), rows.shape[-1] * cols.shape[-1]


def deform_roi_pool_torch(input: torch.Tensor, rois: torch.Tensor, offset: Optional[torch.Tensor],
                          output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int,
                          gamma: float) -> torch.Tensor:
    """Plain PyTorch deformable RoI pooling (mmcv semantics); arguments already validated.

    Args:
        input (Tensor[N, C, H, W]): float32 or float64 feature map.
        rois (Tensor[R, 5]): (batch_index, x1, y1, x2, y2) in image coordinates.
        offset (Tensor[R, 2, PH, PW] or None): normalised bin shifts, channel 0 along x, 1 along y.
        output_size ((int, int)): (PH, PW).

    Returns:
        Tensor[R, C, PH, PW]
    """
    n, c, height, width = input.shape
    ph, pw = output_size
    rois = rois.detach().to(input.dtype)
    num_rois = rois.shape[0]
    if num_rois == 0:
        # A zero connected to input keeps the result in the graph, as torchvision's roi_align does.
        return input.new_zeros(0, c, ph, pw) + input.reshape(-1)[:1].sum() * 0
    start = rois[:, 1:3] * spatial_scale - 0.5  # (x, y)
    size = rois[:, 3:5] * spatial_scale - 0.5 - start
    bin_w, bin_h = size[:, 0] / pw, size[:, 1] / ph
    if sampling_ratio > 0:
        grid_w = grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.long, device=rois.device)
    else:  # zero or negative size: no samples, the bin is 0 (the divisor is clamped to 1 below)
        grid_h = torch.ceil(size[:, 1] / ph).clamp(min=0).long()
        grid_w = torch.ceil(size[:, 0] / pw).clamp(min=0).long()
    iy = torch.arange(ph, dtype=input.dtype, device=input.device).view(1, ph, 1)
    ix = torch.arange(pw, dtype=input.dtype, device=input.device).view(1, 1, pw)
    y0 = start[:, 1].view(-1, 1, 1) + iy * bin_h.view(-1, 1, 1)
    x0 = start[:, 0].view(-1, 1, 1) + ix * bin_w.view(-1, 1, 1)
    y0, x0 = y0.expand(num_rois, ph, pw), x0.expand(num_rois, ph, pw)
    if offset is not None:
        x0 = x0 + gamma * size[:, 0].view(-1, 1, 1) * offset[:, 0].to(input.dtype)
        y0 = y0 + gamma * size[:, 1].view(-1, 1, 1) * offset[:, 1].to(input.dtype)
    feat = input.permute(0, 2, 3, 1).reshape(n * height * width, c)
    batch = rois[:, 0].long()

    # One embedding_bag over all bins (bags of up to 4 * gh * gw entries, empty for RoIs without samples), so the
    # backward builds a single feature-map gradient.
    key = grid_h * (int(grid_w.max()) + 1) + grid_w
    indices, weights, sizes, order = [], [], [], []
    for k in torch.unique(key).tolist():
        sel = torch.nonzero(key == k).squeeze(1)
        gh, gw = int(grid_h[sel[0]]), int(grid_w[sel[0]])
        order.append(sel)
        entries = 0
        if gh > 0 and gw > 0:
            index, weight, entries = _group_entries(batch[sel], y0[sel], x0[sel], bin_h[sel], bin_w[sel], gh, gw,
                                                    height, width)
            indices.append(index)
            weights.append(weight)
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
    if not indices:  # no samples anywhere; empty bags still connect input and offset to the graph
        index, weight = sizes.new_zeros(0), y0.new_zeros(0) + y0[:, :0].sum() + x0[:, :0].sum()
    else:
        perm = torch.repeat_interleave(starts - offsets, sizes) + torch.arange(int(sizes.sum()), device=sizes.device)
        index, weight = torch.cat(indices)[perm], torch.cat(weights)[perm]
    out = F.embedding_bag(index, feat, offsets, mode="sum", per_sample_weights=weight)
    return out.view(num_rois, ph, pw, c).permute(0, 3, 1, 2).contiguous()
