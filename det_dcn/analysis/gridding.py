"""The gridding effect of stacked dilated convolutions, exact from layer geometry.

For a chain of conv layers (kernel, stride, dilation), ``path_counts`` gives for every input pixel of the receptive
field of ONE output position the number of paths (kernel taps, layer by layer) that connect it to that output: 0
means the pixel never influences the output, whatever the weights. Stacking 3x3 convs with one common rate r > 1
(e.g. (2, 2, 2)) reaches only pixels whose offsets are multiples of r: a checkerboard with holes (Wang et al. 2018,
"Understanding Convolution for Semantic Segmentation"); rates without a common factor > 1, as in Hybrid Dilated
Convolution (HDC, e.g. (1, 2, 3)), cover the whole receptive field. Kernels are square, so the 2-D count is the
outer product of the 1-D one.
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import LayerGeometry, chain_receptive_field, dilated_stack


def path_counts_1d(layers: Sequence[LayerGeometry]) -> np.ndarray:
    """[R] int64: paths from each of the R = receptive-field-size input positions to one output position."""
    counts = np.ones(1, dtype=np.int64)  # the output position itself, in the coordinates of the last layer
    for layer in reversed(layers):  # walk down: each position fans out to its kernel taps in the layer's input
        step = layer.dilation  # taps of this layer, in units of its input positions
        size_in = (len(counts) - 1) * layer.stride + (layer.kernel - 1) * step + 1
        spread = np.zeros(size_in, dtype=np.int64)
        for pos, c in enumerate(counts):
            if c:
                base = pos * layer.stride
                spread[base: base + (layer.kernel - 1) * step + 1: step] += c
        counts = spread
    return counts


def path_counts(layers: Sequence[LayerGeometry]) -> np.ndarray:
    """[R, R] int64: the 2-D path counts (outer product of the 1-D ones; square kernels)."""
    c = path_counts_1d(layers)
    return np.outer(c, c)


def parallel_path_counts(prefix: Sequence[LayerGeometry], branches: Sequence[Sequence[LayerGeometry]]) -> np.ndarray:
    """[R, R] int64: path counts of ``prefix`` followed by parallel ``branches`` whose outputs are summed or
    concatenated (ASPP): the branches' counts added on a common, centred canvas."""
    maps = [path_counts(list(prefix) + list(branch)) for branch in branches]
    size = max(m.shape[0] for m in maps)
    total = np.zeros((size, size), dtype=np.int64)
    for m in maps:
        o = (size - m.shape[0]) // 2
        total[o: o + m.shape[0], o: o + m.shape[1]] += m
    return total


@dataclass(frozen=True)
class Coverage:
    """How much of the receptive field (``size`` x ``size`` pixels) one output actually reaches."""

    size: int
    covered: int  # input pixels with at least one path

    @property
    def total(self) -> int:
        return self.size * self.size

    @property
    def fraction(self) -> float:
        return self.covered / self.total


def coverage(layers: Sequence[LayerGeometry]) -> Coverage:
    counts = path_counts(layers)
    size = chain_receptive_field(layers).size
    if counts.shape != (size, size):  # the recurrence and the path walk must agree on the extent
        raise AssertionError(f"path counts {counts.shape} disagree with the receptive field {size}")
    return counts_coverage(counts)


def counts_coverage(counts: np.ndarray) -> Coverage:
    """Coverage of a square path-count map (pixels with at least one path)."""
    return Coverage(size=int(counts.shape[0]), covered=int(np.count_nonzero(counts)))


def rates_coverage(rates: Sequence[int], kernel: int = 3) -> Coverage:
    """Coverage of stride-1 ``kernel`` x ``kernel`` convs stacked with dilations ``rates``."""
    return coverage(dilated_stack(rates, kernel))
