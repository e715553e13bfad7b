"""Deformable RoI pooling written with standard operators only (``grid_sample`` + arithmetic), for export.

ONNX has no deformable RoI pooling operator (mmcv exports its own custom-domain op, which stock runtimes do not
run). This formulation traces with ``torch.export`` and translates to default-domain ONNX (``GridSample``,
``Clip``, ``ReduceSum``...). Semantics are det_dcn's (mmcv's), see :func:`det_dcn.layers.deform_roi_pool`:
bins shifted by ``gamma * roi_size * offset``, a grid of bilinear samples per bin averaged, a sample outside
``[-1, H] x [-1, W]`` counts as 0 and one inside that band is clamped onto the border. Adaptive sampling
(``sampling_ratio`` 0: ceil(roi_size / bins) samples per bin and axis, per RoI) is expressed by flattening each RoI's
sample grid to one axis, padding it to the largest grid among the RoIs (a data-dependent size) and masking: exact,
and it costs as much as a fixed ratio whose square is that largest grid (bounded by the largest RoI's area per bin). tests/deploy checks it against det_dcn's op on the same inputs, also through onnxruntime.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F


def _sample_grid(size_y: Tensor, size_x: Tensor, bins: Tuple[int, int],
                 sampling_ratio: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each RoI's grid of samples inside a bin, flattened to one axis, as fractions of the bin.

    Args:
        size_y, size_x (Tensor[R]): RoI extent along y and x (feature-map pixels).
        bins (int, int): bins along y and x.
        sampling_ratio (int): samples per bin along each axis, or 0 for ceil(size / bins) per RoI and axis.
    Returns:
        steps_y, steps_x (Tensor[R, G]): sample k of RoI r sits at ((k // n_x + 0.5) / n_y, (k % n_x + 0.5) / n_x)
            of its bin, where n_y, n_x are the RoI's counts; G = the largest n_y * n_x over the RoIs.
        valid (Tensor[R, G]): sample k exists (k < n_y * n_x; all True for a fixed ratio).
        total (Tensor[R]): n_y * n_x (float).
    """
    r = size_y.shape[0]
    if sampling_ratio > 0:
        count_y = count_x = size_y.new_full((r,), float(sampling_ratio))
    else:
        count_y = torch.ceil(size_y / bins[0]).clamp(min=0)
        count_x = torch.ceil(size_x / bins[1]).clamp(min=0)
    total = count_y * count_x
    if sampling_ratio > 0:
        largest = sampling_ratio * sampling_ratio
    else:
        # Every RoI has its own counts. Padding the flattened grid to the largest product (not to the largest count
        # per axis, which a wide RoI and a tall one inflate together) bounds the padding by the largest RoI area.
        largest = torch.cat([total, total.new_zeros(1)]).max().to(torch.int64).item()  # unbacked when traced
        torch._check(largest >= 0)
    k = torch.arange(largest, dtype=torch.int64, device=size_y.device)
    n_x = count_x.to(torch.int64).clamp(min=1)[:, None]
    row = torch.div(k, n_x, rounding_mode="floor")  # [R, G]
    col = k - row * n_x
    valid = k < total.to(torch.int64)[:, None]
    steps_y = (row.to(size_y.dtype) + 0.5) / count_y.clamp(min=1)[:, None]
    steps_x = (col.to(size_x.dtype) + 0.5) / count_x.clamp(min=1)[:, None]
    return steps_y, steps_x, valid, total


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
    steps_y, steps_x, valid, total = _sample_grid(size[:, 1], size[:, 0], (ph, pw), sampling_ratio)  # [R, G]
    g = steps_y.shape[1]
    ys = y0[..., None] + (steps_y * bin_h[:, None]).view(r, 1, 1, g)  # [R, PH, PW, G]
    xs = x0[..., None] + (steps_x * bin_w[:, None]).view(r, 1, 1, g)
    # mmcv's band rule: outside [-1, size] the sample is 0, inside it is clamped onto the border pixel
    keep = (ys >= -1.0) & (ys <= height) & (xs >= -1.0) & (xs <= width) & valid.view(r, 1, 1, g)
    weight = keep.to(dtype) / total.clamp(min=1).view(r, 1, 1, 1)
    ys = ys.clamp(min=0.0).clamp(max=height - 1) + (rois[:, 0] * height).view(r, 1, 1, 1)
    xs = xs.clamp(min=0.0).clamp(max=width - 1)
    # grid_sample's align_corners=True maps -1 / +1 to the first / last pixel centre
    grid_y = ys / torch.sym_max(n * height - 1, 1) * 2 - 1
    grid_x = xs / torch.sym_max(width - 1, 1) * 2 - 1
    grid = torch.stack((grid_x, grid_y), dim=-1).reshape(1, r * ph * pw, g, 2)
    stacked = input.transpose(0, 1).reshape(1, c, n * height, width)
    values = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="border", align_corners=True)
    out = (values * weight.reshape(1, 1, r * ph * pw, g)).sum(-1)  # [1, C, R * PH * PW]
    return out.view(c, r, ph, pw).transpose(0, 1)
