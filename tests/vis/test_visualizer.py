"""Drawing helpers, input expansion and atomic writes used by the demo tools (no model needed)."""

import json
import os

import cv2
import numpy as np
import pytest

from det_dcn.utils.atomic_io import atomic_imwrite, atomic_write_json
from det_dcn.vis.image_inputs import expand_inputs
from det_dcn.vis.visualizer import (View, class_color, draw_detections, draw_points, hstack_panels,
                                    upscale_for_display)


def test_class_colors_distinct_and_stable():
    colors = [class_color(i) for i in range(10)]
    assert len(set(colors)) == 10
    assert class_color(3) == colors[3]
    assert all(0 <= c <= 255 for col in colors for c in col)


def test_draw_detections_changes_pixels_and_keeps_input():
    image = np.full((60, 80, 3), 100, np.uint8)
    up, factor = upscale_for_display(image, 256)
    assert factor == 5 and up.shape == (300, 400, 3)
    out = draw_detections(up, [[10, 10, 40, 30]], [0.9], [2], ["triangle"], scale=factor)
    assert out.shape == up.shape and np.any(out != up)
    assert np.all(up == 100)  # the input is not drawn into
    # The box's left edge is drawn in the class colour at x = 10 * 5.
    col = out[100, 48:53].reshape(-1, 3)
    assert any(np.abs(c.astype(int) - np.array(class_color(2))).max() < 40 for c in col)
    with pytest.raises(ValueError, match="same length"):
        draw_detections(image, [[0, 0, 1, 1]], [0.5, 0.2], [0], None)
    with pytest.raises(ValueError, match="uint8"):
        draw_detections(image.astype(np.float32), [], [], [], None)


def test_draw_points_weights_fade():
    image = np.zeros((40, 40, 3), np.uint8)
    strong = draw_points(image, [[10, 10]], (0, 0, 255), 4, weights=[1.0])
    weak = draw_points(image, [[10, 10]], (0, 0, 255), 4, weights=[0.1])
    assert strong[..., 2].sum() > weak[..., 2].sum() > 0


def test_view_maps_pixels_consistently():
    image = np.zeros((20, 20, 3), np.uint8)
    image[5, 7] = 255  # pixel (x=7, y=5) spans [7, 8) x [5, 6): its centre is (7.5, 5.5)
    view = View((0, 0, 20, 20), 100, 100)
    panel = view.render(image)
    cx, cy = view.to_panel(np.array([7.5, 5.5]))
    assert panel[int(round(cy)), int(round(cx))].max() > 200
    canvas = hstack_panels([panel, panel[:50]])
    assert canvas.shape[0] == 100 + 24


def test_expand_inputs(tmp_path):
    for name in ("b.jpg", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.jpg").write_bytes(b"x")
    files, problems = expand_inputs([str(tmp_path), str(tmp_path / "sub" / "*.jpg"), str(tmp_path / "a.png"),
                                     str(tmp_path / "missing.jpg"), str(tmp_path / "*.gif")])
    assert [os.path.basename(f) for f in files] == ["a.png", "b.jpg", "c.jpg"]  # folder sorted, no duplicates
    assert [os.path.basename(p[0]) for p in problems] == ["missing.jpg", "*.gif"]


def test_atomic_writes(tmp_path):
    atomic_write_json(str(tmp_path / "r.json"), {"a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}
    atomic_imwrite(str(tmp_path / "p.png"), np.full((4, 5, 3), 7, np.uint8))
    assert cv2.imread(str(tmp_path / "p.png")).shape == (4, 5, 3)
    assert sorted(os.listdir(tmp_path)) == ["p.png", "r.json"]  # no temporary files left
    with pytest.raises(ValueError, match="p.nope"):
        atomic_imwrite(str(tmp_path / "p.nope"), np.zeros((4, 5, 3), np.uint8))
