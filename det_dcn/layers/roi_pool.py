"""ROIPool module (detectron2-style) around ``torchvision.ops.roi_pool``, with input validation."""

from typing import Tuple, Union

import torch
from torch import nn
from torchvision.ops import roi_pool

from ._checks import check_feature_map, check_rois, pair
from ._precision import compute_dtype, no_autocast


class ROIPool(nn.Module):
    """RoI max pooling (Girshick, "Fast R-CNN", 2015), boxes quantised to the feature grid.

    Args:
        output_size (int or (int, int)): (PH, PW).
        spatial_scale (float): feature-map size / image size.

    Shape:
        input (Tensor[N, C, H, W]), rois (Tensor[R, 5] = (batch_index, x1, y1, x2, y2)) -> Tensor[R, C, PH, PW].
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]], spatial_scale: float):
        super().__init__()
        self.output_size = pair(output_size, "output_size", "ROIPool")
        self.spatial_scale = float(spatial_scale)

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        check_feature_map("ROIPool", input)
        check_rois("ROIPool", input, rois)
        dtype = compute_dtype(input.dtype)
        with no_autocast(input.device.type):
            out = roi_pool(input.to(dtype), rois.to(dtype), self.output_size, self.spatial_scale)
        return out.to(input.dtype)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
