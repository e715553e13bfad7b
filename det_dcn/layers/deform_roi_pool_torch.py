"""Deformable RoI pooling in plain PyTorch: the CPU path and the reference every fused path is tested against.

Every bin value is a weighted sum of feature-map pixels (bilinear weights of its samples, divided by the sample
count), so the whole op is one ``F.embedding_bag(mode="sum", per_sample_weights=...)`` over the channels-last
feature map: a fused gather + weighted sum whose autograd gives the exact input gradient, and, through the
differentiable bilinear weights, the exact offset gradient. RoIs are grouped by their sample grid so no padding
samples are computed, and processed in chunks so temporaries stay bounded.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

# Upper bound on gather entries (4 corners x samples x bins) built at once; bounds the temporaries of one chunk.
_MAX_ENTRIES_PER_CHUNK = 1 << 22


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


def _pool_group(feat: torch.Tensor, batch: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor,
                bin_h: torch.Tensor, bin_w: torch.Tensor, grid_h: int, grid_w: int,
                height: int, width: int) -> torch.Tensor:
    """Pools RoIs that share one sample grid.

    Args:
        feat (Tensor[N * H * W, C]): channels-last feature map, one row per pixel.
        batch (LongTensor[r]): image index of each RoI.
        y0, x0 (Tensor[r, PH, PW]): top-left corner of every (shifted) bin.
        bin_h, bin_w (Tensor[r]): bin size.
        grid_h, grid_w (int): samples per bin along y and x (>= 1).

    Returns:
        Tensor[r * PH * PW, C]
    """
    r, ph, pw = y0.shape
    steps_h = (torch.arange(grid_h, dtype=y0.dtype, device=y0.device) + 0.5) / grid_h
    steps_w = (torch.arange(grid_w, dtype=x0.dtype, device=x0.device) + 0.5) / grid_w
    ys = y0.unsqueeze(-1) + steps_h * bin_h.view(r, 1, 1, 1)  # [r, PH, PW, gh]
    xs = x0.unsqueeze(-1) + steps_w * bin_w.view(r, 1, 1, 1)  # [r, PH, PW, gw]
    yl, yh, wyl, wyh = _axis_weights(ys, height)
    xl, xh, wxl, wxh = _axis_weights(xs, width)
    row = torch.stack((yl, yh), -1) * width + (batch * (height * width)).view(r, 1, 1, 1, 1)  # [r,PH,PW,gh,2]
    col = torch.stack((xl, xh), -1)  # [r, PH, PW, gw, 2]
    wy = torch.stack((wyl, wyh), -1) / (grid_h * grid_w)
    wx = torch.stack((wxl, wxh), -1)
    index = row.view(r, ph, pw, grid_h, 2, 1, 1) + col.view(r, ph, pw, 1, 1, grid_w, 2)
    weight = wy.view(r, ph, pw, grid_h, 2, 1, 1) * wx.view(r, ph, pw, 1, 1, grid_w, 2)
    k = grid_h * 2 * grid_w * 2
    return F.embedding_bag(index.view(-1, k), feat, mode="sum", per_sample_weights=weight.reshape(-1, k))


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

    key = grid_h * (int(grid_w.max()) + 1) + grid_w
    outs, order = [], []
    for k in torch.unique(key).tolist():
        sel = torch.nonzero(key == k).squeeze(1)
        gh, gw = int(grid_h[sel[0]]), int(grid_w[sel[0]])
        if gh == 0 or gw == 0:  # no samples; sums of empty slices keep input and offset in the graph
            linked = feat[:0].sum() + y0[:, :0].sum() + x0[:, :0].sum()
            outs.append(input.new_zeros(sel.numel() * ph * pw, c) + linked)
            order.append(sel)
            continue
        chunk = max(1, _MAX_ENTRIES_PER_CHUNK // (ph * pw * gh * gw * 4))
        for part in sel.split(chunk):
            outs.append(_pool_group(feat, batch[part], y0[part], x0[part], bin_h[part], bin_w[part],
                                    gh, gw, height, width))
            order.append(part)
    out = torch.cat(outs)
    order = torch.cat(order)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(num_rois, device=order.device)
    out = out.view(num_rois, ph * pw, c)[inverse]
    return out.view(num_rois, ph, pw, c).permute(0, 3, 1, 2).contiguous()
