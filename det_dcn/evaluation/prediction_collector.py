"""PredictionCollector: the model's per-image detections, checked, kept as arrays and gathered onto rank 0."""

import logging
from typing import Dict, Optional, Tuple

import numpy as np

from det_dcn.utils import comm

from .coco_evaluation import merge_rank_predictions
from .coco_tables import Detections, nonfinite_rows

logger = logging.getLogger(__name__)


class PredictionCollector:
    """What an evaluator's ``process(inputs, outputs)`` receives, per image, with the checks every evaluator needs.

    ``add(inputs, outputs)``: inputs are the test loader's dicts (need "image_id"); outputs the model's
    [{"boxes": [K, 4] XYXY in the original image's pixels, "scores": [K], "classes": [K] contiguous}].
    ``gathered()`` -> (image ids, :class:`Detections` with XYWH boxes and ``category_id`` = the contiguous class) on
    rank 0, None on other ranks. ``owner`` names the evaluator in errors.
    """

    def __init__(self, owner: str, dataset_name: str, num_classes: int, distributed: bool = True):
        self.owner, self.dataset_name = owner, dataset_name
        self.num_classes, self.distributed = num_classes, distributed
        self.reset()

    def reset(self) -> None:
        # image id -> (boxes [K, 4] XYWH float64, scores [K] float64, classes [K] int64)
        self._predictions: Dict[object, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise ValueError(f"{self.owner}: input dict has no 'image_id' (keys: {sorted(inp)})")
            missing = {"boxes", "scores", "classes"} - set(out)
            if missing:
                raise ValueError(f"{self.owner}: model output lacks {sorted(missing)} (keys: {sorted(out)})")
            img_id = inp["image_id"]
            boxes = out["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
            scores = out["scores"].detach().cpu().double().numpy().reshape(-1)
            classes = out["classes"].detach().cpu().numpy().reshape(-1).astype(np.int64)
            if not len(boxes) == len(scores) == len(classes):
                raise ValueError(f"{self.owner}: image {img_id}: {len(boxes)} boxes, {len(scores)} scores and "
                                 f"{len(classes)} classes")
            bad = (classes < 0) | (classes >= self.num_classes)
            if bad.any():
                raise ValueError(f"{self.owner}: image {img_id}: predicted class {int(classes[bad][0])} outside "
                                 f"[0, {self.num_classes}) for dataset {self.dataset_name!r} "
                                 f"({int(bad.sum())} of {len(classes)} detections)")
            for name, arr in (("boxes", boxes), ("scores", scores)):
                nonfinite = nonfinite_rows(arr)
                if nonfinite.any():
                    raise ValueError(f"{self.owner}: image {img_id}: {int(nonfinite.sum())} of {len(arr)} "
                                     f"detections have non-finite {name}, e.g. {arr[nonfinite][0].tolist()}")
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
            self._predictions[img_id] = (xywh, scores, classes)

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

    def gathered(self) -> Optional[Tuple[list, Detections]]:
        """Every rank's predictions merged on rank 0 (None on other ranks); an image seen twice is kept once."""
        own = self._packed()
        if not self.distributed or comm.get_world_size() == 1:
            return own
        parts = comm.gather(own, dst=0)
        if not comm.is_main_process():
            return None
        return merge_rank_predictions(parts)
