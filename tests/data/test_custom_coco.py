"""DATASETS.CUSTOM_COCO: COCO-format datasets registered from the config, so tools/train.py needs no driver script."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from det_dcn.config import get_cfg
from det_dcn.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader, register_coco_from_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_boxes_dataset(root, n=6):
    """n 64x64 images, each with one bright square (class "square") and one dark bar (class "bar")."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rng = np.random.default_rng(0)
    images, annos = [], []
    for i in range(n):
        img = rng.integers(90, 150, (64, 64, 3), dtype=np.uint8)
        x, y = int(rng.integers(2, 30)), int(rng.integers(2, 30))
        img[y:y + 20, x:x + 20] = 250
        img[50:58, 4:60] = 10
        cv2.imwrite(os.path.join(root, "images", f"{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 64, "width": 64})
        annos.append({"id": 2 * i + 1, "image_id": i + 1, "category_id": 5, "bbox": [x, y, 20, 20], "iscrowd": 0,
                      "area": 400})
        annos.append({"id": 2 * i + 2, "image_id": i + 1, "category_id": 9, "bbox": [4, 50, 56, 8], "iscrowd": 0,
                      "area": 448})
    json_file = os.path.join(root, "ann.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annos,
                   "categories": [{"id": 5, "name": "square"}, {"id": 9, "name": "bar"}]}, f)
    return json_file, os.path.join(root, "images")


def _cfg(*entries):
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.CUSTOM_COCO", [list(e) for e in entries], "DATALOADER.NUM_WORKERS", 0])
    return cfg


def test_register_from_cfg_and_errors(tmp_path):
    json_file, images = write_boxes_dataset(str(tmp_path))
    try:
        cfg = _cfg(("my_ds", json_file, images))
        assert register_coco_from_cfg(cfg) == ["my_ds"]
        assert register_coco_from_cfg(cfg) == ["my_ds"]  # idempotent
        batches = list(build_detection_test_loader(cfg, "my_ds"))
        assert MetadataCatalog.get("my_ds").thing_classes == ["square", "bar"]
        assert len(batches) == 6 and batches[0][0]["image"].shape == (3, 64, 64)
        with pytest.raises(ValueError, match=r"DATASETS.CUSTOM_COCO: dataset 'my_ds' is already registered"):
            register_coco_from_cfg(_cfg(("my_ds", json_file, str(tmp_path))))
        with pytest.raises(ValueError, match=r"DATASETS.CUSTOM_COCO: dataset 'shapes_val' is already registered"):
            register_coco_from_cfg(_cfg(("shapes_val", json_file, images)))
    finally:
        DatasetCatalog.remove("my_ds")
        MetadataCatalog.remove("my_ds")
    with pytest.raises(FileNotFoundError, match=r"DATASETS.CUSTOM_COCO: dataset 'x': annotation file not found: .*no"):
        register_coco_from_cfg(_cfg(("x", str(tmp_path / "no.json"), images)))
    with pytest.raises(FileNotFoundError, match=r"DATASETS.CUSTOM_COCO: dataset 'x': image folder not found"):
        register_coco_from_cfg(_cfg(("x", json_file, str(tmp_path / "nope"))))
    for bad in (["x", json_file], ["x", json_file, ""]):
        cfg = get_cfg()
        cfg.merge_from_list(["DATASETS.CUSTOM_COCO", [bad]])
        with pytest.raises(ValueError, match=r"CUSTOM_COCO: each entry must be \[name, json_file, image_root\]"):
            register_coco_from_cfg(cfg)
    assert "x" not in DatasetCatalog


def train_tool_on_custom_coco(name, json_file, images, out):
    """tools/train.py in a subprocess: the tiny test model, 2 iterations on DATASETS.CUSTOM_COCO ``name``, evaluated on
    the same dataset. Returns the CompletedProcess (text stdout / stderr)."""
    return subprocess.run(
        [sys.executable, "tools/train.py", "--config-file", "tests/engine/tiny_faster_rcnn.yaml",
         "DATASETS.CUSTOM_COCO", f"[['{name}', '{json_file}', '{images}']]",
         "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
         "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
    )


def test_train_tool_trains_and_evaluates_a_custom_dataset(tmp_path):
    json_file, images = write_boxes_dataset(str(tmp_path / "data"))
    out = tmp_path / "out"
    proc = train_tool_on_custom_coco("boxes_train", json_file, images, out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.isfile(out / "model_final.pth")
    assert "AP50" in proc.stdout and "square" in proc.stdout + proc.stderr
