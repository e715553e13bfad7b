"""The resize size rules (INPUT.RESIZE_STYLE), one computation for training augmentation (det_dcn.data.transforms),
the model's test-time resize (det_dcn.modeling.meta_arch.preprocess) and the graphs exported from it.

The rules are torchvision's and detectron2's / mmcv's, which compute in Python floats (IEEE double): e.g.
floor(417 * (256 / 417)) is 255 in double and 256 in float32. Traced sizes are symbolic ints, whose float
arithmetic ONNX translates to float32; computing on float64 tensors instead keeps the exported graphs (ONNX and
.pt2) on eager's double arithmetic, and in eager the same tensor operations give the Python-float result bit for bit
(division, product and sum are correctly rounded in both; ``scalar / tensor`` is avoided: torch computes it as a
reciprocal times the scalar).
"""

from typing import Callable, Tuple

import torch
from torch import Tensor

RESIZE_STYLES = ("detectron2", "mmdet", "torchvision")
_MAX_SIDE = 1 << 20  # a bound for traced sizes (torch.export asks for one); far beyond any image


def _double(x) -> Tensor:
    return torch.full((), x, dtype=torch.float64)  # x: an int, or a traced (symbolic) size


def _side(x: Tensor, what: Callable[[], str]) -> int:
    """A float64 scalar tensor holding a whole number -> int (in a traced graph: a size the graph computes).
    RuntimeError ``what()`` when it is 0 (bounds that a traced graph also needs, e.g. to know an image is not empty)."""
    side = x.to(torch.int64).item()  # an int (eager), or a SymInt (traced: no int(), which would guard on it)
    torch._check(side >= 1, what)
    torch._check(side <= _MAX_SIDE, what)
    return side


def resized_size(height: int, width: int, min_size: int, max_size: int, style: str) -> Tuple[int, int]:
    """(h, w) after resizing to shorter side ``min_size`` unless the longer side would pass ``max_size`` (then the
    longer side is ``max_size``; ``max_size <= 0``: no cap), aspect ratio kept; unchanged when ``min_size <= 0``.

    ``style`` "torchvision": floor(side * scale), scale = min(min_size / short, max_size / long) (torchvision's
    GeneralizedRCNNTransform); "detectron2" / "mmdet": int(side * scale + 0.5) with scale = min_size / short, or
    max_size / long where long * scale > max_size (detectron2's ResizeShortestEdge). All in double precision.
    """
    if style not in RESIZE_STYLES:
        raise ValueError(f"INPUT.RESIZE_STYLE='{style}' is not one of {RESIZE_STYLES}")
    if min_size <= 0:
        return height, width
    h, w = _double(height), _double(width)
    long = torch.maximum(h, w)
    scale = _double(min_size) / torch.minimum(h, w)
    if max_size > 0:
        capped = _double(max_size) / long
        if style == "torchvision":
            scale = torch.minimum(scale, capped)
        else:
            scale = torch.where(long * scale > max_size, capped, scale)
    offset = 0.0 if style == "torchvision" else 0.5  # floor, or round half up
    what = lambda: (f"resizing a {height} x {width} image to shorter side {min_size} / longer side at most "  # noqa: E731
                    f"{max_size} ({style}) leaves a side of 0 pixels (or over {_MAX_SIDE}): the aspect ratio is too "
                    f"extreme")
    return _side(torch.floor(h * scale + offset), what), _side(torch.floor(w * scale + offset), what)


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """detectron2's and mmcv's rule (sides rounded to the nearest int): :func:`resized_size` "detectron2"."""
    return resized_size(h, w, short, max_size, "detectron2")
