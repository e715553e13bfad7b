"""Region Proposal Network: anchors + head + matching/sampling losses + proposal selection."""

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..box_coder import Box2BoxTransform
from ..box_ops import pairwise_iou
from ..image_list import ImageList
from ..input_features import select_features
from ..losses import BOX_REG_LOSS_TYPES, box_regression_loss
from ..matcher import Matcher
from ..sampling import check_sampling_config, subsample_labels
from .anchor_generator import build_anchor_generator
from .build import PROPOSAL_GENERATOR_REGISTRY
from .proposals import find_top_rpn_proposals
from .rpn_head import build_rpn_head


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Region Proposal Network (Faster R-CNN), detectron2 semantics.

    Attributes: ``rpn_head`` (conv, objectness_logits, anchor_deltas), ``anchor_generator``.
    """

    def __init__(
        self,
        *,
        in_features: List[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        anchor_matcher: Matcher,
        box2box_transform: Box2BoxTransform,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_topk: Tuple[int, int],
        post_nms_topk: Tuple[int, int],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        score_thresh: float = 0.0,
        nms_on_sigmoid: bool = False,
        anchor_boundary_thresh: float = -1.0,
        loss_weight: Optional[Dict[str, float]] = None,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
    ):
        super().__init__()
        if box_reg_loss_type not in BOX_REG_LOSS_TYPES:
            raise ValueError(
                f"MODEL.RPN.BBOX_REG_LOSS_TYPE must be one of {BOX_REG_LOSS_TYPES}, got '{box_reg_loss_type}'"
            )
        check_sampling_config("MODEL.RPN", batch_size_per_image, positive_fraction)
        self.in_features = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        self.anchor_matcher = anchor_matcher
        self.box2box_transform = box2box_transform
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_topk = {True: pre_nms_topk[0], False: pre_nms_topk[1]}
        self.post_nms_topk = {True: post_nms_topk[0], False: post_nms_topk[1]}
        self.nms_thresh = nms_thresh
        self.min_box_size = min_box_size
        self.score_thresh = score_thresh
        self.nms_on_sigmoid = nms_on_sigmoid
        self.anchor_boundary_thresh = anchor_boundary_thresh
        self.loss_weight = loss_weight or {"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0}
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta

    @classmethod
    def from_config(cls, cfg, input_shape: Dict) -> "RPN":
        rpn = cfg.MODEL.RPN
        shapes = select_features("MODEL.RPN.IN_FEATURES", rpn.IN_FEATURES, input_shape)
        anchor_generator = build_anchor_generator(cfg, shapes)
        num_anchors = set(anchor_generator.num_anchors)
        if len(num_anchors) != 1:
            raise ValueError(
                f"The RPN head is shared over levels, so every level needs the same number of anchors per location; "
                f"MODEL.ANCHOR_GENERATOR.SIZES/ASPECT_RATIOS give {anchor_generator.num_anchors}"
            )
        head = build_rpn_head(cfg, shapes, num_anchors.pop())
        return cls(
            in_features=rpn.IN_FEATURES,
            head=head,
            anchor_generator=anchor_generator,
            anchor_matcher=Matcher(rpn.IOU_THRESHOLDS, rpn.IOU_LABELS, allow_low_quality_matches=True),
            box2box_transform=Box2BoxTransform(rpn.BBOX_REG_WEIGHTS),
            batch_size_per_image=rpn.BATCH_SIZE_PER_IMAGE,
            positive_fraction=rpn.POSITIVE_FRACTION,
            pre_nms_topk=(rpn.PRE_NMS_TOPK_TRAIN, rpn.PRE_NMS_TOPK_TEST),
            post_nms_topk=(rpn.POST_NMS_TOPK_TRAIN, rpn.POST_NMS_TOPK_TEST),
            nms_thresh=rpn.NMS_THRESH,
            min_box_size=cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
            score_thresh=rpn.SCORE_THRESH,
            nms_on_sigmoid=rpn.NMS_ON_SIGMOID,
            anchor_boundary_thresh=rpn.BOUNDARY_THRESH,
            loss_weight={
                "loss_rpn_cls": rpn.LOSS_WEIGHT,
                "loss_rpn_loc": rpn.BBOX_REG_LOSS_WEIGHT * rpn.LOSS_WEIGHT,
            },
            box_reg_loss_type=rpn.BBOX_REG_LOSS_TYPE,
            smooth_l1_beta=rpn.SMOOTH_L1_BETA,
        )

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: Tensor, image_sizes: List[Tuple[int, int]], gt_boxes: List[Tensor]
    ) -> Tuple[Tensor, Tensor]:
        """Training targets.

        Args:
            anchors: ``[A, 4]`` all levels' anchors.
            gt_boxes: per image ``[G_i, 4]``.
        Returns:
            labels ``[N, A]`` (1 sampled positive, 0 sampled negative, -1 not sampled / ignored),
            matched_gt_boxes ``[N, A, 4]`` (meaningful where label is 1).
        """
        labels, matched = [], []
        for image_size, gt in zip(image_sizes, gt_boxes):
            iou = pairwise_iou(gt, anchors)
            matched_idx, label = self.anchor_matcher(iou)
            label = label.to(torch.int64)
            del iou
            if self.anchor_boundary_thresh >= 0:
                t = self.anchor_boundary_thresh
                h, w = image_size
                inside = (
                    (anchors[:, 0] >= -t) & (anchors[:, 1] >= -t) & (anchors[:, 2] < w + t) & (anchors[:, 3] < h + t)
                )
                label[~inside] = -1
            pos_idx, neg_idx = subsample_labels(label, self.batch_size_per_image, self.positive_fraction, 0)
            label = torch.full_like(label, -1)
            label[pos_idx] = 1
            label[neg_idx] = 0
            labels.append(label)
            matched.append(gt[matched_idx] if len(gt) > 0 else torch.zeros_like(anchors))
        return torch.stack(labels), torch.stack(matched)

    def losses(
        self, anchors: Tensor, logits: Tensor, deltas: Tensor, labels: Tensor, matched_gt_boxes: Tensor
    ) -> Dict[str, Tensor]:
        """``anchors [A, 4]``, ``logits [N, A]``, ``deltas [N, A, 4]``, targets from label_and_sample_anchors.

        Both losses are sums over sampled anchors divided by N * BATCH_SIZE_PER_IMAGE (detectron2's normaliser:
        constant per batch, so an image with few positives does not get its few anchors up-weighted).
        """
        num_images = labels.shape[0]
        pos = labels == 1
        valid = labels >= 0
        loc = box_regression_loss(
            self.box_reg_loss_type,
            self.box2box_transform,
            anchors[None].expand_as(deltas)[pos],
            deltas[pos],
            matched_gt_boxes[pos],
            self.smooth_l1_beta,
        )
        cls = F.binary_cross_entropy_with_logits(logits[valid], labels[valid].to(logits.dtype), reduction="sum")
        normalizer = self.batch_size_per_image * num_images
        return {
            "loss_rpn_cls": cls / normalizer * self.loss_weight["loss_rpn_cls"],
            "loss_rpn_loc": loc / normalizer * self.loss_weight["loss_rpn_loc"],
        }

    def forward(
        self, images: ImageList, features: Dict[str, Tensor], gt_boxes: Optional[List[Tensor]] = None
    ) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """Proposals for each image, and (in training) the RPN losses.

        Args:
            images: the padded batch (its sizes clip proposals; its padded size feeds torchvision-style strides).
            features: backbone outputs; ``in_features`` are used.
            gt_boxes: per image ``[G_i, 4]``, required in training.
        Returns:
            (per image {"proposal_boxes" [P, 4], "objectness_logits" [P]} detached, losses dict or {}).
        """
        feats = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(feats, images.padded_size)
        logits_l, deltas_l = self.rpn_head(feats)
        num_images = feats[0].shape[0]
        # [N, A, H, W] -> [N, H*W*A]: location-major then anchor, the anchors' order.
        logits_l = [x.permute(0, 2, 3, 1).flatten(1) for x in logits_l]
        # [N, A*4, H, W] -> [N, A, 4, H, W] -> [N, H, W, A, 4] -> [N, H*W*A, 4]
        deltas_l = [
            x.view(num_images, -1, 4, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, 3)
            for x in deltas_l
        ]

        losses: Dict[str, Tensor] = {}
        if self.training:
            if gt_boxes is None:
                raise ValueError("RPN in training mode needs gt_boxes (per image [G, 4] tensors)")
            anchors_all = torch.cat(anchors)
            labels, matched = self.label_and_sample_anchors(anchors_all, images.image_sizes, gt_boxes)
            losses = self.losses(anchors_all, torch.cat(logits_l, 1), torch.cat(deltas_l, 1), labels, matched)

        with torch.no_grad():
            boxes_l = [
                self.box2box_transform.apply_deltas(d.detach().reshape(-1, 4), a.repeat(num_images, 1)).view(
                    num_images, -1, 4
                )
                for d, a in zip(deltas_l, anchors)
            ]
            proposals = find_top_rpn_proposals(
                boxes_l,
                [x.detach() for x in logits_l],
                images.image_sizes,
                self.nms_thresh,
                self.pre_nms_topk[self.training],
                self.post_nms_topk[self.training],
                self.min_box_size,
                self.score_thresh,
                self.training,
                self.nms_on_sigmoid,
            )
        return proposals, losses
