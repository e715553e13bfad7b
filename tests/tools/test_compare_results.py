"""tools/compare_results.py on a COCO file and results files the test writes: the table, one model's files joined
(cross-validation folds), and bad files named."""

import json
import os

import cv2
import numpy as np

from det_dcn.evaluation.coco_tables import Detections
from det_dcn.evaluation.results_io import write_coco_results
from det_dcn.evaluation.synthetic import coco_like

from load_tool import TOOLS, load_tool

CONFIG = os.path.join(os.path.dirname(TOOLS), "configs", "quickstart", "faster_rcnn_shapes.yaml")


def _dataset(tmp_path):
    gt, dets = coco_like(num_images=30, num_classes=2, seed=7, classes_without_gt=0, heavy=0)
    (tmp_path / "images").mkdir()
    for im in gt["images"]:
        cv2.imwrite(str(tmp_path / "images" / im["file_name"]), np.zeros((im["height"], im["width"], 3), np.uint8))
    with open(tmp_path / "gt.json", "w") as f:
        json.dump(gt, f)
    return gt, dets


def test_table_and_errors(tmp_path, capsys):
    gt, dets = _dataset(tmp_path)
    loose = dets.bbox.copy()
    loose[:, 2] *= 1.3  # every box 30% too wide
    write_coco_results(str(tmp_path / "a.json"), dets)
    write_coco_results(str(tmp_path / "b.json"), Detections(dets.image_id, dets.category_id, loose, dets.score))
    tool = load_tool("compare_results")
    base = ["--config-file", CONFIG,
            "DATASETS.CUSTOM_COCO", f"[['cmp', '{tmp_path / 'gt.json'}', '{tmp_path / 'images'}']]",
            "--num-samples", "200", "--names", "tight", "loose"]
    assert tool.main(base + ["--dataset", "cmp", "--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "cmp: 30 images, 200 paired bootstrap resamples" in out
    row = next(line for line in out.splitlines() if line.startswith("| AP |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[3]) < 0 and cells[5] == "0%"  # loose is worse on every resample

    (tmp_path / "bad.json").write_text('{"image_id": 1}')
    assert tool.main(base + ["--dataset", "cmp", "--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "JSON list" in err
    assert tool.main(base + ["--dataset", "cmp", "--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err

    # one model's detections in two files (two folds): the same table as from one file; an image in both is an error
    first = np.isin(dets.image_id, [im["id"] for im in gt["images"][:12]])
    write_coco_results(str(tmp_path / "a0.json"), dets.select(first))
    write_coco_results(str(tmp_path / "a1.json"), dets.select(~first))
    assert tool.main(base + ["--dataset", "cmp", "--a", str(tmp_path / "a0.json"), str(tmp_path / "a1.json"),
                             "--b", str(tmp_path / "b.json")]) == 0
    assert capsys.readouterr().out == out
    assert tool.main(base + ["--dataset", "cmp", "--a", str(tmp_path / "a0.json"), str(tmp_path / "a.json"),
                             "--b", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "a0.json and in" in err and "a.json" in err and "disjoint" in err

    # one model alone: its AP with the interval, from the joined files as from one
    assert tool.main(base + ["--dataset", "cmp", "--a", str(tmp_path / "a0.json"), str(tmp_path / "a1.json")]) == 0
    alone = capsys.readouterr().out
    assert "cmp, tight: 95% bootstrap intervals (200 resamples of the 30 images)" in alone
    assert f"| AP | {cells[1]} |" in alone
