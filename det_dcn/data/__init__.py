"""Datasets, per-image mapping, samplers and loaders.

Public API: DatasetCatalog, MetadataCatalog, register_coco_instances, register_coco_from_cfg (DATASETS.CUSTOM_COCO),
load_coco_json, build_detection_train_loader, build_detection_test_loader, DatasetMapper, TrainingSampler,
InferenceSampler, read_image.
Importing this package registers the built-in datasets (coco_2017_*, shapes_*). The dataset dict format is in
det_dcn/data/coco.py's docstring; what the mapper makes of it in det_dcn/data/mapper.py's.
"""

from .build import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from .builtin import datasets_root, register_all_builtin
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .coco import load_coco_json, register_coco_from_cfg, register_coco_instances
from .detection_utils import BadDataError, read_image
from .mapper import DatasetMapper
from .samplers import AspectRatioGroupedBatchSampler, InferenceSampler, TrainingSampler
from .train_batches import TrainDataLoader

register_all_builtin()

__all__ = [
    "AspectRatioGroupedBatchSampler", "BadDataError", "DatasetCatalog", "DatasetMapper", "InferenceSampler",
    "Metadata", "MetadataCatalog", "TrainDataLoader", "TrainingSampler", "build_detection_test_loader",
    "build_detection_train_loader", "datasets_root", "get_detection_dataset_dicts", "load_coco_json",
    "read_image", "register_all_builtin", "register_coco_from_cfg", "register_coco_instances",
]
