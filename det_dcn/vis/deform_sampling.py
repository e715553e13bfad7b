"""Where deformable layers sample, in image pixels: the geometry behind tools/visualize_offsets.py.

Coordinates are continuous image coordinates (pixel i spans [i, i + 1), the convention of boxes) in the image the
network saw (after the model's own test-time resize); callers rescale to the original image.

Deformable convolution (DCNv1/v2). For a conv with kernel (kh, kw), stride s, padding p, dilation d whose input
feature map has stride S_in in image pixels, output unit (oy, ox) samples, for kernel point k = i * kw + j,

    y_in = oy * s - p + i * d + dy_k(oy, ox)      x_in = ox * s - p + j * d + dx_k(oy, ox)

in input feature-map indices, with (dy_k, dx_k) = offset[2k], offset[2k + 1] (torchvision's interleaved layout,
per deformable group g shifted by 2 * K * g). Feature index f of a map with stride S is centred on image pixel
f * S (the receptive-field centre of a ResNet: every strided conv / pool is padded "same"), i.e. on the continuous
coordinate f * S + 0.5. Offsets are predicted per OUTPUT unit, so two neighbouring units can sample very different
places: the kernel is not deformed once, the sampling field is learned per position.

Deformable RoI pooling (mmcv semantics): an RoI (x1, y1, x2, y2) is split in PH x PW bins of size
(w / PW, h / PH); bin (ph, pw) is moved by (gamma * w * offset[0, ph, pw], gamma * h * offset[1, ph, pw]).
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class DCNRecord:
    """One deformable conv's geometry and the offsets it predicted for one image.

    Attributes:
        name: module name in the model (e.g. "backbone.bottom_up.res5.1.conv2").
        kernel_size, stride, padding, dilation: (h, w) pairs of the deformable conv.
        in_stride: image pixels (of the resized image) per cell of the layer's INPUT feature map.
        offset: [G * 2 * K, Ho, Wo] float, (dy, dx) interleaved per kernel point, K = kh * kw, G deform groups.
        mask: [G * K, Ho, Wo] float in [0, 1] for modulated DCN, else None.
        in_size: (H, W) of the layer's input feature map, when known.
    """

    name: str
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    in_stride: float
    offset: np.ndarray
    mask: Optional[np.ndarray] = None
    in_size: Optional[Tuple[int, int]] = None

    @property
    def out_stride(self) -> float:
        return self.in_stride * self.stride[0]

    @property
    def num_points(self) -> int:
        return self.kernel_size[0] * self.kernel_size[1]

    @property
    def deform_groups(self) -> int:
        return self.offset.shape[0] // (2 * self.num_points)


def nearest_unit(record: DCNRecord, point_xy: Sequence[float]) -> Tuple[Tuple[int, int], np.ndarray]:
    """The output unit (ox, oy) of ``record`` whose centre is nearest to ``point_xy`` (continuous image coords),
    clamped to the output map, and that centre as a [2] (x, y) array."""
    ho, wo = record.offset.shape[-2:]
    s = record.out_stride
    ox = int(np.clip(round((point_xy[0] - 0.5) / s), 0, wo - 1))
    oy = int(np.clip(round((point_xy[1] - 0.5) / s), 0, ho - 1))
    return (ox, oy), np.array([ox * s + 0.5, oy * s + 0.5])


def _bilinear(field: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Sample ``field`` [C, H, W] at fractional indices (fy, fx) [P] -> [P, C], clamping to the map's border."""
    _, h, w = field.shape
    fy = np.clip(fy, 0, h - 1)
    fx = np.clip(fx, 0, w - 1)
    y0 = np.floor(fy).astype(int)
    x0 = np.floor(fx).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    ly, lx = (fy - y0)[:, None], (fx - x0)[:, None]
    f = lambda yy, xx: field[:, yy, xx].T  # noqa: E731  [P, C]
    return (f(y0, x0) * (1 - ly) * (1 - lx) + f(y0, x1) * (1 - ly) * lx
            + f(y1, x0) * ly * (1 - lx) + f(y1, x1) * ly * lx)


def dcn_sampling_points(
    record: DCNRecord, points_xy: np.ndarray, regular: bool = False, group: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """The K sampling points of ``record`` for output units centred at ``points_xy``.

    Args:
        points_xy: [P, 2] continuous image coords of output-unit centres (fractional positions, as reached by
            propagation through a stacked layer, get bilinearly interpolated offsets and masks).
        regular: True gives the regular (dilated) grid, i.e. zero offsets and mask 1.
        group: which deformable group's offsets to use.
    Returns:
        points [P, K, 2] (x, y) continuous image coords, weights [P, K] (DCNv2 mask; 1 for DCNv1 / regular).
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    kh, kw = record.kernel_size
    k = kh * kw
    s_out, s_in = record.out_stride, record.in_stride
    fo_x = (pts[:, 0] - 0.5) / s_out  # output-map indices (fractional)
    fo_y = (pts[:, 1] - 0.5) / s_out
    ii, jj = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    ii, jj = ii.reshape(-1), jj.reshape(-1)  # kernel point k = i * kw + j
    base_y = fo_y[:, None] * record.stride[0] - record.padding[0] + ii[None] * record.dilation[0]
    base_x = fo_x[:, None] * record.stride[1] - record.padding[1] + jj[None] * record.dilation[1]
    weights = np.ones((len(pts), k))
    if not regular:
        if not 0 <= group < record.deform_groups:
            raise ValueError(f"group must be in [0, {record.deform_groups}) for layer {record.name}, got {group}")
        off = _bilinear(record.offset[2 * k * group : 2 * k * (group + 1)], fo_y, fo_x)  # [P, 2K]
        base_y = base_y + off[:, 0::2]
        base_x = base_x + off[:, 1::2]
        if record.mask is not None:
            weights = _bilinear(record.mask[k * group : k * (group + 1)], fo_y, fo_x)
    points = np.stack([base_x * s_in + 0.5, base_y * s_in + 0.5], axis=-1)
    return points, weights


def propagate_sampling(
    records_top_down: Sequence[DCNRecord], start_xy: Sequence[float], regular: bool = False, group: int = 0
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Sampling points of stacked deformable layers, as in the DCN paper's figure.

    ``records_top_down[0]`` is the highest layer: its K points around ``start_xy``; each of those is then taken as
    an output-unit position of the next (lower) layer, giving K * K points, and so on.
    Returns one (points [K**n, 2], weights [K**n]) per layer; weights multiply down the stack (a point reached
    through a faded DCNv2 point fades too).
    """
    levels = []
    cur = np.asarray(start_xy, dtype=np.float64).reshape(1, 2)
    cur_w = np.ones(1)
    for rec in records_top_down:
        pts, w = dcn_sampling_points(rec, cur, regular=regular, group=group)
        cur = pts.reshape(-1, 2)
        cur_w = (cur_w[:, None] * w).reshape(-1)
        levels.append((cur, cur_w))
    return levels


def roi_bins(
    roi_xyxy: Sequence[float], output_size: Tuple[int, int], offset: Optional[np.ndarray] = None,
    gamma: float = 0.1
) -> np.ndarray:
    """Bins of a deformable RoI pool in image coordinates.

    Args:
        roi_xyxy: (x1, y1, x2, y2) continuous image coords.
        output_size: (PH, PW).
        offset: [2, PH, PW] normalised offsets (channel 0 along x, 1 along y) or None for the regular bins.
        gamma: the pooler's offset scale.
    Returns:
        [PH, PW, 4] bin rectangles (x1, y1, x2, y2).
    """
    x1, y1, x2, y2 = (float(v) for v in roi_xyxy)
    ph, pw = output_size
    w, h = x2 - x1, y2 - y1
    bw, bh = w / pw, h / ph
    gy, gx = np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij")
    bx1 = x1 + gx * bw
    by1 = y1 + gy * bh
    if offset is not None:
        offset = np.asarray(offset, dtype=np.float64)
        if offset.shape != (2, ph, pw):
            raise ValueError(f"offset must have shape (2, {ph}, {pw}), got {offset.shape}")
        bx1 = bx1 + gamma * w * offset[0]
        by1 = by1 + gamma * h * offset[1]
    return np.stack([bx1, by1, bx1 + bw, by1 + bh], axis=-1)
