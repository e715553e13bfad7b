"""Pictures of receptive fields: effective-RF heatmaps side by side, and gridding path-count maps.

All functions return [H, W, 3] uint8 BGR images (OpenCV's layout, what atomic_imwrite writes).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from det_dcn.vis.visualizer import add_title_and_legend, hstack_panels

GREEN = (60, 220, 60)
WHITE = (255, 255, 255)


def heatmap(values: np.ndarray, size: int, gamma: float = 0.5) -> np.ndarray:
    """[h, w] non-negative -> about [size, size] colour map (inferno), ``values ** gamma`` scaled to its max so the
    faint tails of a Gaussian-like map stay visible; zeros are black. Nearest upscaling keeps pixels square."""
    v = np.asarray(values, dtype=np.float64)
    if max(v.shape) > size:  # area-average down to the panel (keeps the mass picture, drops pixel noise)
        f = size / max(v.shape)
        v = cv2.resize(v, (max(1, round(v.shape[1] * f)), max(1, round(v.shape[0] * f))), interpolation=cv2.INTER_AREA)
    top = v.max()
    norm = (v / top) ** gamma if top > 0 else v
    img = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    img[v <= 0] = 0
    scale = max(1, size // max(v.shape))
    return cv2.resize(img, (v.shape[1] * scale, v.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def erf_panel(erf: np.ndarray, title: str, theoretical: Optional[Tuple[int, int, int, int]] = None,
              size: int = 200, legend: Sequence[str] = ()) -> np.ndarray:
    """One effective RF map with the theoretical RF's box (x0, y0, x1, y1 inclusive, input pixels) in green."""
    img = heatmap(erf, size)
    scale = img.shape[0] / erf.shape[0]
    if theoretical is not None:
        x0, y0, x1, y1 = theoretical
        cv2.rectangle(img, (int(x0 * scale), int(y0 * scale)), (int((x1 + 1) * scale) - 1, int((y1 + 1) * scale) - 1),
                      GREEN, 1)
    return add_title_and_legend(img, title, [(text, None) for text in legend], width=max(img.shape[1], 200))


def erf_grid(rows: Dict[str, List[np.ndarray]], title: str) -> np.ndarray:
    """Rows of panels (one row per config, labelled) stacked vertically under ``title``."""
    blocks = []
    for label, panels in rows.items():
        row = hstack_panels(panels)
        blocks.append(add_title_and_legend(row, label))
    width = max(b.shape[1] for b in blocks)
    padded = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    return add_title_and_legend(np.vstack(padded), title)


def gridding_panel(counts: np.ndarray, title: str, size: int = 260) -> np.ndarray:
    """Path counts of one output's receptive field (positions of the stack's input grid): black = never reached (a hole), colour = number of paths
    (brighter = more); the centre pixel is outlined."""
    img = heatmap(counts, size, gamma=0.5)
    scale = img.shape[0] // counts.shape[0]
    c = counts.shape[0] // 2
    if scale >= 3:  # grid lines between input pixels make the holes countable
        for k in range(1, counts.shape[0]):
            img[k * scale - 1, :] = img[:, k * scale - 1] = (70, 70, 70)
    cv2.rectangle(img, (c * scale, c * scale), ((c + 1) * scale - 2, (c + 1) * scale - 2), GREEN, 1)
    covered = int(np.count_nonzero(counts))
    legend = [(f"{covered} of {counts.size} positions reached ({covered / counts.size:.0%})", None)]
    return add_title_and_legend(img, title, legend, width=max(img.shape[1], 220))
