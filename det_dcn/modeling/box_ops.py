"""Elementary operations on boxes: ``[N, 4]`` float tensors in absolute XYXY pixel coordinates.

Widths are ``x2 - x1`` (no "+1"), as in detectron2 and torchvision.
"""

from typing import List, Sequence, Tuple

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    """``[N, 4]`` -> ``[N]`` areas ``(x2 - x1) * (y2 - y1)`` (negative for inverted boxes, not clamped)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair: ``[M, 4]``, ``[N, 4]`` -> ``[M, N]``.

    Pairs whose union is empty (two degenerate boxes) get IoU 0 rather than NaN, so a degenerate ground-truth box
    never poisons matching.
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def clip_boxes(boxes: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """Clip ``[..., 4]`` boxes to an image of ``(height, width)``: x into [0, width], y into [0, height]."""
    h, w = image_size
    x1 = boxes[..., 0].clamp(min=0, max=w)
    y1 = boxes[..., 1].clamp(min=0, max=h)
    x2 = boxes[..., 2].clamp(min=0, max=w)
    y2 = boxes[..., 3].clamp(min=0, max=h)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: Tensor, threshold: float = 0.0) -> Tensor:
    """``[N]`` bool: both sides strictly larger than ``threshold`` (detectron2's rule for proposals)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths > threshold) & (heights > threshold)


def min_size_mask(boxes: Tensor, min_size: float) -> Tensor:
    """``[N]`` bool: both sides at least ``min_size`` (torchvision's ``remove_small_boxes`` rule)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths >= min_size) & (heights >= min_size)


def boxes_to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """Per-image ``[P_i, 4]`` boxes -> ``[sum P_i, 5]`` RoIs ``(batch index, x1, y1, x2, y2)``."""
    if len(boxes) == 0:
        raise ValueError("boxes_to_rois needs at least one image's boxes, got an empty list")
    device, dtype = boxes[0].device, boxes[0].dtype
    index = torch.cat(
        [torch.full((len(b), 1), i, dtype=dtype, device=device) for i, b in enumerate(boxes)], dim=0
    )
    return torch.cat([index, torch.cat(list(boxes), dim=0)], dim=1)


__all__: List[str] = [
    "box_area", "pairwise_iou", "clip_boxes", "nonempty", "min_size_mask", "boxes_to_rois",
]
