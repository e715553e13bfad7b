"""Multi-level RoI pooling: assign each RoI to an FPN level, pool it there with the configured pooler.

POOLER_REGISTRY maps MODEL.ROI_BOX_HEAD.POOLER_TYPE to a per-level builder
``fn(cfg, output_size, spatial_scale, sampling_ratio, in_channels) -> nn.Module`` whose module is called as
``pooler(features [N, C, H, W], rois [R, 5]) -> [R, C, output_size, output_size]`` (rois = batch index, XYXY in
input pixels). A plugin registers its own builder and selects it by name.
"""

import math
from typing import List, Sequence

import torch
from torch import Tensor, nn

from ...layers import DeformRoIPoolPack, ModulatedDeformRoIPoolPack, ROIAlign, ROIPool
from ...utils.registry import Registry
from ..box_ops import box_area, boxes_to_rois

POOLER_REGISTRY = Registry("POOLER")
POOLER_REGISTRY.__doc__ = __doc__

LEVEL_MAPPERS = ("detectron2", "torchvision")


@POOLER_REGISTRY.register(name="ROIAlign")
def _build_roi_align(cfg, output_size: int, spatial_scale: float, sampling_ratio: int, in_channels: int):
    """RoIAlign without the half-pixel shift (detectron2 "ROIAlign", torchvision's MultiScaleRoIAlign)."""
    return ROIAlign(output_size, spatial_scale, sampling_ratio, aligned=False)


@POOLER_REGISTRY.register(name="ROIAlignV2")
def _build_roi_align_v2(cfg, output_size: int, spatial_scale: float, sampling_ratio: int, in_channels: int):
    """RoIAlign with the half-pixel shift (aligned=True), detectron2's default."""
    return ROIAlign(output_size, spatial_scale, sampling_ratio, aligned=True)


@POOLER_REGISTRY.register(name="ROIPool")
def _build_roi_pool(cfg, output_size: int, spatial_scale: float, sampling_ratio: int, in_channels: int):
    """Max RoI pooling (Fast R-CNN); sampling_ratio is not used."""
    return ROIPool(output_size, spatial_scale)


def _deform_pool_pack(pack_cls, cfg, output_size: int, spatial_scale: float, sampling_ratio: int,
                      in_channels: int):
    head = cfg.MODEL.ROI_BOX_HEAD
    return pack_cls(
        output_size,
        in_channels,
        deform_fc_channels=head.DEFORM_POOL_FC_DIM,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        gamma=head.DEFORM_POOL_GAMMA,
    )


@POOLER_REGISTRY.register(name="DeformRoIPool")
def _build_deform_roi_pool(cfg, output_size: int, spatial_scale: float, sampling_ratio: int, in_channels: int):
    """DCNv1 deformable RoI pooling with its own offset branch (one per level, as mmdetection)."""
    return _deform_pool_pack(DeformRoIPoolPack, cfg, output_size, spatial_scale, sampling_ratio, in_channels)


@POOLER_REGISTRY.register(name="ModulatedDeformRoIPool")
def _build_mdeform_roi_pool(cfg, output_size: int, spatial_scale: float, sampling_ratio: int, in_channels: int):
    """DCNv2 modulated deformable RoI pooling (offsets and a sigmoid mask, both zero-initialised: mask 0.5)."""
    return _deform_pool_pack(ModulatedDeformRoIPoolPack, cfg, output_size, spatial_scale, sampling_ratio,
                             in_channels)


def assign_boxes_to_levels(
    boxes: List[Tensor],
    min_level: int,
    max_level: int,
    canonical_box_size: float = 224.0,
    canonical_level: int = 4,
    mapper: str = "detectron2",
) -> Tensor:
    """FPN paper eq. 1: level = floor(canonical_level + log2(sqrt(area) / canonical_box_size)), clamped.

    Args:
        boxes: per image ``[P_i, 4]``.
        mapper: "detectron2" adds 1e-8 to the ratio inside the log; "torchvision" adds 1e-6 after the log.
    Returns:
        ``[sum P_i]`` int64 level index relative to ``min_level`` (0 = the first pooled level).
    """
    sizes = torch.sqrt(torch.cat([box_area(b) for b in boxes]))
    if mapper == "detectron2":
        levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    elif mapper == "torchvision":
        levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size) + 1e-6)
    else:
        raise ValueError(f"Unknown level mapper '{mapper}'; expected one of {LEVEL_MAPPERS}")
    levels = torch.clamp(levels, min=min_level, max=max_level)
    return levels.to(torch.int64) - min_level


class ROIPooler(nn.Module):
    """Pools RoIs from the feature level their size selects, with one pooler module per level.

    Attributes: ``level_poolers`` (ModuleList, one per level, in feature order: a deformable pooler's offset
    branch is therefore per level).
    """

    def __init__(
        self,
        level_poolers: Sequence[nn.Module],
        scales: Sequence[float],
        output_size: int,
        canonical_box_size: float = 224.0,
        canonical_level: int = 4,
        level_mapper: str = "detectron2",
    ):
        super().__init__()
        if len(level_poolers) != len(scales) or len(scales) == 0:
            raise ValueError(f"ROIPooler needs one pooler per scale, got {len(level_poolers)} and {list(scales)}")
        if level_mapper not in LEVEL_MAPPERS:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.POOLER_LEVEL_MAPPER must be one of {LEVEL_MAPPERS}, got '{level_mapper}'"
            )
        self.level_poolers = nn.ModuleList(level_poolers)
        self.output_size = output_size
        self.canonical_box_size = float(canonical_box_size)
        self.canonical_level = int(canonical_level)
        self.level_mapper = level_mapper
        log_levels = [-math.log2(s) for s in scales]
        if len(scales) > 1:
            if any(abs(lv - round(lv)) > 1e-6 for lv in log_levels):
                raise ValueError(
                    f"Multi-level RoI pooling needs power-of-two feature strides, got strides {[1 / s for s in scales]}"
                )
            levels = [int(round(lv)) for lv in log_levels]
            if levels != list(range(levels[0], levels[0] + len(levels))):
                raise ValueError(
                    f"Multi-level RoI pooling needs consecutive levels in increasing stride order, got strides "
                    f"{[2 ** lv for lv in levels]} (MODEL.ROI_HEADS.IN_FEATURES order matters)"
                )
            self.min_level, self.max_level = levels[0], levels[-1]
        else:
            self.min_level = self.max_level = 0

    def forward(self, features: List[Tensor], boxes: List[Tensor]) -> Tensor:
        """Per level ``[N, C, H_l, W_l]`` and per image ``[P_i, 4]`` boxes -> ``[sum P_i, C, S, S]`` (image order)."""
        if len(features) != len(self.level_poolers):
            raise ValueError(f"ROIPooler has {len(self.level_poolers)} levels but got {len(features)} feature maps")
        # Pool in float32 at least (as torchvision's autocast rule for roi_align does): half-precision RoI
        # coordinates are off by up to a pixel beyond 1024, and bilinear weights lose precision.
        features = [x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in features]
        rois = boxes_to_rois([b.to(features[0].dtype) for b in boxes])
        if len(self.level_poolers) == 1:
            return self.level_poolers[0](features[0], rois)

        levels = assign_boxes_to_levels(
            boxes, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level, self.level_mapper
        )
        num_channels = features[0].shape[1]
        output = None
        unused = []
        for level, (x, pooler) in enumerate(zip(features, self.level_poolers)):
            idx = torch.nonzero(levels == level).squeeze(1)
            if idx.numel() == 0:
                # A level without RoIs still ties its parameters (a deformable pooler's offset branch) into the
                # graph with a zero term, so they get a zero gradient rather than none: DistributedDataParallel
                # requires every parameter to take part in every step.
                unused += [p.view(-1)[0] * 0.0 for p in pooler.parameters() if p.requires_grad]
                continue
            result = pooler(x, rois[idx])
            if output is None:
                output = result.new_zeros((rois.shape[0], num_channels, self.output_size, self.output_size))
            output[idx] = result.to(output.dtype)
        if output is None:  # no RoIs at all
            output = features[0].new_zeros((0, num_channels, self.output_size, self.output_size))
        if unused:
            output = output + torch.stack(unused).sum().to(output.dtype)
        return output


def build_roi_pooler(cfg, input_shapes, output_size: int, pooler_type: str, sampling_ratio: int) -> ROIPooler:
    """A ROIPooler over the given per-level ShapeSpecs (list, feature order)."""
    builder = POOLER_REGISTRY.get_configured("MODEL.ROI_BOX_HEAD.POOLER_TYPE", pooler_type)
    channels = [s.channels for s in input_shapes]
    if len(set(channels)) != 1:
        raise ValueError(
            f"The box pooler's levels (MODEL.ROI_HEADS.IN_FEATURES) must have the same channel count, since one box "
            f"head (and, for {pooler_type}, an offset branch sized to the channels) follows them; got {channels}"
        )
    scales = [1.0 / s.stride for s in input_shapes]
    poolers = [builder(cfg, output_size, scale, sampling_ratio, channels[0]) for scale in scales]
    head = cfg.MODEL.ROI_BOX_HEAD
    return ROIPooler(
        poolers,
        scales,
        output_size,
        canonical_box_size=head.POOLER_CANONICAL_BOX_SIZE,
        canonical_level=head.POOLER_CANONICAL_LEVEL,
        level_mapper=head.POOLER_LEVEL_MAPPER,
    )
