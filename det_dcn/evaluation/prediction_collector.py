"""PredictionCollector: the base of the evaluators. It keeps the model's per-image detections as checked arrays,
gathers them onto rank 0, writes them, and follows the unreadable-image protocol of :mod:`.left_out`."""

import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from det_dcn.utils import comm

from .coco_tables import Detections, nonfinite_rows
from .evaluator import DatasetEvaluator
from .left_out import left_out_message, restrict_gt_image_ids
from .results_io import write_coco_results

logger = logging.getLogger(__name__)

__all__ = ["PredictionCollector", "merge_rank_predictions"]


class PredictionCollector(DatasetEvaluator):
    """Collects what ``process`` receives, per image, with the checks every evaluator needs; subclasses score it in
    ``evaluate()``.

    ``process(inputs, outputs)``: inputs are the test loader's dicts (need "image_id"); outputs the model's
    [{"boxes": [K, 4] XYXY in the original image's pixels, "scores": [K], "classes": [K] contiguous}].
    ``process_unreadable(stand_ins)``: images the loader could not read (their "image_id" and "file_name").
    ``gathered()`` -> (image ids, :class:`Detections` with XYWH boxes and ``category_id`` = the contiguous class,
    unless mapped) on rank 0, None on other ranks; ``images_to_score`` then says which ground truth to score.
    Errors name the subclass.
    """

    def __init__(self, dataset_name: str, num_classes: int, output_dir: Optional[str] = None,
                 distributed: bool = True):
        self.dataset_name, self.num_classes = dataset_name, num_classes
        self.output_dir, self.distributed = output_dir, distributed
        self.reset()

    @property
    def _owner(self) -> str:
        return type(self).__name__

    def reset(self) -> None:
        # image id -> (boxes [K, 4] XYWH float64, scores [K] float64, classes [K] int64)
        self._predictions: Dict[object, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._unreadable: Dict[object, str] = {}  # image id -> file name

    def process_unreadable(self, inputs) -> None:
        self._unreadable.update({d["image_id"]: d["file_name"] for d in inputs})

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise ValueError(f"{self._owner}: input dict has no 'image_id' (keys: {sorted(inp)})")
            missing = {"boxes", "scores", "classes"} - set(out)
            if missing:
                raise ValueError(f"{self._owner}: model output lacks {sorted(missing)} (keys: {sorted(out)})")
            img_id = inp["image_id"]
            boxes = out["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
            scores = out["scores"].detach().cpu().double().numpy().reshape(-1)
            classes = out["classes"].detach().cpu().numpy().reshape(-1).astype(np.int64)
            if not len(boxes) == len(scores) == len(classes):
                raise ValueError(f"{self._owner}: image {img_id}: {len(boxes)} boxes, {len(scores)} scores and "
                                 f"{len(classes)} classes")
            bad = (classes < 0) | (classes >= self.num_classes)
            if bad.any():
                raise ValueError(f"{self._owner}: image {img_id}: predicted class {int(classes[bad][0])} outside "
                                 f"[0, {self.num_classes}) for dataset {self.dataset_name!r} "
                                 f"({int(bad.sum())} of {len(classes)} detections)")
            for name, arr in (("boxes", boxes), ("scores", scores)):
                nonfinite = nonfinite_rows(arr)
                if nonfinite.any():
                    raise ValueError(f"{self._owner}: image {img_id}: {int(nonfinite.sum())} of {len(arr)} "
                                     f"detections have non-finite {name}, e.g. {arr[nonfinite][0].tolist()}")
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
            self._predictions[img_id] = (xywh, scores, classes)

    def packed(self) -> Tuple[list, Detections]:
        """This rank's predictions as (image ids, columns): a few arrays pickle fast, 100k small dicts do not."""
        ids = list(self._predictions)
        parts = list(self._predictions.values())
        if not parts:
            return ids, Detections.empty()
        counts = [len(p[1]) for p in parts]
        img = np.repeat(np.array(ids), counts) if sum(counts) else np.zeros(0, np.int64)
        return ids, Detections(img, np.concatenate([p[2] for p in parts]), np.concatenate([p[0] for p in parts]),
                               np.concatenate([p[1] for p in parts]))

    def _single_process(self) -> bool:
        return not self.distributed or comm.get_world_size() == 1

    def gathered(self, results_file: Optional[str] = None,
                 category_ids: Optional[np.ndarray] = None) -> Optional[Tuple[list, Detections]]:
        """Every rank's predictions merged on rank 0 (None on other ranks); an image seen twice is kept once.

        ``category_ids`` [num_classes]: the ``category_id`` each class gets (default: the class index). With
        ``output_dir`` and ``results_file``, the detections are written as a COCO results file there.
        """
        own = self.packed()
        if self._single_process():
            got = own
        else:
            parts = comm.gather(own, dst=0)
            if not comm.is_main_process():
                return None
            got = merge_rank_predictions(parts, self._owner)
        img_ids, dets = got
        if category_ids is not None:
            dets.category_id = category_ids[dets.category_id]
        if self.output_dir and results_file:
            os.makedirs(self.output_dir, exist_ok=True)
            path = os.path.join(self.output_dir, results_file)
            write_coco_results(path, dets)
            logger.info(f"Wrote {len(dets)} detections of {len(img_ids)} images to {path}")
        return img_ids, dets

    def images_to_score(self, img_ids: list, gt_files: Dict[object, str], gt_source: str) -> Tuple[set, str]:
        """The ground-truth image ids to score (those in ``img_ids``, the gathered ones) and, when images are left
        out as unreadable, ``left_out_message`` of their files ("" otherwise). ``gt_files``: every ground-truth
        image id -> its file name; ``gt_source`` names the ground truth when a prediction's image is not in it.

        Other ranks' unreadable images are not gathered: with several processes, every image not evaluated counts
        as unreadable (each rank warned about its own files in ``inference_on_dataset``).
        """
        unknown = [i for i in img_ids if i not in gt_files]
        if unknown:
            raise ValueError(f"{self._owner}: predictions for image ids {unknown[:10]} that are not in {gt_source}")
        single = self._single_process()
        keep = restrict_gt_image_ids(gt_files, img_ids, self._unreadable if single else None)
        left_out = sorted(f for i, f in gt_files.items() if i not in keep)
        return keep, left_out_message(left_out) if left_out and (self._unreadable or not single) else ""


def merge_rank_predictions(parts: List[Tuple[list, Detections]], owner: str) -> Tuple[list, Detections]:
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
        logger.warning(f"{owner}: {dup} images were predicted by more than one rank; kept one copy each")
    return ids, Detections.concat(kept)
