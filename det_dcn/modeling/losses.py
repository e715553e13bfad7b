"""Box regression losses shared by the RPN and the Fast R-CNN head."""

import torch
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from .box_coder import Box2BoxTransform

BOX_REG_LOSS_TYPES = ("smooth_l1", "giou")


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float) -> Tensor:
    """Summed smooth-L1 (Huber / beta); ``beta < 1e-5`` is plain L1, which avoids dividing by ~0."""
    diff = torch.abs(input - target)
    if beta < 1e-5:
        return diff.sum()
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta).sum()


def box_regression_loss(
    loss_type: str,
    box2box: Box2BoxTransform,
    src_boxes: Tensor,
    pred_deltas: Tensor,
    gt_boxes: Tensor,
    smooth_l1_beta: float = 0.0,
) -> Tensor:
    """Summed regression loss of foreground predictions (callers normalise).

    Args:
        src_boxes: ``[F, 4]`` anchors or proposals the deltas apply to.
        pred_deltas: ``[F, 4]`` predicted deltas.
        gt_boxes: ``[F, 4]`` their matched ground-truth boxes.
    """
    if loss_type == "smooth_l1":
        gt_deltas = box2box.get_deltas(src_boxes, gt_boxes)
        return smooth_l1_loss(pred_deltas, gt_deltas, smooth_l1_beta)
    if loss_type == "giou":
        pred_boxes = box2box.apply_deltas(pred_deltas, src_boxes)
        return generalized_box_iou_loss(pred_boxes, gt_boxes, reduction="sum")
    raise ValueError(f"Unknown box regression loss type '{loss_type}'; expected one of {BOX_REG_LOSS_TYPES}")
