"""Image preprocessing inside the model: normalisation and test-time resizing in the style of INPUT.RESIZE_STYLE."""

from typing import Tuple

import torch
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import guard_or_false
from torch.nn import functional as F

from ...utils.resize import RESIZE_STYLES, resized_size  # noqa: F401  (RESIZE_STYLES: re-exported)


def resize_image(image: Tensor, min_size: int, max_size: int) -> Tensor:
    """``[C, H, W]`` float (already normalised) -> ``[C, floor(H * s), floor(W * s)]`` by bilinear interpolation.

    Same call as torchvision (scale_factor with recompute_scale_factor=True, align_corners=False) so that
    converted torchvision weights see the same pixels.
    """
    h, w = image.shape[-2:]
    # = scale_factor=scale with recompute_scale_factor=True (the output size is floor(size * scale) in double
    # precision, and the kernel then uses only the sizes)
    size = resized_size(h, w, min_size, max_size, "torchvision")
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def resize_pixels(image: Tensor, min_size: int, max_size: int, style: str) -> Tensor:
    """Resize a ``[C, H, W]`` image on the 0-255 scale, before normalisation, as detectron2 or mmdetection do.

    Output ``[C, round(H * s), round(W * s)]`` (detectron2's and mmcv's size rule), same dtype: a uint8 image stays
    uint8 (rounded), as theirs. ``style`` "detectron2": PIL's bilinear filter, antialiased when shrinking (torch's
    uint8 antialiased kernel reproduces PIL's: within one grey level on < 0.2% of pixels); "mmdet": OpenCV's
    bilinear, no antialiasing (float interpolation then rounding: within one grey level of cv2.resize).
    """
    if style not in ("detectron2", "mmdet"):
        raise ValueError(f"INPUT.RESIZE_STYLE='{style}' does not resize before normalisation; expected "
                         f"'detectron2' or 'mmdet'")
    h, w = image.shape[-2:]  # ints, or traced sizes (int() would fix them to the example's)
    size = resized_size(h, w, min_size, max_size, style)
    # a traced size is unknown until the graph runs (no guard on it: the resize at scale 1 is the identity anyway)
    if guard_or_false(size[0] == h) and guard_or_false(size[1] == w):
        return image
    antialias = style == "detectron2"
    x = image[None]
    if antialias and x.dtype == torch.uint8 and x.device.type == "cpu":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=antialias)[0]
    return out.round_().clamp_(0, 255).to(torch.uint8) if image.dtype == torch.uint8 else out


def rescale_boxes(boxes: Tensor, from_size: Tuple[int, int], to_size: Tuple[int, int]) -> Tensor:
    """Map ``[N, 4]`` boxes from an image of ``from_size`` (h, w) to ``to_size``; float32 ratios like torchvision."""
    # torch.full rather than torch.tensor: the same float32 value, and it traces with symbolic sizes
    ratio_h = torch.full((), to_size[0], dtype=torch.float32) / torch.full((), from_size[0], dtype=torch.float32)
    ratio_w = torch.full((), to_size[1], dtype=torch.float32) / torch.full((), from_size[1], dtype=torch.float32)
    scale = torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(boxes.device, boxes.dtype)
    return boxes * scale
