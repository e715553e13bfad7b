"""Loading COCO-format instance annotations (any dataset in that format, not only COCO itself).

Dataset dict format (what ``DatasetCatalog.get`` returns, one per image)::

    {"file_name": str (absolute or relative to the working dir), "height": int, "width": int,
     "image_id": the COCO image id,
     "annotations": [{"bbox": [x1, y1, x2, y2] (absolute XYXY pixels, clipped to the image),
                      "category_id": contiguous class index in [0, num_classes), "iscrowd": 0 or 1}, ...]}

COCO category ids may be any integers (COCO itself skips ids); they are mapped to contiguous indices in
increasing id order, and the mapping is stored in ``MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id``
so the evaluator can map predictions back.
"""

import collections
import contextlib
import io
import logging
import math
import os
from typing import Iterable, List, Optional

from .catalog import DatasetCatalog, MetadataCatalog
from .detection_utils import BadDataError, image_size

logger = logging.getLogger(__name__)


def _load_coco_api(json_file: str):
    from pycocotools.coco import COCO

    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file not found: {json_file}")
    # pycocotools prints progress to stdout; keep it out of the user's console.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return COCO(json_file)
        except Exception as e:  # json errors, missing "images" key, ...
            raise ValueError(f"Cannot parse COCO annotation file {json_file}: {type(e).__name__}: {e}") from e


def _check_unique_ids(json_file: str, kind: str, ids: Iterable) -> None:
    """pycocotools indexes images and annotations by id: a repeated id silently replaces the earlier entry (and
    moves its boxes to another image), so repeated ids are an error naming them."""
    repeated = sorted((i for i, n in collections.Counter(ids).items() if n > 1), key=str)
    if repeated:
        shown = ", ".join(str(i) for i in repeated[:10])
        if len(repeated) > 10:
            shown += f" ... ({len(repeated)} in all)"
        raise ValueError(f"{json_file}: {kind} ids must be unique; these appear more than once: {shown}")


def load_coco_json(json_file: str, image_root: str, dataset_name: Optional[str] = None) -> List[dict]:
    """Read a COCO instances JSON into dataset dicts (format in the module docstring).

    Boxes are converted from XYWH to XYXY and clipped to the image; boxes with no area after clipping are
    dropped and counted. Crowd boxes are kept with ``iscrowd=1`` (the training mapper leaves them out of the
    targets). Images without annotations are kept (the train loader filters them when
    DATALOADER.FILTER_EMPTY_ANNOTATIONS is set; evaluation needs every image).

    If ``dataset_name`` is given, its metadata gets ``thing_classes`` and ``thing_dataset_id_to_contiguous_id``.
    """
    coco = _load_coco_api(json_file)
    _check_unique_ids(json_file, "image", (img.get("id") for img in coco.dataset.get("images", [])))
    _check_unique_ids(json_file, "annotation", (a.get("id") for a in coco.dataset.get("annotations", [])))
    _check_unique_ids(json_file, "category", (c.get("id") for c in coco.dataset.get("categories", [])))
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    if not cats:
        raise ValueError(f"COCO annotation file {json_file} has no categories")
    id_map = {c["id"]: i for i, c in enumerate(cats)}
    thing_classes = [c["name"] for c in cats]
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(thing_classes=thing_classes, thing_dataset_id_to_contiguous_id=id_map)

    img_ids = sorted(coco.imgs.keys())
    orphan = set(coco.imgToAnns.keys()) - set(img_ids)
    if orphan:
        logger.warning(
            f"{json_file}: annotations refer to {len(orphan)} image ids that are not in 'images' "
            f"(e.g. {sorted(orphan)[:5]}); they are ignored."
        )

    dicts, num_degenerate, num_clipped, num_boxes, resized = [], 0, 0, 0, []
    for img_id in img_ids:
        img = coco.imgs[img_id]
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise ValueError(f"{json_file}: image id {img_id} has file_name {img.get('file_name')!r}, expected a "
                             f"non-empty string")
        file_name = os.path.join(image_root, img["file_name"])
        w, h = _image_size(json_file, img_id, img, file_name, resized)
        annos = []
        for ann in coco.imgToAnns.get(img_id, []):
            if ann.get("ignore", 0):
                continue
            bbox = ann.get("bbox")
            if bbox is None or len(bbox) != 4:
                raise ValueError(f"{json_file}: annotation id {ann.get('id')} has bbox {bbox!r}, expected [x, y, w, h]")
            cat = ann.get("category_id")
            if cat not in id_map:
                raise ValueError(
                    f"{json_file}: annotation id {ann.get('id')} has category_id {cat!r}, "
                    f"which is not among the categories {sorted(id_map)}"
                )
            num_boxes += 1
            x, y, bw, bh = (_finite(json_file, f"annotation id {ann.get('id')}", "bbox", v) for v in bbox)
            x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
            x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
            if x2 <= x1 or y2 <= y1:
                num_degenerate += 1
                continue
            num_clipped += [x1, y1, x2, y2] != [x, y, x + bw, y + bh]
            annos.append({"bbox": [x1, y1, x2, y2], "category_id": id_map[cat], "iscrowd": int(ann.get("iscrowd", 0))})
        dicts.append(
            {
                "file_name": file_name,
                "height": h,
                "width": w,
                "image_id": img_id,
                "annotations": annos,
            }
        )
    if resized:
        logger.warning(f"{json_file}: {len(resized)} images have no or a wrong width/height; the image file's size "
                       f"is used: {'; '.join(resized[:5])}{' ...' if len(resized) > 5 else ''}")
    if num_clipped:
        logger.warning(f"{json_file}: clipped {num_clipped} of {num_boxes} boxes that reach beyond their image.")
    if num_degenerate:
        logger.warning(
            f"{json_file}: dropped {num_degenerate} of {num_boxes} boxes with no area inside the image "
            "(zero width/height or outside the image)."
        )
    logger.info(f"Loaded {len(dicts)} images, {num_boxes - num_degenerate} boxes, {len(cats)} classes from {json_file}")
    return dicts


def _finite(json_file: str, where: str, field: str, value) -> float:
    """A JSON number that is finite (Python's json reads NaN and Infinity), else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{json_file}: {where} has {field} {value!r}, expected a finite number")
    return float(value)


def _image_size(json_file: str, img_id, img: dict, file_name: str, resized: list):
    """(width, height): the image file's (header only) when it can be read, else the JSON's. A missing or wrong
    JSON size is appended to ``resized``; an unreadable file keeps the JSON's size (the loaders skip / leave out the
    image itself); both missing is an error."""
    given = tuple(_finite(json_file, f"image id {img_id}", k, img[k]) if img.get(k) is not None else None
                  for k in ("width", "height"))
    try:
        actual = image_size(file_name)
    except BadDataError as e:
        if None in given or min(given) <= 0:
            raise ValueError(f"{json_file}: image id {img_id} has width/height {given}, and its file gives no "
                             f"size either: {e}") from e
        return int(given[0]), int(given[1])
    if given != actual:
        resized.append(f"id {img_id} {img['file_name']}: {given} in the file, {actual} in the image")
    return actual


def register_coco_instances(name: str, json_file: str, image_root: str) -> None:
    """Register a COCO-format dataset under ``name``; loading happens on ``DatasetCatalog.get(name)``."""
    for arg, val in (("name", name), ("json_file", json_file), ("image_root", image_root)):
        if not isinstance(val, (str, os.PathLike)):
            raise ValueError(f"register_coco_instances: {arg} must be a path string, got {val!r}")
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")


def register_coco_from_cfg(cfg) -> List[str]:
    """Register the datasets of ``DATASETS.CUSTOM_COCO`` ([name, json_file, image_root] each); returns their names.

    Called by the loaders (and the demo tools) before they look names up, so it is idempotent: a name already
    registered with the same files is left alone. Errors name the key, the entry and what was expected; a missing
    annotation file or image folder is reported here, before any training starts, as for the built-in datasets.
    """
    key = "DATASETS.CUSTOM_COCO"
    names = []
    for entry in cfg.DATASETS.CUSTOM_COCO:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3 and all(isinstance(v, str) and v for v in entry)):
            raise ValueError(f"{key}: each entry must be [name, json_file, image_root] (three non-empty strings), "
                             f"got {entry!r}")
        name, json_file, image_root = entry
        if name in DatasetCatalog:
            meta = MetadataCatalog.get(name)
            if (meta.get("json_file"), meta.get("image_root")) != (json_file, image_root):
                raise ValueError(f"{key}: dataset {name!r} is already registered (annotation file "
                                 f"{meta.get('json_file')!r}, images {meta.get('image_root')!r}); pick another name")
            names.append(name)
            continue
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f"{key}: dataset {name!r}: annotation file not found: {json_file}")
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"{key}: dataset {name!r}: image folder not found: {image_root}")
        register_coco_instances(name, json_file, image_root)
        names.append(name)
    return names
