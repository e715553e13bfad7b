"""COCOEvaluator: COCO box AP for any dataset registered in the catalogs, with pycocotools' exact numbers.

The default backend is det_dcn's vectorised evaluation (:mod:`.fast_cocoeval`), equal to pycocotools' ``COCOeval``
on every reported number and a small fraction of its time (``tools/benchmark_eval.py``); ``backend="pycocotools"``
runs ``COCOeval`` itself.
"""

import logging
import math
import os
import time
from typing import Dict, Optional, Tuple

import numpy as np

from det_dcn.data import DatasetCatalog, MetadataCatalog

from .bootstrap import bootstrap_intervals, check_bootstrap_cfg, format_intervals
from .coco_gt import dicts_to_coco_gt, load_coco_gt, restrict_coco_gt
from .coco_protocol import METRIC_NAMES, EvalResult, format_summary
from .coco_tables import GroundTruth
from .fast_cocoeval import evaluate_boxes
from .prediction_collector import PredictionCollector

logger = logging.getLogger(__name__)

METRICS = METRIC_NAMES[:6]  # the AP numbers reported
BACKENDS = ("fast", "pycocotools")
__all__ = ["COCOEvaluator", "dicts_to_coco_gt"]


class COCOEvaluator(PredictionCollector):
    """Collects detections, gathers them from all ranks, and computes COCO box AP on rank 0.

    ``process(inputs, outputs)``, ``process_unreadable(stand_ins)``: as :class:`PredictionCollector` (outputs
    {"boxes" XYXY, "scores", "classes" contiguous}; the classes become the dataset's category ids at evaluation).
    ``evaluate()`` -> {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...}} in percent on rank 0
    (NaN where undefined: no ground truth), {} elsewhere. Only the processed images' ground truth is scored; images
    left out as unreadable are named in a warning. With ``output_dir``, the detections are written to
    ``output_dir/coco_instances_results.json``. ``backend``: "fast" (default) or "pycocotools" (see module doc).
    ``bootstrap_samples`` > 0 also logs percentile bootstrap intervals of AP, AP50 and AP75 over the images at
    ``bootstrap_confidence`` (:mod:`.bootstrap`; TEST.BOOTSTRAP).
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, distributed: bool = True,
                 backend: str = "fast", bootstrap_samples: int = 0, bootstrap_confidence: float = 0.95):
        if backend not in BACKENDS:
            raise ValueError(f"COCOEvaluator: backend {backend!r} is not one of {BACKENDS}")
        check_bootstrap_cfg(bootstrap_samples, bootstrap_confidence)
        self.backend = backend
        self.bootstrap_samples, self.bootstrap_confidence = bootstrap_samples, bootstrap_confidence
        meta = MetadataCatalog.get(dataset_name)
        if meta.get("thing_dataset_id_to_contiguous_id") is None or meta.get("thing_classes") is None:
            DatasetCatalog.get(dataset_name)  # loading sets them
        if meta.get("thing_dataset_id_to_contiguous_id") is None:
            # a dataset with only contiguous classes (Pascal VOC): its category ids are those indices
            meta.set(thing_dataset_id_to_contiguous_id={i: i for i in range(len(meta.thing_classes))})
        self._meta = meta
        self._class_names = list(meta.thing_classes)
        to_dataset_id = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
        self._dataset_cat_ids = np.array([to_dataset_id[i] for i in range(len(self._class_names))], dtype=np.int64)
        self._gt: Optional[Tuple[dict, GroundTruth]] = None  # loaded once, reused by periodic evaluation
        super().__init__(dataset_name, len(self._class_names), output_dir, distributed)

    def ground_truth(self) -> Tuple[Optional[dict], GroundTruth]:
        """(COCO dict, GroundTruth), loaded once (the dict restricts the ground truth to the evaluated images)."""
        if self._gt is None:
            json_file = self._meta.get("json_file")
            if json_file is None or not os.path.isfile(json_file):
                dicts = DatasetCatalog.get(self.dataset_name)  # may create the file (generated datasets)
            if json_file is not None and os.path.isfile(json_file):
                coco, source = load_coco_gt(json_file), json_file
            else:
                coco = dicts_to_coco_gt(dicts, self._class_names, self._meta.thing_dataset_id_to_contiguous_id)
                source = f"dataset {self.dataset_name!r}"
            self._gt = coco, GroundTruth.from_coco_dict(coco, source)
        return self._gt

    def evaluate(self):
        got = self.gathered("coco_instances_results.json", self._dataset_cat_ids)  # COCO's dataset category ids
        if got is None:
            return {}
        img_ids, dets = got
        coco, gt = self.ground_truth()
        keep, left_out = self.images_to_score(img_ids, {im["id"]: im["file_name"] for im in coco["images"]},
                                              f"the ground truth of {self.dataset_name!r} "
                                              f"({self._meta.get('json_file')})")
        if len(keep) != len(gt.img_ids):  # score only the evaluated images' ground truth
            coco = restrict_coco_gt(coco, keep)
            gt = GroundTruth.from_coco_dict(coco, f"{self.dataset_name!r} restricted to the evaluated images")
        if left_out:
            logger.warning(f"COCOEvaluator: {self.dataset_name!r}: {left_out}")
        if not len(dets):
            logger.warning(f"COCOEvaluator: no detections on {self.dataset_name!r}; every AP is 0 (NaN for "
                           f"categories without ground truth)")
        start = time.perf_counter()
        if self.backend == "pycocotools" and len(dets):  # pycocotools cannot load an empty result list
            from .pycocotools_eval import pycocotools_evaluate

            result, _ = pycocotools_evaluate(coco, dets)
        else:
            result = evaluate_boxes(gt, dets)
        logger.debug(f"COCO evaluation of {self.dataset_name!r} ({len(dets)} detections, {self.backend} backend) "
                    f"took {time.perf_counter() - start:.2f} s:\n{format_summary(result.stats())}")
        report = self._report(result)
        if self.bootstrap_samples:
            intervals = bootstrap_intervals(gt, dets, self.bootstrap_samples, self.bootstrap_confidence)
            logger.info(f"COCOEvaluator: {self.dataset_name!r}, "
                        + format_intervals(report, intervals, len(gt.img_ids), self.bootstrap_samples,
                                           self.bootstrap_confidence))
        return {"bbox": report}

    def _report(self, result: EvalResult) -> Dict[str, float]:
        """Percent; -1 ("no ground truth") becomes NaN."""
        res = {k: (float(v) * 100 if v >= 0 else float("nan")) for k, v in zip(METRICS, result.stats()[:6])}
        rows = []
        for cat_id, ap in zip(result.cat_ids, result.per_category_ap()):
            name = self._class_names[self._meta.thing_dataset_id_to_contiguous_id[cat_id]]
            res[f"AP-{name}"] = float(ap) * 100
            rows.append((name, float(ap) * 100))
        logger.debug("Per-category bbox AP:\n" + _table(rows))
        return res


def _table(rows, cols: int = 3) -> str:
    cells = [f"{n:<16} {ap:6.2f}" if not math.isnan(ap) else f"{n:<16}    nan" for n, ap in rows]
    lines = [" | ".join(cells[i:i + cols]) for i in range(0, len(cells), cols)]
    header = " | ".join([f"{'category':<16} {'AP':>6}"] * min(cols, len(cells)))
    return "\n".join([header, "-" * len(header)] + lines)
