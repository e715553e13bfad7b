"""Class names for a config: what demo and visualisation tools print next to a class id."""

import sys
from typing import List, Optional

from det_dcn.data import DatasetCatalog, MetadataCatalog, register_coco_from_cfg


def class_names_from_cfg(cfg) -> Optional[List[str]]:
    """``thing_classes`` of DATASETS.TEST[0] (then the other TEST, then TRAIN datasets) when that dataset is
    registered and its metadata has them; None otherwise (callers then show "class <i>").

    Names whose count differs from MODEL.ROI_HEADS.NUM_CLASSES belong to another dataset than the model was
    trained on: they are not used (a warning says so) rather than put wrong names on boxes.
    """
    register_coco_from_cfg(cfg)
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        if name in DatasetCatalog.list():
            names = MetadataCatalog.get(name).get("thing_classes")
            if not names:
                continue
            if len(names) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
                print(f"warning: dataset {name!r} has {len(names)} classes but MODEL.ROI_HEADS.NUM_CLASSES is "
                      f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}; labelling boxes 'class <i>'", file=sys.stderr)
                return None
            return [str(n) for n in names]
    return None
