"""Class names for a config: what demo and visualisation tools print next to a class id."""

import sys
from typing import List, Optional

from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.data.build import register_custom_from_cfg


def class_names_from_cfg(cfg) -> Optional[List[str]]:
    """``thing_classes`` of DATASETS.TEST[0] (then the other TEST, then TRAIN datasets) when that dataset is
    registered (built in, or DATASETS.CUSTOM_COCO / CUSTOM_VOC) and has them; None otherwise (callers then show
    "class <i>"). A custom dataset learns its names when loaded (from the JSON's categories, or the XML files when
    CUSTOM_VOC gives none), so one without names yet is loaded here, as training did.

    Names whose count differs from MODEL.ROI_HEADS.NUM_CLASSES belong to another dataset than the model was
    trained on: they are not used (a warning says so) rather than put wrong names on boxes.
    """
    custom = set(register_custom_from_cfg(cfg))
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        if name in DatasetCatalog.list():
            if name in custom and MetadataCatalog.get(name).get("thing_classes") is None:
                DatasetCatalog.get(name)  # loading sets them
            names = MetadataCatalog.get(name).get("thing_classes")
            if not names:
                continue
            if len(names) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
                print(f"warning: dataset {name!r} has {len(names)} classes but MODEL.ROI_HEADS.NUM_CLASSES is "
                      f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}; labelling boxes 'class <i>'", file=sys.stderr)
                return None
            return [str(n) for n in names]
    return None
