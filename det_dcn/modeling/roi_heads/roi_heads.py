"""Standard RoI heads: sample proposals against ground truth, pool, box head, box predictor."""

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ...utils.registry import Registry
from ..box_ops import pairwise_iou
from ..image_list import ImageList
from ..input_features import select_features
from ..matcher import Matcher
from ..sampling import check_sampling_config, subsample_labels
from .box_head import build_box_head
from .fast_rcnn import FastRCNNOutputLayers
from .poolers import build_roi_pooler

ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = (
    "RoI heads: a class with from_config(cfg, input_shape: Dict[str, ShapeSpec]) or fn(cfg, input_shape). "
    "forward(images, features, proposals, gt_boxes=None, gt_classes=None) -> (results, losses)."
)


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """Box branch of Faster R-CNN on one or several feature levels.

    Attributes: ``box_pooler`` (ROIPooler), ``box_head`` (e.g. fc1, fc2), ``box_predictor`` (cls_score, bbox_pred).
    """

    def __init__(
        self,
        *,
        box_in_features: List[str],
        box_pooler: nn.Module,
        box_head: nn.Module,
        box_predictor: FastRCNNOutputLayers,
        num_classes: int,
        batch_size_per_image: int,
        positive_fraction: float,
        proposal_matcher: Matcher,
        proposal_append_gt: bool = True,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MODEL.ROI_HEADS.NUM_CLASSES must be >= 1 (foreground classes), got {num_classes}")
        check_sampling_config("MODEL.ROI_HEADS", batch_size_per_image, positive_fraction)
        self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher
        self.proposal_append_gt = proposal_append_gt

    @classmethod
    def shared_config(cls, cfg, input_shape: Dict) -> Tuple[Dict, Tuple[int, int, int]]:
        """What every box-head layout takes from the config (features, pooler, sampling) as constructor keywords,
        and the pooled RoI feature shape (C, R, R) its box heads are built for."""
        rh, head = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
        if rh.NUM_CLASSES < 1:
            raise ValueError(f"MODEL.ROI_HEADS.NUM_CLASSES must be >= 1 (foreground classes), got {rh.NUM_CLASSES}")
        shapes = select_features("MODEL.ROI_HEADS.IN_FEATURES", rh.IN_FEATURES, input_shape)
        if head.POOLER_RESOLUTION < 1:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION must be >= 1, got {head.POOLER_RESOLUTION}")
        pooler = build_roi_pooler(cfg, shapes, head.POOLER_RESOLUTION, head.POOLER_TYPE, head.POOLER_SAMPLING_RATIO)
        kwargs = dict(
            box_in_features=rh.IN_FEATURES,
            box_pooler=pooler,
            num_classes=rh.NUM_CLASSES,
            batch_size_per_image=rh.BATCH_SIZE_PER_IMAGE,
            positive_fraction=rh.POSITIVE_FRACTION,
            proposal_append_gt=rh.PROPOSAL_APPEND_GT,
        )
        return kwargs, (shapes[0].channels, head.POOLER_RESOLUTION, head.POOLER_RESOLUTION)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict) -> "StandardROIHeads":
        kwargs, pooled_shape = cls.shared_config(cfg, input_shape)
        box_head = build_box_head(cfg, pooled_shape)
        rh = cfg.MODEL.ROI_HEADS
        return cls(
            box_head=box_head,
            box_predictor=FastRCNNOutputLayers.from_config(cfg, box_head.output_size),
            proposal_matcher=Matcher(rh.IOU_THRESHOLDS, rh.IOU_LABELS, allow_low_quality_matches=False),
            **kwargs,
        )

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposal_boxes: List[Tensor], gt_boxes: List[Tensor], gt_classes: List[Tensor]
    ) -> List[Dict[str, Tensor]]:
        """Per image: match proposals (plus the GT boxes, so every object has a perfect positive early in training)
        to ground truth and sample BATCH_SIZE_PER_IMAGE of them at POSITIVE_FRACTION.

        Returns per image {"proposal_boxes" [S, 4], "gt_classes" [S] (K = background), "gt_boxes" [S, 4]}.
        """
        sampled = []
        for props, gtb, gtc in zip(proposal_boxes, gt_boxes, gt_classes):
            if self.proposal_append_gt and len(gtb) > 0:
                props = torch.cat([props, gtb.to(props.dtype)])
            labels = self.match_proposals(props, gtb, gtc, self.proposal_matcher)
            pos, neg = subsample_labels(labels["gt_classes"], self.batch_size_per_image, self.positive_fraction,
                                        self.num_classes)
            idx = torch.cat([pos, neg])
            sampled.append({key: value[idx] for key, value in labels.items()})
        return sampled

    def match_proposals(self, props: Tensor, gtb: Tensor, gtc: Tensor, matcher: Matcher) -> Dict[str, Tensor]:
        """One image's ``[P, 4]`` proposals labelled by ``matcher`` against its ``[G, 4]`` / ``[G]`` ground truth:
        {"proposal_boxes" [P, 4], "gt_classes" [P] (K = background, -1 = ignored), "gt_boxes" [P, 4] (the
        matched box; zeros when the image has none)}."""
        matched_idx, match_labels = matcher(pairwise_iou(gtb, props))
        if len(gtb) > 0:
            classes = gtc[matched_idx].clone()
            classes[match_labels == 0] = self.num_classes
            classes[match_labels == -1] = -1
            matched = gtb[matched_idx]
        else:
            classes = torch.full_like(matched_idx, self.num_classes)
            matched = torch.zeros_like(props)
        return {"proposal_boxes": props, "gt_classes": classes, "gt_boxes": matched}

    def _check_targets(self, gt_boxes: Optional[List[Tensor]], gt_classes: Optional[List[Tensor]]) -> None:
        if gt_boxes is None or gt_classes is None:
            raise ValueError("RoI heads in training mode need gt_boxes and gt_classes")
        for i, (b, c) in enumerate(zip(gt_boxes, gt_classes)):
            if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.num_classes):
                raise ValueError(
                    f"image {i}: 'classes' must lie in [0, NUM_CLASSES={self.num_classes}), got values "
                    f"from {int(c.min())} to {int(c.max())}"
                )
            if len(b) != len(c):
                raise ValueError(f"image {i}: {len(b)} boxes but {len(c)} classes")

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        proposals: List[Dict[str, Tensor]],
        gt_boxes: Optional[List[Tensor]] = None,
        gt_classes: Optional[List[Tensor]] = None,
    ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """Training: (sampled proposals, {"loss_cls", "loss_box_reg"}); eval: (detections per image, {}).

        Args:
            proposals: per image {"proposal_boxes": [P, 4], ...}, from the RPN (detached).
            gt_boxes / gt_classes: per image [G, 4] / [G] int64, training only.
        """
        feats = [features[f] for f in self.box_in_features]
        proposal_boxes = [p["proposal_boxes"].detach() for p in proposals]
        if self.training:
            self._check_targets(gt_boxes, gt_classes)
            sampled = self.label_and_sample_proposals(proposal_boxes, gt_boxes, gt_classes)
            boxes = [s["proposal_boxes"] for s in sampled]
            predictions = self.box_predictor(self.box_head(self.box_pooler(feats, boxes)))
            losses = self.box_predictor.losses(
                predictions,
                torch.cat(boxes),
                torch.cat([s["gt_classes"] for s in sampled]),
                torch.cat([s["gt_boxes"] for s in sampled]),
            )
            return sampled, losses
        predictions = self.box_predictor(self.box_head(self.box_pooler(feats, proposal_boxes)))
        return self.box_predictor.inference(predictions, proposal_boxes, images.image_sizes), {}


def build_roi_heads(cfg, input_shape: Dict) -> nn.Module:
    name = cfg.MODEL.ROI_HEADS.NAME
    obj = ROI_HEADS_REGISTRY.get_configured("MODEL.ROI_HEADS.NAME", name)
    if hasattr(obj, "from_config"):
        return obj.from_config(cfg, input_shape)
    return obj(cfg, input_shape)
