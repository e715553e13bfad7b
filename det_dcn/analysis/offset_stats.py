"""How far a trained model's deformable layers actually move their samples, over many images.

A deformable layer that learned offsets near zero is a plain layer with extra cost; one whose modulation masks sit
near 0.5 everywhere merely halves its output. These statistics say which, per layer:

* deformable conv: the length of each kernel point's offset ``|(dy, dx)|`` in pixels of the layer's input feature
  map (the unit of the kernel's grid: a 3x3 kernel with dilation d samples every d of them) and in pixels of the
  resized image (times the input's stride), and how many deformed points fall off the input map (they read zeros)
  against how many the same kernel without offsets would (its border outputs' outer points are padding anyway);
* deformable RoI pooler: the length of each bin's shift in bins (``gamma * offset * bins`` along each axis, since
  a bin's shift is ``gamma * roi_size * offset`` and a bin is ``roi_size / bins``).

Every kernel point (or bin) of every output position (or RoI) of every image counts once. Records come from
:class:`det_dcn.vis.deform_hooks.DeformRecorder`, i.e. from each layer's own ``predict_offset`` on its input.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch

from det_dcn.vis.deform_hooks import DeformRecorder


@dataclass
class OffsetStats:
    """One deformable layer's offsets over the images.

    kind: "conv" or "pool". step: the grid step in ``unit`` (the conv's dilation; 1 bin for a pooler).
    mean, p90: of the offset lengths in ``unit``; image_px_mean: the conv's mean in resized-image pixels (None for
    a pooler). moved: the share of offsets at least one grid step long. outside: the conv's share of deformed
    sampling points a pixel or more beyond its input map, which read only zero padding (None for a pooler);
    outside_plain: that share for the same kernel without offsets, the zero padding any 3x3 conv reads.
    mask_mean: the mean modulation (None when unmodulated). count: offsets measured.
    """

    name: str
    kind: str
    unit: str
    step: float
    mean: float
    p90: float
    image_px_mean: Optional[float]
    moved: float
    outside: Optional[float]
    outside_plain: Optional[float]
    mask_mean: Optional[float]
    count: int


class _Accumulator:
    def __init__(self):
        self.lengths: List[np.ndarray] = []
        self.image_px: List[np.ndarray] = []
        self.masks: List[np.ndarray] = []
        self.outside: List[np.ndarray] = []
        self.outside_plain: List[np.ndarray] = []

    def result(self, name: str, kind: str, unit: str, step: float) -> OffsetStats:
        lengths = np.concatenate(self.lengths)
        image_px = float(np.concatenate(self.image_px).mean()) if self.image_px else None
        mask = float(np.concatenate(self.masks).mean()) if self.masks else None
        outside, outside_plain = (float(np.concatenate(x).mean()) if x else None
                                  for x in (self.outside, self.outside_plain))
        return OffsetStats(name, kind, unit, step, float(lengths.mean()), float(np.percentile(lengths, 90)),
                           image_px, float((lengths >= step).mean()), outside, outside_plain, mask,
                           int(lengths.size))


def conv_offset_lengths(offset: np.ndarray) -> np.ndarray:
    """[G * 2 * K, Ho, Wo] offsets, (dy, dx) interleaved per kernel point -> [G * K * Ho * Wo] lengths."""
    pairs = offset.reshape(-1, 2, *offset.shape[1:])
    return np.sqrt((pairs.astype(np.float64) ** 2).sum(1)).ravel()


def conv_samples_outside(record, with_offsets: bool = True) -> np.ndarray:
    """[G * K * Ho * Wo] bool: the deformed sampling point lies beyond the layer's input map by a pixel or more
    (``y <= -1``, ``y >= H``, or likewise in x), where bilinear sampling reads only zero padding. With
    ``with_offsets=False``: the same for the kernel's regular grid (the offsets taken as zero).

    ``record`` is a :class:`det_dcn.vis.deform_sampling.DCNRecord` with ``in_size``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = record.kernel_size, record.stride, record.padding, record.dilation
    height, width = record.in_size
    ho, wo = record.offset.shape[-2:]
    pairs = record.offset.reshape(-1, kh * kw, 2, ho, wo).astype(np.float64)  # [G, K, (dy, dx), Ho, Wo]
    if not with_offsets:
        pairs = np.zeros_like(pairs)
    ky, kx = np.divmod(np.arange(kh * kw), kw)
    y = (np.arange(ho) * sh - ph)[None, None, :, None] + (ky * dh)[None, :, None, None] + pairs[:, :, 0]
    x = (np.arange(wo) * sw - pw)[None, None, None, :] + (kx * dw)[None, :, None, None] + pairs[:, :, 1]
    return ((y <= -1) | (y >= height) | (x <= -1) | (x >= width)).ravel()


def pool_shift_in_bins(offset: np.ndarray, gamma: float) -> np.ndarray:
    """[R, 2, PH, PW] normalised offsets (x, y) -> [R * PH * PW] shift lengths in bins."""
    ph, pw = offset.shape[-2:]
    shift_x = gamma * offset[:, 0].astype(np.float64) * pw
    shift_y = gamma * offset[:, 1].astype(np.float64) * ph
    return np.sqrt(shift_x ** 2 + shift_y ** 2).ravel()


def collect_offset_stats(predictor, images: Iterable[np.ndarray]) -> List[OffsetStats]:
    """Run ``predictor`` (a DefaultPredictor, or anything with ``.model`` and DefaultPredictor's call) on each
    image and return the statistics of every deformable layer that ran, convs first, in module order.

    Raises ValueError when no image was given or the model has no deformable layer."""
    convs: Dict[str, _Accumulator] = {}
    pools: Dict[str, _Accumulator] = {}
    steps: Dict[str, float] = {}
    n = 0
    with DeformRecorder(predictor.model) as rec, torch.inference_mode():
        for image in images:
            rec.dcn, n = {}, n + 1
            rec.clear_pool()
            predictor(image)
            for name, r in rec.dcn.items():
                acc = convs.setdefault(name, _Accumulator())
                lengths = conv_offset_lengths(r.offset)
                acc.lengths.append(lengths)
                acc.image_px.append(lengths * r.in_stride)
                acc.outside.append(conv_samples_outside(r))
                acc.outside_plain.append(conv_samples_outside(r, with_offsets=False))
                if r.mask is not None:
                    acc.masks.append(r.mask.ravel())
                steps[name] = float(r.dilation[0])
            for r in rec.pool:
                if len(r.rois) == 0:  # a level that no proposal was assigned to
                    continue
                acc = pools.setdefault(r.name, _Accumulator())
                acc.lengths.append(pool_shift_in_bins(r.offset, r.gamma))
                if r.mask is not None:
                    acc.masks.append(r.mask.ravel())
    if n == 0:
        raise ValueError("collect_offset_stats: no images")
    if not convs and not pools:
        raise ValueError("collect_offset_stats: the model has no deformable conv or deformable RoI pooler that ran")
    return ([a.result(k, "conv", "input px", steps[k]) for k, a in convs.items()]
            + [a.result(k, "pool", "bins", 1.0) for k, a in pools.items()])


def format_offset_table(stats: List[OffsetStats]) -> str:
    """A markdown table of :func:`collect_offset_stats`'s result."""

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = ["| layer | kind | mean offset | p90 | mean in image px | >= 1 grid step | outside the map "
             "| same, no offsets | mean mask | offsets |", "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for s in stats:
        lines.append(f"| {s.name} | {s.kind} | {s.mean:.3f} {s.unit} | {s.p90:.3f} | {num(s.image_px_mean, '.2f')} | "
                     f"{pct(s.moved)} | {pct(s.outside)} | {pct(s.outside_plain)} | {num(s.mask_mean, '.3f')} | {s.count} |")
    return "\n".join(lines)
