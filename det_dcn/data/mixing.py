"""Augmentations that combine several training images: Mosaic and MixUp, as mapper wrappers.

Each wraps a training mapper (``DatasetMapper`` or one with its call signature) and the training dataset dicts.
With probability ``prob`` a sample is combined with partners drawn from the dataset with the sample's own generator,
so the training data stay a pure function of (seed, rank, iteration, position) as train_batches.py requires. Every
image, partners included, first goes through the wrapped mapper's augmentations (crop, resize, flip, colour); the
combination works on the mapped tensors and boxes.

- ``Mosaic`` (YOLOv4, Bochkovskiy et al. 2020): four images at half scale in the four quadrants around a random
  centre of a canvas the primary image's size; boxes cut by the canvas are clipped, and those left with under
  ``MOSAIC_MIN_VISIBLE`` of their area dropped (a sliver labelled as the whole object teaches wrong boxes).
- ``MixUp`` (Zhang et al. 2019, "Bag of Freebies for Training Object Detection Neural Networks"): two images
  top-left on a canvas of their larger height and width, pixels blended ``lam * a + (1 - lam) * b`` with ``lam`` drawn
  from Beta(alpha, alpha), the boxes of both kept. The paper also weights each box's loss by its image's share;
  det_dcn keeps every box at full weight, as YOLOX does.

Canvas areas no image covers are filled with MODEL.PIXEL_MEAN, which the model normalises to 0: the value it pads
batches with. A partner that cannot be used (unreadable file: logged with its name; no box left) leaves the sample
uncombined, as does a mosaic that cut away every box; a failure of the sample itself propagates to the loader, which skips and counts it.
"""

import logging
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from det_dcn.config import ConfigError

from .detection_utils import BadDataError

logger = logging.getLogger(__name__)

# Mosaic drops a box with less than this fraction of its (half-scale) area inside the canvas.
MOSAIC_MIN_VISIBLE = 0.25


class _MixingMapper:
    """Shared by Mosaic and MixUp: the wrapped mappers, the dataset, the probability and the fill value."""

    def __init__(self, mapper: Callable, partner_mapper: Callable, dataset_dicts: Sequence[dict], prob: float,
                 pad_value: Sequence[float]):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"{type(self).__name__}: prob must be in [0, 1], got {prob}")
        if len(dataset_dicts) == 0:
            raise ValueError(f"{type(self).__name__}: the training set is empty")
        self.mapper, self.partner_mapper, self.dicts, self.prob = mapper, partner_mapper, dataset_dicts, prob
        self.pad_value = torch.tensor([round(float(v)) for v in pad_value], dtype=torch.uint8).view(-1, 1, 1)

    def _canvas(self, height: int, width: int) -> torch.Tensor:
        return self.pad_value.expand(-1, height, width).clone()

    def _partner(self, rng: np.random.Generator) -> Optional[dict]:
        d = self.dicts[int(rng.integers(len(self.dicts)))]
        try:
            return self.partner_mapper(d, np.random.default_rng(rng.integers(2**63)))
        except (BadDataError, OSError) as e:
            logger.warning(f"{type(self).__name__}: partner image {d.get('file_name')} skipped: {e}")
            return None

    def __call__(self, dataset_dict: dict, rng: Optional[np.random.Generator] = None) -> Optional[dict]:
        if rng is None:
            rng = np.random.default_rng()
        out = self.mapper(dataset_dict, rng)
        if out is None or rng.random() >= self.prob:
            return out
        return self.combine(out, rng)

    def combine(self, sample: dict, rng: np.random.Generator) -> dict:
        raise NotImplementedError


class MixUp(_MixingMapper):
    """See the module docstring. ``alpha``: the Beta distribution's parameter (1.5 in Zhang et al.)."""

    def __init__(self, mapper: Callable, partner_mapper: Callable, dataset_dicts: Sequence[dict], prob: float,
                 alpha: float, pad_value: Sequence[float]):
        super().__init__(mapper, partner_mapper, dataset_dicts, prob, pad_value)
        if alpha <= 0:
            raise ValueError(f"MixUp: alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def combine(self, sample: dict, rng: np.random.Generator) -> dict:
        lam = float(rng.beta(self.alpha, self.alpha))
        other = self._partner(rng)
        if other is None:
            return sample
        a, b = sample["image"], other["image"]
        height, width = max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2])
        canvas_a, canvas_b = self._canvas(height, width), self._canvas(height, width)
        canvas_a[:, :a.shape[1], :a.shape[2]] = a
        canvas_b[:, :b.shape[1], :b.shape[2]] = b
        mixed = lam * canvas_a.float() + (1.0 - lam) * canvas_b.float()
        return {**sample, "image": mixed.round_().clamp_(0, 255).to(torch.uint8),
                "boxes": torch.cat([sample["boxes"], other["boxes"]]),
                "classes": torch.cat([sample["classes"], other["classes"]])}


class Mosaic(_MixingMapper):
    """See the module docstring."""

    def combine(self, sample: dict, rng: np.random.Generator) -> dict:
        height, width = sample["image"].shape[1:]
        yc = int(round(rng.uniform(0.25, 0.75) * height))
        xc = int(round(rng.uniform(0.25, 0.75) * width))
        tiles = [sample] + [self._partner(rng) for _ in range(3)]
        canvas = self._canvas(height, width)
        boxes: List[torch.Tensor] = []
        classes: List[torch.Tensor] = []
        for quadrant, tile in enumerate(tiles):  # top-left, top-right, bottom-left, bottom-right of the centre
            if tile is None:
                continue
            image = _half_scale(tile["image"])
            th, tw = image.shape[1:]
            x0 = xc - tw if quadrant in (0, 2) else xc
            y0 = yc - th if quadrant in (0, 1) else yc
            # the part of the tile inside the canvas
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + tw, width), min(y0 + th, height)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            canvas[:, cy0:cy1, cx0:cx1] = image[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            scale = torch.tensor([tw / tile["image"].shape[2], th / tile["image"].shape[1]] * 2)
            tile_boxes = tile["boxes"] * scale + torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
            kept = _visible(tile_boxes, cx0, cy0, cx1, cy1)
            boxes.append(kept[0])
            classes.append(tile["classes"][kept[1]])
        if sum(len(b) for b in boxes) == 0:  # every box was cut away: train on the plain sample instead
            return sample
        return {**sample, "image": canvas, "boxes": torch.cat(boxes), "classes": torch.cat(classes)}


def _half_scale(image: torch.Tensor) -> torch.Tensor:
    h, w = image.shape[1:]
    size = (max(1, (h + 1) // 2), max(1, (w + 1) // 2))
    half = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return half.round_().clamp_(0, 255).to(torch.uint8)


def _visible(boxes: torch.Tensor, x0: int, y0: int, x1: int, y1: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Boxes clipped to the region, and the indices of those keeping MOSAIC_MIN_VISIBLE of their area."""
    clipped = torch.stack([boxes[:, 0].clamp(x0, x1), boxes[:, 1].clamp(y0, y1),
                           boxes[:, 2].clamp(x0, x1), boxes[:, 3].clamp(y0, y1)], dim=1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = torch.nonzero((visible > 0) & (visible >= MOSAIC_MIN_VISIBLE * area)).flatten()
    return clipped[keep], keep


def build_mixing(cfg, mapper: Callable, dataset_dicts: Sequence[dict]) -> Callable:
    """``mapper`` wrapped in Mosaic (INPUT.MOSAIC) and then MixUp (INPUT.MIXUP) when enabled; MixUp's partner is a
    plain mapped image, as in YOLOX. Returns ``mapper`` itself when both are off."""
    mosaic, mixup = cfg.INPUT.MOSAIC, cfg.INPUT.MIXUP
    pad = cfg.MODEL.PIXEL_MEAN
    wrapped = mapper
    for name, node in (("MOSAIC", mosaic), ("MIXUP", mixup)):
        if node.ENABLED and not 0.0 <= node.PROB <= 1.0:
            raise ConfigError(f"INPUT.{name}.PROB={node.PROB!r}: expected a probability in [0, 1]")
    if mosaic.ENABLED:
        wrapped = Mosaic(wrapped, mapper, dataset_dicts, mosaic.PROB, pad)
    if mixup.ENABLED:
        if mixup.ALPHA <= 0:
            raise ConfigError(f"INPUT.MIXUP.ALPHA={mixup.ALPHA!r}: expected a Beta parameter > 0")
        wrapped = MixUp(wrapped, mapper, dataset_dicts, mixup.PROB, mixup.ALPHA, pad)
    return wrapped
