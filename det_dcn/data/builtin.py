"""Built-in dataset names: coco_2017_train / coco_2017_val, shapes_train / shapes_val and detectron2's Pascal VOC
names (voc_2007_{trainval,train,val,test}, voc_2012_{trainval,train,val}).

They live under the datasets root, ``$DET_DCN_DATASETS`` (default ``./datasets``), read when det_dcn.data is
imported (call ``register_all_builtin(root)`` to point them elsewhere later)::

    $DET_DCN_DATASETS/coco/annotations/instances_{train,val}2017.json
    $DET_DCN_DATASETS/coco/{train,val}2017/*.jpg
    $DET_DCN_DATASETS/shapes/annotations/instances_{train,val}.json   (generated on first use)
    $DET_DCN_DATASETS/shapes/{train,val}/*.png
    $DET_DCN_DATASETS/VOC{2007,2012}/{Annotations,JPEGImages,ImageSets/Main}
"""

import os
from typing import Optional

from . import shapes
from .catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json
from .voc import VOC_BUILTIN_SPLITS, register_pascal_voc

ENV_VAR = "DET_DCN_DATASETS"

# COCO 2017 categories: (id, name), ids as in the official annotation files (with gaps).
COCO_CATEGORIES = [
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
]

_COCO_SPLITS = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
}
_SHAPES_SPLITS = {"shapes_train": "train", "shapes_val": "val"}


def datasets_root() -> str:
    return os.environ.get(ENV_VAR, "./datasets")


def _missing(name: str, what: str, path: str, root: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"Dataset {name!r}: {what} not found: {path}. Built-in datasets are read from the datasets root "
        f"{root!r} (set by the environment variable {ENV_VAR}, default ./datasets) in the standard COCO layout "
        f"<root>/coco/annotations/instances_{{train,val}}2017.json and <root>/coco/{{train,val}}2017/. "
        f"Put COCO there or run with {ENV_VAR}=/path/to/datasets."
    )


def _load_coco_2017(name: str, root: str):
    image_rel, json_rel = _COCO_SPLITS[name]
    json_file, image_root = os.path.join(root, json_rel), os.path.join(root, image_rel)
    if not os.path.isfile(json_file):
        raise _missing(name, "annotation file", json_file, root)
    if not os.path.isdir(image_root):
        raise _missing(name, "image folder", image_root, root)
    return load_coco_json(json_file, image_root, name)


def _load_shapes(name: str, root: str):
    split = _SHAPES_SPLITS[name]
    shapes_root = os.path.join(root, "shapes")
    shapes.ensure_shapes(shapes_root)  # both splits, so a later evaluation does not stop to generate
    return load_coco_json(shapes.json_path(shapes_root, split), shapes.image_dir(shapes_root, split), name)


def register_all_builtin(root: Optional[str] = None) -> None:
    """(Re-)register the built-in names for datasets under ``root`` (default: ``$DET_DCN_DATASETS``)."""
    root = datasets_root() if root is None else os.fspath(root)
    coco_meta = {
        "thing_classes": [n for _, n in COCO_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {cid: i for i, (cid, _) in enumerate(COCO_CATEGORIES)},
        "evaluator_type": "coco",
    }
    for name, (image_rel, json_rel) in _COCO_SPLITS.items():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda n=name: _load_coco_2017(n, root))
        MetadataCatalog.get(name).set(json_file=os.path.join(root, json_rel),
                                      image_root=os.path.join(root, image_rel), **coco_meta)
    shapes_meta = {
        "thing_classes": list(shapes.CLASSES),
        "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(shapes.CLASSES))},
        "evaluator_type": "coco",
    }
    for name, split in _SHAPES_SPLITS.items():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda n=name: _load_shapes(n, root))
        MetadataCatalog.get(name).set(json_file=shapes.json_path(os.path.join(root, "shapes"), split),
                                      image_root=shapes.image_dir(os.path.join(root, "shapes"), split),
                                      **shapes_meta)
    for name, (dirname, split, year) in VOC_BUILTIN_SPLITS.items():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        register_pascal_voc(name, os.path.join(root, dirname), split, year)
