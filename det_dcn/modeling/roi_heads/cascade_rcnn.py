"""Cascade R-CNN's RoI heads (Cai & Vasconcelos, 2018): box stages trained at rising IoU thresholds, each refining
the boxes of the one before. detectron2's ``CascadeROIHeads``: its config keys (ROI_BOX_CASCADE_HEAD.IOUS /
BBOX_REG_WEIGHTS), checkpoint names (``box_head.<k>``, ``box_predictor.<k>``) and rules (class-agnostic regression,
the gradient into the shared features scaled by 1 / stages, inference scores the mean of the stages' probabilities).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..box_coder import Box2BoxTransform
from ..box_ops import clip_boxes, nonempty
from ..image_list import ImageList
from ..matcher import Matcher
from .box_head import build_box_head
from .fast_rcnn import FastRCNNOutputLayers
from .roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``scale`` backward (the stages share the pooled features: each passes
    back 1 / stages of its gradient, so the backbone sees their mean, not their sum)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


@ROI_HEADS_REGISTRY.register()
class CascadeROIHeads(StandardROIHeads):
    """``len(ious)`` box stages on one shared pooler. Stage k's RoIs are stage k-1's predicted boxes (stage 0's: the
    sampled proposals), labelled foreground at IoU >= ``ious[k]`` with the ground truth, regressed with
    ``Box2BoxTransform(bbox_reg_weights[k])``.

    Attributes (detectron2's checkpoint names): ``box_pooler``, ``box_head`` (ModuleList, one head a stage),
    ``box_predictor`` (ModuleList of class-agnostic FastRCNNOutputLayers). Losses ``loss_cls_stage<k>`` and
    ``loss_box_reg_stage<k>``; detections: the last stage's boxes, scored by the mean of every stage's class
    probabilities.
    """

    def __init__(self, *, box_heads: Sequence[nn.Module], box_predictors: Sequence[FastRCNNOutputLayers],
                 proposal_matchers: Sequence[Matcher], **kwargs):
        if not len(box_heads) == len(box_predictors) == len(proposal_matchers) >= 1:
            raise ValueError(f"CascadeROIHeads: {len(box_heads)} box heads, {len(box_predictors)} predictors and "
                             f"{len(proposal_matchers)} matchers; expected one of each per stage (at least one)")
        for k, predictor in enumerate(box_predictors):
            if not predictor.cls_agnostic_bbox_reg:
                raise ValueError(f"CascadeROIHeads: stage {k}'s box predictor regresses per class; the stages refine "
                                 f"one box per RoI (MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG True)")
        super().__init__(box_head=nn.ModuleList(box_heads), box_predictor=nn.ModuleList(box_predictors),
                         proposal_matcher=proposal_matchers[0], **kwargs)
        self.stage_matchers = list(proposal_matchers)
        self.num_stages = len(box_heads)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict) -> "CascadeROIHeads":
        rh, head, cascade = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD, cfg.MODEL.ROI_BOX_CASCADE_HEAD
        ious, weights = list(cascade.IOUS), [tuple(w) for w in cascade.BBOX_REG_WEIGHTS]
        if len(ious) == 0 or len(ious) != len(weights):
            raise ValueError(f"MODEL.ROI_BOX_CASCADE_HEAD: IOUS {tuple(ious)} and BBOX_REG_WEIGHTS {tuple(weights)} "
                             f"must give one value per stage (at least one stage)")
        if len(rh.IOU_THRESHOLDS) != 1 or rh.IOU_THRESHOLDS[0] != ious[0]:
            raise ValueError(f"MODEL.ROI_HEADS.IOU_THRESHOLDS {list(rh.IOU_THRESHOLDS)} must be [{ious[0]}], the first "
                             f"stage's MODEL.ROI_BOX_CASCADE_HEAD.IOUS (Cascade R-CNN samples with that threshold)")
        if not head.CLS_AGNOSTIC_BBOX_REG:
            raise ValueError("ROI_HEADS.NAME 'CascadeROIHeads' needs MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG True "
                             "(each stage refines one box per RoI, as in detectron2)")
        kwargs, pooled_shape = cls.shared_config(cfg, input_shape)
        heads, predictors = [], []
        for w in weights:
            box_head = build_box_head(cfg, pooled_shape)
            predictor = FastRCNNOutputLayers.from_config(cfg, box_head.output_size)
            predictor.box2box_transform = Box2BoxTransform(w)
            heads.append(box_head)
            predictors.append(predictor)
        matchers = [Matcher([iou], [0, 1], allow_low_quality_matches=False) for iou in ious]
        return cls(box_heads=heads, box_predictors=predictors, proposal_matchers=matchers, **kwargs)

    def _run_stage(self, k: int, feats: List[Tensor], boxes: List[Tensor]) -> Tuple[Tensor, Tensor]:
        pooled = self.box_pooler(feats, boxes)
        if self.training:
            pooled = _ScaleGradient.apply(pooled, 1.0 / self.num_stages)
        return self.box_predictor[k](self.box_head[k](pooled))

    def _refine(self, k: int, deltas: Tensor, boxes: List[Tensor], image_sizes) -> List[Tensor]:
        """Stage k's predicted boxes (detached, clipped to the image) per image: the next stage's RoIs."""
        predicted = self.box_predictor[k].predict_boxes(deltas.detach(), torch.cat(boxes))[:, 0]
        # one image (what export traces): no split, whose sizes would be data-dependent
        per_image = [predicted] if len(boxes) == 1 else predicted.split([len(b) for b in boxes])
        return [clip_boxes(b, size) for b, size in zip(per_image, image_sizes)]

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        proposals: List[Dict[str, Tensor]],
        gt_boxes: Optional[List[Tensor]] = None,
        gt_classes: Optional[List[Tensor]] = None,
    ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """As StandardROIHeads.forward; training losses per stage."""
        feats = [features[f] for f in self.box_in_features]
        boxes = [p["proposal_boxes"].detach() for p in proposals]
        deltas: Optional[Tensor] = None  # the previous stage's box deltas
        if not self.training:
            probs = []
            for k in range(self.num_stages):
                if k > 0:
                    boxes = self._refine(k - 1, deltas, boxes, images.image_sizes)
                scores, deltas = self._run_stage(k, feats, boxes)
                probs.append(F.softmax(scores.float(), dim=-1))
            mean_probs = torch.stack(probs).mean(dim=0)
            return self.box_predictor[-1].inference_from_probs(mean_probs, deltas, boxes, images.image_sizes), {}

        self._check_targets(gt_boxes, gt_classes)
        labelled = self.label_and_sample_proposals(boxes, gt_boxes, gt_classes)
        losses: Dict[str, Tensor] = {}
        for k in range(self.num_stages):
            if k > 0:
                refined = self._refine(k - 1, deltas, [s["proposal_boxes"] for s in labelled], images.image_sizes)
                # degenerate boxes have no regression target (log of a zero width); detectron2 drops them too
                labelled = [self.match_proposals(b[nonempty(b)], gtb, gtc, self.stage_matchers[k])
                            for b, gtb, gtc in zip(refined, gt_boxes, gt_classes)]
            stage_boxes = [s["proposal_boxes"] for s in labelled]
            predictions = self._run_stage(k, feats, stage_boxes)
            deltas = predictions[1]
            stage_losses = self.box_predictor[k].losses(
                predictions,
                torch.cat(stage_boxes),
                torch.cat([s["gt_classes"] for s in labelled]),
                torch.cat([s["gt_boxes"] for s in labelled]),
            )
            losses.update({f"{name}_stage{k}": value for name, value in stage_losses.items()})
        return labelled, losses
