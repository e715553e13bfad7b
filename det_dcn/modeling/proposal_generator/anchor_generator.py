"""Anchor generation: cell anchors per feature level, tiled over each level's grid."""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...utils.registry import Registry

ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")
ANCHOR_GENERATOR_REGISTRY.__doc__ = "Anchor generators: fn(cfg, input_shape: List[ShapeSpec]) -> nn.Module."


def _per_level(values: Sequence, num_levels: int, key: str) -> List[List[float]]:
    """Broadcast a config list-of-lists (one list for all levels, or one per level) to ``num_levels`` lists."""
    values = [list(v) if isinstance(v, (list, tuple)) else [v] for v in values]
    if len(values) == 1:
        return values * num_levels
    if len(values) != num_levels:
        raise ValueError(
            f"{key} has {len(values)} lists but the anchor generator has {num_levels} feature levels; "
            f"give one list per level or a single list for all: got {values}"
        )
    return values


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """Axis-aligned anchors of given sizes and aspect ratios at every position of every feature level.

    Anchor ``a`` at grid position (row i, column j) of a level with stride s is its cell anchor shifted by
    ``((j + offset) * s, (i + offset) * s)``. The output order is location-major then anchor (row, column,
    anchor), the layout of the RPN head's reshaped outputs and of torchvision, so converted weights line up.

    Args:
        sizes: per level, sizes (sqrt of area, input pixels).
        aspect_ratios: per level, ratios height / width.
        strides: per level, the feature stride in input pixels.
        offset: anchor centre offset in units of stride (0.0 = top-left corner of the cell, 0.5 = its centre).
        round_base: round cell anchors to integer coordinates (torchvision does, detectron2 does not).
        ratio_major: order cell anchors ratio-major, size-minor (torchvision) instead of size-major (detectron2).
            Identical when a level has one size.
        stride_from_image_size: take each level's stride per axis as ``padded image size // feature size`` (torchvision)
            instead of the nominal stride; they differ when a feature map's size was rounded (e.g. P6 from an odd P5).
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]],
        strides: Sequence[int],
        offset: float = 0.0,
        round_base: bool = False,
        ratio_major: bool = False,
        stride_from_image_size: bool = False,
    ):
        super().__init__()
        num_levels = len(strides)
        sizes = _per_level(sizes, num_levels, "MODEL.ANCHOR_GENERATOR.SIZES")
        aspect_ratios = _per_level(aspect_ratios, num_levels, "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS")
        for s in sizes:
            if not s or any(v <= 0 for v in s):
                raise ValueError(f"MODEL.ANCHOR_GENERATOR.SIZES must be positive and non-empty per level, got {sizes}")
        for r in aspect_ratios:
            if not r or any(v <= 0 for v in r):
                raise ValueError(
                    f"MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS must be positive and non-empty per level, got {aspect_ratios}"
                )
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"MODEL.ANCHOR_GENERATOR.OFFSET must be in [0, 1), got {offset}")
        self.strides = [int(s) for s in strides]
        self.offset = float(offset)
        self.stride_from_image_size = stride_from_image_size
        cells = [self._cell_anchors(s, r, round_base, ratio_major) for s, r in zip(sizes, aspect_ratios)]
        # Buffers (non-persistent): they follow .to(device) but are not checkpoint state.
        for i, c in enumerate(cells):
            self.register_buffer(f"cell_anchors_{i}", c, persistent=False)
        self.num_levels = num_levels

    @staticmethod
    def _cell_anchors(sizes: Sequence[float], ratios: Sequence[float], round_base: bool, ratio_major: bool) -> Tensor:
        """``[A, 4]`` anchors centred at (0, 0): w = size / sqrt(ratio), h = size * sqrt(ratio), so h / w = ratio."""
        pairs = [(s, r) for r in ratios for s in sizes] if ratio_major else [(s, r) for s in sizes for r in ratios]
        size = torch.tensor([p[0] for p in pairs], dtype=torch.float32)
        ratio = torch.tensor([p[1] for p in pairs], dtype=torch.float32)
        h_ratio = torch.sqrt(ratio)
        ws = size / h_ratio
        hs = size * h_ratio
        anchors = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
        return anchors.round() if round_base else anchors

    @property
    def cell_anchors(self) -> List[Tensor]:
        return [getattr(self, f"cell_anchors_{i}") for i in range(self.num_levels)]

    @property
    def num_anchors(self) -> List[int]:
        """Anchors per location, per level."""
        return [len(c) for c in self.cell_anchors]

    def forward(self, features: List[Tensor], image_size: Optional[Tuple[int, int]] = None) -> List[Tensor]:
        """Anchors for each level.

        Args:
            features: per level ``[N, C, H_l, W_l]`` (only the sizes are used).
            image_size: the padded batch's (height, width); needed with ``stride_from_image_size``.
        Returns:
            per level ``[H_l * W_l * A_l, 4]`` XYXY anchors, shared by all images of the batch.
        """
        if len(features) != self.num_levels:
            raise ValueError(f"Anchor generator built for {self.num_levels} levels got {len(features)} feature maps")
        anchors = []
        for feat, stride, cell in zip(features, self.strides, self.cell_anchors):
            grid_h, grid_w = feat.shape[-2:]
            if self.stride_from_image_size:
                if image_size is None:
                    raise ValueError("stride_from_image_size needs the padded image size")
                stride_y, stride_x = image_size[0] // grid_h, image_size[1] // grid_w
            else:
                stride_y = stride_x = stride
            device = feat.device
            shift_x = (torch.arange(grid_w, dtype=torch.float32, device=device) + self.offset) * stride_x
            shift_y = (torch.arange(grid_h, dtype=torch.float32, device=device) + self.offset) * stride_y
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            xx, yy = xx.reshape(-1), yy.reshape(-1)
            shifts = torch.stack((xx, yy, xx, yy), dim=1)
            anchors.append((shifts[:, None, :] + cell.to(device)[None, :, :]).reshape(-1, 4))
        return anchors


def build_anchor_generator(cfg, input_shape) -> nn.Module:
    """Build cfg.MODEL.ANCHOR_GENERATOR.NAME for the given per-level ShapeSpecs (a list)."""
    name = cfg.MODEL.ANCHOR_GENERATOR.NAME
    obj = ANCHOR_GENERATOR_REGISTRY.get_configured("MODEL.ANCHOR_GENERATOR.NAME", name)
    if isinstance(obj, type) and issubclass(obj, DefaultAnchorGenerator):
        ag = cfg.MODEL.ANCHOR_GENERATOR
        if ag.CELL_ANCHOR_ORDER not in ("size_major", "ratio_major"):
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.CELL_ANCHOR_ORDER must be 'size_major' or 'ratio_major', "
                f"got '{ag.CELL_ANCHOR_ORDER}'"
            )
        return obj(
            sizes=ag.SIZES,
            aspect_ratios=ag.ASPECT_RATIOS,
            strides=[s.stride for s in input_shape],
            offset=ag.OFFSET,
            round_base=ag.ROUND_BASE_ANCHORS,
            ratio_major=ag.CELL_ANCHOR_ORDER == "ratio_major",
            stride_from_image_size=ag.STRIDE_FROM_IMAGE_SIZE,
        )
    return obj(cfg, input_shape)
