"""The COCO box-detection protocol: pycocotools' default parameters and its 12 summary numbers.

Both evaluation backends (det_dcn's vectorised one and pycocotools) produce an :class:`EvalResult`; the summary and
the per-category AP are computed from it here, once, exactly as ``COCOeval.summarize`` does.
"""

from dataclasses import dataclass

import numpy as np

# Built as pycocotools builds them (linspace, not arange), so every threshold is the same float.
IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RNG = np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]], dtype=np.float64)
AREA_LBL = ("all", "small", "medium", "large")
# (name, AP (True) or AR, IoU threshold or None for the mean over all, area label, max detections): COCOeval.stats
SUMMARY = (
    ("AP", True, None, "all", 100), ("AP50", True, .5, "all", 100), ("AP75", True, .75, "all", 100),
    ("APs", True, None, "small", 100), ("APm", True, None, "medium", 100), ("APl", True, None, "large", 100),
    ("AR1", False, None, "all", 1), ("AR10", False, None, "all", 10), ("AR100", False, None, "all", 100),
    ("ARs", False, None, "small", 100), ("ARm", False, None, "medium", 100), ("ARl", False, None, "large", 100),
)
METRIC_NAMES = tuple(row[0] for row in SUMMARY)


@dataclass
class EvalResult:
    """What ``COCOeval.accumulate`` computes: ``precision`` [T, R, K, A, M] and ``recall`` [T, K, A, M], -1 where a
    category has no (non-ignored) ground truth in that area range; T = IoU thresholds, R = recall thresholds,
    K = ``cat_ids`` (sorted), A = area ranges, M = max detections."""

    precision: np.ndarray
    recall: np.ndarray
    cat_ids: list

    def stats(self) -> np.ndarray:
        """[12] ``COCOeval.stats``: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl; -1 = undefined."""
        return np.array([self._summarize(*row[1:]) for row in SUMMARY])

    def _summarize(self, ap: bool, iou_thr, area: str, max_dets: int) -> float:
        a, m = AREA_LBL.index(area), MAX_DETS.index(max_dets)
        s = self.precision if ap else self.recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRS)[0]]
        s = s[..., a, m]
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    def per_category_ap(self) -> np.ndarray:
        """[K] AP of each category (all areas, 100 detections) as detectron2 reports it; NaN without ground truth."""
        p = self.precision[:, :, :, 0, -1]
        out = np.full(p.shape[2], np.nan)
        for k in range(p.shape[2]):
            pk = p[:, :, k]
            pk = pk[pk > -1]
            if pk.size:
                out[k] = np.mean(pk)
        return out


def format_summary(stats: np.ndarray) -> str:
    """The 12 lines ``COCOeval.summarize`` prints, from ``stats`` [12]."""
    lines = []
    for (_, ap, iou_thr, area, max_dets), value in zip(SUMMARY, stats):
        title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
        iou = f"{IOU_THRS[0]:0.2f}:{IOU_THRS[-1]:0.2f}" if iou_thr is None else f"{iou_thr:0.2f}"
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {value:0.3f}")
    return "\n".join(lines)
