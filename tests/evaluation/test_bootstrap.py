"""Bootstrap intervals of COCO AP (TEST.BOOTSTRAP): a resample scores exactly as pycocotools scores a dataset that
holds those copies of the images; the intervals bracket the value, repeat with the seed and narrow with more images;
the evaluator logs them; bad keys are named."""

import copy
import logging

import numpy as np
import pytest

from det_dcn.config import get_cfg
from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.evaluation import COCOEvaluator
from det_dcn.evaluation.bootstrap import bootstrap_intervals, bootstrap_stats, paired_differences
from det_dcn.evaluation.build import build_evaluator
from det_dcn.evaluation.coco_tables import Detections, GroundTruth
from det_dcn.evaluation.fast_cocoeval import evaluate_boxes, match_boxes
from det_dcn.evaluation.pycocotools_eval import pycocotools_evaluate
from det_dcn.evaluation.synthetic import coco_like

from test_fast_cocoeval import _feed, _register


def _copied(gt: dict, dets: Detections, counts: dict):
    """The dataset with ``counts[image id]`` copies of each image (0: left out), its boxes and detections."""
    out = copy.deepcopy(gt)
    out["images"], out["annotations"] = [], []
    new_ids, rows = [], []
    for im in gt["images"]:
        for j in range(counts[im["id"]]):
            new_id = im["id"] * 10 + j
            out["images"].append(dict(im, id=new_id))
            out["annotations"] += [dict(a, id=len(out["annotations"]) + k + 1, image_id=new_id)
                                   for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == im["id"])]
            m = np.flatnonzero(dets.image_id == im["id"])
            rows.append(m)
            new_ids.append(np.full(len(m), new_id))
    rows = np.concatenate(rows)
    return out, Detections(np.concatenate(new_ids).astype(np.int64), dets.category_id[rows], dets.bbox[rows],
                           dets.score[rows])


@pytest.mark.parametrize("seed", [0, 1])
def test_resample_equals_pycocotools_on_copied_images(seed):
    gt, dets = coco_like(num_images=25, num_classes=6, seed=seed, crowd_frac=0.1)
    table = GroundTruth.from_coco_dict(gt)
    counts = np.random.default_rng(seed).multinomial(len(table.img_ids), np.full(len(table.img_ids),
                                                                                 1 / len(table.img_ids)))
    assert (counts == 0).any() and (counts >= 2).any()
    ref, _ = pycocotools_evaluate(*_copied(gt, dets, dict(zip(table.img_ids, counts.tolist()))))
    res = match_boxes(table, dets).result(counts)
    np.testing.assert_allclose(res.precision, ref.precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.recall, ref.recall, rtol=0, atol=1e-12)
    assert abs(res.stats()[0] - evaluate_boxes(table, dets).stats()[0]) > 1e-3  # the resample changed AP
    np.testing.assert_array_equal(match_boxes(table, dets).result(np.ones(len(counts), np.int64)).precision,
                                  evaluate_boxes(table, dets).precision)


def test_intervals_bracket_repeat_and_narrow():
    def intervals(num_images, seed=0):
        gt, dets = coco_like(num_images=num_images, num_classes=2, seed=3, classes_without_gt=0)
        table = GroundTruth.from_coco_dict(gt)
        return evaluate_boxes(table, dets).stats()[:3] * 100, bootstrap_intervals(table, dets, 200, 0.9, seed)

    point, few = intervals(20)
    for (low, high), value in zip(few.values(), point):
        assert low < value < high
    assert intervals(20)[1] == few and intervals(20, seed=1)[1] != few
    _, many = intervals(320)
    width = {k: v[1] - v[0] for k, v in few.items()}
    assert all(many[k][1] - many[k][0] < width[k] / 2 for k in width)  # 16x the images: ~1/4 the width


def test_stats_shape_and_bad_keys():
    gt, dets = coco_like(num_images=8, num_classes=3, seed=2)
    table = GroundTruth.from_coco_dict(gt)
    assert bootstrap_stats(table, dets, 5).shape == (5, 12)
    with pytest.raises(ValueError, match="TEST.BOOTSTRAP.NUM_SAMPLES"):
        bootstrap_intervals(table, dets, -1)
    with pytest.raises(ValueError, match="TEST.BOOTSTRAP.CONFIDENCE"):
        COCOEvaluator("anything", bootstrap_samples=10, bootstrap_confidence=1.0)


def test_evaluator_logs_the_intervals_and_voc_says_it_has_none(caplog):
    gt, dets = coco_like(num_images=30, num_classes=3, seed=6)
    id_map = _register("bootstrap_eval", gt)
    try:
        cfg = get_cfg()
        cfg.merge_from_list(["TEST.BOOTSTRAP.NUM_SAMPLES", "100", "TEST.EVALUATOR", "coco"])
        ev = build_evaluator(cfg, "bootstrap_eval")
        _feed(ev, dets, id_map, [im["id"] for im in gt["images"]])
        with caplog.at_level(logging.INFO, logger="det_dcn.evaluation"):
            res = ev.evaluate()["bbox"]
        (msg,) = [r.getMessage() for r in caplog.records if "bootstrap intervals" in r.getMessage()]
        assert "100 resamples of the 30 images" in msg and f"| AP | {res['AP']:.1f} |" in msg
        caplog.clear()
        cfg.merge_from_list(["TEST.EVALUATOR", "pascal_voc"])
        with caplog.at_level(logging.WARNING, logger="det_dcn.evaluation"):
            build_evaluator(cfg, "bootstrap_eval")
        assert any("TEST.BOOTSTRAP.NUM_SAMPLES=100" in r.getMessage() for r in caplog.records)
    finally:
        DatasetCatalog.remove("bootstrap_eval")
        MetadataCatalog.remove("bootstrap_eval")


def _shifted(dets: Detections, image_ids, shift: float) -> Detections:
    """``dets`` with the boxes of ``image_ids`` moved right by ``shift`` times their width."""
    bbox = dets.bbox.copy()
    m = np.isin(dets.image_id, list(image_ids))
    bbox[m, 0] += shift * bbox[m, 2]
    return Detections(dets.image_id, dets.category_id, bbox, dets.score)


def test_paired_differences():
    gt, dets = coco_like(num_images=40, num_classes=2, seed=7, classes_without_gt=0)
    table = GroundTruth.from_coco_dict(gt)
    same = paired_differences(table, dets, dets, 100)
    assert all(d["diff"] == d["low"] == d["high"] == 0 and d["b_better"] == 0 for d in same.values())
    worse = _shifted(dets, table.img_ids[::2], 0.1)  # half the images' boxes slightly off: -3 AP
    diffs = paired_differences(table, dets, worse, 300)
    plain, moved = evaluate_boxes(table, dets).stats(), evaluate_boxes(table, worse).stats()
    assert diffs["AP"]["diff"] == pytest.approx((moved[0] - plain[0]) * 100)
    assert diffs["AP"]["high"] < 0 and diffs["AP"]["b_better"] == 0  # the paired interval sees it
    # unpaired, the two intervals overlap widely: pairing is what separates them
    a, b = (bootstrap_intervals(table, d, 300)["AP"] for d in (dets, worse))
    assert b[1] > a[0] + 3

