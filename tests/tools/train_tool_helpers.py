"""A tiny generated shapes dataset and a tiny Faster R-CNN config for end-to-end tests of tools/train.py."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_PY = os.path.join(REPO, "tools", "train.py")

TINY_CONFIG = """\
_BASE_: "{base}"
MODEL:
  DEVICE: "cpu"
  WEIGHTS: ""
  PIXEL_MEAN: [127.5, 127.5, 127.5]
  PIXEL_STD: [64.0, 64.0, 64.0]
  BACKBONE:
    FREEZE_AT: 0
  RESNETS:
    DEPTH: 18
    NORM: "FrozenBN"
    STEM_OUT_CHANNELS: 8
    RES2_OUT_CHANNELS: 8
  FPN:
    OUT_CHANNELS: 16
  ANCHOR_GENERATOR:
    SIZES: [[16], [32], [64], [128], [256]]
  RPN:
    BATCH_SIZE_PER_IMAGE: 32
    PRE_NMS_TOPK_TRAIN: 100
    PRE_NMS_TOPK_TEST: 100
    POST_NMS_TOPK_TRAIN: 32
    POST_NMS_TOPK_TEST: 20
  ROI_HEADS:
    NUM_CLASSES: 6
    BATCH_SIZE_PER_IMAGE: 16
    SCORE_THRESH_TEST: 0.0
  ROI_BOX_HEAD:
    FC_DIM: 32
    POOLER_RESOLUTION: 7
    POOLER_SAMPLING_RATIO: 2
INPUT:
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 96
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 96
DATASETS:
  TRAIN: ("shapes_train",)
  TEST: ("shapes_val",)
DATALOADER:
  NUM_WORKERS: 0
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.01
  WARMUP_ITERS: 2
  STEPS: (3,)
  MAX_ITER: 4
  CHECKPOINT_PERIOD: 2
TEST:
  DETECTIONS_PER_IMAGE: 10
SEED: 5
LOG_PERIOD: 1
"""


def make_tiny_setup(folder: str, num_train: int = 8, num_val: int = 4) -> str:
    """Generate the shapes dataset under ``folder``/datasets/shapes and write ``folder``/tiny.yaml; returns it."""
    from det_dcn.data import shapes

    shapes.ensure_shapes(os.path.join(folder, "datasets", "shapes"), {"train": num_train, "val": num_val},
                         show_progress=False, workers=1)
    path = os.path.join(folder, "tiny.yaml")
    with open(path, "w") as f:
        f.write(TINY_CONFIG.format(base=os.path.join(REPO, "configs", "Base-RCNN-FPN.yaml")))
    return path


def run_train(folder: str, *args: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    """``python tools/train.py --config-file folder/tiny.yaml ARGS`` with the datasets root in ``folder``."""
    env = dict(os.environ, DET_DCN_DATASETS=os.path.join(folder, "datasets"))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    proc = subprocess.run(
        [sys.executable, TRAIN_PY, "--config-file", os.path.join(folder, "tiny.yaml"), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tools/train.py {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc
