"""Class-aware NMS that also traces (torch.export, torch.compile, ONNX export)."""

import torch
from torch import Tensor
from torchvision.ops import batched_nms as _tv_batched_nms
from torchvision.ops import nms


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """``torchvision.ops.batched_nms``: NMS within each value of ``idxs``; returns kept indices by decreasing score.

    Args:
        boxes ``[N, 4]`` XYXY with coordinates >= 0, scores ``[N]``, idxs ``[N]`` int64 (class or level).
    Eagerly this is torchvision's function. While tracing, the number of boxes is data-dependent, so torchvision's
    branches on it cannot be taken: the traced form is always its coordinate trick (each class shifted by more than
    any coordinate, then one NMS), which torchvision itself uses for up to 4000 boxes on the CPU.
    """
    if not torch.compiler.is_compiling():
        return _tv_batched_nms(boxes, scores, idxs, iou_threshold)
    # max(.., 0) instead of boxes.max(): defined for zero boxes, equal for boxes >= 0
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes.dtype) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
