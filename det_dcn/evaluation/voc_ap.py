"""Pascal VOC detection AP: VOC's matching of detections to ground truth and its two interpolation rules.

Conventions (those of the VOC devkit as detectron2's ``voc_eval`` implements them, except where noted):

- Matching, per class and IoU threshold, detections in descending score order: a detection's candidate is the ground
  truth box of its image and class with the highest IoU (among all of them, difficult and already matched ones
  included; the first in annotation order on ties). IoU > threshold (strict, as detectron2): a difficult candidate
  makes the detection ignored (neither TP nor FP), a candidate not matched yet makes it a TP and is matched, a taken
  one makes it a FP; IoU <= threshold: FP. A candidate never moves to a second-best box, unlike COCO.
  As the candidate does not depend on the matching state, a detection is a TP exactly when it is the first
  (by score) to pick its non-difficult candidate above the threshold: no sequential loop is needed.
- IoU of continuous XYXY boxes without a "+1": det_dcn's VOC boxes are (xmin - 1, ymin - 1, xmax, ymax) of the
  devkit's 1-based inclusive pixel indices, so x2 - x1 = xmax - xmin + 1 is the devkit's "+1" width; detectron2 gets
  the same IoU by shifting the predictions back to 1-based and adding 1 (equal up to rounding).
- Precision tp / max(tp + fp, eps), recall tp / npos, npos = non-difficult ground truth boxes of the class.
- ``rule="11point"`` (VOC2007): the mean over t = 0, 0.1, ..., 1 of the highest precision at recall >= t (0 where
  recall never reaches t). The t are k / 10 exactly; detectron2's ``np.arange(0., 1.1, 0.1)`` makes 0.3, 0.6 and 0.7
  one ulp larger, so there a recall of exactly 3/10, 6/10 or 7/10 does not count.
- ``rule="area"`` (VOC2010 and later): the area under the precision envelope (precision made non-increasing from
  the right), summed over the recall steps.
- A class without non-difficult ground truth has no AP (NaN; detectron2 gives 0 or NaN depending on the rule and on
  whether it has detections); a class with ground truth and no detection has AP 0.
- Equal scores are taken in the order the detections come (detectron2's quicksort leaves that order unspecified).
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

RULES = ("11point", "area")
# detectron2's PascalVOCDetectionEvaluator: AP at IoU 0.50, 0.55, ..., 0.95 (each the double nearest k / 100)
IOU_THRESHOLDS = np.arange(50, 100, 5) / 100.0


def box_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired rows: ``a`` [N, 4], ``b`` [N, M, 4] continuous XYXY -> [N, M]; 0 where the union is empty."""
    a = a[:, None, :]
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    union = area_a + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def best_ground_truth(gt_key: np.ndarray, gt_box: np.ndarray, det_key: np.ndarray,
                      det_box: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each detection's highest-IoU ground truth box with the same key (image * num_classes + class).

    ``gt_key`` [G], ``gt_box`` [G, 4], ``det_key`` [N], ``det_box`` [N, 4] XYXY. Returns (index into the ground truth
    [N], -1 where its image has no box of its class; IoU [N], -inf there). Ties: the first in ``gt`` order.
    """
    order = np.argsort(gt_key, kind="stable")
    start = np.searchsorted(gt_key[order], det_key, "left")
    count = np.searchsorted(gt_key[order], det_key, "right") - start
    best, best_iou = np.full(len(det_key), -1), np.full(len(det_key), -np.inf)
    size = 1
    while len(det_key) and size // 2 < count.max():  # detections bucketed by their number of boxes (powers of two)
        rows = np.flatnonzero((count > size // 2) & (count <= size))
        if len(rows):
            slot = np.arange(size)
            valid = slot < count[rows, None]
            g = order[np.where(valid, start[rows, None] + slot, start[rows, None])]  # [n, size]
            iou = np.where(valid, box_iou_xyxy(det_box[rows], gt_box[g]), -np.inf)
            col = iou.argmax(1)
            best[rows], best_iou[rows] = g[np.arange(len(rows)), col], iou[np.arange(len(rows)), col]
        size *= 2
    return best, best_iou


def interpolated_ap(recall: np.ndarray, precision: np.ndarray, rule: str) -> float:
    """AP of one precision / recall curve ([n] each, recall non-decreasing, in score order) by ``rule``."""
    if rule == "11point":
        # envelope[i]: the highest precision from point i on; a last 0 for "recall never reaches t"
        envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
        first = np.searchsorted(recall, np.arange(11) / 10.0, "left")  # first point with recall >= t
        return float(envelope[first].sum() / 11.0)
    if rule == "area":
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))
    raise ValueError(f"interpolated_ap: rule {rule!r} is not one of {RULES}")


def voc_matches(gt_key: np.ndarray, gt_box: np.ndarray, gt_difficult: np.ndarray, det_key: np.ndarray,
                det_box: np.ndarray, det_score: np.ndarray, num_classes: int,
                iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """VOC's true and false positives (see the module doc) at every IoU threshold.

    Keys are image index * ``num_classes`` + class. Ground truth: ``gt_key`` [G], ``gt_box`` [G, 4] XYXY,
    ``gt_difficult`` [G] bool. Detections: ``det_key`` [N], ``det_box`` [N, 4] XYXY, ``det_score`` [N].
    Returns ``order`` [N] (the detections by class, then score descending, stable) and ``tp``, ``fp`` [T, N] bool
    in that order; a detection that is neither is ignored.
    """
    order = np.lexsort((-det_score, det_key % num_classes))
    best, best_iou = best_ground_truth(gt_key, gt_box, det_key[order], det_box[order])
    difficult = np.zeros(len(best), bool)
    difficult[best >= 0] = gt_difficult[best[best >= 0]]
    tp = np.zeros((len(iou_thresholds), len(order)), bool)
    for t, thr in enumerate(iou_thresholds):
        candidate = np.flatnonzero((best_iou > thr) & ~difficult)
        _, first = np.unique(best[candidate], return_index=True)  # the first in score order takes the box
        tp[t, candidate[first]] = True
    above = best_iou[None, :] > np.asarray(iou_thresholds)[:, None]
    fp = ~above | (~difficult & ~tp)  # difficult candidates above the threshold: neither
    return order, tp, fp


@dataclass
class VOCMatches:
    """:func:`voc_matches`' verdicts with what AP needs besides: ``tp``, ``fp`` [T, N] bool, ``cls`` / ``img`` [N] of
    the detections in their order (class, then score descending); ``pos_cls`` / ``pos_img`` [P] of the non-difficult
    ground truth boxes (the positives)."""

    tp: np.ndarray
    fp: np.ndarray
    cls: np.ndarray
    img: np.ndarray
    pos_cls: np.ndarray
    pos_img: np.ndarray
    num_classes: int

    @classmethod
    def of(cls, gt_key: np.ndarray, gt_box: np.ndarray, gt_difficult: np.ndarray, det_key: np.ndarray,
           det_box: np.ndarray, det_score: np.ndarray, num_classes: int,
           iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> "VOCMatches":
        """Match (the arguments as :func:`voc_matches`')."""
        order, tp, fp = voc_matches(gt_key, gt_box, gt_difficult, det_key, det_box, det_score, num_classes,
                                    iou_thresholds)
        key, pos = det_key[order], gt_key[~gt_difficult]
        return cls(tp, fp, key % num_classes, key // num_classes, pos % num_classes, pos // num_classes, num_classes)

    def ap(self, rule: str, image_counts: Optional[np.ndarray] = None) -> np.ndarray:
        """AP [T, K] (fractions, NaN for a class without positives) by ``rule``. ``image_counts`` [I] (default all
        1): how many times each image counts, as if the dataset held that many copies of it (matching is per image,
        so copies match alike; the bootstrap's resamples)."""
        if rule not in RULES:
            raise ValueError(f"voc_ap: rule {rule!r} is not one of {RULES}")
        rows = slice(None) if image_counts is None else np.repeat(np.arange(len(self.img)), image_counts[self.img])
        tp, fp, det_cls = self.tp[:, rows], self.fp[:, rows], self.cls[rows]  # copies stay next to each other
        weights = None if image_counts is None else image_counts[self.pos_img]
        npos = np.bincount(self.pos_cls, weights=weights, minlength=self.num_classes).astype(np.int64)
        bounds = np.searchsorted(det_cls, np.arange(self.num_classes + 1))
        ap = np.full((len(tp), self.num_classes), np.nan)
        for k in np.flatnonzero(npos):
            tp_sum = np.cumsum(tp[:, bounds[k]:bounds[k + 1]], axis=1)
            fp_sum = np.cumsum(fp[:, bounds[k]:bounds[k + 1]], axis=1)
            precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)
            for t in range(len(tp)):
                ap[t, k] = interpolated_ap(tp_sum[t] / npos[k], precision[t], rule)
        return ap


def voc_ap(gt_key: np.ndarray, gt_box: np.ndarray, gt_difficult: np.ndarray, det_key: np.ndarray,
           det_box: np.ndarray, det_score: np.ndarray, num_classes: int, rule: str,
           iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """AP [T, K] of every class at every IoU threshold (fractions, NaN for a class without non-difficult boxes);
    the arguments as :func:`voc_matches`'s, ``rule`` one of ``RULES``."""
    return VOCMatches.of(gt_key, gt_box, gt_difficult, det_key, det_box, det_score, num_classes,
                         iou_thresholds).ap(rule)
