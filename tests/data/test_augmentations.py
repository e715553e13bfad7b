"""Crop, large-scale jitter and colour jitter: boxes move exactly with their pixels, off by default.

Each geometric check paints boxes as filled rectangles of unique colours, augments with a seeded generator and
compares every transformed (and clipped) box with the bounding box of the pixels of its colour.
"""

import cv2
import numpy as np
import pytest

from det_dcn.config import ConfigError, get_cfg
from det_dcn.config.compat import check_supported_parts
from det_dcn.data.detection_utils import clip_and_filter_boxes
from det_dcn.data.mapper import DatasetMapper
from det_dcn.data.transforms import (ColorJitter, ColorTransform, FixedSizeCrop, RandomCrop, RandomFlip,
                                     ResizeScale, ResizeShortestEdge, apply_augmentations, build_augmentations)

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
BOXES = np.array([[10, 8, 30, 24], [50, 30, 78, 58], [5, 40, 20, 55]], np.float32)  # in an 60x80 (HxW) image


def _painted(h=60, w=80, boxes=BOXES):
    img = np.zeros((h, w, 3), np.uint8)
    for (x1, y1, x2, y2), c in zip(boxes.astype(int), COLOURS):
        img[y1:y2, x1:x2] = c
    return img


def _pixel_box(img, colour):
    """XYXY pixel edges of the pixels nearest to ``colour`` (a resize blurs edges: threshold half-way), or None."""
    mask = np.abs(img.astype(int) - colour).max(axis=2) < 128
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _check_boxes_follow_pixels(augs, seed, atol=0.0, boxes=BOXES):
    """Apply ``augs``; every box that survives clipping sits on its colour's pixels, every dropped one has none.
    Returns the number of boxes kept."""
    img = _painted(boxes=boxes)
    out, tfm = apply_augmentations(augs, img, np.random.default_rng(seed), boxes)
    moved = tfm.apply_boxes(boxes)
    classes = np.arange(len(boxes))
    kept, kept_classes = clip_and_filter_boxes(moved, classes, out.shape[0], out.shape[1])
    for i, colour in enumerate(COLOURS[:len(boxes)]):
        found = _pixel_box(out, colour)
        if i in kept_classes:
            box = kept[list(kept_classes).index(i)]
            if found is None:  # only a sliver narrower than a pixel (after a resize) may show no pixel
                assert min(box[2] - box[0], box[3] - box[1]) < 1.0 + atol and atol > 0, (seed, i, box)
                continue
            np.testing.assert_allclose(box, found, atol=atol, err_msg=f"seed {seed}")
        else:
            assert found is None, (seed, i, found)
    return len(kept)


# --- random crop: detectron2's INPUT.CROP types ---------------------------------------------------------------

def _sizes(crop, h, w, n=400):
    rng = np.random.default_rng(0)
    return np.array([crop.crop_size_for(h, w, rng) for _ in range(n)])


def test_crop_sizes_of_each_type_hand_worked():
    assert set(map(tuple, _sizes(RandomCrop("relative", [0.5, 0.25]), 100, 200))) == {(50, 50)}
    assert set(map(tuple, _sizes(RandomCrop("relative", [0.333, 0.5]), 3, 5))) == {(1, 3)}  # 0.999 -> 1, 2.5 -> 3
    assert set(map(tuple, _sizes(RandomCrop("absolute", [30, 500]), 100, 200))) == {(30, 200)}  # capped by W
    s = _sizes(RandomCrop("absolute_range", [40, 60]), 50, 100)
    assert set(s[:, 0]) == set(range(40, 51)) and set(s[:, 1]) == set(range(40, 61))  # h: [40, min(60, H)]
    s = _sizes(RandomCrop("absolute_range", [80, 90]), 50, 100)
    assert set(s[:, 0]) == {50} and set(s[:, 1]) == set(range(80, 91))  # min(80, H) = max = 50
    s = _sizes(RandomCrop("relative_range", [0.5, 0.8]), 100, 200)
    assert s[:, 0].min() >= 50 and s[:, 0].max() <= 100 and s[:, 1].min() >= 160 and s[:, 1].max() <= 200
    assert s[:, 0].min() < 55 and s[:, 0].max() > 95 and s[:, 1].min() < 165 and s[:, 1].max() > 195


def test_crop_positions_are_uniform_over_every_fitting_window():
    img = np.zeros((10, 12, 3), np.uint8)
    rng = np.random.default_rng(0)
    starts = {(t.x0, t.y0) for t in (RandomCrop("absolute", [7, 9]).get_transform(img, rng) for _ in range(500))}
    assert starts == {(x, y) for x in range(4) for y in range(4)}


@pytest.mark.parametrize("crop_type, size", [("relative", [0.5, 0.5]), ("relative_range", [0.3, 0.3]),
                                             ("absolute", [25, 35]), ("absolute_range", [20, 50])])
def test_crop_moves_boxes_with_pixels_and_drops_boxes_cut_away(crop_type, size):
    kept = [_check_boxes_follow_pixels([RandomCrop(crop_type, size)], seed) for seed in range(40)]
    assert min(kept) < 3  # some crops cut a box away (and it was dropped) ...
    assert max(kept) > 0  # ... others keep boxes, checked against their pixels


def test_crop_before_resize_and_flip_as_in_detectron2():
    augs = [RandomCrop("absolute", [30, 40]), ResizeShortestEdge((90,), 1000), RandomFlip(0.5)]
    kept = [_check_boxes_follow_pixels(augs, seed, atol=1.0) for seed in range(20)]
    assert min(kept) < 3 and max(kept) > 0


def test_around_box_crop_always_keeps_part_of_a_box():
    one_small_box = BOXES[:1] + np.float32([40, 30, 40, 30])  # [50, 38, 70, 54]
    plain = [_check_boxes_follow_pixels([RandomCrop("absolute", [15, 15])], s, boxes=one_small_box)
             for s in range(60)]
    around = [_check_boxes_follow_pixels([RandomCrop("absolute", [15, 15], around_box=True)], s, boxes=one_small_box)
              for s in range(60)]
    assert min(plain) == 0  # a plain crop often misses the box
    assert min(around) == 1  # the window always contains its centre


# --- large-scale jitter -----------------------------------------------------------------------------------------

def test_resize_scale_fits_the_scaled_square():
    img = np.zeros((60, 80, 3), np.uint8)
    rng = np.random.default_rng(0)
    longs = []
    for _ in range(200):
        t = ResizeScale(0.1, 2.0, 100).get_transform(img, rng)
        assert abs(t.new_h / 60 - t.new_w / 80) < 0.02  # aspect ratio kept
        longs.append(t.new_w)
    assert 10 <= min(longs) < 20 and 190 < max(longs) <= 200  # 100 * [0.1, 2.0]


def test_fixed_size_crop_cuts_large_and_keeps_small_images():
    rng = np.random.default_rng(0)
    t = FixedSizeCrop(50).get_transform(np.zeros((60, 80, 3), np.uint8), rng)
    assert (t.h, t.w) == (50, 50) and 0 <= t.y0 <= 10 and 0 <= t.x0 <= 30
    t = FixedSizeCrop(70).get_transform(np.zeros((60, 80, 3), np.uint8), rng)
    assert (t.h, t.w) == (60, 70)  # not padded (the batching pads)


def test_lsj_moves_boxes_with_pixels_within_a_pixel():
    cfg = get_cfg()
    cfg.INPUT.LSJ.ENABLED = True
    cfg.INPUT.LSJ.IMAGE_SIZE = 64
    augs = build_augmentations(cfg, True)
    assert [type(a) for a in augs] == [ResizeScale, FixedSizeCrop, RandomFlip]
    kept = [_check_boxes_follow_pixels(augs, seed, atol=1.0) for seed in range(30)]
    assert min(kept) < 3 and max(kept) == 3  # enlarged-and-cropped images lose boxes, shrunk ones keep all


# --- colour jitter ------------------------------------------------------------------------------------------------

def _reference_jitter(img_bgr, b, c, s):
    """Plain float64 reference, step by step, grey from RGB with BT.601 weights."""
    x = img_bgr.astype(np.float64) * b
    x = (1 - c) * x.mean() + c * x
    r, g, bl = x[..., 2], x[..., 1], x[..., 0]
    grey = (0.299 * r + 0.587 * g + 0.114 * bl)[..., None]
    x = (1 - s) * grey + s * x
    return np.clip(np.round(x), 0, 255)


def test_color_transform_matches_reference_and_stays_uint8():
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    for b, c, s in [(1.2, 0.8, 1.3), (0.7, 1.25, 0.5), (3.0, 2.0, 2.0)]:
        out = ColorTransform(b, c, s, "BGR").apply_image(img)
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert np.abs(out.astype(int) - _reference_jitter(img, b, c, s)).max() <= 1
        rgb = ColorTransform(b, c, s, "RGB").apply_image(img[..., ::-1].copy())
        assert np.array_equal(rgb[..., ::-1], out)  # the grey follows the channel order
    bright = ColorTransform(3.0, 1.0, 1.0).apply_image(img)
    assert bright.max() == 255 and (bright[img > 85] == 255).all()  # saturates, no uint8 wrap-around
    assert np.array_equal(ColorTransform(1.0, 1.0, 1.0).apply_image(img), img)


def test_color_jitter_changes_pixels_not_boxes_and_is_seeded():
    img = _painted()
    jitter = ColorJitter([0.5, 1.5], [0.5, 1.5], [0.5, 1.5])
    out, tfm = apply_augmentations([jitter], img, np.random.default_rng(3))
    assert not np.array_equal(out, img)
    np.testing.assert_array_equal(tfm.apply_boxes(BOXES), BOXES)
    runs = [apply_augmentations([jitter], img, np.random.default_rng(s))[0].tobytes() for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


# --- from the config ----------------------------------------------------------------------------------------------

def test_defaults_build_the_unchanged_resize_and_flip_pipeline():
    cfg = get_cfg()
    augs = build_augmentations(cfg, True)
    assert [type(a) for a in augs] == [ResizeShortestEdge, RandomFlip]
    before = [ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, "choice", "pil"), RandomFlip()]
    img = _painted()
    for seed in range(4):
        new, t_new = apply_augmentations(augs, img, np.random.default_rng(seed), BOXES)
        old, t_old = apply_augmentations(before, img, np.random.default_rng(seed))
        assert new.tobytes() == old.tobytes()
        np.testing.assert_array_equal(t_new.apply_boxes(BOXES), t_old.apply_boxes(BOXES))
    assert build_augmentations(cfg, False) == []


def test_crop_is_accepted_and_placed_first():
    cfg = get_cfg()
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.COLOR_JITTER.ENABLED = True
    check_supported_parts(cfg)  # no longer refused
    assert [type(a) for a in build_augmentations(cfg, True)] == [RandomCrop, ResizeShortestEdge, RandomFlip,
                                                                 ColorJitter]


def test_min_size_train_sampling_range_from_the_config():
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (60, 90)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    augs = build_augmentations(cfg, True)
    img = _painted()
    shorts = set()
    for seed in range(40):
        out, _ = apply_augmentations(augs, img, np.random.default_rng(seed))
        shorts.add(out.shape[0])
        _check_boxes_follow_pixels(augs, seed, atol=1.0)
    assert shorts <= set(range(60, 91)) and len(shorts) > 15


@pytest.mark.parametrize("key, value, message", [
    ("CROP.TYPE", "random", r"INPUT.CROP.TYPE='random': expected one of \['relative'"),
    ("CROP.SIZE", [0.5, 1.5], r"INPUT.CROP.SIZE=\[0.5, 1.5\]: expected 2 fractions in \(0, 1\]"),
    ("CROP.SIZE", [0.5], r"INPUT.CROP.SIZE=\[0.5\]: expected 2 fractions"),
    ("LSJ.SCALE_RANGE", [2.0, 0.1], r"INPUT.LSJ.SCALE_RANGE=\[2.0, 0.1\]: expected \[min, max\]"),
    ("LSJ.IMAGE_SIZE", 0, r"INPUT.LSJ.IMAGE_SIZE=0"),
    ("COLOR_JITTER.CONTRAST", [1.2, 0.8], r"INPUT.COLOR_JITTER.CONTRAST=\[1.2, 0.8\]: expected \[min, max\]"),
    ("MIN_SIZE_TRAIN_SAMPLING", "uniform", r"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'choice' or 'range'"),
])
def test_bad_values_name_the_key_and_value(key, value, message):
    cfg = get_cfg()
    cfg.INPUT.CROP.ENABLED = cfg.INPUT.COLOR_JITTER.ENABLED = True
    cfg.INPUT.LSJ.ENABLED = key.startswith("LSJ")  # LSJ replaces the MIN_SIZE_TRAIN resize
    node = cfg.INPUT
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=message):
        build_augmentations(cfg, True)


def test_crop_absolute_range_needs_min_le_max():
    with pytest.raises(ConfigError, match=r"'absolute_range' needs \[min, max\]"):
        RandomCrop("absolute_range", [60, 40])
    with pytest.raises(ConfigError, match="whole pixel counts"):
        RandomCrop("absolute", [10.5, 20])


def test_mapper_with_every_augmentation_on(tmp_path):
    """Through DatasetMapper from a cfg: a white box on black stays on its pixels after crop + LSJ + flip +
    colour jitter (jitter keeps white bright and black dark), and crowd boxes stay out."""
    img = np.zeros((120, 160, 3), np.uint8)
    img[30:90, 40:120] = 255
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, img)
    d = {"file_name": path, "height": 120, "width": 160, "image_id": 1,
         "annotations": [{"bbox": [40.0, 30.0, 120.0, 90.0], "category_id": 0, "iscrowd": 0},
                         {"bbox": [0.0, 0.0, 10.0, 10.0], "category_id": 1, "iscrowd": 1}]}
    cfg = get_cfg()
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.AROUND_BOX = True
    cfg.INPUT.LSJ.ENABLED = True
    cfg.INPUT.LSJ.IMAGE_SIZE = 96
    cfg.INPUT.LSJ.SCALE_RANGE = [0.5, 1.5]
    cfg.INPUT.COLOR_JITTER.ENABLED = True
    mapper = DatasetMapper.from_config(cfg, is_train=True)
    outputs = [mapper(d, np.random.default_rng(s)) for s in range(12)]
    for out in outputs:
        if out is None:  # LSJ's crop may still cut the box away: the loader then draws another image
            continue
        image = out["image"].numpy().transpose(1, 2, 0)
        assert max(image.shape[:2]) <= 96 and out["classes"].tolist() == [0]
        found = _pixel_box(image, (255, 255, 255))
        np.testing.assert_allclose(out["boxes"][0].numpy(), found, atol=1.0)
    assert sum(o is not None for o in outputs) >= 6
    again = mapper(d, np.random.default_rng(5))
    assert outputs[5] is not None and np.array_equal(again["image"], outputs[5]["image"])
