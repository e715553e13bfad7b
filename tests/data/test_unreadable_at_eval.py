"""A broken image must not cost the run: named at training start, left out of detections and ground truth."""

import json
import os

import cv2
import numpy as np
import pytest

from det_dcn.data.detection_utils import BadDataError, check_image_file, read_image
from det_dcn.evaluation.left_out import UNREADABLE_KEY, restrict_gt_image_ids, split_unreadable

from test_custom_coco import train_tool_on_custom_coco, write_boxes_dataset


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def test_truncated_jpeg_is_refused_by_every_check(tmp_path):
    path = str(tmp_path / "t.jpg")
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    check_image_file(path)
    check_image_file(path, full_decode=True)
    _truncate(path)
    assert cv2.imread(path) is not None  # OpenCV decodes it (grey-filled): the reason for the end-marker check
    for full in (False, True):
        with pytest.raises(BadDataError, match="Truncated JPEG.*t.jpg"):
            check_image_file(path, full_decode=full)
    with pytest.raises(BadDataError, match="t.jpg"):
        read_image(path)


def test_left_out_helpers():
    batch = [{"image_id": 1, "image": 0}, {"image_id": 2, "file_name": "b.jpg", UNREADABLE_KEY: "bad"}]
    readable, bad = split_unreadable(batch)
    assert [d["image_id"] for d in readable] == [1] and [d["image_id"] for d in bad] == [2]
    assert restrict_gt_image_ids([1, 2, 3], [1], [2]) == {1}


def test_train_tool_survives_a_truncated_eval_image(tmp_path):
    json_file, images = write_boxes_dataset(str(tmp_path / "data"))
    jpg = os.path.join(images, "broken.jpg")
    cv2.imwrite(jpg, np.full((64, 64, 3), 100, np.uint8))
    _truncate(jpg)
    coco = json.load(open(json_file))
    coco["images"].append({"id": 99, "file_name": "broken.jpg", "height": 64, "width": 64})
    coco["annotations"].append({"id": 999, "image_id": 99, "category_id": 5, "bbox": [1, 1, 20, 20], "area": 400,
                                "iscrowd": 0})
    json.dump(coco, open(json_file, "w"))
    out = tmp_path / "out"
    proc = train_tool_on_custom_coco("boxes_b", json_file, images, out)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Traceback" not in log
    start = log.index("Checked the 7 images of evaluation dataset 'boxes_b'")
    assert "broken.jpg" in log[:start] and "1 unreadable" in log[start:start + 200]  # named before training
    assert "Left out of evaluation (unreadable):" in log
    assert "1 images left out (unreadable):" in log and "AP50" in log
    dets = json.load(open(out / "inference" / "boxes_b" / "coco_instances_results.json"))
    assert dets and 99 not in {d["image_id"] for d in dets}
