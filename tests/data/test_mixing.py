"""Mosaic and MixUp (det_dcn/data/mixing.py): boxes follow their pixels, blending is exact, bad partners are skipped.

The unit tests wrap an in-memory mapper whose images paint every box as a filled rectangle of its own colour (the
class index picks the colour), so a combined sample can be checked box by box against its pixels.
"""

import itertools

import numpy as np
import pytest
import torch

from det_dcn.config import ConfigError, get_cfg
from det_dcn.data import build_detection_train_loader
from det_dcn.data.detection_utils import BadDataError
from det_dcn.data.mixing import MOSAIC_MIN_VISIBLE, MixUp, Mosaic, build_mixing

PAD = (10.0, 20.0, 30.0)
# 8 distinct colours, one per class; none equal to the pad value or to the black background
COLOURS = torch.tensor([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0], [250, 0, 250], [0, 250, 250],
                        [250, 250, 250], [120, 250, 60]], dtype=torch.uint8)


def _sample(index, call=None):
    """Image ``index`` (0-3): 64x96, two boxes (shifted by ``index``) of classes 2 * call and 2 * call + 1, where
    ``call`` defaults to ``index``."""
    h, w = 64, 96
    call = index if call is None else call
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    boxes = torch.tensor([[6, 4, 40, 30], [44, 20, 90, 60]], dtype=torch.float32) + index
    classes = torch.tensor([2 * call, 2 * call + 1])
    for (x0, y0, x1, y1), c in zip(boxes.int().tolist(), classes.tolist()):
        image[:, y0:y1, x0:x1] = COLOURS[c].view(3, 1, 1)
    return {"image": image, "boxes": boxes, "classes": classes, "image_id": index, "file_name": f"{index}.jpg"}


DICTS = [{"index": i, "file_name": f"{i}.jpg"} for i in range(4)]


def _mapper(d, rng):
    return _sample(d["index"])


def _counting_mapper():
    """A mapper whose k-th call paints classes 2k and 2k + 1: every box of a mosaic has its own colour, even when
    the same image is drawn twice."""
    calls = itertools.count()
    return lambda d, rng: _sample(d["index"], next(calls))


def _pixel_box(image, colour):
    mask = (image.int() - colour.int().view(3, 1, 1)).abs().amax(0) < 60
    if not mask.any():
        return None
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


@pytest.mark.parametrize("seed", range(12))
def test_mosaic_boxes_follow_their_pixels(seed):
    mapper = _counting_mapper()
    mosaic = Mosaic(mapper, mapper, DICTS, prob=1.0, pad_value=PAD)
    out = mosaic(DICTS[0], np.random.default_rng(seed))
    image = out["image"]
    assert image.shape == (3, 64, 96) and image.dtype == torch.uint8
    assert len(out["boxes"]) == len(out["classes"]) > 0
    for box, c in zip(out["boxes"], out["classes"].tolist()):
        found = _pixel_box(image, COLOURS[c])
        assert found is not None, (seed, c)
        # half scale: box edges land on half pixels, the antialiased edge rounds either way
        torch.testing.assert_close(box, found, atol=1.0, rtol=0, msg=f"seed {seed} class {c}")
    assert (out["boxes"][:, :2] >= 0).all() and (out["boxes"][:, 2] <= 96).all() and (out["boxes"][:, 3] <= 64).all()
    # a box missing from the output shows under MOSAIC_MIN_VISIBLE of its half-scale area (+ an edge pixel)
    for c in set(range(8)) - set(out["classes"].tolist()):
        found = _pixel_box(image, COLOURS[c])
        if found is not None:
            w, h = (found[2:] - found[:2]).tolist()
            full = (torch.tensor([[6, 4, 40, 30], [44, 20, 90, 60]])[c % 2] / 2).tolist()
            assert (w - 1) * (h - 1) < MOSAIC_MIN_VISIBLE * (full[2] - full[0]) * (full[3] - full[1]), (seed, c)
    # the primary image supplies the rest of the sample's fields
    assert out["image_id"] == 0 and out["file_name"] == "0.jpg"


def test_mosaic_uses_four_images_and_fills_the_rest_with_the_pixel_mean():
    seen = set()
    for seed in range(20):
        mapper = _counting_mapper()
        out = Mosaic(mapper, mapper, DICTS, prob=1.0, pad_value=PAD)(DICTS[0], np.random.default_rng(seed))
        seen.update((out["classes"] // 2).tolist())
        pad = (out["image"] == torch.tensor(PAD, dtype=torch.uint8).view(3, 1, 1)).all(0)
        black = (out["image"] == 0).all(0)
        assert pad.any() or black.any()
    assert seen == {0, 1, 2, 3}


def test_probability_zero_and_one():
    never = Mosaic(_mapper, _mapper, DICTS, prob=0.0, pad_value=PAD)
    out = never(DICTS[1], np.random.default_rng(0))
    assert torch.equal(out["image"], _sample(1)["image"]) and torch.equal(out["boxes"], _sample(1)["boxes"])
    always = MixUp(_mapper, _mapper, [DICTS[2]], prob=1.0, alpha=1.5, pad_value=PAD)
    out = always(DICTS[1], np.random.default_rng(0))
    assert sorted(out["classes"].tolist()) == [2, 3, 4, 5]


def test_mixup_blends_pixels_and_keeps_both_images_boxes():
    def mapper(d, rng):  # a: 40x50 of 200, b: 30x60 of 100; one box each
        h, w, v = (40, 50, 200) if d["index"] == 0 else (30, 60, 100)
        box = torch.tensor([[1.0, 2.0, 11.0, 12.0]]) * (1 + d["index"])
        return {"image": torch.full((3, h, w), v, dtype=torch.uint8), "boxes": box,
                "classes": torch.tensor([d["index"]])}

    dicts = [{"index": 0}, {"index": 1}]
    mixup = MixUp(mapper, mapper, [dicts[1]], prob=1.0, alpha=1.5, pad_value=PAD)
    lams = []
    for seed in range(10):
        out = mixup(dicts[0], np.random.default_rng(seed))
        image = out["image"].float()
        assert image.shape == (3, 40, 60)
        lam = (image[0, 0, 0] - 100) / 100  # both images cover (0, 0); rounded to 1/100: +-1 below
        lams.append(float(lam))
        pad = torch.tensor(PAD).view(3, 1)
        torch.testing.assert_close(image[:, :30, :50], (lam * 200 + (1 - lam) * 100).expand(3, 30, 50), atol=0.5,
                                   rtol=0)
        torch.testing.assert_close(image[:, 35, 10:50], (lam * 200 + (1 - lam) * pad).expand(3, 40), atol=1.5,
                                   rtol=0)  # a only
        torch.testing.assert_close(image[:, 10, 50:], (lam * pad + (1 - lam) * 100).expand(3, 10), atol=1.5,
                                   rtol=0)  # b only
        torch.testing.assert_close(image[:, 35, 55], pad[:, 0], atol=0.5, rtol=0)  # neither
        assert torch.equal(out["boxes"], torch.tensor([[1.0, 2.0, 11.0, 12.0], [2.0, 4.0, 22.0, 24.0]]))
        assert out["classes"].tolist() == [0, 1]
    assert 0 < min(lams) and max(lams) < 1 and np.std(lams) > 0.05  # drawn, not fixed


def test_same_generator_same_sample():
    mosaic = MixUp(Mosaic(_mapper, _mapper, DICTS, 1.0, PAD), _mapper, DICTS, 1.0, 1.5, PAD)
    a = mosaic(DICTS[3], np.random.default_rng(7))
    b = mosaic(DICTS[3], np.random.default_rng(7))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])


def test_unreadable_partner_is_named_and_the_sample_stays_plain(caplog):
    def mapper(d, rng):
        if d["index"] == 9:
            raise BadDataError(f"cannot read image '{d['file_name']}'")
        return _sample(d["index"])

    mixup = MixUp(mapper, mapper, [{"index": 9, "file_name": "broken.jpg"}], prob=1.0, alpha=1.5, pad_value=PAD)
    with caplog.at_level("WARNING"):
        out = mixup(DICTS[0], np.random.default_rng(0))
    assert torch.equal(out["image"], _sample(0)["image"])
    assert "broken.jpg" in caplog.text


def test_off_by_default_and_bad_values_name_the_key():
    cfg = get_cfg()
    assert build_mixing(cfg, _mapper, DICTS) is _mapper
    cfg.INPUT.MIXUP.ENABLED = True
    cfg.INPUT.MIXUP.ALPHA = 0.0
    with pytest.raises(ConfigError, match=r"INPUT.MIXUP.ALPHA=0.0"):
        build_mixing(cfg, _mapper, DICTS)
    cfg.INPUT.MIXUP.ENABLED = False
    cfg.INPUT.MOSAIC.ENABLED = True
    cfg.INPUT.MOSAIC.PROB = 1.5
    with pytest.raises(ConfigError, match=r"INPUT.MOSAIC.PROB=1.5"):
        build_mixing(cfg, _mapper, DICTS)


def test_train_loader_with_mosaic_and_mixup_on_files_with_broken_images(registered, caplog):
    name, ds = registered
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (name,)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (32, 48)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.INPUT.MOSAIC.ENABLED = True
    cfg.INPUT.MIXUP.ENABLED = True
    with caplog.at_level("WARNING"):
        batches = list(itertools.islice(iter(build_detection_train_loader(cfg)), 20))
        again = list(itertools.islice(iter(build_detection_train_loader(cfg)), 20))
    cfg.INPUT.MOSAIC.ENABLED = cfg.INPUT.MIXUP.ENABLED = False
    plain = list(itertools.islice(iter(build_detection_train_loader(cfg)), 20))
    differs = 0
    for batch, batch2, batch0 in zip(batches, again, plain):
        for d, d2, d0 in zip(batch, batch2, batch0):
            assert torch.equal(d["image"], d2["image"]) and torch.equal(d["boxes"], d2["boxes"])
            h, w = d["image"].shape[1:]
            boxes = d["boxes"]
            assert len(boxes) > 0 and (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all()
            assert (boxes[:, 3] <= h).all() and ((boxes[:, 2:] - boxes[:, :2]) > 0).all()
            assert d["classes"].dtype == torch.int64 and 0 <= d["classes"].min() and d["classes"].max() < 3
            differs += d["image"].shape != d0["image"].shape or not torch.equal(d["image"], d0["image"])
    assert differs > 10
