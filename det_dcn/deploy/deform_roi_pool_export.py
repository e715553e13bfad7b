"""Deformable RoI pooling written with standard operators only (``grid_sample`` + arithmetic), for export.

ONNX has no deformable RoI pooling operator (mmcv exports its own custom-domain op, which stock runtimes do not
run). This formulation traces with ``torch.export`` and translates to default-domain ONNX (``GridSample``,
``Clip``, ``ReduceSum``...). Semantics are det_dcn's (mmcv's), see :func:`det_dcn.layers.deform_roi_pool`:
bins shifted by ``gamma * roi_size * offset``, a grid of bilinear samples per bin averaged, a sample outside
``[-1, H] x [-1, W]`` counts as 0 and one inside that band is clamped onto the border. Adaptive sampling
(``sampling_ratio`` 0: ceil(roi_size / bins) samples per bin, per RoI) is expressed by padding every RoI to the
largest count among the RoIs (a data-dependent size) and masking: exact, but it costs as much as a fixed ratio of
that largest count. tests/deploy checks it against det_dcn's op on the same inputs, also through onnxruntime.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F


def _sample_steps(size: Tensor, bins: int, sampling_ratio: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Sample positions inside a bin, as fractions of the bin, and which of them exist.

    Args:
        size (Tensor[R]): RoI extent along one axis (feature-map pixels).
        bins (int): bins along that axis.
        sampling_ratio (int): samples per bin, or 0 for ceil(size / bins) per RoI.
    Returns:
        steps (Tensor[R, G]): (i + 0.5) / count, G = the largest count over the RoIs.
        valid (Tensor[R, G]): the sample exists (i < the RoI's count; all True for a fixed ratio).
        count (Tensor[R]): samples per bin of each RoI (float).
    """
    r = size.shape[0]
    if sampling_ratio > 0:
        count = size.new_full((r,), float(sampling_ratio))
        steps = (torch.arange(sampling_ratio, dtype=size.dtype, device=size.device) + 0.5) / sampling_ratio
        return steps.expand(r, sampling_ratio), torch.ones_like(steps, dtype=torch.bool).expand(r, -1), count
    # Adaptive: every RoI has its own count; pad to the largest (a data-dependent size) and mask the rest.
    count = torch.ceil(size / bins).clamp(min=0)
    largest = torch.cat([count, count.new_zeros(1)]).max().to(torch.int64).item()  # an unbacked size when traced
    torch._check(largest >= 0)
    i = torch.arange(largest, dtype=size.dtype, device=size.device)
    valid = i < count[:, None]
    steps = (i + 0.5) / count.clamp(min=1)[:, None]
    return steps, valid, count


def deform_roi_pool_export(input: Tensor, rois: Tensor, offset: Optional[Tensor], output_size: Tuple[int, int],
                           spatial_scale: float, sampling_ratio: int, gamma: float) -> Tensor:
    """Deformable RoI pooling from standard operators; arguments and result as :func:`det_dcn.layers.deform_roi_pool`.

    Args:
        input (Tensor[N, C, H, W]), rois (Tensor[R, 5]) = (batch_index, x1, y1, x2, y2) in image pixels,
        offset (Tensor[R, 2, PH, PW] or None): channel 0 along x, 1 along y.
    Returns:
        Tensor[R, C, PH, PW]

    The images of the batch are stacked vertically into one ``[1, C, N * H, W]`` map; every sample is clamped into
    its own image first, so bilinear sampling never mixes two images.
    """
    n, c, height, width = input.shape
    ph, pw = output_size
    r = rois.shape[0]
    dtype = input.dtype
    rois = rois.to(dtype)
    start = rois[:, 1:3] * spatial_scale - 0.5  # (x, y)
    size = rois[:, 3:5] * spatial_scale - 0.5 - start
    bin_w, bin_h = size[:, 0] / pw, size[:, 1] / ph
    iy = torch.arange(ph, dtype=dtype, device=input.device).view(1, ph, 1)
    ix = torch.arange(pw, dtype=dtype, device=input.device).view(1, 1, pw)
    y0 = (start[:, 1].view(-1, 1, 1) + iy * bin_h.view(-1, 1, 1)).expand(r, ph, pw)
    x0 = (start[:, 0].view(-1, 1, 1) + ix * bin_w.view(-1, 1, 1)).expand(r, ph, pw)
    if offset is not None:
        x0 = x0 + gamma * size[:, 0].view(-1, 1, 1) * offset[:, 0].to(dtype)
        y0 = y0 + gamma * size[:, 1].view(-1, 1, 1) * offset[:, 1].to(dtype)
    steps_y, valid_y, count_y = _sample_steps(size[:, 1], ph, sampling_ratio)  # [R, Gy]
    steps_x, valid_x, count_x = _sample_steps(size[:, 0], pw, sampling_ratio)  # [R, Gx]
    gy, gx = steps_y.shape[1], steps_x.shape[1]
    ys = y0[..., None, None] + (steps_y * bin_h[:, None]).view(r, 1, 1, gy, 1)  # [R, PH, PW, Gy, 1]
    xs = x0[..., None, None] + (steps_x * bin_w[:, None]).view(r, 1, 1, 1, gx)  # [R, PH, PW, 1, Gx]
    # mmcv's band rule: outside [-1, size] the sample is 0, inside it is clamped onto the border pixel
    keep_y = (ys >= -1.0) & (ys <= height) & valid_y.view(r, 1, 1, gy, 1)
    keep_x = (xs >= -1.0) & (xs <= width) & valid_x.view(r, 1, 1, 1, gx)
    weight = (keep_y & keep_x).to(dtype) / (count_y * count_x).clamp(min=1).view(r, 1, 1, 1, 1)
    ys = ys.clamp(min=0.0).clamp(max=height - 1) + (rois[:, 0] * height).view(r, 1, 1, 1, 1)
    xs = xs.clamp(min=0.0).clamp(max=width - 1)
    # grid_sample's align_corners=True maps -1 / +1 to the first / last pixel centre
    grid_y = ys / torch.sym_max(n * height - 1, 1) * 2 - 1
    grid_x = xs / torch.sym_max(width - 1, 1) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1).reshape(1, r * ph * pw, gy * gx, 2)
    stacked = input.transpose(0, 1).reshape(1, c, n * height, width)
    values = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="border", align_corners=True)
    out = (values * weight.reshape(1, 1, r * ph * pw, gy * gx)).sum(-1)  # [1, C, R * PH * PW]
    return out.view(c, r, ph, pw).transpose(0, 1)
