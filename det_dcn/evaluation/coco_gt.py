"""COCO ground truth of a registered dataset as a COCO dict: from its JSON file or built from its dataset dicts."""

import json
from typing import Dict, List


def dicts_to_coco_gt(dataset_dicts: List[dict], thing_classes: List[str], id_map: Dict[int, int]) -> dict:
    """Dataset dicts (XYXY, contiguous classes) -> a COCO ground-truth dict (XYWH, dataset category ids)."""
    inv = {v: k for k, v in id_map.items()}
    images, annos = [], []
    for d in dataset_dicts:
        images.append({"id": d["image_id"], "height": d["height"], "width": d["width"], "file_name": d["file_name"]})
        for a in d.get("annotations", []):
            x1, y1, x2, y2 = (float(v) for v in a["bbox"])
            annos.append({"id": len(annos) + 1, "image_id": d["image_id"], "category_id": inv[a["category_id"]],
                          "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                          "iscrowd": int(a.get("iscrowd", 0))})
    cats = [{"id": inv[i], "name": n} for i, n in enumerate(thing_classes)]
    return {"images": images, "annotations": annos, "categories": cats}


def restrict_coco_gt(coco: dict, image_ids) -> dict:
    """The COCO dict with only the images in ``image_ids`` and their annotations (categories unchanged)."""
    keep = set(image_ids)
    return {**coco, "images": [im for im in coco["images"] if im["id"] in keep],
            "annotations": [a for a in coco.get("annotations", []) if a.get("image_id") in keep]}


def load_coco_gt(json_file: str) -> dict:
    """Read a COCO instances JSON; annotations without "area" get their box area and without "iscrowd" 0
    (``COCOeval`` needs both; minimal COCO-format files sometimes lack them)."""
    try:
        with open(json_file) as f:
            coco = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Cannot read COCO ground truth {json_file}: {type(e).__name__}: {e}") from e
    if not isinstance(coco, dict) or "images" not in coco or "categories" not in coco:
        keys = sorted(coco) if isinstance(coco, dict) else type(coco).__name__
        raise ValueError(f"COCO ground truth {json_file}: expected a dict with 'images', 'annotations' and "
                         f"'categories', got {keys}")
    for ann in coco.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        if "area" not in ann and "bbox" in ann:  # a missing bbox is reported by GroundTruth.from_coco_dict
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    return coco

