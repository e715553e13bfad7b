"""COCO-shaped generated ground truth and detections, for checking and timing the evaluators.

Shaped like val2017 by default: 80 categories with COCO's non-contiguous ids, 0-15 boxes an image from small to
large, a few crowd boxes, skewed category frequencies, and up to 100 detections an image (jittered true boxes,
duplicates, wrong classes and background boxes). The hard cases of the protocol are on by default: empty images,
categories without ground truth, images without detections, "area" different from the box area, and (``heavy``)
images with more than 100 detections of one category; ``quantize`` rounds coordinates and scores so that IoUs and
scores tie, which exercises pycocotools' tie-breaking.
"""

from typing import Dict, List, Tuple

import numpy as np

from .coco_tables import Detections

COCO_CAT_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # val2017's 80 ids


def coco_like(num_images: int = 5000, num_classes: int = 80, max_gt: int = 15, max_dets: int = 100,
              seed: int = 0, crowd_frac: float = 0.02, empty_frac: float = 0.05, no_det_frac: float = 0.03,
              classes_without_gt: int = 2, heavy: int = 3, quantize: bool = False) -> Tuple[dict, Detections]:
    """Returns (COCO ground-truth dict, detections in results order). ``heavy`` images get 150 detections of one
    category (pycocotools keeps 100 per image and category)."""
    rng = np.random.default_rng(seed)
    cat_ids = COCO_CAT_IDS[:num_classes] if num_classes <= len(COCO_CAT_IDS) else list(range(1, num_classes + 1))
    freq = 1.0 / np.arange(1, num_classes + 1) ** 0.8  # a few frequent categories, a long tail
    freq[rng.permutation(num_classes)[:classes_without_gt]] = 0
    freq /= freq.sum()
    img_ids = rng.choice(10 * num_images + 10, num_images, replace=False) + 1  # not contiguous, not sorted
    images, annos, dets = [], [], []
    for n, img_id in enumerate(img_ids.tolist()):
        w, h = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": w, "height": h})
        n_gt = 0 if rng.random() < empty_frac else int(rng.integers(0, max_gt + 1))
        boxes = _random_boxes(rng, n_gt, w, h, quantize)
        cats = rng.choice(num_classes, n_gt, p=freq)
        for b, c in zip(boxes.tolist(), cats.tolist()):
            annos.append({"id": 0, "image_id": img_id, "category_id": cat_ids[c], "bbox": b,
                          "area": b[2] * b[3] * float(rng.uniform(0.5, 1.0)),  # like a mask's area
                          "iscrowd": int(rng.random() < crowd_frac)})
        if rng.random() < no_det_frac:
            continue
        rep = np.repeat(np.arange(n_gt), rng.integers(0, 4, n_gt))[:max_dets]  # hits, near misses, duplicates
        jit = boxes[rep] + rng.normal(0, 0.06, (len(rep), 4)) * np.c_[boxes[rep, 2:], boxes[rep, 2:]]
        hit_cat = np.where(rng.random(len(rep)) < 0.9, cats[rep], rng.integers(num_classes, size=len(rep)))
        n_bg = max_dets - len(rep)  # background boxes fill up to max_dets, like a detector's fixed top-k
        d_box = np.r_[np.c_[jit[:, :2], np.abs(jit[:, 2:]) + 1], _random_boxes(rng, n_bg, w, h, quantize)]
        d_cat = np.r_[hit_cat, rng.choice(num_classes, n_bg, p=freq)].astype(np.int64)
        score = np.r_[rng.uniform(0.2, 1.0, len(rep)), rng.uniform(0.0, 0.7, n_bg)]
        if n < heavy:  # more than 100 detections of one category in one image
            d_box = np.r_[d_box, _random_boxes(rng, 150, w, h, quantize)]
            d_cat = np.r_[d_cat, np.full(150, cats[0] if n_gt else 0)]
            score = np.r_[score, rng.random(150)]
        if quantize:
            d_box = np.round(d_box)
        dets.append((np.full(len(d_box), img_id), np.array(cat_ids)[d_cat.astype(np.int64)], d_box,
                     np.round(score, 2) if quantize else score))
    for i, j in enumerate(rng.permutation(len(annos))):
        annos[j]["id"] = i + 1
    gt = {"images": [images[i] for i in rng.permutation(len(images))], "annotations": annos,
          "categories": [{"id": c, "name": f"class_{c}"} for c in cat_ids]}
    if not dets:
        return gt, Detections.empty()
    cols = [np.concatenate(c) for c in zip(*dets)]
    return gt, Detections(cols[0].astype(np.int64), cols[1].astype(np.int64), cols[2].astype(np.float64), cols[3])


def _random_boxes(rng: np.random.Generator, n: int, w: int, h: int, quantize: bool) -> np.ndarray:
    """[n, 4] XYWH boxes inside a w x h image, side log-uniform from 4 px to the image size (small to large)."""
    bw = np.exp(rng.uniform(np.log(4), np.log(w), n))
    bh = np.clip(bw * np.exp(rng.normal(0, 0.5, n)), 2, h)
    x, y = rng.uniform(0, 1, n) * (w - bw), rng.uniform(0, 1, n) * (h - bh)
    boxes = np.stack([x, y, bw, bh], 1)
    return np.round(boxes) if quantize else boxes


def as_dataset_dicts(gt: dict) -> Tuple[List[dict], List[str], Dict[int, int]]:
    """A generated COCO dict as a dict-registered dataset: (dataset dicts with XYXY boxes and contiguous classes,
    thing_classes, thing_dataset_id_to_contiguous_id); :func:`det_dcn.evaluation.coco_gt.dicts_to_coco_gt` inverts
    it."""
    cats = sorted(c["id"] for c in gt["categories"])
    id_map = {c: i for i, c in enumerate(cats)}
    by_img = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        by_img[a["image_id"]].append({"bbox": [x, y, x + w, y + h], "category_id": id_map[a["category_id"]],
                                      "iscrowd": a["iscrowd"]})
    dicts = [{"file_name": im["file_name"], "image_id": im["id"], "height": im["height"], "width": im["width"],
              "annotations": by_img[im["id"]]} for im in gt["images"]]
    return dicts, [f"class_{c}" for c in cats], id_map
