"""The vectorised COCO evaluation against pycocotools' COCOeval on generated data, and bad input."""

import copy
import json
import math
import os

import numpy as np
import pytest
import torch

from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.evaluation import COCOEvaluator
from det_dcn.evaluation.coco_tables import Detections, GroundTruth
from det_dcn.evaluation.fast_cocoeval import evaluate_boxes
from det_dcn.evaluation.pycocotools_eval import pycocotools_evaluate
from det_dcn.evaluation.results_io import write_coco_results
from det_dcn.evaluation.synthetic import as_dataset_dicts, coco_like


def _hard_case(seed=0, num_images=100):
    """Generated COCO-shaped data plus the protocol's corner cases, each asserted to be present."""
    gt, dets = coco_like(num_images=num_images, num_classes=20, seed=seed, crowd_frac=0.1, quantize=True)
    annos = gt["annotations"]
    rng = np.random.default_rng(seed)
    for a in rng.choice([a for a in annos if not a["iscrowd"]], 15, replace=False):  # exact duplicates
        annos.append(dict(a, id=len(annos) + 1))
    # pycocotools reads a match with a box of id 0 as "no match"; on a duplicate it also shows which of two boxes
    # with equal IoU is taken (pycocotools: the last)
    annos[-1]["id"] = 0
    for a in annos[::17]:
        a["area"] = 32.0 ** 2  # on the small / medium boundary (both ranges include it)
    img_with_dets = set(dets.image_id.tolist())
    gt_imgs = {a["image_id"] for a in annos}
    assert any(a["iscrowd"] for a in annos)
    assert len(gt_imgs) < len(gt["images"])  # empty images
    assert {c["id"] for c in gt["categories"]} - {a["category_id"] for a in annos}  # categories without boxes
    assert len(img_with_dets) < len(gt["images"])  # images without detections
    per_image = np.unique(dets.image_id, return_counts=True)[1]
    per_pair = np.unique(np.c_[dets.image_id, dets.category_id], axis=0, return_counts=True)[1]
    assert per_image.max() > 100 and per_pair.max() > 100
    assert len(np.unique(dets.score)) < len(dets.score)  # tied scores
    return gt, dets


def _assert_same(gt, dets):
    ref, _ = pycocotools_evaluate(copy.deepcopy(gt), dets)
    res = evaluate_boxes(GroundTruth.from_coco_dict(gt), dets)
    # every element of the accumulated arrays, so every number derived from them (stats, per-category AP)
    np.testing.assert_allclose(res.precision, ref.precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.recall, ref.recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.stats(), ref.stats(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.per_category_ap(), ref.per_category_ap(), rtol=0, atol=1e-6, equal_nan=True)
    assert (ref.precision == -1).any() and 0.1 < ref.stats()[0] < 0.9  # undefined entries, and a non-trivial AP
    return res


def test_equals_pycocotools_on_corner_cases():
    _assert_same(*_hard_case())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equals_pycocotools_random(seed):
    rng = np.random.default_rng(seed)
    gt, dets = coco_like(num_images=int(rng.integers(20, 60)), num_classes=int(rng.integers(3, 30)), seed=seed,
                         max_gt=int(rng.integers(1, 20)), max_dets=int(rng.integers(5, 120)), quantize=seed == 2)
    _assert_same(gt, dets)


def _register(name, gt):
    """An in-memory dataset whose dataset dicts give back ``gt`` (contiguous classes, XYXY boxes)."""
    dicts, classes, id_map = as_dataset_dicts(gt)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=classes, thing_dataset_id_to_contiguous_id=id_map)
    return id_map


def _feed(evaluator, dets, id_map, image_ids):
    for img_id in image_ids:
        m = dets.image_id == img_id
        b = torch.from_numpy(dets.bbox[m].copy())
        b[:, 2:] += b[:, :2]
        evaluator.process([{"image_id": img_id}], [{"boxes": b, "scores": torch.from_numpy(dets.score[m]),
                                                    "classes": torch.tensor([id_map[c] for c in dets.category_id[m]])}])


def test_evaluator_backends_report_the_same_numbers(tmp_path):
    gt, dets = coco_like(num_images=40, num_classes=6, seed=4, crowd_frac=0.1)
    id_map = _register("fast_eval_backends", gt)
    try:
        out = {}
        for backend in ("fast", "pycocotools"):
            ev = COCOEvaluator("fast_eval_backends", str(tmp_path / backend), backend=backend)
            _feed(ev, dets, id_map, [im["id"] for im in gt["images"]])
            out[backend] = ev.evaluate()["bbox"]
        assert out["fast"].keys() == out["pycocotools"].keys() and len(out["fast"]) == 6 + 6
        for k, v in out["pycocotools"].items():
            assert out["fast"][k] == pytest.approx(v, abs=1e-6, nan_ok=True), k
        with open(tmp_path / "fast" / "coco_instances_results.json") as f:
            written = json.load(f)
        assert len(written) == len(dets)
    finally:
        DatasetCatalog.remove("fast_eval_backends")
        MetadataCatalog.remove("fast_eval_backends")


def test_no_detections():
    gt, _ = coco_like(num_images=10, num_classes=5, seed=5)
    res = evaluate_boxes(GroundTruth.from_coco_dict(gt), Detections.empty())
    has_gt = np.isin(sorted(c["id"] for c in gt["categories"]), [a["category_id"] for a in gt["annotations"]])
    ap = res.per_category_ap()
    assert (ap[has_gt] == 0).all() and np.isnan(ap[~has_gt]).all() and res.stats()[0] == 0


def test_results_file_is_exact_json(tmp_path):
    _, dets = coco_like(num_images=5, seed=6)
    path = str(tmp_path / "r.json")
    write_coco_results(path, dets)
    with open(path) as f:
        assert json.load(f) == dets.to_results()  # the same doubles
    assert os.listdir(tmp_path) == ["r.json"]  # no temporary file left


def test_bad_input_is_named():
    gt, dets = coco_like(num_images=5, num_classes=3, seed=7)
    table = GroundTruth.from_coco_dict(gt)
    bad = copy.deepcopy(dets)
    bad.image_id[2] = 123456789
    with pytest.raises(ValueError, match="image ids \\[123456789\\]"):
        evaluate_boxes(table, bad)
    bad = copy.deepcopy(dets)
    bad.category_id[0] = 77
    with pytest.raises(ValueError, match="category ids \\[77\\]"):
        evaluate_boxes(table, bad)
    for field, value in (("score", np.nan), ("bbox", np.inf)):
        bad = copy.deepcopy(dets)
        getattr(bad, field)[1] = value
        with pytest.raises(ValueError, match=f"non-finite {field}"):
            evaluate_boxes(table, bad)
    dup = copy.deepcopy(gt)
    dup["annotations"][1]["id"] = dup["annotations"][0]["id"]
    with pytest.raises(ValueError, match="not unique"):
        GroundTruth.from_coco_dict(dup, "x.json")
    del dup["annotations"][2]["bbox"]
    with pytest.raises(ValueError, match="x.json: annotation #2 lacks \\['bbox'\\]"):
        GroundTruth.from_coco_dict(dup, "x.json")


def test_evaluator_rejects_non_finite_and_unknown_classes():
    gt, _ = coco_like(num_images=3, num_classes=3, seed=8)
    _register("fast_eval_bad", gt)
    try:
        ev = COCOEvaluator("fast_eval_bad")
        img = gt["images"][0]["id"]
        ok = {"boxes": torch.tensor([[0.0, 0, 5, 5]]), "scores": torch.tensor([0.5]), "classes": torch.tensor([1])}
        with pytest.raises(ValueError, match=f"image {img}: 1 of 1 detections have non-finite scores"):
            ev.process([{"image_id": img}], [dict(ok, scores=torch.tensor([math.nan]))])
        with pytest.raises(ValueError, match=f"image {img}: 1 of 1 detections have non-finite boxes"):
            ev.process([{"image_id": img}], [dict(ok, boxes=torch.tensor([[0.0, 0, math.inf, 5]]))])
        with pytest.raises(ValueError, match="predicted class -1 outside \\[0, 3\\)"):
            ev.process([{"image_id": img}], [dict(ok, classes=torch.tensor([-1]))])
        with pytest.raises(ValueError, match="backend 'x'"):
            COCOEvaluator("fast_eval_bad", backend="x")
    finally:
        DatasetCatalog.remove("fast_eval_bad")
        MetadataCatalog.remove("fast_eval_bad")


def test_unreadable_ground_truth_file_is_named(tmp_path):
    from det_dcn.evaluation.coco_gt import load_coco_gt

    bad = tmp_path / "gt.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=f"Cannot read COCO ground truth {bad}"):
        load_coco_gt(str(bad))
    bad.write_text('{"images": []}')
    with pytest.raises(ValueError, match="expected a dict with 'images', 'annotations' and 'categories'"):
        load_coco_gt(str(bad))
