"""Helpers for the model tests: tiny configs, synthetic images with boxes, and a stand-in backbone."""

import glob
import os
from typing import Dict, List, Optional

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from det_dcn.config import get_cfg
from det_dcn.testing import calibrate_frozen_bn  # noqa: F401  (re-exported for the model tests)
from det_dcn.modeling.backbone import Backbone

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Shrinks any shipped config to something a shared 2-core CPU runs in about a second: narrow ResNet/FPN, small
# heads, few proposals. The canonical pooler box size is lowered so that RoIs of a 128-px image reach every FPN
# level (and so every level's deformable offset branch is exercised).
TINY_OVERRIDES = [
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
    "MODEL.FPN.OUT_CHANNELS", 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 32,
    "MODEL.ROI_BOX_HEAD.DEFORM_POOL_FC_DIM", 16,
    "MODEL.ROI_BOX_HEAD.POOLER_CANONICAL_BOX_SIZE", 28,
    "MODEL.ROI_HEADS.NUM_CLASSES", 3,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 64,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 300,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 200,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 300,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 100,
    "INPUT.MIN_SIZE_TEST", 96,
    "INPUT.MAX_SIZE_TEST", 128,
]


@pytest.fixture
def single_thread():
    """Run a test with one intra-op thread (restored afterwards).

    On a shared, oversubscribed CPU, two spinning OpenMP threads made a tiny model's training step 10-20x slower
    than one thread (measured: 0.1 s vs 1-2 s per step); models this small gain nothing from a second thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def all_config_files() -> List[str]:
    return sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))


# Without a config file the tests start from the defaults, which are detectron2's; these name the components the
# tests were written for (det_dcn's defaults before they became detectron2's).
DET_DCN_COMPONENTS = [
    "MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone",
    "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
    "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead",
    "INPUT.RESIZE_STYLE", "torchvision",
]


def tiny_cfg(config_file: Optional[str] = None, overrides: Optional[list] = None):
    cfg = get_cfg()
    if config_file is not None:
        cfg.merge_from_file(config_file)
    else:
        cfg.merge_from_list(DET_DCN_COMPONENTS)
    cfg.merge_from_list(TINY_OVERRIDES + list(overrides or []))
    if cfg.MODEL.RESNETS.NORM == "GN":  # GroupNorm's 32 groups need channel counts divisible by 32
        cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 32
    return cfg


def synthetic_batch(num_images: int = 2, size=(96, 128), seed: int = 0) -> List[Dict]:
    """Images with bright rectangles (class = rectangle colour) on noise; boxes of 12-90 px."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for _ in range(num_images):
        img = torch.randint(0, 60, (3, h, w), generator=g, dtype=torch.uint8)
        boxes, classes = [], []
        for side in (12, 24, 48, 90):
            side = min(side, h - 2, w - 2)
            x1 = int(torch.randint(0, w - side, (1,), generator=g))
            y1 = int(torch.randint(0, h - side, (1,), generator=g))
            c = int(torch.randint(0, 3, (1,), generator=g))
            img[c, y1:y1 + side, x1:x1 + side] = 250
            boxes.append([x1, y1, x1 + side, y1 + side])
            classes.append(c)
        batch.append({"image": img, "boxes": torch.tensor(boxes, dtype=torch.float32),
                      "classes": torch.tensor(classes, dtype=torch.int64)})
    return batch


class TinyBackbone(Backbone):
    """Two strided convs: "s8" (stride 8) and "s16" (stride 16), ``channels`` each. A stand-in for plugin tests."""

    def __init__(self, channels: int = 16, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=8, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self._out_features = ["s8", "s16"]
        self._out_feature_channels = {"s8": channels, "s16": channels}
        self._out_feature_strides = {"s8": 8, "s16": 16}

    @property
    def size_divisibility(self) -> int:
        return 16

    def forward(self, x):
        s8 = F.relu(self.conv1(x))
        return {"s8": s8, "s16": F.relu(self.conv2(s8))}
