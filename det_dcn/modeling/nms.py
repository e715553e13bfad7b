"""Class-aware NMS and box voting, both of which also trace (torch.export, torch.compile, ONNX export), and
soft-NMS, which runs eagerly only."""

from typing import Optional, Tuple

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


SOFT_NMS_METHODS = ("linear", "gaussian")


def soft_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, method: str, sigma: float, iou_threshold: float,
             min_score: float = 1e-4) -> Tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al. 2017; Detectron's TEST.SOFT_NMS) within each value of ``idxs``: the highest-scoring
    box is kept and every other box of its class has its score multiplied by a decay of their IoU, then the same on
    the rest. ``"linear"``: ``1 - IoU`` where IoU > ``iou_threshold``, else 1; ``"gaussian"``: ``exp(-IoU^2 /
    sigma)``. A box whose decayed score falls below ``min_score`` is dropped.

    Args:
        boxes ``[N, 4]`` XYXY, scores ``[N]``, idxs ``[N]`` int64 (class).
    Returns:
        (kept indices ``[D]`` int64, their decayed scores ``[D]``), by decreasing decayed score.

    Eager only: which box comes next depends on the decayed scores, a loop over the data that does not trace.
    """
    check_soft_nms((method, sigma))
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        raise RuntimeError("soft-NMS (TEST.SOFT_NMS.ENABLED) loops over the data and does not trace; export or "
                           "compile with TEST.SOFT_NMS.ENABLED False (NMS at MODEL.ROI_HEADS.NMS_THRESH_TEST)")
    kept, kept_scores = [boxes.new_zeros(0, dtype=torch.long)], [scores.new_zeros(0)]
    for cls in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == cls).squeeze(1)
        order, decayed = _soft_nms_one_class(boxes[members], scores[members], method, sigma, iou_threshold,
                                             min_score)
        kept.append(members[order])
        kept_scores.append(decayed)
    kept, kept_scores = torch.cat(kept), torch.cat(kept_scores)
    by_score = torch.argsort(kept_scores, descending=True, stable=True)
    return kept[by_score], kept_scores[by_score]


def _soft_nms_one_class(boxes: Tensor, scores: Tensor, method: str, sigma: float, iou_threshold: float,
                        min_score: float) -> Tuple[Tensor, Tensor]:
    """:func:`soft_nms` for one class: (positions in pick order, the scores they were picked with)."""
    iou = pairwise_iou(boxes, boxes)
    if method == "linear":
        decay = torch.where(iou > iou_threshold, 1.0 - iou, torch.ones_like(iou))
    else:
        decay = torch.exp(-(iou * iou) / sigma)
    current = scores.clone()
    remaining = torch.ones_like(scores, dtype=torch.bool)
    order, picked_scores = [], []
    for _ in range(scores.numel()):
        candidates = torch.where(remaining, current, torch.full_like(current, -1.0))
        best = int(candidates.argmax())
        if candidates[best] < min_score:
            break
        order.append(best)
        picked_scores.append(current[best])
        remaining[best] = False
        current = current * decay[best]
    if not order:
        return scores.new_zeros(0, dtype=torch.long), scores.new_zeros(0)
    return torch.tensor(order, dtype=torch.long, device=scores.device), torch.stack(picked_scores)


def check_soft_nms(soft: Optional[Tuple[str, float]]) -> None:
    """Raise ValueError naming the TEST.SOFT_NMS key when ``soft`` (method, sigma) is not a valid setting."""
    if soft is None:
        return
    if soft[0] not in SOFT_NMS_METHODS:
        raise ValueError(f"TEST.SOFT_NMS.METHOD must be one of {SOFT_NMS_METHODS}, got '{soft[0]}'")
    if not soft[1] > 0:
        raise ValueError(f"TEST.SOFT_NMS.SIGMA must be > 0, got {soft[1]}")


def soft_nms_setting(cfg) -> Optional[Tuple[str, float]]:
    """(TEST.SOFT_NMS.METHOD, SIGMA) when TEST.SOFT_NMS.ENABLED, else None (NMS)."""
    soft = cfg.TEST.SOFT_NMS
    return (soft.METHOD, soft.SIGMA) if soft.ENABLED else None


def suppress(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
             soft: Optional[Tuple[str, float]] = None) -> Tuple[Tensor, Tensor]:
    """Per-class NMS (:func:`batched_nms`), or soft-NMS when ``soft`` is (method, sigma): (kept indices, their
    scores), by decreasing score."""
    if soft is None:
        keep = batched_nms(boxes, scores, idxs, iou_threshold)
        return keep, scores[keep]
    return soft_nms(boxes, scores, idxs, soft[0], soft[1], iou_threshold)
