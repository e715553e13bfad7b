"""COCOEvaluator: COCO box AP for any dataset registered in the catalogs, with pycocotools' exact numbers.

The default backend is det_dcn's vectorised evaluation (:mod:`.fast_cocoeval`), equal to pycocotools' ``COCOeval``
on every reported number and a small fraction of its time (``tools/benchmark_eval.py``); ``backend="pycocotools"``
runs ``COCOeval`` itself.
"""

import logging
import math
import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.utils import comm

from .coco_gt import dicts_to_coco_gt, load_coco_gt, restrict_coco_gt
from .coco_protocol import METRIC_NAMES, EvalResult, format_summary
from .coco_tables import Detections, GroundTruth, nonfinite_rows
from .evaluator import DatasetEvaluator
from .fast_cocoeval import evaluate_boxes
from .left_out import left_out_message, restrict_gt_image_ids
from .results_io import write_coco_results

logger = logging.getLogger(__name__)

METRICS = METRIC_NAMES[:6]  # the AP numbers reported
BACKENDS = ("fast", "pycocotools")
__all__ = ["COCOEvaluator", "dicts_to_coco_gt", "merge_rank_predictions"]


class COCOEvaluator(DatasetEvaluator):
    """Collects detections, gathers them from all ranks, and computes COCO box AP on rank 0.

    ``process(inputs, outputs)``: inputs are the test loader's dicts (need "image_id"); outputs the model's
    [{"boxes": [K,4] XYXY in the original image's pixels, "scores": [K], "classes": [K] contiguous}].
    ``evaluate()`` -> {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...}} in percent on rank 0
    (NaN where undefined: no ground truth), {} elsewhere. With ``output_dir``, the detections are written to
    ``output_dir/coco_instances_results.json``. ``backend``: "fast" (default) or "pycocotools" (see module doc).
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, distributed: bool = True,
                 backend: str = "fast"):
        if backend not in BACKENDS:
            raise ValueError(f"COCOEvaluator: backend {backend!r} is not one of {BACKENDS}")
        self.dataset_name, self.output_dir, self.distributed = dataset_name, output_dir, distributed
        self.backend = backend
        meta = MetadataCatalog.get(dataset_name)
        if meta.get("thing_dataset_id_to_contiguous_id") is None or meta.get("thing_classes") is None:
            DatasetCatalog.get(dataset_name)  # loading sets them
        self._meta = meta
        self._class_names = list(meta.thing_classes)
        to_dataset_id = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
        self._dataset_cat_ids = np.array([to_dataset_id[i] for i in range(len(self._class_names))], dtype=np.int64)
        self._gt: Optional[Tuple[dict, GroundTruth]] = None  # loaded once, reused by periodic evaluation
        self.reset()

    def reset(self):
        # image id -> (boxes [K, 4] XYWH float64, scores [K] float64, dataset category ids [K] int64)
        self._predictions: Dict[object, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._unreadable: Dict[object, str] = {}  # image id -> file name (left_out.py)

    def process_unreadable(self, inputs):
        self._unreadable.update({d["image_id"]: d["file_name"] for d in inputs})

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise ValueError(f"COCOEvaluator: input dict has no 'image_id' (keys: {sorted(inp)})")
            missing = {"boxes", "scores", "classes"} - set(out)
            if missing:
                raise ValueError(f"COCOEvaluator: model output lacks {sorted(missing)} (keys: {sorted(out)})")
            img_id = inp["image_id"]
            boxes = out["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
            scores = out["scores"].detach().cpu().double().numpy().reshape(-1)
            classes = out["classes"].detach().cpu().numpy().reshape(-1).astype(np.int64)
            if not len(boxes) == len(scores) == len(classes):
                raise ValueError(f"COCOEvaluator: image {img_id}: {len(boxes)} boxes, {len(scores)} "
                                 f"scores and {len(classes)} classes")
            bad = (classes < 0) | (classes >= len(self._class_names))
            if bad.any():
                raise ValueError(f"COCOEvaluator: image {img_id}: predicted class {int(classes[bad][0])} outside "
                                 f"[0, {len(self._class_names)}) for dataset {self.dataset_name!r} "
                                 f"({int(bad.sum())} of {len(classes)} detections)")
            for name, arr in (("boxes", boxes), ("scores", scores)):
                nonfinite = nonfinite_rows(arr)
                if nonfinite.any():
                    raise ValueError(f"COCOEvaluator: image {img_id}: {int(nonfinite.sum())} of {len(arr)} "
                                     f"detections have non-finite {name}, e.g. {arr[nonfinite][0].tolist()}")
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
            self._predictions[img_id] = (xywh, scores, self._dataset_cat_ids[classes])

    def _packed(self) -> Tuple[list, Detections]:
        """This rank's predictions as (image ids, columns): a few arrays pickle fast, 100k small dicts do not."""
        ids = list(self._predictions)
        parts = list(self._predictions.values())
        if not parts:
            return ids, Detections.empty()
        counts = [len(p[1]) for p in parts]
        img = np.repeat(np.array(ids), counts) if sum(counts) else np.zeros(0, np.int64)
        return ids, Detections(img, np.concatenate([p[2] for p in parts]), np.concatenate([p[0] for p in parts]),
                               np.concatenate([p[1] for p in parts]))

    def _gathered(self) -> Optional[Tuple[list, Detections]]:
        """Merge per-rank predictions on rank 0 (None on other ranks); an image seen twice is kept once."""
        own = self._packed()
        if not self.distributed or comm.get_world_size() == 1:
            return own
        parts = comm.gather(own, dst=0)
        if not comm.is_main_process():
            return None
        return merge_rank_predictions(parts)

    def _ground_truth(self) -> Tuple[Optional[dict], GroundTruth]:
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
        got = self._gathered()
        if got is None:
            return {}
        img_ids, dets = got
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            path = os.path.join(self.output_dir, "coco_instances_results.json")
            write_coco_results(path, dets)
            logger.info(f"Wrote {len(dets)} detections of {len(img_ids)} images to {path}")
        coco, gt = self._ground_truth()
        unknown = set(img_ids) - set(gt.img_ids)
        if unknown:
            raise ValueError(f"COCOEvaluator: predictions for image ids {sorted(unknown)[:10]} that are not in the "
                             f"ground truth of {self.dataset_name!r} ({self._meta.get('json_file')})")
        # Other ranks' unreadable images are not gathered: there, every image not evaluated counts as unreadable
        # (each rank warned about its own files in inference_on_dataset).
        single = not self.distributed or comm.get_world_size() == 1
        keep = restrict_gt_image_ids(gt.img_ids, img_ids, self._unreadable if single else None)
        if len(keep) != len(gt.img_ids):  # score only the evaluated images' ground truth
            left_out = sorted(im["file_name"] for im in coco["images"] if im["id"] not in keep)
            coco = restrict_coco_gt(coco, keep)
            gt = GroundTruth.from_coco_dict(coco, f"{self.dataset_name!r} restricted to the evaluated images")
            if self._unreadable or not single:
                logger.warning(f"COCOEvaluator: {self.dataset_name!r}: {left_out_message(left_out)}")
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
        return {"bbox": self._report(result)}

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


def merge_rank_predictions(parts: List[Tuple[list, Detections]]) -> Tuple[list, Detections]:
    """Per-rank (image ids, detections) -> one; an image predicted by several ranks is kept from the first."""
    seen, ids, kept = set(), [], []
    dup = 0
    for part_ids, dets in parts:
        new = [i for i in part_ids if i not in seen]
        dup += len(part_ids) - len(new)
        if len(new) < len(part_ids):
            dets = dets.select(np.isin(dets.image_id, np.array(new)))
        seen.update(new)
        ids.extend(new)
        kept.append(dets)
    if dup:
        logger.warning(f"COCOEvaluator: {dup} images were predicted by more than one rank; kept one copy each")
    return ids, Detections.concat(kept)


def _table(rows, cols: int = 3) -> str:
    cells = [f"{n:<16} {ap:6.2f}" if not math.isnan(ap) else f"{n:<16}    nan" for n, ap in rows]
    lines = [" | ".join(cells[i:i + cols]) for i in range(0, len(cells), cols)]
    header = " | ".join([f"{'category':<16} {'AP':>6}"] * min(cols, len(cells)))
    return "\n".join([header, "-" * len(header)] + lines)
