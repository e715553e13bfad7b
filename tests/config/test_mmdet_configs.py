"""configs/mmdet: mmdetection's Faster R-CNN inference settings, and its RoI-to-level rule."""

import glob
import os

import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.modeling.roi_heads.poolers import assign_boxes_to_levels

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MMDET = sorted(glob.glob(os.path.join(REPO, "configs", "mmdet", "faster_rcnn_*.yaml")))


def test_mmdet_level_mapper_is_mmdetections_rule():
    """mmdetection's SingleRoIExtractor.map_roi_levels: floor(log2(sqrt(area) / 56 + 1e-6)), clamped to 0..3."""
    sides = torch.tensor([1.0, 55.9, 56.0, 111.99, 112.0, 112.00001, 223.9, 224.0, 447.9, 448.0, 1000.0, 3000.0])
    sides = torch.cat([sides, torch.rand(200) * 900 + 1])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    ours = assign_boxes_to_levels([boxes], 2, 5, 224.0, 4, mapper="mmdet")
    theirs = torch.floor(torch.log2(sides / 56 + 1e-6)).clamp(min=0, max=3).long()
    assert torch.equal(ours, theirs)
    # The rules differ only right at the boundaries (e.g. a side of exactly 112 - tiny).
    d2 = assign_boxes_to_levels([boxes], 2, 5, 224.0, 4, mapper="detectron2")
    assert (d2 != ours).sum() <= 3


@pytest.mark.parametrize("path", MMDET, ids=os.path.basename)
def test_mmdet_configs(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.INPUT.FORMAT == "RGB" and cfg.INPUT.RESIZE_STYLE == "mmdet" and cfg.INPUT.SIZE_DIVISIBILITY == 32
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (800, 1333)
    assert cfg.MODEL.PIXEL_STD == [58.395, 57.12, 57.375] and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False
    assert cfg.MODEL.RPN.NMS_ON_SIGMOID and cfg.MODEL.RPN.PRE_NMS_TOPK_TEST == 1000
    assert cfg.MODEL.ROI_BOX_HEAD.POOLER_LEVEL_MAPPER == "mmdet" and cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO == 0
    pool = {"dpool": "DeformRoIPool", "mdpool": "ModulatedDeformRoIPool"}
    kind = next((k for k in pool if f"_{k}_" in path), None)
    assert cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE == (pool[kind] if kind else "ROIAlignV2")
