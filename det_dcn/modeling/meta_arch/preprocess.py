"""Image preprocessing inside the model: normalisation and torchvision-style test-time resizing."""

import math
from typing import Tuple

import torch
from torch import Tensor
from torch.nn import functional as F


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """Scale that brings the short side to ``min_size`` unless the long side would pass ``max_size`` (<= 0: no cap).

    Computed in Python floats from the integer sizes, exactly as torchvision's GeneralizedRCNNTransform does.
    """
    # sym_min/sym_max: plain min/max for ints, and no guard on traced (symbolic) sizes
    scale = min_size / torch.sym_min(height, width)
    if max_size > 0:
        scale = torch.sym_min(scale, max_size / torch.sym_max(height, width))
    return scale


def resize_image(image: Tensor, min_size: int, max_size: int) -> Tensor:
    """``[C, H, W]`` float (already normalised) -> ``[C, floor(H * s), floor(W * s)]`` by bilinear interpolation.

    Same call as torchvision (scale_factor with recompute_scale_factor=True, align_corners=False) so that
    converted torchvision weights see the same pixels.
    """
    h, w = image.shape[-2:]
    scale = resize_scale(h, w, min_size, max_size)
    # = scale_factor=scale with recompute_scale_factor=True (the output size is floor(size * scale) in double
    # precision, and the kernel then uses only the sizes), written with sizes so that it traces with symbolic sizes
    size = (math.trunc(h * scale), math.trunc(w * scale))  # = floor (positive); trunc also serialises in a .pt2
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def rescale_boxes(boxes: Tensor, from_size: Tuple[int, int], to_size: Tuple[int, int]) -> Tensor:
    """Map ``[N, 4]`` boxes from an image of ``from_size`` (h, w) to ``to_size``; float32 ratios like torchvision."""
    # torch.full rather than torch.tensor: the same float32 value, and it traces with symbolic sizes
    ratio_h = torch.full((), to_size[0], dtype=torch.float32) / torch.full((), from_size[0], dtype=torch.float32)
    ratio_w = torch.full((), to_size[1], dtype=torch.float32) / torch.full((), from_size[1], dtype=torch.float32)
    scale = torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(boxes.device, boxes.dtype)
    return boxes * scale
