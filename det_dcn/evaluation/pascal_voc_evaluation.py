"""PascalVOCDetectionEvaluator: Pascal VOC box AP (per class at IoU 0.5, and averaged over IoU 0.50:0.95).

The matching and interpolation rules are in :mod:`.voc_ap`. The rule follows the dataset's metadata "year": 2007
uses VOC2007's 11-point rule, anything else (2012, a custom or COCO-format dataset) the area rule of VOC2010+.
"""

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from det_dcn.data import DatasetCatalog, MetadataCatalog

from .bootstrap import REPORTED, check_bootstrap_cfg, format_intervals, percentile_intervals, resample
from .prediction_collector import PredictionCollector
from .results_table import format_results_table
from .voc_ap import IOU_THRESHOLDS, VOCMatches

logger = logging.getLogger(__name__)

__all__ = ["PascalVOCDetectionEvaluator", "VOCGroundTruth"]


@dataclass
class VOCGroundTruth:
    """The boxes of a dataset's dicts as columns: ``img_ids`` [I] in dataset order, ``file_names`` [I] theirs; per
    box ``img`` [G] index into
    ``img_ids``, ``cls`` [G] contiguous class, ``box`` [G, 4] XYXY float64, ``difficult`` [G] bool ("difficult": 1,
    or "iscrowd": 1 in a COCO-format dataset: both are boxes a detector is neither rewarded nor punished for)."""

    img_ids: list
    file_names: List[str]
    img: np.ndarray
    cls: np.ndarray
    box: np.ndarray
    difficult: np.ndarray

    @classmethod
    def from_dataset_dicts(cls, dicts: List[dict], num_classes: int, source: str) -> "VOCGroundTruth":
        img_ids, file_names, img, classes, boxes, difficult = [], [], [], [], [], []
        for i, d in enumerate(dicts):
            img_ids.append(d["image_id"])
            file_names.append(d["file_name"])
            for a in d.get("annotations", []):
                img.append(i)
                classes.append(a["category_id"])
                boxes.append(a["bbox"])
                difficult.append(bool(a.get("difficult", 0)) or bool(a.get("iscrowd", 0)))
        if len(set(img_ids)) != len(img_ids):
            raise ValueError(f"{source}: image ids are not unique ({len(img_ids) - len(set(img_ids))} repeated)")
        gt = cls(img_ids, file_names, np.array(img, dtype=np.int64), np.array(classes, dtype=np.int64),
                 np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(difficult, dtype=bool))
        bad = np.flatnonzero((gt.cls < 0) | (gt.cls >= num_classes) | ~np.isfinite(gt.box).all(1))
        if len(bad):
            j = int(bad[0])
            raise ValueError(f"{source}: image id {img_ids[gt.img[j]]!r} has a box with category_id {gt.cls[j]} and "
                             f"bbox {gt.box[j].tolist()}; expected a class in [0, {num_classes}) and finite XYXY")
        return gt


class PascalVOCDetectionEvaluator(PredictionCollector):
    """Collects detections, gathers them from all ranks, and computes Pascal VOC box AP on rank 0.

    ``process(inputs, outputs)``, ``process_unreadable(stand_ins)``: as :class:`PredictionCollector`.
    ``evaluate()`` -> {"bbox": {"AP": mean over IoU 0.50:0.95 of the mAP, "AP50": VOC's mAP, "AP75",
    "AP-<class>": the class's AP averaged over IoU 0.50:0.95}} in percent on rank 0, {} elsewhere; classes without
    non-difficult ground truth are NaN and left out of the means. Ground truth counts only for the images that were
    processed (an image never processed contributes neither detections nor boxes); images left out as unreadable
    are named beside the per-class AP50 table. With ``output_dir``, the detections are written to
    ``output_dir/pascal_voc_results.json`` (COCO results format, ``category_id`` = the class index).
    ``bootstrap_samples`` > 0 also logs percentile bootstrap intervals of AP, AP50 and AP75 over the scored images at
    ``bootstrap_confidence`` (:mod:`.bootstrap`; TEST.BOOTSTRAP).
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, distributed: bool = True,
                 bootstrap_samples: int = 0, bootstrap_confidence: float = 0.95):
        check_bootstrap_cfg(bootstrap_samples, bootstrap_confidence)
        self.bootstrap_samples, self.bootstrap_confidence = bootstrap_samples, bootstrap_confidence
        meta = MetadataCatalog.get(dataset_name)
        if meta.get("thing_classes") is None:
            DatasetCatalog.get(dataset_name)  # loading sets them
        self._class_names = list(meta.thing_classes)
        self.rule = "11point" if str(meta.get("year", "")) == "2007" else "area"
        self._gt: Optional[VOCGroundTruth] = None  # loaded once, reused by periodic evaluation
        super().__init__(dataset_name, len(self._class_names), output_dir, distributed)

    def _ground_truth(self) -> VOCGroundTruth:
        if self._gt is None:
            self._gt = VOCGroundTruth.from_dataset_dicts(DatasetCatalog.get(self.dataset_name),
                                                         len(self._class_names), f"dataset {self.dataset_name!r}")
        return self._gt

    def evaluate(self):
        got = self.gathered("pascal_voc_results.json")
        if got is None:
            return {}
        img_ids, dets = got
        gt = self._ground_truth()
        scored, left_out = self.images_to_score(img_ids, dict(zip(gt.img_ids, gt.file_names)),
                                                f"dataset {self.dataset_name!r}")
        is_scored = np.array([i in scored for i in gt.img_ids], dtype=bool)  # [I]
        keep = is_scored[gt.img]
        index = {v: i for i, v in enumerate(gt.img_ids)}
        uniq, inverse = np.unique(dets.image_id, return_inverse=True)
        det_img = np.array([index[i] for i in uniq.tolist()], dtype=np.int64)[inverse.reshape(-1)]
        k = len(self._class_names)
        xyxy = np.concatenate([dets.bbox[:, :2], dets.bbox[:, :2] + dets.bbox[:, 2:]], axis=1)
        matches = VOCMatches.of(gt.img[keep] * k + gt.cls[keep], gt.box[keep], gt.difficult[keep],
                                det_img * k + dets.category_id, xyxy, dets.score, k)
        ap = matches.ap(self.rule)
        report = self._report(ap)
        self._log_table(ap, left_out)
        if self.bootstrap_samples:
            self._log_intervals(matches, report, np.flatnonzero(is_scored), len(gt.img_ids))
        return {"bbox": report}

    def _log_intervals(self, matches: VOCMatches, report: Dict[str, float], scored: np.ndarray,
                       num_images: int) -> None:
        """Bootstrap intervals over the ``scored`` image indices (the others count 0 times in every resample)."""
        def score(counts: np.ndarray) -> Dict[str, float]:
            every_image = np.zeros(num_images, np.int64)
            every_image[scored] = counts
            res = self._report(matches.ap(self.rule, every_image))
            return {name: res[name] for name in REPORTED}

        samples = resample(score, len(scored), self.bootstrap_samples)
        intervals = percentile_intervals(samples, self.bootstrap_confidence)
        logger.info(f"PascalVOCDetectionEvaluator: {self.dataset_name!r}, "
                    + format_intervals(report, intervals, len(scored), self.bootstrap_samples,
                                       self.bootstrap_confidence))

    def _report(self, ap: np.ndarray) -> Dict[str, float]:
        """``ap`` [T, K] fractions -> percent: mAP at each threshold, then their mean (detectron2's "AP")."""
        per_threshold = [nan_mean(row) * 100 for row in ap]
        res = {"AP": float(np.mean(per_threshold)),
               "AP50": per_threshold[int(np.flatnonzero(IOU_THRESHOLDS == 0.5)[0])],
               "AP75": per_threshold[int(np.flatnonzero(IOU_THRESHOLDS == 0.75)[0])]}
        for name, class_ap in zip(self._class_names, ap.mean(0)):
            res[f"AP-{name}"] = float(class_ap) * 100
        return res

    def _log_table(self, ap: np.ndarray, left_out: str) -> None:
        ap50 = ap[int(np.flatnonzero(IOU_THRESHOLDS == 0.5)[0])] * 100
        rule = "VOC2007 11-point" if self.rule == "11point" else "VOC2010+ area"
        row = {"mAP": nan_mean(ap50), **{f"AP-{n}": float(v) for n, v in zip(self._class_names, ap50)}}
        table = format_results_table({f"{self.dataset_name}, AP at IoU 0.5 ({rule} rule)": row})
        logger.info(table + (f"\n{left_out}" if left_out else ""))


def nan_mean(values: np.ndarray) -> float:
    """Mean of the non-NaN ``values`` [n]; NaN (without numpy's warning) when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
