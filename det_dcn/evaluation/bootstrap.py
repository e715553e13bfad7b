"""How far an AP measured on few images can be trusted: percentile bootstrap intervals over the images.

Efron & Tibshirani's percentile bootstrap with the image as the unit (an image's boxes and detections stay
together): each resample draws as many images as the set has, with replacement, and scores them as if the dataset
held those copies. Matching does not depend on the other images, so it runs once (COCO:
:func:`.fast_cocoeval.match_boxes`; Pascal VOC: :class:`.voc_ap.VOCMatches`) and every resample only re-accumulates. On 40 validation photos the 95% interval of AP is about +-8 points wide
(docs/evaluation.md): two recipes 2 AP apart on such a set are not known to differ.
"""

from typing import Callable, Dict, Optional

import numpy as np

from .coco_protocol import METRIC_NAMES
from .coco_tables import Detections, GroundTruth
from .fast_cocoeval import Matches, match_boxes

REPORTED = ("AP", "AP50", "AP75")


def check_bootstrap_cfg(num_samples: int, confidence: float) -> None:
    """ValueError naming the key (TEST.BOOTSTRAP.NUM_SAMPLES / CONFIDENCE) and the value when out of range."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"TEST.BOOTSTRAP.NUM_SAMPLES must be an integer >= 0 (0: no intervals), got {num_samples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"TEST.BOOTSTRAP.CONFIDENCE must lie in (0, 1), got {confidence!r}")


def resample(score: Callable[[np.ndarray], Dict[str, float]], num_images: int, num_samples: int,
             seed: int = 0) -> Dict[str, np.ndarray]:
    """{metric: [num_samples]} of ``score(image_counts)`` over ``num_samples`` resamples of ``num_images`` images.

    ``image_counts`` [num_images]: how many times each image was drawn (as many draws as images, with replacement);
    ``score`` returns the metrics of REPORTED in percent for a dataset holding that many copies of each image (NaN
    where undefined). The same ``seed`` and ``num_images`` give the same resamples, which pairs two models."""
    rng = np.random.default_rng(seed)
    out = {name: np.empty(num_samples) for name in REPORTED}
    for b in range(num_samples):
        scores = score(np.bincount(rng.integers(0, num_images, num_images), minlength=num_images))
        for name in REPORTED:
            out[name][b] = scores[name]
    return out


def percentile_intervals(samples: Dict[str, np.ndarray], confidence: float) -> Dict[str, tuple]:
    """{metric: (low, high)}: the central ``confidence`` interval of each metric's samples (NaN ones left out)."""
    tail = (1.0 - confidence) / 2 * 100
    out = {}
    for name, values in samples.items():
        values = values[~np.isnan(values)]
        out[name] = tuple(np.percentile(values, [tail, 100 - tail])) if len(values) else (float("nan"),) * 2
    return out


def coco_scores(matches: Matches) -> Callable[[np.ndarray], Dict[str, float]]:
    """``score`` for :func:`resample`: COCO AP / AP50 / AP75 of ``matches`` with its images counted so many times."""
    def score(image_counts: Optional[np.ndarray] = None) -> Dict[str, float]:
        stats = matches.result(image_counts).stats()
        return {name: stats[METRIC_NAMES.index(name)] * 100 if stats[METRIC_NAMES.index(name)] >= 0 else float("nan")
                for name in REPORTED}
    return score


def bootstrap_intervals(gt: GroundTruth, dets: Detections, num_samples: int, confidence: float = 0.95,
                        seed: int = 0) -> Dict[str, tuple]:
    """{"AP" / "AP50" / "AP75": (low, high)}: COCO AP's percentile intervals over ``num_samples`` resamples, percent."""
    check_bootstrap_cfg(num_samples, confidence)
    samples = resample(coco_scores(match_boxes(gt, dets)), len(gt.img_ids), num_samples, seed)
    return percentile_intervals(samples, confidence)


def paired_differences(gt: GroundTruth, dets_a: Detections, dets_b: Detections, num_samples: int,
                       confidence: float = 0.95, seed: int = 0) -> Dict[str, dict]:
    """Whether ``dets_b`` scores better than ``dets_a`` on ``gt``'s images beyond the luck of which images these are.

    Both are scored on the same resamples (the paired bootstrap), so what the images share cancels. Returns per
    metric of REPORTED {"a", "b", "diff": b - a, "low", "high": the central ``confidence`` interval of b - a,
    "b_better": the share of resamples where b scores higher}, in percent (COCO AP).
    """
    check_bootstrap_cfg(num_samples, confidence)
    score_a, score_b = coco_scores(match_boxes(gt, dets_a)), coco_scores(match_boxes(gt, dets_b))
    samples_a = resample(score_a, len(gt.img_ids), num_samples, seed)  # the same seed: the same resamples
    samples_b = resample(score_b, len(gt.img_ids), num_samples, seed)
    diffs = {name: samples_b[name] - samples_a[name] for name in REPORTED}
    point_a, point_b = score_a(), score_b()
    out = {}
    for name, (low, high) in percentile_intervals(diffs, confidence).items():
        diff = diffs[name][~np.isnan(diffs[name])]
        out[name] = {"a": point_a[name], "b": point_b[name], "diff": point_b[name] - point_a[name],
                     "low": float(low), "high": float(high),
                     "b_better": float(np.mean(diff > 0)) if len(diff) else float("nan")}
    return out


def format_intervals(point: Dict[str, float], intervals: Dict[str, tuple], num_images: int, num_samples: int,
                     confidence: float) -> str:
    """A markdown table: each metric, its value and its interval, under a line saying how it was computed."""
    lines = [f"{confidence:.0%} bootstrap intervals ({num_samples} resamples of the {num_images} images):",
             "| metric | value | interval |", "|:-|:-:|:-:|"]
    for name, (low, high) in intervals.items():
        lines.append(f"| {name} | {point[name]:.1f} | {low:.1f} - {high:.1f} |")
    return "\n".join(lines)
