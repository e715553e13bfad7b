"""The shortest-edge resize rule of detectron2 and mmcv, shared by training augmentation and the model's test-time
resize (det_dcn.data.transforms, det_dcn.modeling.meta_arch.preprocess)."""

from typing import Tuple


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """Output (h, w) with the shorter side ``short`` unless the longer side would exceed ``max_size``
    (then the longer side is ``max_size``); aspect ratio kept, sides rounded to nearest int."""
    scale = short / min(h, w)
    if max_size > 0 and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)
