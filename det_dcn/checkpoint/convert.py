"""Checkpoints of other frameworks -> det_dcn: one converter module per source, this module names them.

=============== ======================================================= =============================================
source          converter                                               input
=============== ======================================================= =============================================
torchvision     convert_torchvision.convert_torchvision                 ImageNet ResNet or fasterrcnn_resnet50_fpn
detectron2      convert_detectron2.convert_detectron2                   detectron2 model (model-zoo .pkl or .pth)
detectron2-c2   convert_detectron2.convert_detectron2_c2                Caffe2-format ImageNet backbone (R-50.pkl)
mmdet           convert_mmdet.convert_mmdet                             mmdetection 2.x / 3.x Faster R-CNN
=============== ======================================================= =============================================

Each returns (det_dcn state dict, unmatched keys); convert_common has what they share (safe file reading, key
renaming, the torchvision-style ResNet layout). The torchvision names stay importable from here.
"""

from typing import Callable, Dict, Tuple

from .convert_common import Converted, StateDict
from .convert_detectron2 import convert_detectron2, convert_detectron2_c2
from .convert_mmdet import convert_mmdet
from .convert_torchvision import (  # noqa: F401  (public names of this module before the split)
    COCO_2017_CATEGORY_IDS, convert_torchvision, convert_torchvision_faster_rcnn, convert_torchvision_resnet,
    detect_torchvision_kind, keep_torchvision_classes, move_background_last,
)

# source -> (converter, what it reads); torchvision has its own entry point (it detects the kind, --coco-80).
CONVERTERS: Dict[str, Tuple[Callable[[StateDict], Converted], str]] = {
    "detectron2": (convert_detectron2, "detectron2 model"),
    "detectron2-c2": (convert_detectron2_c2, "Caffe2-format ImageNet backbone"),
    "mmdet": (convert_mmdet, "mmdetection Faster R-CNN"),
}
