"""Pascal VOC XML annotations: the standard VOC2007 / VOC2012 layout and LabelImg-style folders.

Both give the dataset dicts of det_dcn/data/coco.py, with image ids the file stems (strings, as detectron2) and on
every annotation also ``"difficult": 0 or 1``. Difficult boxes are kept: training uses them as ordinary boxes
(as detectron2 does); the VOC evaluator ignores them. Boxes follow detectron2's convention: VOC's 1-based
inclusive corners become 0-based by subtracting 1 from xmin and ymin only.

Metadata: ``thing_classes``, ``evaluator_type="pascal_voc"``, ``year`` (2007: 11-point AP; 2012 and custom
folders: the area under the curve), ``dirname``, ``split``.

What a file may get wrong, and what happens (never silently):

* malformed XML, a missing ``<name>`` / ``<bndbox>`` coordinate, a non-numeric or non-finite number, a
  ``<difficult>`` other than 0/1, a class not among the given class names: ``ValueError`` naming the file, the
  field and the value (a typo in a class list would otherwise drop boxes without notice);
* the image of an XML is missing or its header unreadable: the XML is skipped, counted, the first files named;
* ``<size>`` missing or 0 (LabelImg and CVAT write 0 sometimes): the size is read from the image header;
  ``<size>`` that disagrees with the image: the image wins, counted and named in a warning;
* a box beyond the image is clipped, one with no area left is dropped; both counted in a warning.
"""

import functools
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence, Tuple

from .catalog import DatasetCatalog, MetadataCatalog
from .detection_utils import BadDataError, image_size

logger = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CUSTOM_VOC_YEAR = 2012  # custom folders are scored with VOC2012's area rule (not 2007's 11-point AP)
DEFAULT_VAL_EVERY = 5


def natural_key(name: str) -> list:
    """Sort key that orders digit runs by value: raccoon-2 before raccoon-10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _number(xml_file: str, field: str, text: Optional[str]) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{xml_file}: <{field}> is {text!r}, expected a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{xml_file}: <{field}> is {text!r}, expected a finite number")
    return value


def parse_voc_xml(xml_file: str) -> dict:
    """One VOC XML -> {"filename": str or None, "width": int, "height": int (0 when absent),
    "objects": [{"name": str, "bbox": [xmin, ymin, xmax, ymax] as written (1-based), "difficult": 0/1}]}."""
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{xml_file}: malformed XML: {e}") from None
    except OSError as e:
        raise ValueError(f"{xml_file}: cannot read: {e}") from None
    size = root.find("size")
    dims = {}
    for key in ("width", "height"):
        text = size.findtext(key) if size is not None else None
        value = _number(xml_file, f"size/{key}", text) if text not in (None, "") else 0.0
        if value < 0 or value != int(value):
            raise ValueError(f"{xml_file}: <size/{key}> is {text!r}, expected a non-negative integer")
        dims[key] = int(value)
    objects = []
    for i, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"{xml_file}: <object> #{i} has no <name>")
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{xml_file}: <object> #{i} ({name!r}) has no <bndbox>")
        bbox = [_number(xml_file, f"object #{i}/bndbox/{k}", box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        difficult_text = (obj.findtext("difficult") or "0").strip()
        if difficult_text not in ("0", "1"):
            raise ValueError(f"{xml_file}: <object> #{i}: <difficult> is {difficult_text!r}, expected 0 or 1")
        objects.append({"name": name, "bbox": bbox, "difficult": int(difficult_text)})
    filename = (root.findtext("filename") or "").strip() or None
    return {"filename": filename, **dims, "objects": objects}


class _Problems:
    """Files that were skipped or corrected, by reason; logged as one warning per reason with a count."""

    def __init__(self, source: str):
        self.source, self.files = source, {}

    def add(self, reason: str, detail: str) -> None:
        self.files.setdefault(reason, []).append(detail)

    def log(self) -> None:
        for reason, details in self.files.items():
            shown = "; ".join(details[:5]) + (f"; ... ({len(details)} in all)" if len(details) > 5 else "")
            logger.warning(f"{self.source}: {len(details)} {reason}: {shown}")


def _to_dicts(entries: Sequence[Tuple[str, str, Optional[str], dict]], class_names: Sequence[str],
              source: str) -> List[dict]:
    """(image id, XML file, image file or None, parsed XML) -> dataset dicts, with the checks of the module doc."""
    index = {n: i for i, n in enumerate(class_names)}
    problems = _Problems(source)
    dicts, num_boxes = [], 0
    for image_id, xml_file, image_file, ann in entries:
        if image_file is None:
            problems.add("XML files without an image were skipped", xml_file)
            continue
        try:
            w, h = image_size(image_file)
        except BadDataError as e:
            problems.add("XML files whose image cannot be read were skipped", str(e))
            continue
        if (ann["width"], ann["height"]) == (0, 0):
            pass  # not given: the header is the size
        elif (ann["width"], ann["height"]) != (w, h):
            problems.add("XML files whose <size> disagrees with the image (the image's size is used)",
                         f"{xml_file} says {ann['width']}x{ann['height']}, {image_file} is {w}x{h}")
        annos = []
        for obj in ann["objects"]:
            if obj["name"] not in index:
                raise ValueError(f"{xml_file}: class {obj['name']!r} is not among the class names {list(class_names)}")
            num_boxes += 1
            x1, y1, x2, y2 = obj["bbox"]
            x1, y1 = x1 - 1.0, y1 - 1.0  # detectron2's convention: 1-based inclusive -> 0-based
            clipped = [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                problems.add("boxes with no area inside the image were dropped", f"{xml_file} {obj['bbox']}")
                continue
            if clipped != [x1, y1, x2, y2]:
                problems.add("boxes beyond the image were clipped", f"{xml_file} {obj['bbox']}")
            annos.append({"bbox": clipped, "category_id": index[obj["name"]], "iscrowd": 0,
                          "difficult": obj["difficult"]})
        dicts.append({"file_name": image_file, "height": h, "width": w, "image_id": image_id, "annotations": annos})
    problems.log()
    logger.info(f"{source}: {len(dicts)} images, {sum(len(d['annotations']) for d in dicts)} boxes "
                f"(of {num_boxes}), {len(class_names)} classes")
    return dicts


def load_voc_instances(dirname: str, split: str, class_names: Sequence[str] = VOC_CLASSES) -> List[dict]:
    """The standard layout: ids from ``dirname/ImageSets/Main/<split>.txt``, ``Annotations/<id>.xml``,
    ``JPEGImages/<id>.jpg``."""
    list_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"VOC split file not found: {list_file} (expected the layout <dir>/ImageSets/Main/"
                                f"<split>.txt, <dir>/Annotations/<id>.xml, <dir>/JPEGImages/<id>.jpg)")
    with open(list_file) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    entries = []
    for image_id in ids:
        xml_file = os.path.join(dirname, "Annotations", f"{image_id}.xml")
        if not os.path.isfile(xml_file):
            raise FileNotFoundError(f"{list_file} lists {image_id!r}, but {xml_file} does not exist")
        image_file = os.path.join(dirname, "JPEGImages", f"{image_id}.jpg")
        entries.append((image_id, xml_file, image_file if os.path.isfile(image_file) else None, parse_voc_xml(xml_file)))
    return _to_dicts(entries, class_names, f"VOC {dirname} {split}")


def _find_image(image_dir: str, xml_file: str, filename: Optional[str]) -> Optional[str]:
    """``<filename>`` in ``image_dir`` (as written, then its base name), else the XML's stem with an image
    extension: LabelImg writes <filename>, but folders get renamed and files converted."""
    candidates = [os.path.join(image_dir, filename), os.path.join(image_dir, os.path.basename(filename))] if filename else []
    stem = os.path.splitext(os.path.basename(xml_file))[0]
    candidates += [os.path.join(image_dir, stem + ext) for e in IMAGE_EXTENSIONS for ext in (e, e.upper())]
    return next((c for c in candidates if os.path.isfile(c)), None)


def split_indices(num: int, subset: str, val_every: int, fold: Optional[int] = None) -> List[int]:
    """Positions (in natural order of the XML names) in ``subset``: "val" every ``val_every``-th from position
    ``fold`` (0-based; default ``val_every - 1``: the ``val_every``-th, the 2*``val_every``-th, ...), "train" the
    rest, "all" all. The ``val_every`` folds' "val" subsets partition the folder (cross-validation)."""
    if subset == "all":
        return list(range(num))
    fold = val_every - 1 if fold is None else fold
    return [i for i in range(num) if (i % val_every == fold) == (subset == "val")]


def load_voc_folder(annotation_dir: str, image_dir: str, class_names: Optional[Sequence[str]] = None,
                    subset: str = "all", val_every: int = DEFAULT_VAL_EVERY,
                    dataset_name: Optional[str] = None, fold: Optional[int] = None) -> List[dict]:
    """A folder of VOC XMLs (LabelImg: beside the images or in their own folder), one per image.

    ``class_names`` None: the sorted set of names in ALL the folder's XMLs (so train and val agree), logged.
    ``subset``: "all", "train" or "val" of ``fold`` (see ``split_indices``). With ``dataset_name``, its metadata gets
    ``thing_classes``.
    """
    xml_names = sorted((n for n in os.listdir(annotation_dir) if n.lower().endswith(".xml")), key=natural_key)
    if not xml_names:
        raise FileNotFoundError(f"No .xml annotation files in {annotation_dir}")
    xml_files = [os.path.join(annotation_dir, n) for n in xml_names]
    parsed = [parse_voc_xml(f) for f in xml_files]
    source = f"VOC folder {annotation_dir}"
    if class_names is None:
        class_names = sorted({o["name"] for p in parsed for o in p["objects"]})
        if not class_names:
            raise ValueError(f"{source}: no <object> in any XML, so there are no class names")
        logger.info(f"{source}: classes from the files (sorted): {class_names}")
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(thing_classes=list(class_names))
    keep = split_indices(len(xml_files), subset, val_every, fold)
    if subset != "all":
        first = (val_every - 1 if fold is None else fold) + 1
        logger.info(f"{source}: split '{subset}' = {len(keep)} of {len(xml_files)} XML files (val: every "
                    f"{val_every}-th in natural name order, starting with XML number {first})")
    entries = [(os.path.splitext(xml_names[i])[0], xml_files[i], _find_image(image_dir, xml_files[i],
                                                                               parsed[i]["filename"]), parsed[i])
               for i in keep]
    return _to_dicts(entries, class_names, f"{source} ({subset})")


def register_pascal_voc(name: str, dirname: str, split: str, year: int,
                        class_names: Sequence[str] = VOC_CLASSES) -> None:
    """Register a dataset in the standard VOC layout (loading happens on ``DatasetCatalog.get(name)``)."""
    DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, class_names))
    MetadataCatalog.get(name).set(thing_classes=list(class_names), evaluator_type="pascal_voc", year=year,
                                  dirname=dirname, split=split)


def _parse_custom_voc_entry(entry) -> Tuple[str, str, str, Optional[List[str]], int, Optional[int]]:
    key = "DATASETS.CUSTOM_VOC"
    form = ("[name, annotation_dir, image_dir] optionally followed by class_names, val_every and fold, e.g. "
            "[name, annotation_dir, image_dir, class_names, val_every, fold]")
    if not (isinstance(entry, (list, tuple)) and 3 <= len(entry) <= 6
            and all(isinstance(v, str) and v for v in entry[:3])):
        raise ValueError(f"{key}: each entry must be {form}, got {entry!r}")
    name, annotation_dir, image_dir = entry[:3]
    names = entry[3] if len(entry) > 3 else ""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == len(names)):
        raise ValueError(f"{key}: entry {name!r}: class_names must be a list of distinct names or a "
                         f"comma-separated string ('' = from the files), got {entry[3]!r}")
    val_every = entry[4] if len(entry) > 4 else DEFAULT_VAL_EVERY
    if isinstance(val_every, bool) or not isinstance(val_every, int) or val_every < 2:
        raise ValueError(f"{key}: entry {name!r}: val_every must be an integer >= 2, got {val_every!r}")
    fold = entry[5] if len(entry) > 5 else None
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < val_every):
        raise ValueError(f"{key}: entry {name!r}: fold must be an integer in [0, val_every) = [0, {val_every}), "
                         f"got {fold!r}")
    return name, annotation_dir, image_dir, (list(names) or None), val_every, fold


def register_voc_from_cfg(cfg) -> List[str]:
    """Register the folders of ``DATASETS.CUSTOM_VOC``; each entry registers ``<name>`` (all images),
    ``<name>_train`` and ``<name>_val`` (every ``val_every``-th XML in natural name order, from position ``fold``).
    Returns the names.
    Idempotent like ``register_coco_from_cfg``; missing folders are reported here, before training starts."""
    key = "DATASETS.CUSTOM_VOC"
    registered = []
    for entry in cfg.DATASETS.CUSTOM_VOC:
        name, annotation_dir, image_dir, class_names, val_every, fold = _parse_custom_voc_entry(entry)
        for what, path in (("annotation folder", annotation_dir), ("image folder", image_dir)):
            if not os.path.isdir(path):
                raise FileNotFoundError(f"{key}: dataset {name!r}: {what} not found: {path}")
        spec = {"dirname": annotation_dir, "image_root": image_dir, "custom_voc_classes": class_names,
                "val_every": val_every, "fold": fold}
        for subset, full in (("all", name), ("train", f"{name}_train"), ("val", f"{name}_val")):
            if full in DatasetCatalog:
                meta = MetadataCatalog.get(full)
                if {k: meta.get(k) for k in spec} != spec:
                    raise ValueError(f"{key}: dataset {full!r} is already registered (with "
                                     f"{ {k: meta.get(k) for k in spec} }); pick another name")
            else:
                # every value bound now: a closure over the loop's variables would load the last entry's folder
                DatasetCatalog.register(full, functools.partial(
                    load_voc_folder, annotation_dir, image_dir, class_names, subset, val_every, full, fold))
                MetadataCatalog.get(full).set(evaluator_type="pascal_voc", year=CUSTOM_VOC_YEAR, split=subset, **spec)
                if class_names is not None:
                    MetadataCatalog.get(full).set(thing_classes=list(class_names))
            registered.append(full)
    return registered


VOC_BUILTIN_SPLITS: Dict[str, Tuple[str, str, int]] = {
    f"voc_{year}_{split}": (f"VOC{year}", split, year)
    for year, splits in ((2007, ("trainval", "train", "val", "test")), (2012, ("trainval", "train", "val")))
    for split in splits
}
