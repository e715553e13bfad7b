"""A tiny deformable Faster R-CNN checkpoint + config for the demo / visualisation tool tests.

Narrow ResNet-18-FPN (8-channel stem, 16-channel FPN), 64 px test images, deformable 3x3 in res3-res5 and a
deformable RoI pooler. The zero-initialised offset branches are perturbed so that offsets are non-zero (a trained
model's are), and the score threshold is 0 so that a random model still yields detections.
"""

import os

import cv2
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = """\
_BASE_: "{base}"
MODEL:
  DEVICE: "cpu"
  WEIGHTS: "{weights}"
  RESNETS:
    DEPTH: 18
    STEM_OUT_CHANNELS: 8
    RES2_OUT_CHANNELS: 8
    DEFORM_ON_PER_STAGE: [False, True, True, True]
    DEFORM_MODULATED: {modulated}
  FPN:
    OUT_CHANNELS: 16
  RPN:
    PRE_NMS_TOPK_TEST: 100
    POST_NMS_TOPK_TEST: 30
  ROI_HEADS:
    NUM_CLASSES: 6
    SCORE_THRESH_TEST: 0.0
  ROI_BOX_HEAD:
    POOLER_TYPE: "{pooler}"
    FC_DIM: 32
    DEFORM_POOL_FC_DIM: 32
INPUT:
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 128
DATASETS:
  TRAIN: ("shapes_train",)
  TEST: ("shapes_val",)
TEST:
  DETECTIONS_PER_IMAGE: 5
"""


def write_tiny_model(folder: str, modulated: bool = False, seed: int = 0) -> str:
    """Write ``folder``/tiny.yaml and its checkpoint ``folder``/tiny.pth; returns the config path."""
    from det_dcn.checkpoint import DetectionCheckpointer
    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model

    os.makedirs(folder, exist_ok=True)
    weights = os.path.join(folder, "tiny.pth")
    cfg_path = os.path.join(folder, "tiny.yaml")
    pooler = "ModulatedDeformRoIPool" if modulated else "DeformRoIPool"
    with open(cfg_path, "w") as f:
        f.write(_CONFIG.format(base=os.path.join(REPO, "configs", "Base-RCNN-FPN.yaml"), weights=weights,
                               modulated=modulated, pooler=pooler))
    cfg = get_cfg()
    cfg.merge_from_file(cfg_path)
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, m in model.named_modules():
            if hasattr(m, "conv_offset"):  # deformable conv: position-dependent offsets of about a cell
                m.conv_offset.weight.normal_(0.0, 0.05)
                m.conv_offset.bias.normal_(0.0, 0.7)
            if hasattr(m, "offset_fc"):  # deformable RoI pool: bins move by ~gamma * 0.5 RoI size
                m.offset_fc[-1].weight.normal_(0.0, 0.02)
                m.offset_fc[-1].bias.normal_(0.0, 0.5)
            if hasattr(m, "mask_fc"):
                m.mask_fc[2].bias.normal_(0.0, 1.0)
    DetectionCheckpointer(model, save_dir=folder).save("tiny")
    return cfg_path


def write_test_images(folder: str):
    """Two small images with coloured shapes (64x80 jpg, 72x64 png) and a corrupt .jpg; returns the 3 paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    a = rng.integers(60, 120, (64, 80, 3), dtype=np.uint8)
    cv2.circle(a, (25, 30), 14, (0, 0, 230), -1)
    cv2.rectangle(a, (45, 10), (75, 40), (230, 120, 0), -1)
    b = rng.integers(140, 200, (72, 64, 3), dtype=np.uint8)
    cv2.fillPoly(b, [np.array([[10, 60], [50, 60], [30, 15]], np.int32)], (20, 160, 20))
    paths = [os.path.join(folder, "scene_a.jpg"), os.path.join(folder, "scene_b.png"),
             os.path.join(folder, "corrupt.jpg")]
    cv2.imwrite(paths[0], a)
    cv2.imwrite(paths[1], b)
    with open(paths[2], "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a complete JPEG file")
    return paths


def tiny_setup(tmp_path_factory, name: str):
    """(root folder, tiny model config, test images) in a fresh temporary folder ``name``."""
    root = tmp_path_factory.mktemp(name)
    return root, write_tiny_model(str(root / "model")), write_test_images(str(root / "images"))
