"""ROIAlign module (detectron2-style) around ``torchvision.ops.roi_align``, with input validation."""

from typing import Tuple, Union

import torch
from torch import nn
from torchvision.ops import roi_align

from . import _dispatch
from ._checks import check_feature_map, check_rois, pair
from ._ops import deform_roi_pool_op
from ._precision import compute_dtype, no_autocast


class ROIAlign(nn.Module):
    """RoI Align (He et al., "Mask R-CNN", 2017).

    Args:
        output_size (int or (int, int)): (PH, PW).
        spatial_scale (float): feature-map size / image size.
        sampling_ratio (int): samples per bin along each axis; 0 = adaptive (ceil(roi_size / bins)).
        aligned (bool): shift boxes by -0.5 pixel so that pixel centres are at integer + 0.5 (detectron2's
            ROIAlignV2); False reproduces the original (misaligned) op.

    Shape:
        input (Tensor[N, C, H, W]), rois (Tensor[R, 5] = (batch_index, x1, y1, x2, y2), x1 <= x2 and y1 <= y2 when
        ``aligned``) -> Tensor[R, C, PH, PW].
        Float16/bfloat16 and autocast are computed in float32; the result has ``input``'s dtype.

    On the CPU, the aligned op runs as ``det_dcn::deform_roi_pool`` with no offset: the same numbers (tests/layers
    check equality with torchvision) with a several-times faster backward than torchvision's CPU kernel
    (tools/benchmark_ops.py). Elsewhere torchvision's kernel runs (``DET_DCN_ROI_ALIGN_IMPL``, ``_dispatch.py``).
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]], spatial_scale: float, sampling_ratio: int,
                 aligned: bool = True):
        super().__init__()
        self.output_size = pair(output_size, "output_size", "ROIAlign")
        if not isinstance(sampling_ratio, int) or sampling_ratio < 0:
            raise ValueError(f"ROIAlign: sampling_ratio must be an int >= 0 (0 = adaptive), got {sampling_ratio!r}")
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = sampling_ratio
        self.aligned = bool(aligned)

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        check_feature_map("ROIAlign", input)
        # torchvision's aligned kernel cannot take boxes with x2 < x1 (it fails allocating a negative sample grid)
        check_rois("ROIAlign", input, rois, ordered=self.aligned)
        dtype = compute_dtype(input.dtype)
        x, r = input.to(dtype), rois.to(dtype)
        if self.aligned and _dispatch.implementation("roi_align", input.device.type) == "torch":
            out = deform_roi_pool_op(x, r, None, self.output_size, self.spatial_scale, self.sampling_ratio, 0.0)
        else:
            with no_autocast(input.device.type):
                out = roi_align(x, r, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
        return out.to(input.dtype)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
