"""COCOEvaluator against pycocotools, rank merging, empty predictions, inference_on_dataset."""

import contextlib
import io
import json
import logging
import math
import os

import numpy as np
import pytest
import torch

from det_dcn.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from det_dcn.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from det_dcn.utils import comm

from evaluation_helpers import OracleModel, run_on_two_gloo_ranks

CATS = [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 11, "name": "cow"}]  # -> cat 0, dog 1, cow 2
ID_MAP = {2: 0, 5: 1, 11: 2}


def _gt_json(path):
    """6 images of 200x200: small, medium and large boxes, a crowd box, an empty image."""
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.png", "height": 200, "width": 200} for i in range(10, 16)]
    annos = []
    for img in images[:-1]:  # the last image has no annotation
        for _ in range(int(rng.integers(1, 4))):
            side = float(rng.choice([20.0, 60.0, 120.0]))
            x, y = float(rng.uniform(0, 200 - side)), float(rng.uniform(0, 200 - side))
            annos.append({"id": len(annos) + 1, "image_id": img["id"], "category_id": int(rng.choice([2, 5, 11])),
                          "bbox": [x, y, side, side * 0.8], "area": side * side * 0.8, "iscrowd": 0})
    annos.append({"id": len(annos) + 1, "image_id": 10, "category_id": 2, "bbox": [0, 0, 200, 200],
                  "area": 40000.0, "iscrowd": 1})
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annos, "categories": CATS}, f)
    return images, annos


@pytest.fixture
def gt(tmp_path, request):
    name = f"eval_{request.node.name}"
    images, annos = _gt_json(tmp_path / "gt.json")
    register_coco_instances(name, str(tmp_path / "gt.json"), str(tmp_path))
    yield name, images, annos, str(tmp_path / "gt.json")
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _outputs(boxes_xywh, scores, classes):
    b = torch.tensor(boxes_xywh, dtype=torch.float32).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return {"boxes": b, "scores": torch.tensor(scores, dtype=torch.float32),
            "classes": torch.tensor(classes, dtype=torch.int64)}


def _perfect(images, annos):
    out = []
    for img in images:
        a = [x for x in annos if x["image_id"] == img["id"] and not x["iscrowd"]]
        out.append(([{"image_id": img["id"]}],
                    [_outputs([x["bbox"] for x in a], [0.9] * len(a), [ID_MAP[x["category_id"]] for x in a])]))
    return out


def _noisy(images, annos, seed=1):
    """Jittered boxes, some wrong classes, some false positives: a non-trivial AP."""
    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        boxes, scores, classes = [], [], []
        for x in annos:
            if x["image_id"] != img["id"] or x["iscrowd"]:
                continue
            bx = np.array(x["bbox"]) + rng.normal(0, 4, 4)
            boxes.append(bx.tolist())
            scores.append(float(rng.uniform(0.3, 1)))
            classes.append(ID_MAP[x["category_id"]] if rng.random() < 0.8 else int(rng.integers(3)))
        for _ in range(2):
            boxes.append([float(rng.uniform(0, 150)), float(rng.uniform(0, 150)), 30.0, 30.0])
            scores.append(float(rng.uniform(0, 0.6)))
            classes.append(int(rng.integers(3)))
        out.append(([{"image_id": img["id"]}], [_outputs(boxes, scores, classes)]))
    return out


def _run(evaluator, pairs):
    evaluator.reset()
    for inputs, outputs in pairs:
        evaluator.process(inputs, outputs)
    return evaluator.evaluate()


def test_perfect_predictions_give_100(gt, tmp_path):
    name, images, annos, _ = gt
    res = _run(COCOEvaluator(name, str(tmp_path / "out")), _perfect(images, annos))["bbox"]
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP-cat", "AP-dog", "AP-cow"):
        assert res[k] == pytest.approx(100.0), k


def test_matches_pycocotools_directly(gt, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    name, images, annos, json_file = gt
    pairs = _noisy(images, annos)
    res = _run(COCOEvaluator(name, str(tmp_path / "out")), pairs)["bbox"]

    inv = {v: k for k, v in ID_MAP.items()}
    dets = []
    for inputs, (out,) in pairs:
        for b, s, c in zip(out["boxes"].tolist(), out["scores"].tolist(), out["classes"].tolist()):
            dets.append({"image_id": inputs[0]["image_id"], "category_id": inv[c],
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(json_file)
        ev = COCOeval(cg, cg.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for k, v in zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), ev.stats[:6]):
        assert res[k] == pytest.approx(v * 100, abs=1e-6), k
    assert 10 < res["AP"] < 95  # a non-trivial case
    # Per-class AP: class "dog" is COCO id 5.
    k = ev.params.catIds.index(5)
    p = ev.eval["precision"][:, :, k, 0, -1]
    assert res["AP-dog"] == pytest.approx(np.mean(p[p > -1]) * 100)
    # The results file: XYWH boxes with dataset category ids.
    with open(tmp_path / "out" / "coco_instances_results.json") as f:
        written = json.load(f)
    assert len(written) == len(dets) and {d["category_id"] for d in written} <= {2, 5, 11}
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp" in f]


def test_two_ranks_merged_without_loss_or_duplication(gt, monkeypatch, tmp_path, caplog):
    name, images, annos, _ = gt
    pairs = _noisy(images, annos)
    single = _run(COCOEvaluator(name), pairs)
    rank1 = COCOEvaluator(name)
    for inp, out in pairs[3:]:
        rank1.process(inp, out)
    rank1._predictions[10] = rank1._predictions[13]  # a (wrong) duplicate of an image rank 0 has: dropped
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [data, rank1.packed()])
    with caplog.at_level(logging.WARNING):
        merged = _run(COCOEvaluator(name, str(tmp_path)), pairs[:3])
    assert merged == single
    assert "more than one rank" in caplog.text
    with open(tmp_path / "coco_instances_results.json") as f:
        assert len(json.load(f)) == sum(len(o["scores"]) for _, (o,) in pairs)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [])
    assert _run(COCOEvaluator(name), pairs[:3]) == {}


def test_two_gloo_processes(gt, tmp_path):
    name, images, annos, json_file = gt
    single = _run(COCOEvaluator(name), _noisy(images, annos))

    def evaluate(rank):  # both ranks read the one GT file the fixture wrote (writing it per rank raced)
        register_coco_instances(f"dist_eval_{rank}", json_file, os.path.dirname(json_file))
        return _run(COCOEvaluator(f"dist_eval_{rank}"), _noisy(images, annos)[rank::2])

    dist_res = run_on_two_gloo_ranks(evaluate, str(tmp_path / "dist.json"))
    assert dist_res["bbox"] == pytest.approx(single["bbox"], nan_ok=True)


def test_no_predictions_gives_zero_with_warning(gt, tmp_path, caplog):
    name, images, _, _ = gt
    pairs = [([{"image_id": im["id"]}], [_outputs([], [], [])]) for im in images]
    with caplog.at_level(logging.WARNING):
        res = _run(COCOEvaluator(name, str(tmp_path)), pairs)["bbox"]
    assert res["AP"] == 0.0 and res["AP-cow"] == 0.0 and "no detections" in caplog.text
    with open(tmp_path / "coco_instances_results.json") as f:
        assert json.load(f) == []


def test_bad_outputs_are_named(gt):
    name, _, _, _ = gt
    ev = COCOEvaluator(name)
    with pytest.raises(ValueError, match="lacks"):
        ev.process([{"image_id": 10}], [{"boxes": torch.zeros(0, 4)}])
    with pytest.raises(ValueError, match="class 7"):
        ev.process([{"image_id": 10}], [_outputs([[0, 0, 1, 1]], [1.0], [7])])
    ev.reset()
    ev.process([{"image_id": 999}], [_outputs([[0, 0, 1, 1]], [1.0], [0])])
    with pytest.raises(ValueError, match="999"):
        ev.evaluate()


def test_in_memory_dataset_without_json(tmp_path):
    """Datasets registered by a function (no json_file) are converted to COCO ground truth on the fly."""
    dicts = [{"file_name": "a.png", "image_id": 1, "height": 50, "width": 50,
              "annotations": [{"bbox": [5.0, 5.0, 25.0, 30.0], "category_id": 1, "iscrowd": 0}]}]
    DatasetCatalog.register("eval_mem", lambda: dicts)
    MetadataCatalog.get("eval_mem").set(thing_classes=["x", "y"], thing_dataset_id_to_contiguous_id={1: 0, 2: 1})
    try:
        res = _run(COCOEvaluator("eval_mem"), [([{"image_id": 1}], [_outputs([[5, 5, 20, 25]], [0.8], [1])])])
        assert res["bbox"]["AP"] == pytest.approx(100.0) and math.isnan(res["bbox"]["AP-x"])
    finally:
        DatasetCatalog.remove("eval_mem")
        MetadataCatalog.remove("eval_mem")


def test_inference_on_dataset(gt, caplog):
    name, images, annos, _ = gt
    pairs = _perfect(images, annos)
    model = OracleModel({inp[0]["image_id"]: out[0] for inp, out in pairs})
    model.train()
    loader = [inp for inp, _ in pairs]
    with caplog.at_level(logging.INFO):
        res = inference_on_dataset(model, loader, COCOEvaluator(name))
        print_csv_format(res)
    assert model.training  # mode restored
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert "ETA=" in caplog.text and "copypaste: AP,AP50,AP75,APs,APm,APl" in caplog.text
