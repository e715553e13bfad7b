"""COCO box AP with pycocotools, for any dataset registered in the catalogs."""

import contextlib
import io
import json
import logging
import math
import os
from typing import Dict, List, Optional

import numpy as np

from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.utils import comm

from .evaluator import DatasetEvaluator
from det_dcn.utils.atomic_io import atomic_write_json

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def dicts_to_coco_gt(dataset_dicts: List[dict], thing_classes: List[str], id_map: Dict[int, int]) -> dict:
    """Dataset dicts (XYXY, contiguous classes) -> a COCO ground-truth dict (XYWH, dataset category ids)."""
    inv = {v: k for k, v in id_map.items()}
    images, annos = [], []
    for d in dataset_dicts:
        images.append({"id": d["image_id"], "height": d["height"], "width": d["width"], "file_name": d["file_name"]})
        for a in d.get("annotations", []):
            x1, y1, x2, y2 = (float(v) for v in a["bbox"])
            annos.append({"id": len(annos) + 1, "image_id": d["image_id"], "category_id": inv[a["category_id"]],
                          "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                          "iscrowd": int(a.get("iscrowd", 0))})
    cats = [{"id": inv[i], "name": n} for i, n in enumerate(thing_classes)]
    return {"images": images, "annotations": annos, "categories": cats}


class COCOEvaluator(DatasetEvaluator):
    """Collects detections, gathers them from all ranks, and computes COCO box AP on rank 0.

    ``process(inputs, outputs)``: inputs are the test loader's dicts (need "image_id"); outputs the model's
    [{"boxes": [K,4] XYXY in the original image's pixels, "scores": [K], "classes": [K] contiguous}].
    ``evaluate()`` -> {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...}} in percent on rank 0,
    {} elsewhere. With ``output_dir``, the detections are written to ``output_dir/coco_instances_results.json``.
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, distributed: bool = True):
        self.dataset_name, self.output_dir, self.distributed = dataset_name, output_dir, distributed
        meta = MetadataCatalog.get(dataset_name)
        if meta.get("thing_dataset_id_to_contiguous_id") is None or meta.get("thing_classes") is None:
            DatasetCatalog.get(dataset_name)  # loading sets them
        self._meta = meta
        self._class_names = list(meta.thing_classes)
        self._to_dataset_id = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
        self.reset()

    def reset(self):
        self._predictions: Dict[object, List[dict]] = {}

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise ValueError(f"COCOEvaluator: input dict has no 'image_id' (keys: {sorted(inp)})")
            missing = {"boxes", "scores", "classes"} - set(out)
            if missing:
                raise ValueError(f"COCOEvaluator: model output lacks {sorted(missing)} (keys: {sorted(out)})")
            boxes = out["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
            scores = out["scores"].detach().cpu().double().numpy().reshape(-1)
            classes = out["classes"].detach().cpu().numpy().reshape(-1).astype(np.int64)
            if not len(boxes) == len(scores) == len(classes):
                raise ValueError(f"COCOEvaluator: image {inp['image_id']}: {len(boxes)} boxes, {len(scores)} "
                                 f"scores and {len(classes)} classes")
            results = []
            for (x1, y1, x2, y2), s, c in zip(boxes.tolist(), scores.tolist(), classes.tolist()):
                if c not in self._to_dataset_id:
                    raise ValueError(f"COCOEvaluator: predicted class {c} outside [0, {len(self._class_names)}) "
                                     f"for dataset {self.dataset_name!r}")
                results.append({"image_id": inp["image_id"], "category_id": self._to_dataset_id[c],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
            self._predictions[inp["image_id"]] = results

    def _gathered(self) -> Optional[Dict[object, List[dict]]]:
        """Merge per-rank predictions on rank 0 (None on other ranks); an image seen twice is kept once."""
        if not self.distributed or comm.get_world_size() == 1:
            return dict(self._predictions)
        parts = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        merged: Dict[object, List[dict]] = {}
        dup = 0
        for part in parts:
            for img_id, res in part.items():
                if img_id in merged:
                    dup += 1
                    continue
                merged[img_id] = res
        if dup:
            logger.warning(f"COCOEvaluator: {dup} images were predicted by more than one rank; kept one copy each")
        return merged

    def _load_gt(self):
        from pycocotools.coco import COCO

        json_file = self._meta.get("json_file")
        if json_file is None or not os.path.isfile(json_file):
            dicts = DatasetCatalog.get(self.dataset_name)  # may create the file (generated datasets)
            if json_file is None or not os.path.isfile(json_file):
                gt = COCO()
                gt.dataset = dicts_to_coco_gt(dicts, self._class_names, self._meta.thing_dataset_id_to_contiguous_id)
                with contextlib.redirect_stdout(io.StringIO()):
                    gt.createIndex()
                return gt
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(json_file)
        # COCOeval needs "area" and "iscrowd"; minimal COCO-format files sometimes lack them.
        for ann in gt.dataset.get("annotations", []):
            ann.setdefault("iscrowd", 0)
            if "area" not in ann:
                ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        return gt

    def evaluate(self):
        preds = self._gathered()
        if preds is None:
            return {}
        results = [r for res in preds.values() for r in res]
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            path = os.path.join(self.output_dir, "coco_instances_results.json")
            atomic_write_json(path, results, compact=True)
            logger.info(f"Wrote {len(results)} detections of {len(preds)} images to {path}")
        gt = self._load_gt()
        if len(preds) != len(gt.getImgIds()):
            logger.warning(f"COCOEvaluator: predictions cover {len(preds)} images but {self.dataset_name!r} has "
                           f"{len(gt.getImgIds())}; AP is computed over all ground-truth images")
        if not results:
            logger.warning(f"COCOEvaluator: no detections on {self.dataset_name!r}; every AP is 0")
            res = {k: 0.0 for k in METRICS}
            res.update({f"AP-{n}": 0.0 for n in self._class_names})
            return {"bbox": res}
        unknown = set(preds) - set(gt.getImgIds())
        if unknown:
            raise ValueError(f"COCOEvaluator: predictions for image ids {sorted(unknown)[:10]} that are not in the "
                             f"ground truth of {self.dataset_name!r} ({self._meta.get('json_file')})")
        return {"bbox": self._coco_eval(gt, results)}

    def _coco_eval(self, gt, results: List[dict]) -> Dict[str, float]:
        from pycocotools.cocoeval import COCOeval

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            dt = gt.loadRes(results)
            ev = COCOeval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        logger.debug(f"COCO evaluation of {self.dataset_name!r}:\n{out.getvalue()}")  # log.txt; console: one table
        res = {k: (float(v) * 100 if v >= 0 else float("nan")) for k, v in zip(METRICS, ev.stats[:6])}
        # precision: [IoU thresholds, recall points, categories, area ranges, max dets]; area "all", 100 dets.
        precision = ev.eval["precision"]
        rows = []
        for k, cat_id in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            ap = float(np.mean(p)) * 100 if p.size else float("nan")
            name = self._class_names[self._meta.thing_dataset_id_to_contiguous_id[cat_id]]
            res[f"AP-{name}"] = ap
            rows.append((name, ap))
        logger.debug("Per-category bbox AP:\n" + _table(rows))
        return res


def _table(rows, cols: int = 3) -> str:
    cells = [f"{n:<16} {ap:6.2f}" if not math.isnan(ap) else f"{n:<16}    nan" for n, ap in rows]
    lines = [" | ".join(cells[i:i + cols]) for i in range(0, len(cells), cols)]
    header = " | ".join([f"{'category':<16} {'AP':>6}"] * min(cols, len(cells)))
    return "\n".join([header, "-" * len(header)] + lines)
