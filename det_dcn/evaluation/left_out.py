"""Images that cannot be read at evaluation: left out of both detections and ground truth, and reported.

The convention every evaluator follows:

* the test loader yields, for an unreadable image, a stand-in dict with ``UNREADABLE_KEY`` (the reason), its
  "image_id" and "file_name", and no "image";
* ``inference_on_dataset`` keeps it away from the model, warns once naming the file, and passes it to
  ``evaluator.process_unreadable(inputs)``;
* the evaluator scores ground truth of the images it processed only (``restrict_gt_image_ids``), and reports
  ``left_out_message(files)`` beside its AP table. Both evaluators do this through
  ``PredictionCollector.images_to_score`` (prediction_collector.py).
"""

import logging
from typing import Iterable, List, Optional, Sequence, Tuple

from det_dcn.data.detection_utils import UNREADABLE_KEY

logger = logging.getLogger(__name__)

__all__ = ["UNREADABLE_KEY", "left_out_message", "restrict_gt_image_ids", "split_unreadable"]


def split_unreadable(inputs: Sequence[dict]) -> Tuple[List[dict], List[dict]]:
    """A test batch -> (readable inputs, unreadable stand-ins), each in the batch's order."""
    readable = [d for d in inputs if UNREADABLE_KEY not in d]
    return readable, [d for d in inputs if UNREADABLE_KEY in d]


def restrict_gt_image_ids(gt_image_ids: Iterable, processed_ids: Iterable,
                          unreadable_ids: Optional[Iterable] = None) -> set:
    """The ground-truth image ids to score: those processed. With ``unreadable_ids`` known (one process), images
    neither processed nor reported unreadable (a loader over part of the dataset) get a warning saying how many."""
    gt, processed = set(gt_image_ids), set(processed_ids)
    unexplained = gt - processed - set(unreadable_ids) if unreadable_ids is not None else set()
    if unexplained:
        logger.warning(f"{len(unexplained)} of {len(gt)} ground-truth images were not evaluated (neither predicted "
                       f"nor reported unreadable), e.g. ids {sorted(unexplained, key=str)[:5]}; AP is computed over "
                       f"the {len(gt & processed)} evaluated images")
    return gt & processed


def left_out_message(files: Sequence[str]) -> str:
    """'N images left out (unreadable): a.jpg, b.jpg' (the first 10 named)."""
    shown = ", ".join(files[:10]) + (f", ... ({len(files)} in all)" if len(files) > 10 else "")
    return f"{len(files)} images left out (unreadable): {shown}"
