"""Deformable RoI pooling written as RoIAlign, for export.

ONNX has no deformable RoI pooling operator (mmcv exports its own custom-domain op, which stock runtimes do not
run), but it has ``RoiAlign``, and deformable RoI pooling is RoIAlign in disguise. det_dcn's (mmcv's) semantics,
see :func:`det_dcn.layers.deform_roi_pool`: a RoI's bin starts at ``roi_start + bin_index * bin_size``, shifted by
``gamma * roi_size * offset``; ``n_y x n_x`` bilinear samples at ``(i + 0.5) / n`` of the bin are averaged, with
``n = sampling_ratio`` or, when it is 0, ``ceil(roi_size / bins)``; a sample outside ``[-1, H] x [-1, W]`` counts
as 0 and one inside that band is clamped onto the border. That is, sample for sample, ``torchvision.ops.roi_align``
with ``aligned=True``:

* without offsets, of the RoI itself, at the same output size;
* with offsets, of each shifted bin taken as a RoI of its own with a 1 x 1 output: its adaptive count
  ``ceil(bin_size / 1)`` is the RoI's ``ceil(roi_size / bins)``.

Both translate to ONNX ``RoiAlign`` (``half_pixel``), adaptive sampling included, with no padding and no
data-dependent shapes. A shifted bin's width comes back as ``x2 - x1`` of its box, which can differ from the op's
``roi_size / bins`` in the last bits; where that quotient is an integer (a RoI whose size is a multiple of the bin
count) the adaptive count would then change, so the box's size is kept off the integer by that rounding margin.
tests/deploy checks the export form against det_dcn's op in float64 and through onnxruntime, such RoIs included.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import roi_align


def _keep_sample_count(bin_size: Tensor, corner: Tensor) -> Tensor:
    """The bin size to give a shifted bin's box so that RoIAlign's adaptive count ``ceil(x2 - x1)`` is the op's
    ``ceil(bin_size)``: ``x2 - x1`` comes back with a few rounding errors of the coordinates' magnitude, so a size
    within that margin of an integer (any RoI whose size is a multiple of the bin count) is moved inside it. The
    samples move by that margin (1e-5 feature pixels in float32 at coordinate 200, 1e-14 in float64)."""
    margin = 8 * torch.finfo(bin_size.dtype).eps * (corner.abs() + bin_size.abs() + 1)
    count = torch.ceil(bin_size)
    inside = torch.minimum(torch.maximum(bin_size, count - 1 + margin), count - margin)
    return torch.where(bin_size > 0, inside, bin_size)  # no samples (count <= 0) either way


def deform_roi_pool_export(input: Tensor, rois: Tensor, offset: Optional[Tensor], output_size: Tuple[int, int],
                           spatial_scale: float, sampling_ratio: int, gamma: float) -> Tensor:
    """Deformable RoI pooling as RoIAlign; arguments and result as :func:`det_dcn.layers.deform_roi_pool`.

    Args:
        input (Tensor[N, C, H, W]), rois (Tensor[R, 5]) = (batch_index, x1, y1, x2, y2) in image pixels,
        offset (Tensor[R, 2, PH, PW] or None): channel 0 along x, 1 along y.
    Returns:
        Tensor[R, C, PH, PW]
    """
    rois = rois.to(input.dtype)
    if offset is None:
        return roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned=True)
    ph, pw = output_size
    r, c = rois.shape[0], input.shape[1]
    start = rois[:, 1:3] * spatial_scale - 0.5  # (x, y) in feature pixels, as the op computes them
    size = rois[:, 3:5] * spatial_scale - 0.5 - start
    bin_w, bin_h = (size[:, 0] / pw).view(-1, 1, 1), (size[:, 1] / ph).view(-1, 1, 1)
    ix = torch.arange(pw, dtype=input.dtype, device=input.device).view(1, 1, pw)
    iy = torch.arange(ph, dtype=input.dtype, device=input.device).view(1, ph, 1)
    offset = offset.to(input.dtype)
    x0 = start[:, 0].view(-1, 1, 1) + ix * bin_w + gamma * size[:, 0].view(-1, 1, 1) * offset[:, 0]
    y0 = start[:, 1].view(-1, 1, 1) + iy * bin_h + gamma * size[:, 1].view(-1, 1, 1) * offset[:, 1]
    # each bin as a box in feature pixels (spatial_scale 1), + 0.5 for aligned=True's half-pixel shift
    x1, y1 = x0 + 0.5, y0 + 0.5
    if sampling_ratio == 0:
        bin_w, bin_h = _keep_sample_count(bin_w, x1), _keep_sample_count(bin_h, y1)
    index = rois[:, 0].view(-1, 1, 1).expand(r, ph, pw)
    boxes = torch.stack([index, x1, y1, x1 + bin_w, y1 + bin_h], dim=-1).reshape(r * ph * pw, 5)
    out = roi_align(input, boxes, (1, 1), 1.0, sampling_ratio, aligned=True)  # [R * PH * PW, C, 1, 1]
    return out.view(r, ph, pw, c).permute(0, 3, 1, 2)
