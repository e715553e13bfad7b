"""A tiny COCO-format dataset with every kind of trouble, written into tmp_path."""

import json
import os

import cv2
import numpy as np
import pytest

CATEGORIES = [{"id": 42, "name": "c"}, {"id": 3, "name": "a"}, {"id": 7, "name": "b"}]  # non-contiguous, unordered
# contiguous order follows increasing id: a (3) -> 0, b (7) -> 1, c (42) -> 2


def _img(h, w, seed):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def coco_dataset(tmp_path):
    """Returns dict(json_file, image_root, bad_files={name: reason}, ids) for this layout:

    1 good (2 boxes + 1 crowd), 2 crowd-only, 3 no annotations, 4 degenerate/outside boxes + 1 clipped box,
    5 corrupt bytes, 6 missing file, 7 truncated JPEG, 8-10 good (9 portrait).
    """
    root = tmp_path / "coco"
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, annos = [], []

    def add_image(i, h=40, w=60, ext="png", write=True):
        name = f"{i:03d}.{ext}"
        if write:
            cv2.imwrite(str(img_dir / name), _img(h, w, i))
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        return name

    def add_box(img_id, cat, bbox, crowd=0):
        annos.append({"id": len(annos) + 1, "image_id": img_id, "category_id": cat, "bbox": bbox,
                      "iscrowd": crowd, "area": bbox[2] * bbox[3]})

    add_image(1)
    add_box(1, 7, [5, 5, 10, 20])
    add_box(1, 42, [20, 10, 30, 15])
    add_box(1, 3, [0, 0, 60, 40], crowd=1)
    add_image(2)
    add_box(2, 3, [1, 1, 10, 10], crowd=1)
    add_image(3)
    add_image(4)
    add_box(4, 3, [5, 5, 0, 10])  # zero width
    add_box(4, 3, [100, 100, 5, 5])  # entirely outside the 60x40 image
    add_box(4, 7, [50, 30, 20, 20])  # partly outside: clipped to [50, 30, 60, 40]
    corrupt = add_image(5, write=False)
    (img_dir / corrupt).write_bytes(b"this is not an image at all" * 10)
    add_box(5, 3, [1, 1, 10, 10])
    missing = add_image(6, write=False)
    add_box(6, 3, [1, 1, 10, 10])
    trunc = add_image(7, ext="jpg")
    data = (img_dir / trunc).read_bytes()
    (img_dir / trunc).write_bytes(data[: len(data) // 2])
    add_box(7, 3, [1, 1, 10, 10])
    for i in (8, 9, 10):
        h, w = (60, 40) if i == 9 else (40, 60)
        add_image(i, h, w)
        add_box(i, [3, 7, 42][i % 3], [2, 3, 15, 12])
    json_file = root / "instances.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annos, "categories": CATEGORIES}))
    return {
        "json_file": str(json_file),
        "image_root": str(img_dir),
        "bad_files": {os.path.join(str(img_dir), n) for n in (corrupt, missing, trunc)},
        "good_train_ids": {1, 4, 8, 9, 10},
    }


@pytest.fixture
def registered(coco_dataset, request):
    """Registers ``coco_dataset`` under a unique name; removed afterwards."""
    from det_dcn.data import DatasetCatalog, MetadataCatalog, register_coco_instances

    name = f"test_coco_{request.node.name}"
    register_coco_instances(name, coco_dataset["json_file"], coco_dataset["image_root"])
    yield name, coco_dataset
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
