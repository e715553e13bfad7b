"""COCO box AP with pycocotools' exact numbers, vectorised with numpy (no extra dependency).

``evaluate_boxes(gt, dets)`` equals ``COCOeval(gt, gt.loadRes(results), "bbox")`` followed by ``evaluate()`` and
``accumulate()`` on every element of ``precision`` and ``recall`` (tests/evaluation check it on generated data with
crowd boxes, empty images, ties and more than 100 detections per image). Steps, as pycocotools does them:
per (image, category) sort detections by score (stable) and keep the first 100; match greedily per area range and
IoU threshold (:mod:`.box_matching`); accumulate precision / recall per category (:mod:`.accumulate`).
"""

import numpy as np

from .accumulate import accumulate
from .box_matching import match_detections, outside_area, runs
from .coco_protocol import EvalResult, MAX_DETS
from .coco_tables import Detections, GroundTruth


def evaluate_boxes(gt: GroundTruth, dets: Detections) -> EvalResult:
    """Precision and recall of ``dets`` against ``gt`` (pycocotools' defaults: 10 IoU thresholds, 4 area ranges,
    1/10/100 detections). Raises ValueError for detections of images or categories not in ``gt`` and for
    non-finite boxes or scores."""
    dets.check_finite()
    idx = dets.index_into(gt)
    num_k = len(gt.cat_ids)
    key = idx["img"] * num_k + idx["cat"]
    order = np.lexsort((-dets.score, key))  # by pair, score descending, then results order (lexsort is stable)
    key = key[order]
    rank = runs(key)[1]
    top = rank < max(MAX_DETS)  # pycocotools drops the rest before anything else
    keep, key, rank = order[top], key[top], rank[top]
    bbox = dets.bbox[keep]
    tp, fp = match_detections(gt, key, bbox, bbox[:, 2] * bbox[:, 3])
    counted = ~(gt.crowd[:, None] | outside_area(gt.area))  # [G, A] boxes a detection must find
    num_gt = np.stack([np.bincount(gt.cat[c], minlength=num_k) for c in counted.T], axis=1)  # [K, A]
    precision, recall = accumulate(tp, fp, idx["cat"][keep], dets.score[keep], rank, num_gt)
    return EvalResult(precision, recall, list(gt.cat_ids))
