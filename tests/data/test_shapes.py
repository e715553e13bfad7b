"""The built-in synthetic "shapes" dataset: layout, determinism, annotations, safe concurrent generation."""

import filecmp
import json
import multiprocessing
import os
import time

import numpy as np
import pytest

from det_dcn.data import DatasetCatalog, MetadataCatalog, load_coco_json, register_all_builtin, shapes


def _gen(root, n_train=10, n_val=4, seed=0, workers=1):
    shapes.ensure_shapes(str(root), {"train": n_train, "val": n_val}, seed, show_progress=False, workers=workers)


def test_layout_and_annotations(tmp_path):
    _gen(tmp_path)
    for split, n in (("train", 10), ("val", 4)):
        with open(tmp_path / "annotations" / f"instances_{split}.json") as f:
            coco = json.load(f)
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5, 6]
        assert [c["name"] for c in coco["categories"]] == list(shapes.CLASSES)
        assert len(coco["images"]) == n == len(os.listdir(tmp_path / split))
        sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
        assert all(160 <= s <= 192 for hw in sizes.values() for s in hw)
        per_img = {}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            H, W = sizes[a["image_id"]]
            assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
            assert min(w, h) >= 5 and a["area"] <= w * h and a["iscrowd"] == 0
            per_img[a["image_id"]] = per_img.get(a["image_id"], 0) + 1
        assert set(per_img) == set(sizes) and max(per_img.values()) <= shapes.MAX_OBJECTS
    dicts = load_coco_json(shapes.json_path(str(tmp_path), "val"), shapes.image_dir(str(tmp_path), "val"))
    assert len(dicts) == 4 and all(d["annotations"] for d in dicts)


def test_same_seed_same_bytes_any_workers(tmp_path):
    _gen(tmp_path / "a", seed=5, workers=1)
    _gen(tmp_path / "b", seed=5, n_train=130, n_val=4, workers=2)  # > 1 chunk, so the pool is used
    _gen(tmp_path / "c", seed=6)
    names = sorted(os.listdir(tmp_path / "a" / "train"))
    match, mismatch, _ = filecmp.cmpfiles(tmp_path / "a" / "train", tmp_path / "b" / "train", names, shallow=False)
    assert match == names and not mismatch
    assert filecmp.cmp(tmp_path / "a/annotations/instances_val.json", tmp_path / "b/annotations/instances_val.json",
                       shallow=False)
    assert not filecmp.cmp(tmp_path / "a/train/000000.png", tmp_path / "c/train/000000.png", shallow=False)


def test_objects_varied_and_visible():
    """Across images: every class appears and sizes span small to large."""
    classes, sides = set(), []
    for i in range(60):
        img, annos = shapes.render_image(np.random.default_rng([0, 0, i]))
        assert img.dtype == np.uint8 and img.ndim == 3
        for a in annos:
            classes.add(a["category_id"])
            sides.append(max(a["bbox"][2:]))
    assert classes == set(range(1, 7))
    assert min(sides) < 24 and max(sides) > 70


def _worker(root):
    _gen(root, n_train=40, n_val=5)


def test_concurrent_generation_is_safe(tmp_path):
    root = str(tmp_path / "shapes")
    os.makedirs(os.path.join(root, "train"))  # a half-written split of a killed run (no JSON)
    open(os.path.join(root, "train", "junk.png"), "w").close()
    os.makedirs(os.path.join(root, ".val.tmp.99999"))  # a killed run's temporary folder
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(root,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(os.listdir(root)) == [".generate.lock", "annotations", "train", "val"]
    assert len(os.listdir(os.path.join(root, "train"))) == 40
    with open(shapes.json_path(root, "train")) as f:
        assert len(json.load(f)["images"]) == 40


def test_builtin_shapes_read_through_coco_loader(tmp_path):
    _gen(tmp_path / "shapes", n_train=6, n_val=3)
    register_all_builtin(str(tmp_path))
    try:
        val = DatasetCatalog.get("shapes_val")
        assert len(val) == 3 and val[0]["file_name"].endswith(os.path.join("val", "000000.png"))
        meta = MetadataCatalog.get("shapes_val")
        assert meta.thing_classes == list(shapes.CLASSES) and meta.evaluator_type == "coco"
        assert meta.json_file == shapes.json_path(str(tmp_path / "shapes"), "val")
        assert len(DatasetCatalog.get("shapes_train")) == 6
    finally:
        register_all_builtin()


def test_cli_and_montage(tmp_path):
    out = tmp_path / "m.png"
    shapes.main(["--root", str(tmp_path / "s"), "--num-train", "3", "--num-val", "8", "--workers", "1",
                 "--montage", str(out)])
    import cv2

    m = cv2.imread(str(out))
    assert m is not None and m.shape[0] > 300 and m.shape[1] > 1000
    with pytest.raises(ValueError, match="positive"):
        shapes.generate_split(str(tmp_path / "x"), "train", 0)


@pytest.mark.slow
def test_default_size_generation_time(tmp_path):
    start = time.perf_counter()
    shapes.ensure_shapes(str(tmp_path), show_progress=False, workers=1)
    elapsed = time.perf_counter() - start
    print(f"3000 + 300 shapes images in {elapsed:.1f} s on one process")
    assert elapsed < 60
