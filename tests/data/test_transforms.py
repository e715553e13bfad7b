"""Transforms move boxes exactly with the pixels."""

import numpy as np
import pytest

from det_dcn.data.transforms import (HFlipTransform, RandomFlip, ResizeShortestEdge, ResizeTransform, VFlipTransform,
                                     apply_augmentations, shortest_edge_size)


def _image_with_box(h, w, box):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


def _box_of(img):
    ys, xs = np.nonzero(img[..., 0] > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # pixel edges, XYXY


def test_flips_match_pixels():
    box = [3, 5, 11, 9]
    img = _image_with_box(16, 20, box)
    for t in (HFlipTransform(20), VFlipTransform(16)):
        out_box = t.apply_boxes(np.array([box], np.float32))[0]
        assert list(out_box) == _box_of(t.apply_image(img))
    assert list(HFlipTransform(20).apply_boxes(np.array([box], np.float32))[0]) == [9, 5, 17, 9]


def test_resize_scales_boxes_with_pixels():
    box = [8, 4, 24, 20]
    img = _image_with_box(32, 40, box)
    t = ResizeTransform(32, 40, 64, 80)
    out = t.apply_image(img)
    assert out.shape == (64, 80, 3)
    np.testing.assert_allclose(t.apply_boxes(np.array([box], np.float32))[0], [16, 8, 48, 40])
    assert _box_of(out) == [16, 8, 48, 40]
    with pytest.raises(ValueError, match="expects a 32x40"):
        t.apply_image(np.zeros((10, 10, 3), np.uint8))


def test_shortest_edge_size_and_cap():
    assert shortest_edge_size(100, 200, 50, 1000) == (50, 100)
    assert shortest_edge_size(100, 400, 200, 500) == (125, 500)  # capped by the long side
    assert shortest_edge_size(300, 100, 160, 0) == (480, 160)  # 0: no cap


def test_resize_shortest_edge_choice_and_range():
    img = np.zeros((100, 150, 3), np.uint8)
    rng = np.random.default_rng(0)
    aug = ResizeShortestEdge((64, 80), 1000, "choice")
    sizes = {aug.get_transform(img, rng).new_h for _ in range(50)}
    assert sizes == {64, 80}
    aug = ResizeShortestEdge((60, 70), 1000, "range")
    sizes = {aug.get_transform(img, rng).new_h for _ in range(200)}
    assert min(sizes) >= 60 and max(sizes) <= 70 and len(sizes) > 5
    with pytest.raises(ValueError, match="range"):
        ResizeShortestEdge((1, 2, 3), 10, "range")
    with pytest.raises(ValueError, match="SAMPLING"):
        ResizeShortestEdge(10, 10, "random")


def test_augmentations_compose_and_are_seeded():
    box = np.array([[8, 4, 24, 20]], np.float32)
    img = _image_with_box(32, 40, [8, 4, 24, 20])
    augs = [ResizeShortestEdge((64,), 1000), RandomFlip(1.0, "horizontal")]
    out, tfm = apply_augmentations(augs, img, np.random.default_rng(1))
    new_box = tfm.apply_boxes(box)[0]
    assert list(new_box) == _box_of(out) == [80 - 48, 8, 80 - 16, 40]
    a = [apply_augmentations([RandomFlip(0.5)], img, np.random.default_rng(s))[0].tobytes() for s in range(8)]
    b = [apply_augmentations([RandomFlip(0.5)], img, np.random.default_rng(s))[0].tobytes() for s in range(8)]
    assert a == b and len(set(a)) == 2
