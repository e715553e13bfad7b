"""Pascal VOC AP: hand-worked cases for both rules, difficult boxes, empty classes, pycocotools where the conventions
agree, the evaluator (ranks, unprocessed images) and its selection by TEST.EVALUATOR."""

import json
import logging
import math

import numpy as np
import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.config.config import ConfigError
from det_dcn.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from det_dcn.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator, build_evaluator, inference_on_dataset
from det_dcn.evaluation.coco_tables import Detections
from det_dcn.evaluation.left_out import UNREADABLE_KEY
from det_dcn.evaluation.pycocotools_eval import pycocotools_evaluate
from det_dcn.evaluation.voc_ap import box_iou_xyxy, interpolated_ap, voc_ap, voc_matches
from det_dcn.utils import comm

from evaluation_helpers import OracleModel, run_on_two_gloo_ranks

# The hand-worked case: one class, boxes 10 px high on y in [0, 10]. Ground truth:
#   A [0, 10]  B [100, 110]  C [200, 210]  D [300, 310] difficult  E [2, 12] (overlaps A: IoU 8/12)
# so npos = 4 (A, B, C, E). Detections by score, and what VOC makes of them at IoU 0.5:
#   d1 0.9 [0, 10]       = A, IoU 1                                 TP (A)
#   d2 0.8 [500, 510]    no overlap                                  FP
#   d3 0.7 [101, 111]    B, IoU 9/11                                 TP (B)
#   d4 0.6 [300, 310]    D, IoU 1, difficult                         ignored
#   d5 0.5 [0.5, 10.5]   A IoU 9.5/10.5 = .905 (taken), E IoU 8.5/11.5 = .739
#                        VOC takes the best box only, A is taken:    FP  (COCO would match E)
#   d6 0.4 [200, 210] x [0, 9]  C, IoU 90/100                        TP (C)
# cumulative (tp, fp) -> precision, recall:
#   d1 (1,0) 1, 1/4 | d2 (1,1) 1/2, 1/4 | d3 (2,1) 2/3, 2/4 | d4 (2,1) 2/3, 2/4 | d5 (2,2) 1/2, 2/4 | d6 (3,2) 3/5, 3/4
# 11-point: max precision at recall >= t: t = 0, .1, .2 -> 1; t = .3, .4, .5 -> 2/3; t = .6, .7 -> 3/5;
#   t = .8, .9, 1 -> 0 (recall never gets there). AP = (3 * 1 + 3 * 2/3 + 2 * 3/5) / 11 = 6.2 / 11.
# area: envelope at each recall step of 1/4: 1, 2/3, 3/5, and 0 for the last quarter (E never found):
#   AP = (1 + 2/3 + 3/5) / 4 = 17/30.
GT_X = [(0, 10), (100, 110), (200, 210), (300, 310), (2, 12)]
GT_DIFFICULT = [0, 0, 0, 1, 0]
DETS = [((0, 0, 10, 10), .9), ((500, 0, 510, 10), .8), ((101, 0, 111, 10), .7), ((300, 0, 310, 10), .6),
        ((0.5, 0, 10.5, 10), .5), ((200, 0, 210, 9), .4)]
AP_11POINT, AP_AREA = 6.2 / 11, 17 / 30


def _hand_case(rule, thresholds=(0.5,)):
    gt = np.array([[x1, 0, x2, 10] for x1, x2 in GT_X], dtype=float)
    det = np.array([b for b, _ in DETS], dtype=float)
    return voc_ap(np.zeros(5, int), gt, np.array(GT_DIFFICULT, bool), np.zeros(6, int), det,
                  np.array([s for _, s in DETS]), 1, rule, np.array(thresholds))


def test_hand_worked_case_both_rules():
    assert _hand_case("11point")[0, 0] == pytest.approx(AP_11POINT, abs=1e-12)
    assert _hand_case("area")[0, 0] == pytest.approx(AP_AREA, abs=1e-12)


def test_hand_worked_case_at_a_higher_threshold():
    # IoU > 0.85: d3 (.818) and d5 (.905 with taken A) fail; TP d1, d6; d4 ignored. tp/fp: d1 (1,0) d2 (1,1)
    # d3 (1,2) d5 (1,3) d6 (2,3): precision 1, 1/2, 1/3, 1/4, 2/5 at recall 1/4, 1/4, 1/4, 1/4, 2/4.
    # area: (1 + 2/5) / 4 = 0.35. 11-point: t <= .2 -> 1, .3 .. .5 -> 2/5: (3 + 3 * 0.4) / 11.
    assert _hand_case("area", (0.85,))[0, 0] == pytest.approx(0.35, abs=1e-12)
    assert _hand_case("11point", (0.85,))[0, 0] == pytest.approx(4.2 / 11, abs=1e-12)


def test_matching_does_not_fall_back_to_the_second_best_box():
    gt = np.array([[x1, 0, x2, 10] for x1, x2 in GT_X], dtype=float)
    det = np.array([b for b, _ in DETS], dtype=float)
    order, tp, fp = voc_matches(np.zeros(5, int), gt, np.array(GT_DIFFICULT, bool), np.zeros(6, int), det,
                                np.array([s for _, s in DETS]), 1, np.array([0.5]))
    assert order.tolist() == [0, 1, 2, 3, 4, 5]
    assert tp[0].tolist() == [True, False, True, False, False, True]
    assert fp[0].tolist() == [False, True, False, False, True, False]  # d4 (difficult) neither


def test_difficult_box_not_counted_and_its_detections_ignored():
    # Without the difficult box D: d4 is a FP at recall 2/4 and npos is still 4, so the curve changes; with D
    # marked not difficult, npos = 5 and d4 is a TP. Neither equals the difficult case.
    gt = np.array([[x1, 0, x2, 10] for x1, x2 in GT_X], dtype=float)
    det = np.array([b for b, _ in DETS], dtype=float)
    scores = np.array([s for _, s in DETS])
    not_difficult = voc_ap(np.zeros(5, int), gt, np.zeros(5, bool), np.zeros(6, int), det, scores, 1, "area",
                           np.array([0.5]))[0, 0]
    # tp/fp: (1,0) (1,1) (2,1) (3,1) (3,2) (4,2); recall steps of 1/5 with envelope 1, 3/4, 3/4, 2/3, 0
    assert not_difficult == pytest.approx((1 + 3 / 4 + 3 / 4 + 2 / 3) / 5, abs=1e-12)
    only_difficult = voc_ap(np.zeros(1, int), gt[3:4], np.ones(1, bool), np.zeros(6, int), det, scores, 1, "area",
                            np.array([0.5]))[0, 0]
    assert math.isnan(only_difficult)  # no non-difficult box: no AP


def test_iou_equals_the_devkits_plus_one_iou():
    """The devkit / detectron2 IoU: 1-based inclusive pixel boxes (the XML's; a prediction shifted by +1 on x1, y1
    as detectron2 does), widths xmax - xmin + 1. det_dcn's loader gives (xmin - 1, ymin - 1, xmax, ymax) and the
    plain continuous IoU; the two agree."""
    rng = np.random.default_rng(0)
    xml = np.sort(rng.integers(1, 60, (200, 2, 2)), axis=1).reshape(200, 4).astype(float)
    pred = np.sort(rng.uniform(0, 60, (200, 2, 2)), axis=1).reshape(200, 4)
    p = pred + [1, 1, 0, 0]
    iw = np.maximum(np.minimum(p[:, 2], xml[:, 2]) - np.maximum(p[:, 0], xml[:, 0]) + 1, 0)
    ih = np.maximum(np.minimum(p[:, 3], xml[:, 3]) - np.maximum(p[:, 1], xml[:, 1]) + 1, 0)
    area = lambda b: (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)  # noqa: E731
    devkit = iw * ih / (area(p) + area(xml) - iw * ih)
    mine = box_iou_xyxy(pred, (xml - [1, 1, 0, 0])[:, None, :])[:, 0]
    np.testing.assert_allclose(mine, devkit, rtol=1e-12, atol=1e-15)
    assert (devkit > 0).sum() > 20


def test_eleven_point_samples_are_exact_tenths():
    # 3 TPs of npos = 10, then nothing: recall reaches exactly 3/10, so t = 0, .1, .2, .3 give precision 1: 4/11.
    # (detectron2's np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004 > 3/10 and gives 3/11.)
    rec, prec = np.array([1, 2, 3]) / 10, np.ones(3)
    assert interpolated_ap(rec, prec, "11point") == pytest.approx(4 / 11, abs=1e-15)
    assert interpolated_ap(rec, prec, "area") == pytest.approx(0.3, abs=1e-15)
    assert interpolated_ap(np.zeros(0), np.zeros(0), "11point") == 0.0
    assert interpolated_ap(np.zeros(0), np.zeros(0), "area") == 0.0
    with pytest.raises(ValueError, match="rule 'coco'"):
        interpolated_ap(rec, prec, "coco")


def test_classes_without_boxes_or_detections():
    # class 0: the hand case; class 1: boxes, no detection -> 0; class 2: detections, no box -> NaN;
    # class 3: neither -> NaN.
    gt = np.array([[x1, 0, x2, 10] for x1, x2 in GT_X] + [[0, 50, 10, 60]], dtype=float)
    gt_key = np.array([0, 0, 0, 0, 0, 1])
    det = np.array([b for b, _ in DETS] + [[0, 50, 10, 60]], dtype=float)
    det_key = np.array([0] * 6 + [2])
    ap = voc_ap(gt_key, gt, np.array(GT_DIFFICULT + [0], bool), det_key, det, np.r_[[s for _, s in DETS], .99], 4,
                "area", np.array([0.5]))[0]
    assert ap[0] == pytest.approx(AP_AREA) and ap[1] == 0.0 and np.isnan(ap[2:]).all()


def _separated_case(seed, num_images=6, num_classes=3):
    """Boxes one per 100 px cell (a detection can overlap only its own cell's box), no difficult / crowd, distinct
    scores, < 100 detections an image: where VOC's and COCO's matching agree. Returns (COCO gt dict, Detections
    with XYWH boxes and COCO category ids = class + 1)."""
    rng = np.random.default_rng(seed)
    images, annos, rows = [], [], []
    for img in range(num_images):
        images.append({"id": img + 1, "file_name": f"{img}.jpg", "height": 800, "width": 800})
        for cell in range(int(rng.integers(3, 12))):
            ox, oy = 100.0 * (cell % 8), 100.0 * (cell // 8)
            cls = int(rng.integers(num_classes))
            w, h = rng.uniform(20, 60, 2)
            box = np.array([ox + rng.uniform(0, 30), oy + rng.uniform(0, 30), w, h])
            if rng.random() < 0.85:
                annos.append({"id": len(annos) + 1, "image_id": img + 1, "category_id": cls + 1,
                              "bbox": box.tolist(), "area": float(w * h), "iscrowd": 0})
            for _ in range(int(rng.integers(0, 4))):  # hits, near misses and duplicates of the cell's box
                jit = box + rng.normal(0, 0.15, 4) * np.r_[w, h, w, h]
                jit[2:] = np.clip(jit[2:], 2, 69)
                jit[:2] = np.clip(jit[:2], [ox, oy], [ox + 99 - jit[2], oy + 99 - jit[3]])
                c = cls if rng.random() < 0.85 else int(rng.integers(num_classes))
                rows.append((img + 1, c + 1, jit, float(rng.random())))
    img_ids, cats, boxes, scores = zip(*rows)
    dets = Detections(np.array(img_ids), np.array(cats, dtype=np.int64), np.array(boxes), np.array(scores))
    gt = {"images": images, "annotations": annos,
          "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(num_classes)]}
    return gt, dets


def _keys_and_boxes(gt, dets, num_classes):
    """The COCO gt / detections as voc_ap's inputs (key = image index * K + class, XYXY)."""
    xyxy = lambda b: np.c_[b[:, :2], b[:, :2] + b[:, 2:]]  # noqa: E731
    g = np.array([a["bbox"] for a in gt["annotations"]])
    g_key = np.array([(a["image_id"] - 1) * num_classes + a["category_id"] - 1 for a in gt["annotations"]])
    d_key = (dets.image_id - 1) * num_classes + dets.category_id - 1
    return g_key, xyxy(g), np.zeros(len(g), bool), d_key, xyxy(dets.bbox), dets.score


def _pycoco_interpolation(tp, fp, npos):
    """pycocotools' 101-point AP of one curve (COCOeval.accumulate): precision tp / (tp + fp + eps), its envelope
    from the right, read at the first point with recall >= each of linspace(0, 1, 101), 0 past the last."""
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp_sum / npos, tp_sum / (tp_sum + fp_sum + np.spacing(1))
    env = np.maximum.accumulate(prec[::-1])[::-1]
    idx = np.searchsorted(rec, np.linspace(0, 1, 101), "left")
    return float(np.where(idx < len(rec), env[np.minimum(idx, len(rec) - 1)], 0).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_agree_with_pycocotools_ap50(seed):
    """VOC's true / false positives, read with pycocotools' 101-point interpolation, give pycocotools' AP50 to
    1e-12 where the conventions agree (_separated_case: no box overlaps two ground truth boxes, IoU never exactly
    0.5 where VOC's '>' and COCO's '>=' differ; boxes are continuous XYWH / XYXY, no '+1', in both). The
    area rule itself differs from the 101-point sum by at most ~1/100 (a Riemann sum of a non-increasing envelope
    in [0, 1] with 100 steps, plus pycocotools' extra sample at recall 0): checked with 0.02."""
    k = 3
    gt, dets = _separated_case(seed, num_classes=k)
    reference, _ = pycocotools_evaluate(gt, dets)
    ap50_pycoco = reference.precision[0, :, :, 0, -1].mean(0)  # [K] at IoU 0.5, area "all", 100 dets
    args = _keys_and_boxes(gt, dets, k)
    order, tp, fp = voc_matches(*args, k, np.array([0.5]))
    cls = (args[3] % k)[order]
    npos = np.bincount(args[0] % k, minlength=k)
    mine = [_pycoco_interpolation(tp[0, cls == c], fp[0, cls == c], npos[c]) for c in range(k)]
    np.testing.assert_allclose(mine, ap50_pycoco, atol=1e-12)
    area = voc_ap(*args, k, "area", np.array([0.5]))[0]
    np.testing.assert_allclose(area, ap50_pycoco, atol=0.02)
    assert 0.1 < ap50_pycoco.min() and ap50_pycoco.max() < 0.9  # a non-trivial case


# ----------------------------------------------------------------------------------------------- the evaluator
CLASSES = ["aeroplane", "bicycle", "bird"]


def _voc_dicts():
    """Image 1: the hand case as class "aeroplane" minus d5/d6's boxes; image 2: C and d5.. as below; image 3 has a
    "bicycle" box but is never processed; "bird" has no box anywhere."""
    ann = lambda x1, x2, cls=0, diff=0: {"bbox": [x1, 0.0, x2, 10.0], "category_id": cls,  # noqa: E731
                                         "iscrowd": 0, "difficult": diff}
    return [
        {"file_name": "1.jpg", "image_id": "000001", "height": 100, "width": 600,
         "annotations": [ann(0, 10), ann(100, 110), ann(300, 310, diff=1), ann(2, 12)]},
        {"file_name": "2.jpg", "image_id": "000002", "height": 100, "width": 600,
         "annotations": [ann(200, 210), ann(50, 60, cls=1)]},
        {"file_name": "3.jpg", "image_id": "000003", "height": 100, "width": 600,
         "annotations": [ann(400, 410, cls=1)]},
    ]


def _output(dets):
    return {"boxes": torch.tensor([b for b, _, _ in dets], dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor([s for _, s, _ in dets], dtype=torch.float32),
            "classes": torch.tensor([c for _, _, c in dets], dtype=torch.int64)}


def _pairs():
    """The hand case's detections spread over images 1 and 2 (d6 finds C, which is in image 2), plus a perfect
    "bicycle" detection in image 2 and a "bird" false positive."""
    d = [(b, s, 0) for b, s in DETS]
    return [([{"image_id": "000001"}], [_output(d[:5])]),
            ([{"image_id": "000002"}], [_output([d[5], ((50, 0, 60, 10), .95, 1), ((0, 0, 9, 9), .3, 2)])])]


@pytest.fixture
def voc_dataset(request):
    name = f"voc_{request.node.name}"
    DatasetCatalog.register(name, _voc_dicts)
    MetadataCatalog.get(name).set(thing_classes=CLASSES, evaluator_type="pascal_voc", year=2007, split="test")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _run(evaluator, pairs):
    evaluator.reset()
    for inp, out in pairs:
        evaluator.process(inp, out)
    return evaluator.evaluate()


def test_evaluator_on_the_hand_case(voc_dataset, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="det_dcn.evaluation"):
        res = _run(PascalVOCDetectionEvaluator(voc_dataset, str(tmp_path)), _pairs())["bbox"]
    # At IoU 0.5: aeroplane = the hand case (11-point rule: year 2007), bicycle 100 (image 3's box is not counted:
    # the image was not processed, else recall 1/2), bird NaN (no box).
    assert res["AP50"] == pytest.approx((AP_11POINT * 100 + 100) / 2, abs=1e-9)
    assert math.isnan(res["AP-bird"]) and res["AP-bicycle"] == pytest.approx(100)
    # AP is the mean over thresholds of the mAP, AP75 the mAP at 0.75: recomputed from voc_ap directly
    ap = _hand_case("11point", np.arange(50, 100, 5) / 100)[:, 0]
    assert res["AP-aeroplane"] == pytest.approx(ap.mean() * 100, abs=1e-9)
    assert res["AP75"] == pytest.approx((ap[5] * 100 + 100) / 2, abs=1e-9)
    assert res["AP"] == pytest.approx(np.mean((ap * 100 + 100) / 2), abs=1e-9)
    assert "1 of 3 ground-truth images were not evaluated" in caplog.text and "VOC2007 11-point" in caplog.text
    assert "| aeroplane | 56.364 |" in caplog.text  # the per-class AP50 table
    with open(tmp_path / "pascal_voc_results.json") as f:
        assert len(json.load(f)) == 8


def test_area_rule_for_other_years(voc_dataset):
    MetadataCatalog.remove(voc_dataset)
    MetadataCatalog.get(voc_dataset).set(thing_classes=CLASSES, evaluator_type="pascal_voc", year=2012)
    res = _run(PascalVOCDetectionEvaluator(voc_dataset), _pairs())["bbox"]
    assert res["AP50"] == pytest.approx((AP_AREA * 100 + 100) / 2, abs=1e-9)


def test_bad_outputs_and_unknown_images_are_named(voc_dataset):
    ev = PascalVOCDetectionEvaluator(voc_dataset)
    with pytest.raises(ValueError, match=r"predicted class 3 outside \[0, 3\)"):
        ev.process([{"image_id": "000001"}], [_output([((0, 0, 1, 1), .5, 3)])])
    ev.reset()
    ev.process([{"image_id": "nope"}], [_output([((0, 0, 1, 1), .5, 0)])])
    with pytest.raises(ValueError, match=r"image ids \['nope'\] that are not in dataset"):
        ev.evaluate()


def test_bad_ground_truth_is_named(voc_dataset):
    DatasetCatalog.remove(voc_dataset)
    DatasetCatalog.register(voc_dataset, lambda: [{"image_id": 7, "file_name": "7.jpg", "height": 9, "width": 9,
                                                   "annotations": [{"bbox": [0, 0, 1, 1], "category_id": 5}]}])
    ev = PascalVOCDetectionEvaluator(voc_dataset)
    with pytest.raises(ValueError, match=r"image id 7 has a box with category_id 5 .*expected a class in \[0, 3\)"):
        _run(ev, [([{"image_id": 7}], [_output([])])])


def test_no_predictions_gives_zero(voc_dataset):
    res = _run(PascalVOCDetectionEvaluator(voc_dataset), [([{"image_id": "000001"}], [_output([])])])["bbox"]
    assert res["AP50"] == 0.0 and res["AP-aeroplane"] == 0.0 and math.isnan(res["AP-bicycle"])


def test_unreadable_image_is_left_out_and_named_beside_the_table(voc_dataset, caplog):
    """Image 3 (one "bicycle" box) cannot be read: the AP equals that of the dataset without image 3, and the AP50
    table names the file. Scored as an image without detections instead, its box would halve bicycle's recall."""
    outputs = {inp[0]["image_id"]: out[0] for inp, out in _pairs()}
    stand_in = {"image_id": "000003", "file_name": "3.jpg", UNREADABLE_KEY: "truncated JPEG"}
    loader = [[{"image_id": "000001"}, stand_in], [{"image_id": "000002"}]]
    with caplog.at_level(logging.INFO, logger="det_dcn.evaluation"):
        res = inference_on_dataset(OracleModel(outputs), loader, PascalVOCDetectionEvaluator(voc_dataset))
    table = [r.getMessage() for r in caplog.records if "AP at IoU 0.5" in r.getMessage()]
    assert len(table) == 1 and table[0].splitlines()[-1] == "1 images left out (unreadable): 3.jpg"
    assert "neither predicted nor reported unreadable" not in caplog.text

    DatasetCatalog.register("voc_without_3", lambda: _voc_dicts()[:2])
    MetadataCatalog.get("voc_without_3").set(thing_classes=CLASSES, evaluator_type="pascal_voc", year=2007)
    try:
        without = _run(PascalVOCDetectionEvaluator("voc_without_3"), _pairs())
    finally:
        DatasetCatalog.remove("voc_without_3")
        MetadataCatalog.remove("voc_without_3")
    assert res["bbox"] == pytest.approx(without["bbox"], nan_ok=True) and res["bbox"]["AP-bicycle"] == 100
    scored = _run(PascalVOCDetectionEvaluator(voc_dataset), _pairs() + [([{"image_id": "000003"}], [_output([])])])
    assert scored["bbox"]["AP-bicycle"] == pytest.approx(600 / 11)  # 11-point rule, recall 1/2 at precision 1


def test_two_ranks_merged(voc_dataset, monkeypatch):
    single = _run(PascalVOCDetectionEvaluator(voc_dataset), _pairs())
    rank1 = PascalVOCDetectionEvaluator(voc_dataset)
    for inp, out in _pairs()[1:]:
        rank1.process(inp, out)
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [data, rank1.packed()])
    merged = _run(PascalVOCDetectionEvaluator(voc_dataset), _pairs()[:1])
    assert merged["bbox"] == pytest.approx(single["bbox"], nan_ok=True)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [])
    assert _run(PascalVOCDetectionEvaluator(voc_dataset), _pairs()[:1]) == {}


def test_two_gloo_processes(voc_dataset, tmp_path):
    single = _run(PascalVOCDetectionEvaluator(voc_dataset), _pairs())

    def evaluate(rank):
        DatasetCatalog.register(f"dist_voc_{rank}", _voc_dicts)
        MetadataCatalog.get(f"dist_voc_{rank}").set(thing_classes=CLASSES, evaluator_type="pascal_voc", year=2007)
        return _run(PascalVOCDetectionEvaluator(f"dist_voc_{rank}"), _pairs()[rank::2])

    dist_res = run_on_two_gloo_ranks(evaluate, str(tmp_path / "dist.json"))
    assert dist_res["bbox"] == pytest.approx(single["bbox"], nan_ok=True)


# ----------------------------------------------------------------------------------------------- selection
def _cfg(value):
    cfg = get_cfg()
    cfg.TEST.EVALUATOR = value
    return cfg


def test_auto_follows_evaluator_type(voc_dataset, tmp_path):
    assert isinstance(build_evaluator(_cfg("auto"), voc_dataset), PascalVOCDetectionEvaluator)
    gt, _ = _separated_case(0)
    with open(tmp_path / "gt.json", "w") as f:
        json.dump(gt, f)
    register_coco_instances("voc_sel_coco", str(tmp_path / "gt.json"), str(tmp_path))
    try:
        assert isinstance(build_evaluator(_cfg("auto"), "voc_sel_coco"), COCOEvaluator)
    finally:
        DatasetCatalog.remove("voc_sel_coco")
        MetadataCatalog.remove("voc_sel_coco")


def test_voc_rules_on_a_coco_dataset(tmp_path):
    """A COCO-format dataset by VOC rules (area rule: no year) equals voc_ap on the same boxes."""
    gt, dets = _separated_case(1)
    with open(tmp_path / "gt.json", "w") as f:
        json.dump(gt, f)
    register_coco_instances("voc_on_coco", str(tmp_path / "gt.json"), str(tmp_path))
    try:
        ev = build_evaluator(_cfg("pascal_voc"), "voc_on_coco")
        assert isinstance(ev, PascalVOCDetectionEvaluator) and ev.rule == "area"
        pairs = []
        for img in np.unique(dets.image_id):
            d = dets.select(dets.image_id == img)
            pairs.append(([{"image_id": int(img)}], [_output([((x, y, x + w, y + h), s, c - 1) for (x, y, w, h), s, c
                                                              in zip(d.bbox.tolist(), d.score, d.category_id)])]))
        res = _run(ev, pairs)["bbox"]
        expected = voc_ap(*_keys_and_boxes(gt, dets, 3), 3, "area", np.array([0.5]))[0]
        assert res["AP50"] == pytest.approx(np.mean(expected) * 100, abs=1e-4)  # float32 boxes on the way
    finally:
        DatasetCatalog.remove("voc_on_coco")
        MetadataCatalog.remove("voc_on_coco")


def test_coco_rules_on_a_voc_dataset(voc_dataset):
    """COCO rules on a VOC dataset (no json file, no category id map: its class indices serve as ids). COCO has
    no "difficult": the difficult box counts as an ordinary one there."""
    ev = build_evaluator(_cfg("coco"), voc_dataset)
    assert isinstance(ev, COCOEvaluator)
    res = _run(ev, _pairs())["bbox"]
    assert set(res) >= {"AP", "AP50", "AP75", "AP-aeroplane"} and 0 < res["AP50"] < 100


def test_coco_evaluator_built_directly_on_a_voc_dataset(voc_dataset):
    """tools/eval_precision.py builds COCOEvaluator itself, not through build_evaluator: same numbers."""
    direct = _run(COCOEvaluator(voc_dataset, distributed=False), _pairs())["bbox"]
    built = _run(build_evaluator(_cfg("coco"), voc_dataset), _pairs())["bbox"]
    assert direct.keys() == built.keys() and 0 < direct["AP50"] < 100
    np.testing.assert_array_equal(list(direct.values()), list(built.values()))  # NaN where both are undefined


def test_unknown_value_is_a_config_error(voc_dataset):
    with pytest.raises(ConfigError, match=r"TEST.EVALUATOR='voc' is not one of \['auto', 'coco', 'pascal_voc'\]"):
        build_evaluator(_cfg("voc"), voc_dataset)
    assert get_cfg().TEST.EVALUATOR == "auto"
