"""Theoretical receptive fields from layer geometry (kernel, stride, dilation, padding), exact.

Two tools, which agree on plain chains (a test checks it):

- ``chain_receptive_field``: the standard recurrence (Araujo et al., Distill 2019) over a chain of layers,
  r_l = r_{l-1} + (k_l - 1) * d_l * j_{l-1},  j_l = j_{l-1} * s_l,  c_l = c_{l-1} + ((k_l - 1) * d_l / 2 - p_l) * j_{l-1}
  (r: receptive field in input pixels, j: stride ("jump"), c: centre of output position 0 in input pixel indices).
- a small 1-D geometry graph (``Input``, ``Conv``, ``Upsample``, ``Add``, ``GlobalPool``) for networks that are not
  chains (residual blocks, the FPN top-down pathway, ASPP's branches): ``node.interval(i)`` is the exact hull
  [lo, hi] of the input pixels that output position ``i`` can depend on, padding included (positions outside the
  input contribute nothing). Receptive fields are square (every kernel here is square), so 1-D suffices.

Deformable convs are described by their regular grid: with learned offsets the true receptive field is unbounded.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

Interval = Optional[Tuple[int, int]]


@dataclass(frozen=True)
class LayerGeometry:
    """One conv-like layer along one spatial axis: kernel, stride, dilation, padding (max-pools alike)."""

    kernel: int
    stride: int = 1
    dilation: int = 1
    padding: int = 0

    def __post_init__(self):
        for name in ("kernel", "stride", "dilation"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LayerGeometry.{name} must be >= 1, got {getattr(self, name)}")
        if self.padding < 0:
            raise ValueError(f"LayerGeometry.padding must be >= 0, got {self.padding}")

    @property
    def span(self) -> int:
        """Input positions one output position spans: (k - 1) * d + 1."""
        return (self.kernel - 1) * self.dilation + 1

    def out_size(self, n: int) -> int:
        return (n + 2 * self.padding - self.span) // self.stride + 1


@dataclass(frozen=True)
class ChainRF:
    """Receptive field ``size``, ``stride`` (jump) and ``center`` of output position 0 (input pixel index)."""

    size: int
    stride: int
    center: float


def chain_receptive_field(layers: Sequence[LayerGeometry]) -> ChainRF:
    """The standard recurrence over ``layers`` (input first); an empty chain is one input pixel."""
    r, j, c = 1, 1, 0.0
    for layer in layers:
        r += (layer.span - 1) * j
        c += ((layer.span - 1) / 2.0 - layer.padding) * j
        j *= layer.stride
    return ChainRF(size=r, stride=j, center=c)


def _hull(intervals) -> Interval:
    intervals = [iv for iv in intervals if iv is not None]
    if not intervals:
        return None
    return min(iv[0] for iv in intervals), max(iv[1] for iv in intervals)


class Node:
    """A tensor of the geometry graph along one axis: ``size`` positions, each with an input interval."""

    size: int
    stride: int  # input pixels per position

    def __init__(self):
        self._memo: Dict[int, Interval] = {}

    def interval(self, i: int) -> Interval:
        """Hull [lo, hi] of the input pixels position ``i`` depends on (None if it sees only padding)."""
        if not 0 <= i < self.size:
            return None
        if i not in self._memo:
            self._memo[i] = self._interval(i)
        return self._memo[i]

    def _interval(self, i: int) -> Interval:
        raise NotImplementedError

    def center_rf(self) -> int:
        """Receptive field size (pixels) of the centre position."""
        iv = self.interval((self.size - 1) // 2)
        return 0 if iv is None else iv[1] - iv[0] + 1


class Input(Node):
    def __init__(self, size: int):
        super().__init__()
        self.size, self.stride = size, 1

    def _interval(self, i: int) -> Interval:
        return (i, i)


class Conv(Node):
    """A conv or pool with ``geometry`` over ``src``."""

    def __init__(self, src: Node, geometry: LayerGeometry):
        super().__init__()
        self.src, self.geometry = src, geometry
        self.size = geometry.out_size(src.size)
        self.stride = src.stride * geometry.stride
        if self.size < 1:
            raise ValueError(f"{geometry} leaves no output position for an input of {src.size} positions")

    def _interval(self, i: int) -> Interval:
        g = self.geometry
        first = i * g.stride - g.padding
        return _hull(self.src.interval(first + t * g.dilation) for t in range(g.kernel))


class Upsample(Node):
    """Nearest-neighbour resize to ``size`` positions (torch's "nearest": source index floor(i * in / out))."""

    def __init__(self, src: Node, size: int):
        super().__init__()
        self.src, self.size = src, size
        self.stride = src.stride * src.size / size

    def _interval(self, i: int) -> Interval:
        return self.src.interval(int(i * self.src.size / self.size))


class Add(Node):
    """Element-wise sum (or concatenation) of equally sized nodes: the hull of their intervals."""

    def __init__(self, *srcs: Node):
        super().__init__()
        sizes = {s.size for s in srcs}
        if len(sizes) != 1:
            raise ValueError(f"Add needs equally sized inputs, got sizes {sorted(sizes)}")
        self.srcs, self.size, self.stride = srcs, sizes.pop(), srcs[0].stride

    def _interval(self, i: int) -> Interval:
        return _hull(s.interval(i) for s in self.srcs)


class GlobalPool(Node):
    """Image-level pooling broadcast back to ``src``'s size: every position sees all of ``src``."""

    def __init__(self, src: Node):
        super().__init__()
        self.src, self.size, self.stride = src, src.size, src.stride

    def _interval(self, i: int) -> Interval:
        return _hull([self.src.interval(0), self.src.interval(self.src.size - 1)])


def chain_nodes(src: Node, layers: Sequence[LayerGeometry]) -> Node:
    for layer in layers:
        src = Conv(src, layer)
    return src


def dilated_stack(rates: Sequence[int], kernel: int = 3) -> List[LayerGeometry]:
    """Stride-1 ``kernel`` x ``kernel`` convs with dilations ``rates`` (padding keeps the size)."""
    return [LayerGeometry(kernel, 1, int(r), (kernel - 1) // 2 * int(r)) for r in rates]
