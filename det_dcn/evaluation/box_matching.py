"""pycocotools' per-image matching of detections to ground truth (``COCOeval.evaluateImg``), vectorised.

The greedy rule, per image, category, area range and IoU threshold, detections in score order: a detection takes the
not-yet-matched (or crowd) ground truth with the highest IoU >= threshold, preferring boxes that are not ignored
(crowd, or area outside the range) and, among equal IoUs, the last in annotation order. Only detections of one
(image, category) pair interact, and only those with IoU >= 0.5 with some box can match at all, so the sequential
part runs over "the j-th candidate of every pair at once", for all area ranges and thresholds together.
"""

from typing import Tuple

import numpy as np

from .coco_protocol import AREA_RNG, IOU_THRS
from .coco_tables import GroundTruth


def pycoco_box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU exactly as pycocotools' C ``bbIou``: ``dt`` [N, 4], ``gt`` [N, G, 4] XYWH float64, ``crowd`` [N, G] bool
    -> [N, G] float64. For a crowd box the union is the detection's area. Same operations in the same order, so the
    same doubles."""
    d = dt[:, None, :]
    w = np.minimum(d[..., 2] + d[..., 0], gt[..., 2] + gt[..., 0]) - np.maximum(d[..., 0], gt[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], gt[..., 3] + gt[..., 1]) - np.maximum(d[..., 1], gt[..., 1])
    inter = w * h
    da = d[..., 2] * d[..., 3]
    union = np.where(crowd, da, da + gt[..., 2] * gt[..., 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def runs(key: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For ``key`` [N] sorted (equal keys adjacent): the index of each row's run of equal keys [N] and the row's
    position within its run [N]."""
    if not len(key):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.r_[True, key[1:] != key[:-1]]
    run = np.cumsum(first) - 1
    return run, np.arange(len(key)) - np.flatnonzero(first)[run]


def outside_area(area: np.ndarray) -> np.ndarray:
    """[N] areas -> [N, A] bool: outside each of pycocotools' area ranges (bounds inclusive)."""
    return (area[:, None] < AREA_RNG[:, 0]) | (area[:, None] > AREA_RNG[:, 1])


def match_detections(gt: GroundTruth, key: np.ndarray, bbox: np.ndarray,
                     area: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """True and false positives of each detection for every area range and IoU threshold.

    ``key`` [N] = image index * K + category index (``gt``'s orders); rows sorted by key, then score descending
    (ties in results order), and at most ``max(MAX_DETS)`` rows a key (pycocotools' truncation). ``bbox`` [N, 4]
    XYWH, ``area`` [N] = w * h. Returns ``tp``, ``fp`` [A, T, N] bool; a detection that is neither is ignored
    (matched to an ignored box, or unmatched and outside the area range).
    """
    n, num_a, num_t = len(key), len(AREA_RNG), len(IOU_THRS)
    gt_ignore = gt.crowd[:, None] | outside_area(gt.area)  # [G, A]
    g_key = gt.img * len(gt.cat_ids) + gt.cat
    g_order = np.argsort(g_key, kind="stable")  # annotation order within a pair, as pycocotools lists them
    g_key = g_key[g_order]
    start = np.searchsorted(g_key, key, "left")
    count = np.searchsorted(g_key, key, "right") - start
    hit = np.zeros((num_a, num_t, n), dtype=bool)  # matched a box (with a non-zero id: pycocotools' test)
    hit_ignored = np.zeros((num_a, num_t, n), dtype=bool)  # matched a box that is ignored
    size = 1
    while n and size // 2 < count.max():  # pairs bucketed by their number of boxes, padded to a power of two
        rows = np.flatnonzero((count > size // 2) & (count <= size))
        if len(rows):
            slot = np.arange(size)
            valid = slot < count[rows, None]
            g_rows = g_order[np.where(valid, start[rows, None] + slot, start[rows, None])]  # [n, size]
            iou = np.where(valid, pycoco_box_iou(bbox[rows], gt.bbox[g_rows], gt.crowd[g_rows]), -1.0)
            cand = (iou >= IOU_THRS.min()).any(1)
            if cand.any():
                rows, iou, g_rows = rows[cand], iou[cand], g_rows[cand]
                h, h_ig = _greedy(key[rows], iou, gt.crowd[g_rows], gt.id_nonzero[g_rows],
                                  gt_ignore[g_rows].transpose(0, 2, 1))
                hit[:, :, rows], hit_ignored[:, :, rows] = h.transpose(1, 2, 0), h_ig.transpose(1, 2, 0)
        size *= 2
    # unmatched detections outside the area range are ignored too
    ignored = hit_ignored | (~hit & outside_area(area).T[:, None, :])
    return hit & ~ignored, ~hit & ~ignored


def _greedy(key: np.ndarray, iou: np.ndarray, crowd: np.ndarray, id_nonzero: np.ndarray,
            ignore: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy matching of candidate detections (rows sorted by key, then score).

    ``iou`` [n, G] (-1 on padding); the row's ground truth: ``crowd``, ``id_nonzero`` [n, G], ``ignore`` [n, A, G].
    Returns ``hit`` (matched a box with a non-zero id) and ``hit_ignored`` (matched an ignored box), [n, A, T] bool.
    """
    n, size = iou.shape
    thr = np.minimum(IOU_THRS, 1 - 1e-10)[None, None, :, None]
    pair, rank = runs(key)  # rank: position among its pair's candidates
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(rank.max() + 2))
    taken = np.zeros((pair[-1] + 1, ignore.shape[1], len(IOU_THRS), size), dtype=bool)  # [P, A, T, G]
    hit = np.zeros((n, ignore.shape[1], len(IOU_THRS)), dtype=bool)
    hit_ignored = np.zeros_like(hit)
    for j in range(len(bounds) - 1):
        r = order[bounds[j]:bounds[j + 1]]  # the j-th candidate of every pair that has one
        p, io = pair[r], iou[r][:, None, None, :]
        ok = (io >= thr) & (~taken[p] | crowd[r][:, None, None, :])
        regular = ok & ~ignore[r][:, :, None, :]
        ok = np.where(regular.any(-1, keepdims=True), regular, ok)
        vals = np.where(ok, io, -1.0)
        best = vals.max(-1, keepdims=True)
        i, a, t = np.nonzero(best[..., 0] >= 0)
        last = size - 1 - np.argmax((vals[i, a, t] == best[i, a, t])[:, ::-1], axis=-1)  # ties: the last box wins
        state = taken[p]
        state[i, a, t, last] = True
        taken[p] = state
        ri = r[i]
        hit[ri, a, t] = id_nonzero[ri, last]
        hit_ignored[ri, a, t] = ignore[ri, a, last]
    return hit, hit_ignored
