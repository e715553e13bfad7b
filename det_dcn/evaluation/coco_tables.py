"""Ground truth and detections as column arrays, the input of the vectorised COCO evaluation.

pycocotools keeps one Python dict per box; at COCO scale (36k ground-truth boxes, 500k detections) building and
walking those dicts is most of its time. Here every box is a row of a few numpy arrays, and images and categories
are indices into pycocotools' own orders (sorted image ids, sorted category ids), so the evaluation can reproduce
pycocotools' tie-breaking exactly.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np


@dataclass
class GroundTruth:
    """COCO ground truth of one dataset, as pycocotools' ``COCOeval`` sees it (bbox, ``useCats=1``).

    ``img_ids`` [I] sorted image ids, ``cat_ids`` [K] sorted category ids; then one row per annotation kept by
    pycocotools (its image and category are in the dataset), in the file's order:
    ``img`` [G] index into ``img_ids``, ``cat`` [G] index into ``cat_ids``, ``bbox`` [G, 4] XYWH float64,
    ``area`` [G] float64 (the annotation's "area", which decides the area range), ``crowd`` [G] bool,
    ``id_nonzero`` [G] bool (pycocotools records a match by the ground truth's id, so id 0 reads as "no match").
    """

    img_ids: list
    cat_ids: list
    img: np.ndarray
    cat: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    id_nonzero: np.ndarray

    @classmethod
    def from_coco_dict(cls, coco: dict, source: str = "ground truth") -> "GroundTruth":
        """Build from a COCO instances dict ({"images", "annotations", "categories"}); ``source`` names it in errors.

        Annotations without "area" get the box area and without "iscrowd" 0 (as the evaluator always did).
        """
        for key in ("images", "categories"):
            if key not in coco:
                raise ValueError(f"{source}: no {key!r} key (keys: {sorted(coco)})")
        img_ids = sorted({im["id"] for im in coco["images"]})
        cat_ids = sorted({c["id"] for c in coco["categories"]})
        img_index = {v: i for i, v in enumerate(img_ids)}
        cat_index = {v: i for i, v in enumerate(cat_ids)}
        required = {"id", "image_id", "category_id", "bbox"}
        for i, a in enumerate(coco.get("annotations", [])):
            if not required <= a.keys():
                raise ValueError(f"{source}: annotation #{i} lacks {sorted(required - a.keys())} (keys: {sorted(a)})")
        annos = [a for a in coco.get("annotations", []) if a["image_id"] in img_index and a["category_id"] in cat_index]
        ids = [a["id"] for a in annos]
        if len(set(ids)) != len(ids):
            dup = [i for i, n in Counter(ids).items() if n > 1]
            raise ValueError(f"{source}: annotation ids are not unique (pycocotools would silently evaluate one of "
                             f"each duplicate several times); repeated ids: {sorted(dup)[:10]}")
        bbox = np.array([a["bbox"] for a in annos], dtype=np.float64).reshape(-1, 4)
        bad = ~np.isfinite(bbox).all(1)
        if bad.any():
            a = annos[int(np.flatnonzero(bad)[0])]
            raise ValueError(f"{source}: annotation id {a['id']} has a non-finite bbox {a['bbox']}")
        area = np.array([a["area"] if "area" in a else float(a["bbox"][2]) * float(a["bbox"][3]) for a in annos],
                        dtype=np.float64)
        return cls(
            img_ids=img_ids, cat_ids=cat_ids,
            img=np.array([img_index[a["image_id"]] for a in annos], dtype=np.int64),
            cat=np.array([cat_index[a["category_id"]] for a in annos], dtype=np.int64),
            bbox=bbox, area=area,
            crowd=np.array([bool(a.get("iscrowd", 0)) for a in annos], dtype=bool),
            id_nonzero=np.array([i != 0 for i in ids], dtype=bool),
        )


@dataclass
class Detections:
    """Detections of many images as columns, in results-file order (one row per box).

    ``image_id`` [N] the dataset's image ids, ``category_id`` [N] dataset category ids (int64),
    ``bbox`` [N, 4] XYWH float64, ``score`` [N] float64.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    bbox: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))

    @classmethod
    def concat(cls, parts: Sequence["Detections"]) -> "Detections":
        if not parts:
            return cls.empty()
        fields = ("image_id", "category_id", "bbox", "score")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    def select(self, mask: np.ndarray) -> "Detections":
        return Detections(self.image_id[mask], self.category_id[mask], self.bbox[mask], self.score[mask])

    @classmethod
    def from_results(cls, results: List[dict]) -> "Detections":
        """From a COCO results list [{"image_id", "category_id", "bbox": XYWH, "score"}]."""
        return cls(np.array([r["image_id"] for r in results]).reshape(-1),
                   np.array([r["category_id"] for r in results], dtype=np.int64).reshape(-1),
                   np.array([r["bbox"] for r in results], dtype=np.float64).reshape(-1, 4),
                   np.array([r["score"] for r in results], dtype=np.float64).reshape(-1))

    def to_results(self) -> List[dict]:
        """The COCO results list (what pycocotools' ``loadRes`` and coco_instances_results.json take)."""
        return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in
                zip(self.image_id.tolist(), self.category_id.tolist(), self.bbox.tolist(), self.score.tolist())]

    def index_into(self, gt: GroundTruth, source: str = "detections") -> Dict[str, np.ndarray]:
        """Image and category indices of each row in ``gt``'s orders: {"img": [N], "cat": [N]} int64.

        Raises ValueError naming the ids when a detection's image or category is not in the ground truth.
        """
        img_ids = np.asarray(gt.img_ids)
        img = _lookup(img_ids, self.image_id)
        if (img < 0).any():
            bad = sorted(set(self.image_id[img < 0].tolist()))
            raise ValueError(f"{source}: detections for image ids {bad[:10]} ({len(bad)} ids) that are not in the "
                             f"ground truth")
        cat = _lookup(np.asarray(gt.cat_ids, dtype=np.int64), self.category_id)
        if (cat < 0).any():
            bad = sorted(set(self.category_id[cat < 0].tolist()))
            raise ValueError(f"{source}: detections with category ids {bad[:10]} that are not among the ground "
                             f"truth's categories {list(gt.cat_ids)[:10]}...")
        return {"img": img, "cat": cat}

    def check_finite(self, source: str = "detections") -> None:
        """Raise ValueError naming the first image whose boxes or scores are NaN or infinite."""
        for name, arr in (("bbox", self.bbox), ("score", self.score)):
            bad = nonfinite_rows(arr)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{source}: {int(bad.sum())} detections have a non-finite {name}, e.g. image id "
                                 f"{self.image_id[i]!r}: {name}={arr[i].tolist()}")


def nonfinite_rows(arr: np.ndarray) -> np.ndarray:
    """[N] or [N, C] -> [N] bool: rows holding a NaN or an infinity."""
    return ~np.isfinite(arr if arr.ndim == 2 else arr[:, None]).all(1)


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each of ``values`` [N] in ``sorted_ids`` [I] (ascending), -1 where absent."""
    if len(sorted_ids) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, values)
    pos_c = np.minimum(pos, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos_c] == values, pos_c, -1).astype(np.int64)
