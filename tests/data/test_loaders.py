"""Train / test loaders on a tiny COCO file with crowd boxes, empty, corrupt, missing and truncated images."""

import itertools
import os

import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.data import (DatasetCatalog, build_detection_test_loader, build_detection_train_loader,
                          get_detection_dataset_dicts)
from det_dcn.data.detection_utils import UNREADABLE_KEY
from det_dcn.utils import comm


def _cfg(name, workers=0, seed=0, ims=2):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = (name,)
    cfg.SOLVER.IMS_PER_BATCH = ims
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.INPUT.MIN_SIZE_TRAIN = (32, 48)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.SEED = seed
    return cfg


def _take(loader, n):
    return list(itertools.islice(iter(loader), n))


def _same(batches_a, batches_b):
    for ba, bb in zip(batches_a, batches_b):
        assert [d["image_id"] for d in ba] == [d["image_id"] for d in bb]
        for da, db in zip(ba, bb):
            assert torch.equal(da["image"], db["image"]) and torch.equal(da["boxes"], db["boxes"])
            assert torch.equal(da["classes"], db["classes"])


def test_train_loader_skips_bad_images_and_counts(registered, caplog):
    name, ds = registered
    loader = build_detection_train_loader(_cfg(name))
    with caplog.at_level("WARNING"):
        batches = _take(loader, 30)
    seen = set()
    for batch in batches:
        assert len(batch) == 2
        for d in batch:
            assert d["file_name"] not in ds["bad_files"]
            seen.add(d["image_id"])
            img, boxes, classes = d["image"], d["boxes"], d["classes"]
            assert img.dtype == torch.uint8 and img.shape[0] == 3 and min(img.shape[1:]) in (32, 48)
            assert boxes.dtype == torch.float32 and classes.dtype == torch.int64 and len(boxes) == len(classes) > 0
            h, w = img.shape[1:]
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert (d["height"], d["width"]) == ((60, 40) if d["image_id"] == 9 else (40, 60))
            if d["image_id"] == 1:  # crowd box left out of the targets
                assert sorted(classes.tolist()) == [1, 2]
    # Crowd-only (2) and annotation-free (3) images are filtered; bad ones skipped.
    assert seen == ds["good_train_ids"]
    assert loader.num_skipped > 0 and set(loader.skipped_files) == ds["bad_files"]
    assert loader.stats()["num_skipped_files"] == 3
    for f in ds["bad_files"]:
        assert os.path.basename(f) in caplog.text


def test_filter_empty_annotations_off(registered):
    name, _ = registered
    dicts = get_detection_dataset_dicts(name, filter_empty=False)
    assert len(dicts) == 10
    assert {d["image_id"] for d in get_detection_dataset_dicts(name)} == {1, 4, 5, 6, 7, 8, 9, 10}


def test_same_seed_same_batches_regardless_of_workers(registered):
    name, _ = registered
    ref = _take(build_detection_train_loader(_cfg(name, seed=3)), 6)
    _same(ref, _take(build_detection_train_loader(_cfg(name, seed=3)), 6))
    _same(ref, _take(build_detection_train_loader(_cfg(name, workers=2, seed=3)), 6))
    other = _take(build_detection_train_loader(_cfg(name, seed=4)), 6)
    assert [d["image_id"] for b in other for d in b] != [d["image_id"] for b in ref for d in b]


def test_resume_continues_data_order(registered):
    name, _ = registered
    ref = _take(build_detection_train_loader(_cfg(name, seed=1)), 9)
    _same(ref[5:], _take(build_detection_train_loader(_cfg(name, seed=1), start_iter=5), 4))
    loader = build_detection_train_loader(_cfg(name, seed=1))
    loader.set_start_iter(7)
    assert loader.start_iter == 7
    _same(ref[7:], _take(loader, 2))


def test_per_rank_batch_size(registered, monkeypatch):
    name, _ = registered
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "get_rank", lambda: 1)
    batch = _take(build_detection_train_loader(_cfg(name, ims=4)), 1)[0]
    assert len(batch) == 2
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        build_detection_train_loader(_cfg(name, ims=3))


def test_test_loader_marks_unreadable_images_naming_the_file(registered):
    """Evaluation must survive a broken image: the loader yields a stand-in (UNREADABLE_KEY, no "image")."""
    name, ds = registered
    for workers in (0, 1):
        batches = list(build_detection_test_loader(_cfg(name, workers=workers), name))
        marked = {b[0]["file_name"]: b[0] for b in batches if UNREADABLE_KEY in b[0]}
        assert set(marked) == ds["bad_files"] and len(batches) == 10
        for f, d in marked.items():
            assert f in d[UNREADABLE_KEY] and "image" not in d and d["image_id"] in (5, 6, 7)
        assert all("image" in b[0] for b in batches if UNREADABLE_KEY not in b[0])


def test_test_loader_every_image_once_at_original_size(registered, monkeypatch):
    name, ds = registered
    good = [d for d in DatasetCatalog.get(name) if d["file_name"] not in ds["bad_files"]]
    DatasetCatalog.register("tmp_good_only", lambda: good)
    try:
        ids = []
        for rank in range(3):
            monkeypatch.setattr(comm, "get_world_size", lambda: 3)
            monkeypatch.setattr(comm, "get_rank", lambda r=rank: r)
            for batch in build_detection_test_loader(_cfg(name), "tmp_good_only"):
                (d,) = batch
                assert tuple(d["image"].shape) == (3, d["height"], d["width"]) and "boxes" not in d
                ids.append(d["image_id"])
        assert sorted(ids) == sorted(d["image_id"] for d in good)
    finally:
        DatasetCatalog.remove("tmp_good_only")


def test_loaders_leave_global_torch_rng_alone(registered):
    """Training code draws from the global torch RNG; a loader that also drew from it (e.g. when its iterator
    is created at a resume) would make a resumed run differ from an uninterrupted one."""
    name, ds = registered
    good = [d for d in DatasetCatalog.get(name) if d["file_name"] not in ds["bad_files"]]
    DatasetCatalog.register("tmp_good_rng", lambda: good)
    try:
        for workers in (0, 1):
            torch.manual_seed(123)
            _take(build_detection_train_loader(_cfg(name, workers=workers)), 2)
            list(build_detection_test_loader(_cfg(name, workers=workers), "tmp_good_rng"))
            a = torch.rand(3)
            torch.manual_seed(123)
            assert torch.equal(a, torch.rand(3)), workers
    finally:
        DatasetCatalog.remove("tmp_good_rng")
