"""Drawing helpers (OpenCV, BGR uint8 images): detections with class names and scores, sampling points, RoI bins,
titled panels and legends.

Everything here works on ``np.ndarray`` images of shape [H, W, 3], dtype uint8, BGR channel order (what
``cv2.imread`` returns), and returns new arrays rather than drawing into the caller's image.
"""

import colorsys
import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

Color = Tuple[int, int, int]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN = 0.618033988749895


def class_color(class_id: int) -> Color:
    """A bright, saturated BGR colour for ``class_id``; consecutive ids get well-separated hues.

    Hues step by the golden ratio so that any small set of classes looks distinct; the mapping is fixed, so a class
    has the same colour in every picture.
    """
    hue = (0.05 + int(class_id) * _GOLDEN) % 1.0
    # Alternate two value/saturation levels so that neighbouring hues differ in brightness too.
    sat, val = (0.85, 0.95) if int(class_id) % 2 == 0 else (0.65, 0.8)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(b * 255), int(g * 255), int(r * 255)


def text_color_for(background: Color) -> Color:
    """Black or white, whichever reads better on ``background`` (BGR)."""
    b, g, r = background
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an HxWx3 uint8 image (a 2-D grey image is expanded to 3 channels) and return a contiguous copy."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must have shape (H, W, 3) and dtype uint8, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image).copy()


def upscale_for_display(image: np.ndarray, min_size: int) -> Tuple[np.ndarray, int]:
    """Upscale ``image`` by the smallest integer factor that makes its shorter side >= ``min_size``.

    An integer factor keeps box coordinates exact (multiply by the factor). Returns (image, factor); factor 1 and
    the image unchanged when it is already large enough or ``min_size <= 0``.
    """
    h, w = image.shape[:2]
    if min_size <= 0 or min(h, w) >= min_size:
        return image, 1
    factor = int(math.ceil(min_size / max(1, min(h, w))))
    return cv2.resize(image, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST), factor


def font_params(image_shape: Sequence[int]) -> Tuple[float, int]:
    """Font scale and thickness for labels on an image of ``image_shape`` (H, W, ...): readable, not dominant."""
    short = min(image_shape[0], image_shape[1])
    scale = min(1.2, max(0.4, short / 900.0))
    return scale, 1 if scale < 0.8 else 2


def draw_label(
    image: np.ndarray,
    text: str,
    anchor: Tuple[int, int],
    color: Color,
    font_scale: float,
    thickness: int,
    above: bool = True,
) -> None:
    """Draw ``text`` in a filled box of ``color`` (in place), left-aligned at ``anchor`` (x, y).

    With ``above`` the box sits on top of y (a box's top edge); it moves inside when there is no room above, and
    left when it would leave the image on the right.
    """
    h, w = image.shape[:2]
    (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
    pad = max(1, int(round(2 * font_scale)))
    box_h = th + baseline + 2 * pad
    box_w = tw + 2 * pad
    x, y = int(anchor[0]), int(anchor[1])
    x = max(0, min(x, w - box_w))
    top = y - box_h if above and y - box_h >= 0 else y
    top = max(0, min(top, h - box_h))
    cv2.rectangle(image, (x, top), (x + box_w, top + box_h), color, thickness=-1)
    cv2.putText(image, text, (x + pad, top + pad + th), _FONT, font_scale, text_color_for(color), thickness,
                cv2.LINE_AA)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: Optional[np.ndarray],
    classes: np.ndarray,
    class_names: Optional[Sequence[str]] = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Draw detections on a copy of ``image``.

    Args:
        image: [H, W, 3] uint8 BGR.
        boxes: [K, 4] float XYXY in the pixels of the image the boxes refer to.
        scores: [K] float in [0, 1]; None for ground truth (labels without a score, drawn in the given order).
        classes: [K] int class ids.
        class_names: name per class id; missing names are shown as "class <i>".
        scale: multiply box coordinates by this first (e.g. the factor of :func:`upscale_for_display`).
    Returns:
        [H, W, 3] uint8 BGR: a box in the class colour and a "name 0.87" label per detection; higher scores are
        drawn last so they stay on top.
    """
    out = check_image(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * float(scale)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    with_scores = scores is not None
    scores = np.asarray(scores if with_scores else np.ones(len(classes)), dtype=np.float64).reshape(-1)
    if not (len(boxes) == len(scores) == len(classes)):
        raise ValueError(
            f"boxes, scores and classes must have the same length, got {len(boxes)}, {len(scores)}, {len(classes)}"
        )
    font_scale, text_thick = font_params(out.shape)
    box_thick = max(1, int(round(min(out.shape[:2]) / 300.0)))
    for i in np.argsort(scores, kind="stable"):
        color = class_color(int(classes[i]))
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, box_thick, cv2.LINE_AA)
        label = class_name(classes[i], class_names) + (f" {scores[i]:.2f}" if with_scores else "")
        draw_label(out, label, (x1, y1), color, font_scale, text_thick)
    return out


def class_name(class_id: int, class_names: Optional[Sequence[str]]) -> str:
    """``class_names[class_id]`` when known, else "class <id>"."""
    class_id = int(class_id)
    if class_names is not None and 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"


def draw_points(
    image: np.ndarray,
    points: np.ndarray,
    color: Color,
    radius: float,
    weights: Optional[np.ndarray] = None,
    filled: bool = True,
    outline: Optional[Color] = None,
) -> np.ndarray:
    """Draw ``points`` ([P, 2] (x, y) pixels) as circles on a copy of ``image``.

    ``weights`` ([P] in [0, 1], e.g. DCNv2 modulation masks) scale each point's radius and opacity, so a point the
    layer ignores fades away. Drawing is anti-aliased at 1/16 pixel precision, so sub-pixel positions show.
    """
    out = check_image(image)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if weights is None:
        weights = np.ones(len(points))
    weights = np.clip(np.asarray(weights, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if len(weights) != len(points):
        raise ValueError(f"weights must have one value per point: {len(weights)} weights for {len(points)} points")
    # Points of similar opacity are drawn on one overlay and blended together (8 opacity levels).
    levels = np.ceil(weights * 8).astype(int)
    for level in np.unique(levels):
        if level == 0:
            continue
        overlay = out.copy()
        for (x, y), wgt in zip(points[levels == level], weights[levels == level]):
            r = max(1.0, radius * (0.5 + 0.5 * wgt))
            center = (int(round(x * 16)), int(round(y * 16)))
            cv2.circle(overlay, center, int(round(r * 16)), color, -1 if filled else 1, cv2.LINE_AA, shift=4)
            if outline is not None:
                cv2.circle(overlay, center, int(round(r * 16)), outline, 1, cv2.LINE_AA, shift=4)
        alpha = 0.25 + 0.75 * level / 8.0
        out = cv2.addWeighted(overlay, alpha, out, 1.0 - alpha, 0.0)
    return out


def draw_cross(image: np.ndarray, center: Tuple[float, float], size: int, color: Color, thickness: int = 2) -> None:
    """Draw an x-shaped marker at ``center`` (in place), with a dark halo so it shows on any background."""
    x, y = int(round(center[0])), int(round(center[1]))
    for col, th in (((0, 0, 0), thickness + 2), (color, thickness)):
        cv2.line(image, (x - size, y - size), (x + size, y + size), col, th, cv2.LINE_AA)
        cv2.line(image, (x - size, y + size), (x + size, y - size), col, th, cv2.LINE_AA)


def draw_polyline_rect(image: np.ndarray, rect: Sequence[float], color: Color, thickness: int = 1) -> None:
    """Draw the outline of ``rect`` (x1, y1, x2, y2, float pixels) in place, at sub-pixel precision."""
    x1, y1, x2, y2 = (int(round(v * 16)) for v in rect)
    pts = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.int32).reshape(-1, 1, 2)
    cv2.polylines(image, [pts], True, color, thickness, cv2.LINE_AA, shift=4)


def add_title_and_legend(
    panel: np.ndarray,
    title: str,
    legend: Sequence[Tuple[str, Optional[Color]]] = (),
    width: Optional[int] = None,
) -> np.ndarray:
    """Put ``title`` in a strip above ``panel`` and the ``legend`` lines below it.

    ``legend`` items are (text, colour): a colour draws a swatch before the text, None a plain line. Long lines
    wrap to the panel width. Returns a new image of the panel's width (or ``width``).
    """
    width = width or panel.shape[1]
    scale, thick = 0.5, 1
    line_h = 20

    def wrap(text: str, indent: int) -> list:
        words, lines, cur = text.split(), [], ""
        for word in words:
            cand = f"{cur} {word}".strip()
            if cur and cv2.getTextSize(cand, _FONT, scale, thick)[0][0] > width - indent - 8:
                lines.append(cur)
                cur = word
            else:
                cur = cand
        lines.append(cur)
        return lines

    title_lines = wrap(title, 0)
    top = np.full((line_h * len(title_lines) + 10, width, 3), 255, np.uint8)
    for i, line in enumerate(title_lines):
        cv2.putText(top, line, (6, 20 + i * line_h), _FONT, 0.55, (0, 0, 0), 1 + (i == 0), cv2.LINE_AA)

    rows = []
    for text, color in legend:
        indent = 22 if color is not None else 0
        for j, line in enumerate(wrap(text, indent)):
            rows.append((line, color if j == 0 else None, indent))
    bottom = np.full((line_h * len(rows) + 8, width, 3), 255, np.uint8)
    for i, (line, color, indent) in enumerate(rows):
        y = 16 + i * line_h
        if color is not None:
            cv2.rectangle(bottom, (6, y - 10), (16, y), color, -1)
            cv2.rectangle(bottom, (6, y - 10), (16, y), (0, 0, 0), 1)
        cv2.putText(bottom, line, (6 + indent, y), _FONT, scale, (40, 40, 40), thick, cv2.LINE_AA)

    body = panel
    if body.shape[1] != width:
        pad = np.full((body.shape[0], width, 3), 255, np.uint8)
        pad[:, : min(width, body.shape[1])] = body[:, :width]
        body = pad
    return np.vstack([top, body, bottom])


def hstack_panels(panels: Sequence[np.ndarray], gap: int = 12) -> np.ndarray:
    """Place ``panels`` side by side on a white canvas, top-aligned, separated by ``gap`` pixels."""
    if not panels:
        raise ValueError("hstack_panels needs at least one panel")
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) + 1)
    canvas = np.full((height + 2 * gap, width, 3), 255, np.uint8)
    x = gap
    for p in panels:
        canvas[gap : gap + p.shape[0], x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return canvas


class View:
    """An axis-aligned window (x0, y0, x1, y1) of an image, rendered to an ``out_w`` x ``out_h`` panel.

    Lets a figure zoom on a detection and still show points that fall outside the image (grey margin).
    Coordinates are continuous (pixel i spans [i, i + 1), as for boxes); ``to_panel`` maps them to the panel's
    OpenCV drawing coordinates (pixel centres at integers).
    """

    def __init__(self, window: Sequence[float], out_w: int, out_h: int):
        x0, y0, x1, y1 = (float(v) for v in window)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"View window must have x1 > x0 and y1 > y0, got {tuple(window)}")
        self.scale = min(out_w / (x1 - x0), out_h / (y1 - y0))
        # Centre the window in the panel when its aspect ratio differs from the panel's.
        self.x0 = (x0 + x1) / 2 - out_w / (2 * self.scale)
        self.y0 = (y0 + y1) / 2 - out_h / (2 * self.scale)
        self.out_w, self.out_h = out_w, out_h

    def to_panel(self, points: np.ndarray) -> np.ndarray:
        """[..., 2] continuous (x, y) image coordinates -> [..., 2] panel drawing coordinates."""
        pts = np.asarray(points, dtype=np.float64)
        return (pts - np.array([self.x0, self.y0])) * self.scale - 0.5

    def render(self, image: np.ndarray, border: Color = (200, 200, 200)) -> np.ndarray:
        """The window of ``image`` as an [out_h, out_w, 3] panel (bilinear), ``border`` outside the image."""
        # Pixel centres are at integer coordinates, so pixel i spans [i - 0.5, i + 0.5].
        m = np.array([[self.scale, 0, -self.x0 * self.scale + 0.5 * self.scale - 0.5],
                      [0, self.scale, -self.y0 * self.scale + 0.5 * self.scale - 0.5]], dtype=np.float64)
        return cv2.warpAffine(image, m, (self.out_w, self.out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def fit_window(points: np.ndarray, image_shape: Sequence[int], margin: float = 0.1,
               min_size: float = 8.0) -> Tuple[float, float, float, float]:
    """A square-ish window (x0, y0, x1, y1) that contains ``points`` ([P, 2] x, y) with ``margin`` around them.

    The window may extend beyond the image (the view shows a grey border there); it never becomes smaller than
    ``min_size`` pixels.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        h, w = image_shape[:2]
        return 0.0, 0.0, float(w), float(h)
    lo, hi = pts.min(0), pts.max(0)
    size = max(float((hi - lo).max()) * (1 + 2 * margin), min_size)
    c = (lo + hi) / 2
    return c[0] - size / 2, c[1] - size / 2, c[0] + size / 2, c[1] + size / 2
