"""Class-aware NMS and box voting, both of which also trace (torch.export, torch.compile, ONNX export)."""

import torch
from torch import Tensor
from torchvision.ops import batched_nms as _tv_batched_nms
from torchvision.ops import nms

from .box_ops import pairwise_iou


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


def vote_boxes(kept: Tensor, boxes: Tensor, scores: Tensor, classes: Tensor, iou_thresh: float) -> Tensor:
    """Box voting (Gidaris & Komodakis 2015; Detectron's TEST.BBOX_VOTE with its "ID" scoring): for each index in
    ``kept`` (of ``boxes`` ``[N, 4]``, ``scores`` ``[N]``, ``classes`` ``[N]``), the score-weighted mean of the boxes
    of the same class whose IoU with it is >= ``iou_thresh``, itself included. Returns ``[len(kept), 4]``.

    No branch on the data: every kept box votes for itself, so no weight sum is zero, and zero kept boxes give
    ``[0, 4]`` through the same arithmetic.
    """
    voters = (pairwise_iou(boxes[kept], boxes) >= iou_thresh) & (classes[kept][:, None] == classes[None, :])
    weights = voters.to(scores.dtype) * scores[None, :]
    return weights @ boxes / weights.sum(dim=1, keepdim=True)
