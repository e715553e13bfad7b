"""COCO box AP with pycocotools' exact numbers, vectorised with numpy (no extra dependency).

``evaluate_boxes(gt, dets)`` equals ``COCOeval(gt, gt.loadRes(results), "bbox")`` followed by ``evaluate()`` and
``accumulate()`` on every element of ``precision`` and ``recall`` (tests/evaluation check it on generated data with
crowd boxes, empty images, ties and more than 100 detections per image). Steps, as pycocotools does them:
per (image, category) sort detections by score (stable) and keep the first 100; match greedily per area range and
IoU threshold (:mod:`.box_matching`); accumulate precision / recall per category (:mod:`.accumulate`).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .accumulate import accumulate
from .box_matching import match_detections, outside_area, runs
from .coco_protocol import EvalResult, MAX_DETS
from .coco_tables import Detections, GroundTruth


@dataclass
class Matches:
    """What matching decides, before accumulation: ``tp``, ``fp`` [A, T, N] bool of the kept detections (rows by
    (image, category), then score), their ``img`` / ``cat`` indices, ``score`` and ``rank`` within their (image,
    category) [N]; ``counted`` [G, A] the ground-truth boxes a detection must find (not crowd, inside the range)."""

    gt: GroundTruth
    tp: np.ndarray
    fp: np.ndarray
    img: np.ndarray
    cat: np.ndarray
    score: np.ndarray
    rank: np.ndarray
    counted: np.ndarray

    def result(self, image_counts: Optional[np.ndarray] = None) -> EvalResult:
        """Precision and recall. ``image_counts`` [I] (default all 1): how many times each image counts, as if the
        dataset held that many copies of it (its boxes and detections); the bootstrap's resamples (:mod:`.bootstrap`)."""
        num_k = len(self.gt.cat_ids)
        gt_weight = None if image_counts is None else image_counts[self.gt.img]
        num_gt = np.stack([np.bincount(self.gt.cat[c], weights=None if gt_weight is None else gt_weight[c],
                                       minlength=num_k) for c in self.counted.T], axis=1).astype(np.int64)  # [K, A]
        rows = slice(None) if image_counts is None else np.repeat(np.arange(len(self.img)), image_counts[self.img])
        precision, recall = accumulate(self.tp[:, :, rows], self.fp[:, :, rows], self.cat[rows], self.score[rows],
                                       self.rank[rows], num_gt)
        return EvalResult(precision, recall, list(self.gt.cat_ids))


def match_boxes(gt: GroundTruth, dets: Detections) -> Matches:
    """pycocotools' ``evaluate()``: truncation to 100 detections per (image, category) and greedy matching. Raises
    ValueError for detections of images or categories not in ``gt`` and for non-finite boxes or scores."""
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
    return Matches(gt, tp, fp, idx["img"][keep], idx["cat"][keep], dets.score[keep], rank, counted)


def evaluate_boxes(gt: GroundTruth, dets: Detections) -> EvalResult:
    """Precision and recall of ``dets`` against ``gt`` (pycocotools' defaults: 10 IoU thresholds, 4 area ranges,
    1/10/100 detections). Raises ValueError for detections of images or categories not in ``gt`` and for
    non-finite boxes or scores."""
    return match_boxes(gt, dets).result()
