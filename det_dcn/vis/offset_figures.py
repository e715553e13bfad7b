"""Panels that show where deformable layers sample (used by tools/visualize_offsets.py).

Every function takes the ORIGINAL image ([H, W, 3] uint8 BGR) and geometry in its continuous pixel coordinates
(see det_dcn/vis/deform_sampling.py) and returns a titled panel with a legend saying what is drawn.
"""

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .visualizer import (View, add_title_and_legend, class_color, draw_cross, draw_detections, draw_points,
                         draw_polyline_rect, fit_window)

GREEN = (60, 220, 60)
YELLOW = (0, 215, 255)
RED = (40, 40, 235)
GREY = (210, 210, 210)
CYAN = (230, 200, 0)
WHITE = (255, 255, 255)
MAGENTA = (220, 60, 220)
# Sampling points of the top deformable layer, the one below it, and further down.
DEPTH_COLORS = [(YELLOW, "yellow"), (RED, "red"), (MAGENTA, "magenta"), (CYAN, "blue")]
DEPTH_RADII = [6.0, 4.0, 2.5, 2.0]


def _dim(panel: np.ndarray, factor: float = 0.7) -> np.ndarray:
    """Darken a rendered image so coloured marks on top of it stand out."""
    return (panel.astype(np.float32) * factor).astype(np.uint8)


def _outline_image(panel: np.ndarray, view: View, shape) -> None:
    """Thin white outline of the image's extent (points may fall outside it, on the grey border)."""
    a, b = view.to_panel(np.array([0.0, 0.0])), view.to_panel(np.array([shape[1], shape[0]], dtype=np.float64))
    draw_polyline_rect(panel, (a[0], a[1], b[0], b[1]), (245, 245, 245), 1)


def detections_panel(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                     class_names: Optional[Sequence[str]], size: int, position: Optional[Sequence[float]] = None,
                     threshold: float = 0.0) -> np.ndarray:
    """The image with its detections (and the chosen DCN position as a green x), scaled into a size x size panel."""
    h, w = image.shape[:2]
    view = View((0, 0, w, h), size, size)
    panel = view.render(image, border=(255, 255, 255))
    boxes_panel = view.to_panel(np.asarray(boxes, dtype=np.float64).reshape(-1, 2)).reshape(-1, 4)
    panel = draw_detections(panel, boxes_panel, scores, classes, class_names)
    legend = [(f"{len(boxes)} detection(s) with score >= {threshold:g}; box colour = class", None)]
    if position is not None:
        draw_cross(panel, view.to_panel(np.asarray(position, dtype=np.float64)), 7, GREEN)
        legend.append((f"green x: the position whose DCN sampling points are shown, "
                       f"({position[0]:.0f}, {position[1]:.0f}) px", GREEN))
    return add_title_and_legend(panel, f"Detections ({w}x{h} image)", legend)


def dcn_panel(image: np.ndarray, unit_xy: Sequence[float], levels: List[Tuple[np.ndarray, np.ndarray]],
              regular_levels: List[Tuple[np.ndarray, np.ndarray]], layer_names: Sequence[str],
              strides: Sequence[float], modulated: bool, size: int, notes: Sequence[str] = ()) -> np.ndarray:
    """Sampling points of stacked deformable convs for one output unit, against the regular dilated grid.

    ``levels`` / ``regular_levels``: per layer, top layer first, (points [K**n, 2], weights [K**n]) as returned by
    :func:`det_dcn.vis.deform_sampling.propagate_sampling` (converted to original-image pixels).
    """
    unit = np.asarray(unit_xy, dtype=np.float64)
    every = np.concatenate([unit[None]] + [p for p, _ in levels] + [p for p, _ in regular_levels])
    view = View(fit_window(every, image.shape, margin=0.08, min_size=16), size, size)
    panel = _dim(view.render(image))
    _outline_image(panel, view, image.shape)
    k = len(levels[0][0])
    last = len(levels) - 1
    # Regular grid first, as hollow rings, so the learned points are drawn over it.
    for depth, (pts, _) in enumerate(regular_levels):
        radius = 7.0 if depth == 0 and last > 0 else 4.0
        panel = draw_points(panel, view.to_panel(pts), GREY, radius, filled=False)
    # Faint lines show the hierarchy: unit -> its K points -> each one's K points.
    overlay = panel.copy()
    parents = view.to_panel(unit[None])
    for depth, (pts, _) in enumerate(levels):
        child = view.to_panel(pts)
        for i, c in enumerate(child):
            p = parents[i // k]
            cv2.line(overlay, tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in c),
                     DEPTH_COLORS[min(depth, 3)][0], 1, cv2.LINE_AA)
        parents = child
    panel = cv2.addWeighted(overlay, 0.35, panel, 0.65, 0)
    for depth in range(last, -1, -1):
        pts, wts = levels[depth]
        color = DEPTH_COLORS[min(depth, 3)][0]
        radius = DEPTH_RADII[min(depth, 3)] if last > 0 else 5.0
        panel = draw_points(panel, view.to_panel(pts), color, radius, weights=wts if modulated else None,
                            outline=(0, 0, 0))
    draw_cross(panel, view.to_panel(unit), 8, GREEN)

    legend = [(f"green x: one output unit of {layer_names[0]} (stride {strides[0]:g})", GREEN),
              (f"yellow: its {k} sampling points (learned offsets)", YELLOW)]
    for depth in range(1, len(levels)):
        color, color_name = DEPTH_COLORS[min(depth, 3)]
        legend.append((f"{color_name}: at each {DEPTH_COLORS[min(depth - 1, 3)][1]} point, the {k} points of "
                       f"{layer_names[depth]}: {len(levels[depth][0])} points in all", color))
    legend.append(("grey rings: the regular dilated grid of the same layers (zero offsets)", GREY))
    if modulated:
        legend.append(("dot size and opacity: the DCNv2 modulation mask (product down the stack)", None))
    legend.extend((note, None) for note in notes)
    legend.append(("The offsets are predicted per output position: another position samples elsewhere.", None))
    title = f"DCN sampling points, {len(levels)} stacked layer(s)"
    return add_title_and_legend(panel, title, legend)


def dcn_positions_panel(image: np.ndarray, units: np.ndarray, points: np.ndarray, regular: np.ndarray,
                        layer_name: str, size: int) -> np.ndarray:
    """Several output units of ONE deformable layer, each with its own sampling points in its own colour.

    units: [U, 2]; points / regular: [U, K, 2] in original-image pixels.
    """
    h, w = image.shape[:2]
    every = np.concatenate([units, points.reshape(-1, 2), np.array([[0, 0], [w, h]], dtype=np.float64)])
    view = View(fit_window(every, image.shape, margin=0.03), size, size)
    panel = _dim(view.render(image))
    _outline_image(panel, view, image.shape)
    for u in range(len(units)):
        color = class_color(u + 3)
        panel = draw_points(panel, view.to_panel(regular[u]), GREY, 3.0, filled=False)
        c = view.to_panel(units[u])
        for p in view.to_panel(points[u]):
            cv2.line(panel, tuple(int(round(v)) for v in c), tuple(int(round(v)) for v in p), color, 1, cv2.LINE_AA)
        panel = draw_points(panel, view.to_panel(points[u]), color, 4.0, outline=(0, 0, 0))
        draw_cross(panel, c, 6, color)
    legend = [(f"{len(units)} output units of {layer_name}, one colour each: x = the unit, "
               f"dots = where it samples", None),
              ("grey rings: the regular dilated grid of each unit", GREY),
              ("Same layer, same weights, different sampling per position: the offsets are a per-position "
               "output of conv_offset, not a deformed kernel.", None)]
    return add_title_and_legend(panel, "DCN: learned offsets differ per position", legend)


def dpool_panel(image: np.ndarray, box: Sequence[float], regular_bins: np.ndarray, deformed_bins: np.ndarray,
                mask: Optional[np.ndarray], label: str, color: Tuple[int, int, int], gamma: float,
                size: int) -> np.ndarray:
    """Deformable RoI pooling bins of one detection against the regular bins.

    regular_bins / deformed_bins: [PH, PW, 4] (x1, y1, x2, y2) in original-image pixels; mask [PH, PW] or None.
    """
    ph, pw = regular_bins.shape[:2]
    every = np.concatenate([regular_bins.reshape(-1, 2), deformed_bins.reshape(-1, 2)])
    x1, y1, x2, y2 = (float(v) for v in box)
    pad = 0.2 * max(x2 - x1, y2 - y1)
    every = np.concatenate([every, np.array([[x1 - pad, y1 - pad], [x2 + pad, y2 + pad]])])
    view = View(fit_window(every, image.shape, margin=0.02, min_size=8), size, size)
    panel = _dim(view.render(image), 0.75)

    # Regular bins: the grid an RoIAlign would average over.
    for r in regular_bins.reshape(-1, 4):
        a, b = view.to_panel(r[:2]), view.to_panel(r[2:])
        draw_polyline_rect(panel, (a[0], a[1], b[0], b[1]), WHITE, 1)
    wts = None if mask is None else np.asarray(mask, dtype=np.float64).reshape(-1)
    overlay = panel.copy()
    reg_c = view.to_panel((regular_bins[..., :2] + regular_bins[..., 2:]).reshape(-1, 2) / 2)
    def_c = view.to_panel((deformed_bins[..., :2] + deformed_bins[..., 2:]).reshape(-1, 2) / 2)
    for r in deformed_bins.reshape(-1, 4):
        a, b = view.to_panel(r[:2]), view.to_panel(r[2:])
        draw_polyline_rect(overlay, (a[0], a[1], b[0], b[1]), CYAN, 1)
    panel = cv2.addWeighted(overlay, 0.6, panel, 0.4, 0)
    for a, b in zip(reg_c, def_c):
        if np.hypot(*(b - a)) > 2:
            cv2.arrowedLine(panel, tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b), YELLOW, 1,
                            cv2.LINE_AA, tipLength=0.25)
    panel = draw_points(panel, def_c, RED, 3.5, weights=wts, outline=(0, 0, 0))
    a, b = view.to_panel(np.array(box[:2], dtype=np.float64)), view.to_panel(np.array(box[2:], dtype=np.float64))
    draw_polyline_rect(panel, (a[0], a[1], b[0], b[1]), color, 2)

    legend = [(f"detection: {label}", color),
              (f"white grid: the regular {ph}x{pw} RoI bins", WHITE),
              (f"cyan boxes / red dots: the bins moved by gamma ({gamma:g}) x RoI size x learned offset", RED),
              ("yellow arrows: regular bin centre -> deformed bin centre", YELLOW)]
    if mask is not None:
        legend.append(("dot size and opacity: the modulation mask of each bin (mdpool)", None))
    legend.append(("One offset per bin, predicted from this RoI's own features.", None))
    return add_title_and_legend(panel, "Deformable RoI pooling bins", legend)
