"""The reference backend: pycocotools' ``COCOeval`` on the same inputs as :func:`.fast_cocoeval.evaluate_boxes`."""

import contextlib
import io
from typing import Tuple

from .coco_protocol import EvalResult
from .coco_tables import Detections


def pycocotools_evaluate(gt_dict: dict, dets: Detections) -> Tuple[EvalResult, str]:
    """``COCOeval(..., "bbox")`` evaluate + accumulate + summarize of ``dets`` against the COCO dict ``gt_dict``.

    Returns the result and pycocotools' console output (its progress lines and the summary table).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets.to_results()), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return EvalResult(ev.eval["precision"], ev.eval["recall"], list(ev.params.catIds)), out.getvalue()
