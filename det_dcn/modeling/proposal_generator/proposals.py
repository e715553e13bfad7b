"""From dense RPN predictions to a few proposals per image: per-level top-k, clip, filter, NMS, top-k."""

from typing import Dict, List, Tuple

import torch
from torch import Tensor
from ..box_ops import clip_boxes, nonempty
from ..nms import batched_nms


def find_top_rpn_proposals(
    proposals: List[Tensor],
    logits: List[Tensor],
    image_sizes: List[Tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    score_thresh: float,
    training: bool,
    nms_on_sigmoid: bool = False,
) -> List[Dict[str, Tensor]]:
    """Select proposals for each image.

    Args:
        proposals: per level ``[N, HWA_l, 4]`` decoded boxes.
        logits: per level ``[N, HWA_l]`` objectness logits.
        image_sizes: per image (h, w) of the unpadded image, for clipping.
        pre_nms_topk: kept per level (and image) before NMS, by logit.
        post_nms_topk: kept per image after NMS (over all levels).
        min_box_size: boxes with a side <= this (after clipping) are dropped.
        score_thresh: boxes with sigmoid(logit) < this are dropped (0 keeps all).
        nms_on_sigmoid: NMS ranks by sigmoid(logit) in float32 (torchvision) rather than by logit; differs only in
            the order of logits whose sigmoids are equal floats.

    Returns:
        per image {"proposal_boxes": ``[P, 4]``, "objectness_logits": ``[P]``}, sorted by decreasing score, detached.
    """
    num_images = len(image_sizes)
    device = proposals[0].device
    batch_idx = torch.arange(num_images, device=device)[:, None]

    top_boxes, top_logits, top_levels = [], [], []
    for level, (boxes_l, logits_l) in enumerate(zip(proposals, logits)):
        k = torch.sym_min(pre_nms_topk, logits_l.shape[1])  # sym_min: no guard on a traced (symbolic) size
        # topk returns sorted values; selecting per level first keeps NMS cheap and lets small levels compete.
        logits_k, idx = logits_l.topk(k, dim=1)
        top_boxes.append(boxes_l[batch_idx, idx])
        top_logits.append(logits_k)
        top_levels.append(torch.full((k,), level, dtype=torch.int64, device=device))
    boxes_all = torch.cat(top_boxes, dim=1).detach()
    logits_all = torch.cat(top_logits, dim=1).detach()
    levels_all = torch.cat(top_levels, dim=0)

    results = []
    for i, image_size in enumerate(image_sizes):
        boxes, scores, lvl = boxes_all[i], logits_all[i], levels_all
        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        if training and not bool(finite.all()):
            raise FloatingPointError("RPN predicted Inf/NaN boxes or scores: training has diverged")
        boxes = clip_boxes(boxes, image_size)
        # one mask for all filters (no branch on the data, so the eval path traces)
        keep = finite & nonempty(boxes, min_box_size)
        if score_thresh > 0:
            keep &= torch.sigmoid(scores) >= score_thresh
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        # NMS separately per level, as detectron2 and torchvision do.
        nms_scores = torch.sigmoid(scores.float()) if nms_on_sigmoid else scores.float()
        keep = batched_nms(boxes.float(), nms_scores, lvl, nms_thresh)[:post_nms_topk]
        results.append({"proposal_boxes": boxes[keep], "objectness_logits": scores[keep]})
    return results
