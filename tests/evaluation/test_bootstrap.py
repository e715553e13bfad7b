"""Bootstrap intervals of AP (TEST.BOOTSTRAP): a resample scores exactly as pycocotools (COCO) and VOC AP score a
dataset that holds those copies of the images; the intervals bracket the value, repeat with the seed and narrow with
more images; pairing separates what unpaired intervals cannot; both evaluators log them; bad keys are named."""

import copy
import logging

import numpy as np
import pytest

from det_dcn.config import get_cfg
from det_dcn.data import DatasetCatalog, MetadataCatalog
from det_dcn.evaluation import COCOEvaluator
from det_dcn.evaluation.bootstrap import bootstrap_intervals, coco_scores, paired_differences, resample
from det_dcn.evaluation.build import build_evaluator
from det_dcn.evaluation.coco_tables import Detections, GroundTruth
from det_dcn.evaluation.fast_cocoeval import evaluate_boxes, match_boxes
from det_dcn.evaluation.pycocotools_eval import pycocotools_evaluate
from det_dcn.evaluation.synthetic import coco_like

from det_dcn.evaluation.voc_ap import VOCMatches, voc_ap

from test_fast_cocoeval import _feed, _register
from test_pascal_voc_evaluation import _keys_and_boxes, _separated_case


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


@pytest.mark.parametrize("rule", ["11point", "area"])
def test_voc_resample_equals_voc_ap_on_copied_images(rule):
    num_images, k = 10, 3
    gt, dets = _separated_case(seed=4, num_images=num_images, num_classes=k)
    g_key, g_box, difficult, d_key, d_box, score = _keys_and_boxes(gt, dets, k)
    difficult = np.random.default_rng(0).random(len(g_key)) < 0.2
    counts = np.array([0, 2, 1, 3, 0, 1, 1, 0, 2, 0])
    # the copied dataset: image i's boxes and detections `counts[i]` times, each copy a new image
    copy_g, copy_d = [], []
    for i in np.repeat(np.arange(num_images), counts):
        copy_g.append(np.flatnonzero(g_key // k == i))
        copy_d.append(np.flatnonzero(d_key // k == i))
    new_g = np.concatenate([np.full(len(r), j) for j, r in enumerate(copy_g)])
    new_d = np.concatenate([np.full(len(r), j) for j, r in enumerate(copy_d)])
    g_rows, d_rows = np.concatenate(copy_g), np.concatenate(copy_d)
    expected = voc_ap(new_g * k + g_key[g_rows] % k, g_box[g_rows], difficult[g_rows], new_d * k + d_key[d_rows] % k,
                      d_box[d_rows], score[d_rows], k, rule)
    matches = VOCMatches.of(g_key, g_box, difficult, d_key, d_box, score, k)
    np.testing.assert_allclose(matches.ap(rule, counts), expected, rtol=0, atol=1e-12)
    assert not np.allclose(matches.ap(rule), expected, equal_nan=True)  # the resample changed AP
    np.testing.assert_array_equal(matches.ap(rule, np.ones(num_images, np.int64)), matches.ap(rule))


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
    samples = resample(coco_scores(match_boxes(table, dets)), len(table.img_ids), 5)
    assert sorted(samples) == ["AP", "AP50", "AP75"] and all(v.shape == (5,) for v in samples.values())
    with pytest.raises(ValueError, match="TEST.BOOTSTRAP.NUM_SAMPLES"):
        bootstrap_intervals(table, dets, -1)
    with pytest.raises(ValueError, match="TEST.BOOTSTRAP.CONFIDENCE"):
        COCOEvaluator("anything", bootstrap_samples=10, bootstrap_confidence=1.0)


def test_both_evaluators_log_the_intervals(caplog):
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
        ev = build_evaluator(cfg, "bootstrap_eval")
        _feed(ev, dets, id_map, [im["id"] for im in gt["images"]])
        with caplog.at_level(logging.INFO, logger="det_dcn.evaluation"):
            res = ev.evaluate()["bbox"]
        (msg,) = [r.getMessage() for r in caplog.records if "bootstrap intervals" in r.getMessage()]
        assert msg.startswith("PascalVOCDetectionEvaluator") and f"| AP50 | {res['AP50']:.1f} |" in msg
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

