"""Geometric transforms applied to an image and its boxes together, and the random augmentations that pick them.

A *transform* is deterministic (``apply_image``, ``apply_boxes``); an *augmentation* draws a transform from a
``numpy.random.Generator`` (``get_transform(image, rng)``). Passing the generator explicitly is what makes the
training data reproducible independently of worker processes (see det_dcn/data/train_batches.py).
Boxes are float arrays [N, 4] in absolute XYXY pixels. A crop only shifts boxes; clipping them to the image and
dropping those left without area is done once, after the whole pipeline (DatasetMapper): crops, resizes and flips
all map the image rectangle onto the next one monotonically per axis, so clipping at the end equals clipping after
each step.
"""

import math
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from det_dcn.config import ConfigError
from det_dcn.utils.resize import shortest_edge_size  # one rule with the model's test-time resize


class Transform:
    def apply_image(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NoOpTransform(Transform):
    def apply_image(self, img):
        return img

    def apply_boxes(self, boxes):
        return boxes


class ResizeTransform(Transform):
    """Resize an (h, w) image to (new_h, new_w) with bilinear interpolation; boxes scale per axis.

    ``interp`` "cv2": OpenCV's bilinear (mmdetection); "pil": PIL's bilinear, antialiased when shrinking (detectron2).
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: str = "cv2"):
        if interp not in ("cv2", "pil"):
            raise ValueError(f"ResizeTransform interp must be 'cv2' or 'pil', got {interp!r}")
        self.h, self.w, self.new_h, self.new_w, self.interp = h, w, new_h, new_w, interp

    def apply_image(self, img):
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform expects a {self.h}x{self.w} (HxW) image, got {img.shape[:2]}")
        if (self.new_h, self.new_w) == (self.h, self.w):
            return img
        if self.interp == "pil":
            from PIL import Image

            return np.asarray(Image.fromarray(img).resize((self.new_w, self.new_h), Image.BILINEAR))
        return cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)

    def apply_boxes(self, boxes):
        scale = np.array([self.new_w / self.w, self.new_h / self.h] * 2, dtype=np.float32)
        return boxes * scale


class _FlipTransform(Transform):
    """Mirror along one image axis of length ``size``: box coordinates [a1, a2] on it become [size - a2, size - a1]
    (pixel edges, not centres)."""

    axis = 1  # numpy axis of an HxWxC image; box columns (axis 1: x1, x2 = 0, 2; axis 0: y1, y2 = 1, 3)

    def __init__(self, size: int):
        self.size = size

    def apply_image(self, img):
        return np.ascontiguousarray(np.flip(img, self.axis))

    def apply_boxes(self, boxes):
        lo, hi = (0, 2) if self.axis == 1 else (1, 3)
        out = boxes.copy()
        out[:, lo] = self.size - boxes[:, hi]
        out[:, hi] = self.size - boxes[:, lo]
        return out


class HFlipTransform(_FlipTransform):
    """Mirror left-right: a box [x1, x2] becomes [W - x2, W - x1]."""

    axis = 1


class VFlipTransform(_FlipTransform):
    """Mirror top-bottom: a box [y1, y2] becomes [H - y2, H - y1]."""

    axis = 0


class CropTransform(Transform):
    """Keep the ``h`` x ``w`` window whose top-left pixel is (``y0``, ``x0``); boxes shift by (-x0, -y0)."""

    def __init__(self, x0: int, y0: int, w: int, h: int):
        self.x0, self.y0, self.w, self.h = int(x0), int(y0), int(w), int(h)

    def apply_image(self, img):
        if self.y0 + self.h > img.shape[0] or self.x0 + self.w > img.shape[1]:
            raise ValueError(f"CropTransform window {self.w}x{self.h} (WxH) at x0={self.x0}, y0={self.y0} does not "
                             f"fit a {img.shape[1]}x{img.shape[0]} image")
        return np.ascontiguousarray(img[self.y0:self.y0 + self.h, self.x0:self.x0 + self.w])

    def apply_boxes(self, boxes):
        return boxes - np.array([self.x0, self.y0, self.x0, self.y0], dtype=np.float32)


# Luma weights (ITU-R BT.601, as detectron2's RandomSaturation) in the image's channel order.
_GREY_WEIGHTS = {"RGB": (0.299, 0.587, 0.114), "BGR": (0.114, 0.587, 0.299)}


class ColorTransform(Transform):
    """Photometric change of a uint8 HxWx3 image; boxes unchanged. In this order: brightness ``x * b``; contrast
    ``m + c * (x - m)`` with m the mean of all pixels and channels; saturation ``g + s * (x - g)`` with g the
    pixel's grey (``format``: channel order). The three compose into one affine colour map ``A x + d``, applied in
    one cv2.transform pass that rounds and saturates to [0, 255]."""

    def __init__(self, brightness: float, contrast: float, saturation: float, format: str = "BGR"):
        if format not in _GREY_WEIGHTS:
            raise ValueError(f"ColorTransform format must be one of {sorted(_GREY_WEIGHTS)}, got {format!r}")
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.grey_weights = np.array(_GREY_WEIGHTS[format], dtype=np.float64)

    def apply_image(self, img):
        b, c, s = self.brightness, self.contrast, self.saturation
        if (b, c, s) == (1.0, 1.0, 1.0):
            return img
        mean = float(np.mean(cv2.mean(img)[:3])) if c != 1.0 else 0.0
        # Saturation fixes the grey (weights sum to 1), so it commutes with the brightness/contrast offset.
        colour = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), self.grey_weights)
        matrix = np.hstack([b * c * colour, np.full((3, 1), (1 - c) * b * mean)])
        return cv2.transform(img, matrix)

    def apply_boxes(self, boxes):
        return boxes


class TransformList(Transform):
    """Transforms applied in order."""

    def __init__(self, transforms: List[Transform]):
        self.transforms = list(transforms)

    def apply_image(self, img):
        for t in self.transforms:
            img = t.apply_image(img)
        return img

    def apply_boxes(self, boxes):
        for t in self.transforms:
            boxes = t.apply_boxes(boxes)
        return boxes


class Augmentation:
    def get_transform(self, image: np.ndarray, rng: np.random.Generator,
                      boxes: Optional[np.ndarray] = None) -> Transform:
        """``boxes``: the image's boxes [N, 4] so far (None: unknown); only box-aware augmentations read them."""
        raise NotImplementedError


class ResizeShortestEdge(Augmentation):
    """Resize so the shorter side is one of ``short_edge_length`` ("choice") or uniform in its [min, max]
    ("range"), capped so the longer side is at most ``max_size`` (0: no cap); ``interp`` as ResizeTransform."""

    def __init__(self, short_edge_length: Union[int, Sequence[int]], max_size: int = 0, sample_style: str = "choice",
                 interp: str = "cv2"):
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length,)
        lengths = tuple(int(s) for s in short_edge_length)
        if sample_style not in ("choice", "range"):
            raise ConfigError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'choice' or 'range', got {sample_style!r}")
        if not lengths or any(s <= 0 for s in lengths):
            raise ConfigError(f"INPUT.MIN_SIZE_TRAIN must be positive sizes, got {short_edge_length!r}")
        if sample_style == "range" and (len(lengths) != 2 or lengths[0] > lengths[1]):
            raise ConfigError(f"INPUT.MIN_SIZE_TRAIN with sampling 'range' must be [min, max], got {lengths}")
        self.lengths, self.max_size, self.sample_style, self.interp = lengths, int(max_size), sample_style, interp

    def get_transform(self, image, rng, boxes=None):
        h, w = image.shape[:2]
        if self.sample_style == "range":
            short = int(rng.integers(self.lengths[0], self.lengths[1] + 1))
        else:
            short = self.lengths[int(rng.integers(len(self.lengths)))]
        new_h, new_w = shortest_edge_size(h, w, short, self.max_size)
        return ResizeTransform(h, w, new_h, new_w, self.interp)


class RandomFlip(Augmentation):
    """Flip with probability ``prob``; ``direction`` "horizontal" or "vertical"."""

    def __init__(self, prob: float = 0.5, direction: str = "horizontal"):
        if direction not in ("horizontal", "vertical"):
            raise ValueError(f"RandomFlip direction must be 'horizontal' or 'vertical', got {direction!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip prob must be in [0, 1], got {prob}")
        self.prob, self.direction = prob, direction

    def get_transform(self, image, rng, boxes=None):
        # Always draw, so the random stream does not depend on the outcome.
        if rng.random() >= self.prob:
            return NoOpTransform()
        h, w = image.shape[:2]
        return HFlipTransform(w) if self.direction == "horizontal" else VFlipTransform(h)


def _window_offset(rng: np.random.Generator, size: int, window: int, centre: Optional[float] = None) -> int:
    """Uniform integer start of a ``window``-long span inside [0, size]; with ``centre``, only spans containing it."""
    lo, hi = 0, size - window
    if centre is not None:
        centre = min(max(centre, 0.0), float(size))
        lo, hi = max(lo, math.ceil(centre - window)), min(hi, math.floor(centre))
    return int(rng.integers(lo, hi + 1))


CROP_TYPES = ("relative", "relative_range", "absolute", "absolute_range")


class RandomCrop(Augmentation):
    """detectron2's RandomCrop (INPUT.CROP.TYPE / SIZE, both [height, width] or [min, max] as below), a window at a
    uniformly drawn position. For an HxW image the window's (h, w) is:
      "relative": (H * SIZE[0], W * SIZE[1]) rounded, SIZE in (0, 1];
      "relative_range": as "relative" with SIZE[0] raised uniformly in [SIZE[0], 1], SIZE[1] in [SIZE[1], 1];
      "absolute": (min(SIZE[0], H), min(SIZE[1], W)) pixels;
      "absolute_range": h an integer uniform in [min(SIZE[0], H), min(SIZE[1], H)], w likewise with W.
    ``around_box`` (det_dcn, INPUT.CROP.AROUND_BOX; detectron2 v0.1's mapper did this): the window must contain
    the centre of one box drawn uniformly, so every crop keeps part of a box."""

    def __init__(self, crop_type: str, crop_size: Sequence[float], around_box: bool = False):
        if crop_type not in CROP_TYPES:
            raise ConfigError(f"INPUT.CROP.TYPE={crop_type!r}: expected one of {list(CROP_TYPES)}")
        size = tuple(float(v) for v in crop_size)
        relative = crop_type.startswith("relative")
        if len(size) != 2 or not all((0 < v <= 1) if relative else (v >= 1 and v == int(v)) for v in size):
            raise ConfigError(f"INPUT.CROP.SIZE={list(crop_size)!r}: expected 2 "
                              + ("fractions in (0, 1]" if relative else "whole pixel counts >= 1")
                              + f" for INPUT.CROP.TYPE {crop_type!r}")
        if crop_type == "absolute_range" and size[0] > size[1]:
            raise ConfigError(f"INPUT.CROP.SIZE={list(crop_size)!r}: 'absolute_range' needs [min, max] with min <= max")
        self.crop_type, self.crop_size, self.around_box = crop_type, size, bool(around_box)

    def crop_size_for(self, h: int, w: int, rng: np.random.Generator) -> Tuple[int, int]:
        """The window's (height, width) in pixels for an h x w image."""
        a, b = self.crop_size
        if self.crop_type == "absolute":
            return min(int(a), h), min(int(b), w)
        if self.crop_type == "absolute_range":
            return (int(rng.integers(min(int(a), h), min(int(b), h) + 1)),
                    int(rng.integers(min(int(a), w), min(int(b), w) + 1)))
        if self.crop_type == "relative_range":
            a, b = a + rng.random() * (1 - a), b + rng.random() * (1 - b)
        return max(1, int(h * a + 0.5)), max(1, int(w * b + 0.5))

    def get_transform(self, image, rng, boxes=None):
        h, w = image.shape[:2]
        ch, cw = self.crop_size_for(h, w, rng)
        cx = cy = None
        if self.around_box and boxes is not None and len(boxes):
            x1, y1, x2, y2 = boxes[int(rng.integers(len(boxes)))]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        y0 = _window_offset(rng, h, ch, cy)
        return CropTransform(_window_offset(rng, w, cw, cx), y0, cw, ch)


class ResizeScale(Augmentation):
    """The resize of large-scale jitter: scale the image to fit inside a ``target`` x ``target`` square times a
    factor drawn uniformly in [min_scale, max_scale], aspect ratio kept (detectron2's ResizeScale)."""

    def __init__(self, min_scale: float, max_scale: float, target: int, interp: str = "cv2"):
        if not 0 < min_scale <= max_scale:
            raise ConfigError(f"INPUT.LSJ.SCALE_RANGE=[{min_scale}, {max_scale}]: expected [min, max] with "
                              "0 < min <= max")
        if target < 1:
            raise ConfigError(f"INPUT.LSJ.IMAGE_SIZE={target}: expected a side length >= 1 pixel")
        self.min_scale, self.max_scale, self.target, self.interp = float(min_scale), float(max_scale), int(target), interp

    def get_transform(self, image, rng, boxes=None):
        h, w = image.shape[:2]
        scale = self.target * rng.uniform(self.min_scale, self.max_scale) / max(h, w)
        return ResizeTransform(h, w, max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)), self.interp)


class FixedSizeCrop(Augmentation):
    """The crop of large-scale jitter: a ``size`` x ``size`` window at a uniform position, each side cut to the
    image's when it is smaller. Unlike detectron2's FixedSizeCrop, smaller images are not padded here (the model
    pads every batch with zeros after normalising, i.e. with the mean colour, and keeps the true image size for
    clipping proposals) and the two offsets are drawn independently."""

    def __init__(self, size: int):
        self.size = int(size)

    def get_transform(self, image, rng, boxes=None):
        h, w = image.shape[:2]
        ch, cw = min(self.size, h), min(self.size, w)
        y0 = _window_offset(rng, h, ch)
        return CropTransform(_window_offset(rng, w, cw), y0, cw, ch)


class ColorJitter(Augmentation):
    """Brightness, contrast and saturation factors each drawn uniformly in its [min, max] range (detectron2's
    RandomBrightness / RandomContrast / RandomSaturation, applied together); see ColorTransform."""

    KEYS = ("BRIGHTNESS", "CONTRAST", "SATURATION")

    def __init__(self, brightness: Sequence[float], contrast: Sequence[float], saturation: Sequence[float],
                 format: str = "BGR"):
        self.ranges = []
        for key, r in zip(self.KEYS, (brightness, contrast, saturation)):
            r = tuple(float(v) for v in r)
            if len(r) != 2 or not 0 <= r[0] <= r[1]:
                raise ConfigError(f"INPUT.COLOR_JITTER.{key}={list(r)!r}: expected [min, max] factors with "
                                  "0 <= min <= max (1.0 leaves the image unchanged)")
            self.ranges.append(r)
        self.format = format

    def get_transform(self, image, rng, boxes=None):
        factors = [rng.uniform(lo, hi) for lo, hi in self.ranges]  # always three draws: a stable random stream
        return ColorTransform(*factors, format=self.format)


def apply_augmentations(augs: Sequence[Augmentation], image: np.ndarray, rng: np.random.Generator,
                        boxes: Optional[np.ndarray] = None):
    """Apply each augmentation in turn; returns (new image, TransformList to apply to the boxes). ``boxes`` [N, 4]
    (optional) are moved along so that box-aware augmentations see them where they are in the current image."""
    transforms = []
    for aug in augs:
        t = aug.get_transform(image, rng, boxes)
        image = t.apply_image(image)
        if boxes is not None:
            boxes = t.apply_boxes(boxes)
        transforms.append(t)
    return image, TransformList(transforms)


def build_augmentations(cfg, is_train: bool) -> List[Augmentation]:
    """Training, in this order (each optional one off by default):
    RandomCrop (INPUT.CROP, before the resize as in detectron2);
    ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, sampling), or with INPUT.LSJ instead ResizeScale then
    FixedSizeCrop; RandomFlip(RANDOM_FLIP); ColorJitter (INPUT.COLOR_JITTER, last: on the smallest image).
    Test: nothing (the model resizes test images itself). INPUT.RESIZE_STYLE "detectron2" resizes with PIL."""
    if not is_train:
        return []
    inp = cfg.INPUT
    interp = "pil" if inp.RESIZE_STYLE == "detectron2" else "cv2"
    augs: List[Augmentation] = []
    if inp.CROP.ENABLED:
        augs.append(RandomCrop(inp.CROP.TYPE, inp.CROP.SIZE, inp.CROP.AROUND_BOX))
    if inp.LSJ.ENABLED:
        scale_range = tuple(inp.LSJ.SCALE_RANGE)
        if len(scale_range) != 2:
            raise ConfigError(f"INPUT.LSJ.SCALE_RANGE={list(scale_range)!r}: expected [min, max]")
        augs += [ResizeScale(*scale_range, inp.LSJ.IMAGE_SIZE, interp), FixedSizeCrop(inp.LSJ.IMAGE_SIZE)]
    else:
        augs.append(ResizeShortestEdge(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING, interp))
    flip = inp.RANDOM_FLIP
    if flip not in ("horizontal", "vertical", "none"):
        raise ConfigError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {flip!r}")
    if flip != "none":
        augs.append(RandomFlip(0.5, flip))
    jitter = inp.COLOR_JITTER
    if jitter.ENABLED:
        augs.append(ColorJitter(jitter.BRIGHTNESS, jitter.CONTRAST, jitter.SATURATION, inp.FORMAT))
    return augs
