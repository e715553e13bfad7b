"""Precision / recall curves from per-detection matches (``COCOeval.accumulate``), vectorised per category."""

from typing import Tuple

import numpy as np

from .coco_protocol import AREA_RNG, IOU_THRS, MAX_DETS, REC_THRS


def accumulate(tp: np.ndarray, fp: np.ndarray, cat: np.ndarray, score: np.ndarray, rank: np.ndarray,
               num_gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Precision [T, R, K, A, M] and recall [T, K, A, M] as pycocotools computes them.

    ``tp``, ``fp`` [A, T, N] bool; ``cat`` [N] category indices; ``score`` [N]; ``rank`` [N] position of the
    detection in its (image, category) by score, for the max-detections cut. Rows sorted by image index (in
    ``GroundTruth.img_ids`` order), and in results order within an image and score (pycocotools' tie order).
    ``num_gt`` [K, A] non-ignored ground-truth boxes.
    -1 where a category has no non-ignored ground truth in that area range.
    """
    num_t, num_r, num_k, num_a, num_m = len(IOU_THRS), len(REC_THRS), len(num_gt), len(AREA_RNG), len(MAX_DETS)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    # pycocotools' order: by category, score descending, then image, then the image's own order; the rows come
    # sorted by image (then results order), and lexsort is stable
    order = np.lexsort((-score, cat))
    bounds = np.searchsorted(cat[order], np.arange(num_k + 1))
    rank = rank[order]
    tp = np.take(tp.reshape(num_a * num_t, -1), order, axis=1)  # row a*T + t
    fp = np.take(fp.reshape(num_a * num_t, -1), order, axis=1)
    npig = np.repeat(num_gt, num_t, axis=1)  # [K, A*T]
    for k in range(num_k):
        sel = np.flatnonzero(npig[k] > 0)
        if not len(sel):
            continue
        a_idx, t_idx = np.divmod(sel, num_t)
        lo, hi = bounds[k], bounds[k + 1]
        all_rows = len(sel) == len(tp)
        kept_before = -1
        for m in sorted(range(num_m), key=lambda m: -MAX_DETS[m]):  # largest first: a smaller cut often cuts nothing
            keep = rank[lo:hi] < MAX_DETS[m]
            if keep.sum() != kept_before:
                cols = slice(lo, hi) if keep.all() else lo + np.flatnonzero(keep)  # a view when nothing is cut
                tp_k, fp_k = (tp[:, cols], fp[:, cols]) if all_rows else (tp[sel][:, cols], fp[sel][:, cols])
                p, r = _curve(tp_k, fp_k, npig[k, sel])
                kept_before = keep.sum()
            precision[t_idx, :, k, a_idx, m] = p
            recall[t_idx, k, a_idx, m] = r
    return precision, recall


def _curve(tp: np.ndarray, fp: np.ndarray, npig: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One category: ``tp``, ``fp`` [C, n] bool in score order, ``npig`` [C] > 0 -> precision at the recall
    thresholds [C, R] and final recall [C], each row exactly as pycocotools computes it.

    pycocotools evaluates precision tp_sum / (fp_sum + tp_sum + eps) at every detection, takes its running maximum
    from the end (the envelope) and reads it at i = searchsorted(tp_sum / npig, recThr, "left"). That i is the
    position of the v-th true positive, v the least integer with v / npig >= recThr (float division is monotonic),
    and the envelope there is the maximum over later true positives (precision only rises at one), so only true
    positives are visited; the values are the same doubles from the same operations.
    """
    num_c, n = tp.shape
    row, pos = np.nonzero(tp)  # true positives, row by row, in score order
    total = np.bincount(row, minlength=num_c)  # [C]
    if n == 0 or not len(row):
        return np.zeros((num_c, len(REC_THRS))), total / npig
    start = np.cumsum(total) - total
    v = np.arange(1, len(row) + 1) - start[row]  # tp_sum at each true positive
    fp_before = np.cumsum(fp, axis=1, dtype=np.int32)[row, pos]
    pr = v / ((fp_before + v) + np.spacing(1))
    env = np.full((num_c, total.max()), -1.0)
    env[row, v - 1] = pr
    env = np.maximum.accumulate(env[:, ::-1], axis=1)[:, ::-1]  # the envelope at each true positive
    want = np.maximum(np.ceil(REC_THRS[None, :] * npig[:, None]).astype(np.int64) - 2, 0)  # [C, R]
    for _ in range(4):
        want += want / npig[:, None] < REC_THRS[None, :]  # the least v with v / npig >= recThr
    reached = want <= total[:, None]
    q = np.where(reached, env[np.arange(num_c)[:, None], np.clip(want - 1, 0, env.shape[1] - 1)], 0.0)
    return np.maximum(q, 0.0), total / npig  # -1: the padding of a row without true positives
