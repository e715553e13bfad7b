"""Fast R-CNN output layers: classification and class-specific box regression, their losses and inference."""

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from ..box_coder import Box2BoxTransform
from ..box_ops import clip_boxes, min_size_mask
from ..nms import check_soft_nms, soft_nms_setting, suppress, vote_boxes
from ..losses import BOX_REG_LOSS_TYPES, box_regression_loss


class FastRCNNOutputLayers(nn.Module):
    """``cls_score``: Linear(D, K + 1) with the background class LAST (index K = NUM_CLASSES), as in detectron2;
    ``bbox_pred``: Linear(D, K * 4) (class-specific) or Linear(D, 4) (class-agnostic).
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        box2box_transform: Box2BoxTransform,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_type: str = "smooth_l1",
        loss_weight: Optional[Dict[str, float]] = None,
        test_score_thresh: float = 0.05,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        test_min_box_size: float = 0.0,
        test_vote_iou_thresh: Optional[float] = None,
        test_soft_nms: Optional[Tuple[str, float]] = None,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MODEL.ROI_HEADS.NUM_CLASSES must be >= 1 (foreground classes), got {num_classes}")
        if box_reg_loss_type not in BOX_REG_LOSS_TYPES:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE must be one of {BOX_REG_LOSS_TYPES}, got '{box_reg_loss_type}'"
            )
        if test_vote_iou_thresh is not None and not 0.0 < test_vote_iou_thresh <= 1.0:
            raise ValueError(f"TEST.BBOX_VOTE.VOTE_TH must lie in (0, 1], got {test_vote_iou_thresh}")
        check_soft_nms(test_soft_nms)
        self.num_classes = num_classes
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        self.bbox_pred = nn.Linear(input_size, 4 if cls_agnostic_bbox_reg else num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.box2box_transform = box2box_transform
        self.cls_agnostic_bbox_reg = cls_agnostic_bbox_reg
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_type = box_reg_loss_type
        self.loss_weight = loss_weight or {"loss_cls": 1.0, "loss_box_reg": 1.0}
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        self.test_min_box_size = test_min_box_size
        self.test_vote_iou_thresh = test_vote_iou_thresh  # None: no box voting
        self.test_soft_nms = test_soft_nms  # (method, sigma); None: NMS

    @classmethod
    def from_config(cls, cfg, input_size: int) -> "FastRCNNOutputLayers":
        head, rh = cfg.MODEL.ROI_BOX_HEAD, cfg.MODEL.ROI_HEADS
        return cls(
            input_size,
            rh.NUM_CLASSES,
            Box2BoxTransform(head.BBOX_REG_WEIGHTS),
            cls_agnostic_bbox_reg=head.CLS_AGNOSTIC_BBOX_REG,
            smooth_l1_beta=head.SMOOTH_L1_BETA,
            box_reg_loss_type=head.BBOX_REG_LOSS_TYPE,
            loss_weight={"loss_cls": 1.0, "loss_box_reg": head.BBOX_REG_LOSS_WEIGHT},
            test_score_thresh=rh.SCORE_THRESH_TEST,
            test_nms_thresh=rh.NMS_THRESH_TEST,
            test_topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            test_min_box_size=rh.MIN_BOX_SIZE_TEST,
            test_vote_iou_thresh=cfg.TEST.BBOX_VOTE.VOTE_TH if cfg.TEST.BBOX_VOTE.ENABLED else None,
            test_soft_nms=soft_nms_setting(cfg),
        )

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``[R, D]`` -> (class logits ``[R, K + 1]``, box deltas ``[R, K * 4]`` or ``[R, 4]``)."""
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)

    def losses(
        self, predictions: Tuple[Tensor, Tensor], proposal_boxes: Tensor, gt_classes: Tensor, gt_boxes: Tensor
    ) -> Dict[str, Tensor]:
        """Losses over the R sampled RoIs of the batch.

        Args:
            predictions: output of forward.
            proposal_boxes: ``[R, 4]``; gt_classes: ``[R]`` in [0, K] (K = background); gt_boxes: ``[R, 4]``.
        Returns:
            "loss_cls": softmax cross-entropy, mean over RoIs; "loss_box_reg": regression of each foreground RoI's
            own class, summed and divided by R (detectron2: every RoI counts in the normaliser, so the regression
            weight does not swing with the number of foregrounds).
        """
        scores, deltas = predictions
        num_rois = gt_classes.numel()
        if num_rois == 0:
            zero = scores.sum() * 0 + deltas.sum() * 0
            return {"loss_cls": zero, "loss_box_reg": zero}
        loss_cls = F.cross_entropy(scores.float(), gt_classes, reduction="mean")
        fg = torch.nonzero((gt_classes >= 0) & (gt_classes < self.num_classes)).squeeze(1)
        if self.cls_agnostic_bbox_reg:
            fg_deltas = deltas[fg]
        else:
            fg_deltas = deltas.view(num_rois, self.num_classes, 4)[fg, gt_classes[fg]]
        loss_box = box_regression_loss(
            self.box_reg_loss_type,
            self.box2box_transform,
            proposal_boxes[fg],
            fg_deltas.float(),
            gt_boxes[fg],
            self.smooth_l1_beta,
        )
        return {
            "loss_cls": loss_cls * self.loss_weight["loss_cls"],
            "loss_box_reg": loss_box / num_rois * self.loss_weight["loss_box_reg"],
        }

    def predict_boxes(self, deltas: Tensor, proposal_boxes: Tensor) -> Tensor:
        """``[R, K*4 or 4]`` deltas on ``[R, 4]`` proposals -> ``[R, K or 1, 4]`` boxes."""
        boxes = self.box2box_transform.apply_deltas(deltas, proposal_boxes)
        return boxes.view(boxes.shape[0], deltas.shape[1] // 4, 4)

    def inference(
        self, predictions: Tuple[Tensor, Tensor], proposal_boxes: List[Tensor], image_sizes: List[Tuple[int, int]]
    ) -> List[Dict[str, Tensor]]:
        """Detections per image: softmax, decode, clip, score threshold, (min size), per-class NMS (or soft-NMS with
        ``test_soft_nms``: overlapping boxes kept with decayed scores), top-k, (box voting: each kept box the
        score-weighted mean of the candidates of its class overlapping it by ``test_vote_iou_thresh``).

        Returns per image {"boxes" ``[D, 4]``, "scores" ``[D]``, "classes" ``[D]`` int64 in [0, K)}, by decreasing
        score, in the coordinates of the (resized) input image.
        """
        scores_all, deltas_all = predictions
        return self.inference_from_probs(F.softmax(scores_all.float(), dim=-1), deltas_all, proposal_boxes,
                                         image_sizes)

    def inference_from_probs(
        self, probs: Tensor, deltas: Tensor, proposal_boxes: List[Tensor], image_sizes: List[Tuple[int, int]]
    ) -> List[Dict[str, Tensor]]:
        """``inference`` from class probabilities ``[R, K + 1]`` (e.g. Cascade R-CNN's mean over its stages)."""
        counts = [b.shape[0] for b in proposal_boxes]
        probs_per_image = probs.float().split(counts)
        deltas_per_image = deltas.float().split(counts)
        return [
            self._inference_single(p, d, b, size)
            for p, d, b, size in zip(probs_per_image, deltas_per_image, proposal_boxes, image_sizes)
        ]

    def _inference_single(
        self, probs: Tensor, deltas: Tensor, proposal_boxes: Tensor, image_size: Tuple[int, int]
    ) -> Dict[str, Tensor]:
        boxes = self.predict_boxes(deltas, proposal_boxes)  # [R, K or 1, 4]
        valid = torch.isfinite(boxes).flatten(1).all(dim=1) & torch.isfinite(probs).all(dim=1)
        boxes = clip_boxes(boxes, image_size)
        scores = probs[:, :-1]  # drop background (last column)
        # Every (RoI, class) pair of a finite RoI above the threshold becomes a candidate, in RoI-major order
        # (one mask, no branch on the data, so this traces).
        keep_mask = (scores > self.test_score_thresh) & valid[:, None]
        roi_idx, cls_idx = keep_mask.nonzero(as_tuple=True)
        cand_boxes = boxes[roi_idx, 0] if self.cls_agnostic_bbox_reg else boxes[roi_idx, cls_idx]
        cand_scores = scores[roi_idx, cls_idx]
        if self.test_min_box_size > 0:
            keep = min_size_mask(cand_boxes, self.test_min_box_size)
            cand_boxes, cand_scores, cls_idx = cand_boxes[keep], cand_scores[keep], cls_idx[keep]
        keep, kept_scores = suppress(cand_boxes, cand_scores, cls_idx, self.test_nms_thresh, self.test_soft_nms)
        if self.test_topk_per_image >= 0:
            keep, kept_scores = keep[: self.test_topk_per_image], kept_scores[: self.test_topk_per_image]
        if self.test_vote_iou_thresh is None:
            kept_boxes = cand_boxes[keep]
        else:
            kept_boxes = vote_boxes(keep, cand_boxes, cand_scores, cls_idx, self.test_vote_iou_thresh)
        return {"boxes": kept_boxes, "scores": kept_scores, "classes": cls_idx[keep]}
