"""Geometric transforms applied to an image and its boxes together, and the random augmentations that pick them.

A *transform* is deterministic (``apply_image``, ``apply_boxes``); an *augmentation* draws a transform from a
``numpy.random.Generator`` (``get_transform(image, rng)``). Passing the generator explicitly is what makes the
training data reproducible independently of worker processes (see det_dcn/data/train_batches.py).
Boxes are float arrays [N, 4] in absolute XYXY pixels.
"""

from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np


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
    """Resize an (h, w) image to (new_h, new_w) with bilinear interpolation; boxes scale per axis."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        self.h, self.w, self.new_h, self.new_w = h, w, new_h, new_w

    def apply_image(self, img):
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform expects a {self.h}x{self.w} (HxW) image, got {img.shape[:2]}")
        if (self.new_h, self.new_w) == (self.h, self.w):
            return img
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


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """Output (h, w) with the shorter side ``short`` unless the longer side would exceed ``max_size``
    (then the longer side is ``max_size``); aspect ratio kept, sides rounded to nearest int."""
    scale = short / min(h, w)
    if max_size > 0 and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


class Augmentation:
    def get_transform(self, image: np.ndarray, rng: np.random.Generator) -> Transform:
        raise NotImplementedError


class ResizeShortestEdge(Augmentation):
    """Resize so the shorter side is one of ``short_edge_length`` ("choice") or uniform in its [min, max]
    ("range"), capped so the longer side is at most ``max_size`` (0: no cap)."""

    def __init__(self, short_edge_length: Union[int, Sequence[int]], max_size: int = 0, sample_style: str = "choice"):
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length,)
        lengths = tuple(int(s) for s in short_edge_length)
        if sample_style not in ("choice", "range"):
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'choice' or 'range', got {sample_style!r}")
        if not lengths or any(s <= 0 for s in lengths):
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN must be positive sizes, got {short_edge_length!r}")
        if sample_style == "range" and (len(lengths) != 2 or lengths[0] > lengths[1]):
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN with sampling 'range' must be [min, max], got {lengths}")
        self.lengths, self.max_size, self.sample_style = lengths, int(max_size), sample_style

    def get_transform(self, image, rng):
        h, w = image.shape[:2]
        if self.sample_style == "range":
            short = int(rng.integers(self.lengths[0], self.lengths[1] + 1))
        else:
            short = self.lengths[int(rng.integers(len(self.lengths)))]
        new_h, new_w = shortest_edge_size(h, w, short, self.max_size)
        return ResizeTransform(h, w, new_h, new_w)


class RandomFlip(Augmentation):
    """Flip with probability ``prob``; ``direction`` "horizontal" or "vertical"."""

    def __init__(self, prob: float = 0.5, direction: str = "horizontal"):
        if direction not in ("horizontal", "vertical"):
            raise ValueError(f"RandomFlip direction must be 'horizontal' or 'vertical', got {direction!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip prob must be in [0, 1], got {prob}")
        self.prob, self.direction = prob, direction

    def get_transform(self, image, rng):
        # Always draw, so the random stream does not depend on the outcome.
        if rng.random() >= self.prob:
            return NoOpTransform()
        h, w = image.shape[:2]
        return HFlipTransform(w) if self.direction == "horizontal" else VFlipTransform(h)


def apply_augmentations(augs: Sequence[Augmentation], image: np.ndarray, rng: np.random.Generator):
    """Apply each augmentation in turn; returns (new image, TransformList to apply to the boxes)."""
    transforms = []
    for aug in augs:
        t = aug.get_transform(image, rng)
        image = t.apply_image(image)
        transforms.append(t)
    return image, TransformList(transforms)


def build_augmentations(cfg, is_train: bool) -> List[Augmentation]:
    """Training: ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, sampling) then RandomFlip(RANDOM_FLIP).
    Test: nothing (the model resizes test images itself)."""
    if not is_train:
        return []
    augs: List[Augmentation] = [
        ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)
    ]
    flip = cfg.INPUT.RANDOM_FLIP
    if flip not in ("horizontal", "vertical", "none"):
        raise ValueError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {flip!r}")
    if flip != "none":
        augs.append(RandomFlip(0.5, flip))
    return augs
