#!/usr/bin/env python
"""Time COCO evaluation at val2017 scale: pycocotools against det_dcn's fast backend, and the evaluator's other costs.

On one generated COCO-shaped set (det_dcn.evaluation.synthetic.coco_like: 5000 images, 80 categories, 0-15 boxes an
image, 100 detections an image, crowd boxes, empty images) it measures, in one run:

1. the metric: pycocotools (COCO index + loadRes + COCOeval evaluate/accumulate/summarize, what the evaluator ran
   before) against the fast backend (ground-truth table + evaluate_boxes), checks that all 12 numbers and every
   per-category AP agree to 1e-6, and prints the time ratio;
2. gathering the detections from --ranks CPU processes (gloo): COCOEvaluator.process on each rank's images, then the
   evaluator's gather of numpy columns, against gathering the former per-image lists of dicts;
3. writing coco_instances_results.json (atomic) against json.dumps of the list of dicts;
4. building the ground truth of a generated (dict-registered) dataset: dataset dicts -> COCO dict -> GroundTruth,
   against the former dataset dicts -> COCO dict -> pycocotools index.

    python tools/benchmark_eval.py                      # the full COCO-sized run (a few minutes on 2 cores)
    python tools/benchmark_eval.py --images 500 --ranks 2
"""

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_dcn.evaluation.coco_gt import dicts_to_coco_gt  # noqa: E402
from det_dcn.evaluation.coco_protocol import METRIC_NAMES  # noqa: E402
from det_dcn.evaluation.coco_tables import Detections, GroundTruth  # noqa: E402
from det_dcn.evaluation.fast_cocoeval import evaluate_boxes  # noqa: E402
from det_dcn.evaluation.pycocotools_eval import pycocotools_evaluate  # noqa: E402
from det_dcn.evaluation.results_io import write_coco_results  # noqa: E402
from det_dcn.evaluation.synthetic import as_dataset_dicts, coco_like  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--dets", type=int, default=100, help="detections an image")
    p.add_argument("--ranks", type=int, default=4, help="CPU processes for the gather measurement (0: skip it)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def bench_metric(gt_dict: dict, dets: Detections) -> None:
    (ref, _), t_ref = timed(pycocotools_evaluate, copy.deepcopy(gt_dict), dets)
    table, t_gt = timed(GroundTruth.from_coco_dict, gt_dict)
    res, t_eval = timed(evaluate_boxes, table, dets)
    diff = max(np.abs(res.stats() - ref.stats()).max(),
               np.nanmax(np.abs(res.per_category_ap() - ref.per_category_ap())))
    t_fast = t_gt + t_eval
    print(f"\n1. metric on {len(dets)} detections")
    print(f"   pycocotools                     {t_ref:8.2f} s")
    print(f"   fast backend                    {t_fast:8.2f} s  (ground-truth table {t_gt:.2f} s, "
          f"evaluation {t_eval:.2f} s)")
    print(f"   ratio fast / pycocotools        {t_fast / t_ref:8.3f}  ({t_ref / t_fast:.1f}x faster)")
    try:
        (fce, t_fce) = timed(faster_coco_eval_stats, copy.deepcopy(gt_dict), dets)
        print(f"   faster-coco-eval (for reference) {t_fce:7.2f} s  (ratio {t_fce / t_ref:.3f}; largest difference "
              f"of the 12 numbers from pycocotools {np.abs(fce - ref.stats()).max():.2e})")
    except ImportError:
        print("   faster-coco-eval: not installed (optional, only for this comparison)")
    print(f"   largest difference of the 12 numbers and per-category AP: {diff:.2e}")
    print("   " + ", ".join(f"{k} {v * 100:.3f}" for k, v in zip(METRIC_NAMES, res.stats())))
    if not diff <= 1e-6:
        raise SystemExit(f"the fast backend differs from pycocotools by {diff}")


def faster_coco_eval_stats(gt_dict: dict, dets: Detections) -> np.ndarray:
    """The 12 numbers by the faster-coco-eval package (C++), from the same results list pycocotools gets."""
    import logging

    from faster_coco_eval import COCO, COCOeval_faster

    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    gt = COCO(gt_dict)
    ev = COCOeval_faster(gt, gt.loadRes(dets.to_results()), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12])


def _gather_worker(npz: str, num_classes: int, out_json: str) -> None:
    import torch

    from det_dcn.data import MetadataCatalog
    from det_dcn.evaluation import COCOEvaluator
    from det_dcn.utils import comm

    rank, world = comm.get_rank(), comm.get_world_size()
    data = np.load(npz)
    cat_ids = sorted(set(data["cat_ids"].tolist()))
    MetadataCatalog.get("bench_eval").set(thing_classes=[str(c) for c in cat_ids],
                                          thing_dataset_id_to_contiguous_id={c: i for i, c in enumerate(cat_ids)})
    ev = COCOEvaluator("bench_eval")
    img, bbox, score = data["image_id"], data["bbox"], data["score"]
    cls = np.searchsorted(cat_ids, data["category_id"])
    bounds = np.flatnonzero(np.r_[True, img[1:] != img[:-1], True])  # detections are grouped by image
    mine = range(rank, len(bounds) - 1, world)
    outputs = []
    for i in mine:
        s = slice(bounds[i], bounds[i + 1])
        xyxy = torch.from_numpy(np.c_[bbox[s, :2], bbox[s, :2] + bbox[s, 2:]]).float()
        outputs.append(({"image_id": int(img[bounds[i]])},
                        {"boxes": xyxy, "scores": torch.from_numpy(score[s]).float(),
                         "classes": torch.from_numpy(cls[s])}))
    comm.synchronize()
    start = time.perf_counter()
    for inp, out in outputs:
        ev.process([inp], [out])
    t_process = time.perf_counter() - start
    comm.synchronize()
    got, t_new = timed(ev.gathered)
    ids, packed = ev.packed()
    old = {i: Detections.select(packed, packed.image_id == i).to_results() for i in ids}  # the former format
    comm.synchronize()
    _, t_old = timed(comm.gather, old)
    if rank == 0:
        with open(out_json, "w") as f:
            json.dump({"process_s": t_process, "images": len(outputs), "gather_new_s": t_new,
                       "gather_old_s": t_old, "detections": len(got[1])}, f)


def bench_gather(dets: Detections, num_classes: int, ranks: int, tmp: str) -> None:
    from det_dcn.engine.launch import launch

    order = np.argsort(dets.image_id, kind="stable")
    npz, out = os.path.join(tmp, "dets.npz"), os.path.join(tmp, "gather.json")
    np.savez(npz, image_id=dets.image_id[order], category_id=dets.category_id[order], bbox=dets.bbox[order],
             score=dets.score[order], cat_ids=np.unique(dets.category_id))
    launch(_gather_worker, ranks, backend="gloo", args=(npz, num_classes, out))
    with open(out) as f:
        r = json.load(f)
    print(f"\n2. gathering {r['detections']} detections from {ranks} CPU processes (gloo)")
    print(f"   COCOEvaluator.process, rank 0   {r['process_s']:8.2f} s  ({r['images']} images, "
          f"{r['process_s'] / r['images'] * 1e3:.2f} ms an image)")
    print(f"   gather lists of dicts (before)  {r['gather_old_s']:8.2f} s")
    print(f"   gather numpy columns (now)      {r['gather_new_s']:8.2f} s  "
          f"(ratio {r['gather_new_s'] / r['gather_old_s']:.3f})")


def bench_write(dets: Detections, tmp: str) -> None:
    from det_dcn.utils.atomic_io import atomic_write_json

    old = os.path.join(tmp, "old.json")
    _, t_old = timed(lambda: atomic_write_json(old, dets.to_results(), compact=True))
    new = os.path.join(tmp, "coco_instances_results.json")
    _, t_new = timed(write_coco_results, new, dets)
    with open(old) as f1, open(new) as f2:
        same = json.load(f1) == json.load(f2)
    print(f"\n3. writing coco_instances_results.json ({os.path.getsize(new) / 1e6:.0f} MB), atomic")
    print(f"   dicts + json.dumps (before)     {t_old:8.2f} s")
    print(f"   columns, formatted (now)        {t_new:8.2f} s  (ratio {t_new / t_old:.3f}; same content: {same})")


def bench_gt_from_dicts(gt_dict: dict) -> None:
    from pycocotools.coco import COCO

    dicts, names, id_map = as_dataset_dicts(gt_dict)

    def old():
        coco = COCO()
        coco.dataset = dicts_to_coco_gt(dicts, names, id_map)
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()

    _, t_old = timed(old)
    _, t_new = timed(lambda: GroundTruth.from_coco_dict(dicts_to_coco_gt(dicts, names, id_map)))
    print(f"\n4. ground truth from the dataset dicts of a generated dataset ({len(gt_dict['annotations'])} boxes)")
    print(f"   COCO dict + pycocotools index   {t_old:8.2f} s")
    print(f"   COCO dict + GroundTruth (now)   {t_new:8.2f} s")


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"CPU cores: {os.cpu_count()}, load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    (gt_dict, dets), t_gen = timed(coco_like, args.images, args.classes, 15, args.dets, args.seed)
    print(f"generated {args.images} images, {len(gt_dict['annotations'])} boxes, {len(dets)} detections "
          f"in {t_gen:.1f} s")
    bench_metric(gt_dict, dets)
    with tempfile.TemporaryDirectory() as tmp:
        bench_write(dets, tmp)
        bench_gt_from_dicts(gt_dict)
        if args.ranks > 0:
            bench_gather(dets, args.classes, args.ranks, tmp)
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
