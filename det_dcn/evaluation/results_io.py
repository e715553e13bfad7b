"""Writing detections as a COCO results file (``coco_instances_results.json``), atomically and fast."""

import json

import numpy as np

from det_dcn.utils.atomic_io import atomic_open

from .coco_tables import Detections


def write_coco_results(path: str, dets: Detections) -> None:
    """Write ``dets`` as the JSON list pycocotools' ``loadRes`` reads: [{"image_id", "category_id", "bbox": XYWH,
    "score"}, ...], the same text ``json.dumps(dets.to_results())`` gives (every float in its exact shortest repr).

    Formatted row by row from the columns, without building 500k dicts first (Python's float repr is most of the
    time either way); written to a temporary file and renamed, so a reader never sees half a file.
    """
    ids = dets.image_id.tolist()
    if not np.issubdtype(dets.image_id.dtype, np.integer):  # e.g. string ids: quoted
        ids = [json.dumps(i) for i in ids]
    rows = zip(ids, dets.category_id.tolist(), dets.bbox.tolist(), dets.score.tolist())
    with atomic_open(path, "w") as f:
        f.write("[")
        f.write(", ".join([f'{{"image_id": {i}, "category_id": {c}, "bbox": [{x!r}, {y!r}, {w!r}, {h!r}], '
                           f'"score": {s!r}}}' for i, c, (x, y, w, h), s in rows]))
        f.write("]\n")
