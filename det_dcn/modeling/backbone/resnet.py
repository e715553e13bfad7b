"""ResNet (depth 18/34/50/101/152) with deformable stages, dilated res5 and multi-grid; builder for DC5 models."""

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from det_dcn.layers import DropBlock2d

from .backbone import Backbone, ShapeSpec
from .blocks import ASPPBlock, BasicBlock, BasicStem, BottleneckBlock, CNNBlockBase
from .build import BACKBONE_REGISTRY

# Blocks per stage (res2..res5) for each supported depth.
RESNET_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
STAGE_NAMES = ["res2", "res3", "res4", "res5"]
FEATURE_NAMES = ["stem"] + STAGE_NAMES


class ResNet(Backbone):
    """Stem + stages res2..res5 (each an nn.Sequential of blocks, named like detectron2: ``res2.0.conv1``).

    forward(x: [N, 3, H, W]) -> {name: feature} for ``out_features``; "stem" and "res2" have stride 4, then each
    stage halves the resolution (except a res5 whose first block has stride 1, e.g. DC5).
    """

    def __init__(self, stem: CNNBlockBase, stages: Sequence[Sequence[CNNBlockBase]], out_features: Sequence[str],
                 freeze_at: int = 0):
        super().__init__()
        self.stem = stem
        self._out_feature_strides = {"stem": stem.stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        self.stage_names: List[str] = []
        stride = stem.stride
        for name, blocks in zip(STAGE_NAMES, stages):
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            for block in blocks:
                stride *= block.stride
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        for name in out_features:
            if name not in self._out_feature_strides:
                raise ValueError(f"ResNet out_features has '{name}', which is not among the built features "
                                 f"{list(self._out_feature_strides)}")
        # Keep the order stem, res2, ..., res5 whatever order the caller gave.
        self._out_features = [n for n in FEATURE_NAMES if n in out_features]
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> "ResNet":
        """Freeze the stem (freeze_at >= 1) and res2..res{freeze_at} (freeze_at >= 2); 0 freezes nothing."""
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, name in enumerate(self.stage_names, start=2):
            if freeze_at >= idx:
                for block in getattr(self, name):
                    block.freeze()
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNet takes [N, C, H, W] images; got a tensor of shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


def _bad(key: str, value, expected: str) -> ValueError:
    return ValueError(f"{key}={value!r} is invalid: expected {expected}")


def _validate_resnet_cfg(cfg) -> None:
    """Raise ValueError naming the key, the value and what is allowed for combinations the ResNet cannot build."""
    r = cfg.MODEL.RESNETS
    if r.DEPTH not in RESNET_BLOCKS:
        raise _bad("MODEL.RESNETS.DEPTH", r.DEPTH, f"one of {sorted(RESNET_BLOCKS)}")
    basic = r.DEPTH in (18, 34)
    if not isinstance(r.NUM_GROUPS, int) or r.NUM_GROUPS < 1:
        raise _bad("MODEL.RESNETS.NUM_GROUPS", r.NUM_GROUPS, "an integer >= 1")
    if basic and r.NUM_GROUPS != 1:
        raise _bad("MODEL.RESNETS.NUM_GROUPS", r.NUM_GROUPS,
                   f"1 with MODEL.RESNETS.DEPTH={r.DEPTH} (basic blocks have no grouped conv; use depth >= 50)")
    for key in ("WIDTH_PER_GROUP", "STEM_OUT_CHANNELS", "RES2_OUT_CHANNELS", "DEFORM_NUM_GROUPS"):
        value = r[key]
        if not isinstance(value, int) or value < 1:
            raise _bad(f"MODEL.RESNETS.{key}", value, "an integer >= 1")
    if r.RES5_DILATION not in (1, 2):
        raise _bad("MODEL.RESNETS.RES5_DILATION", r.RES5_DILATION,
                   "1 (res5 at stride 32) or 2 (res5 at stride 16, first res5 block with stride 1: DC5)")
    deform = _per_stage_flags("MODEL.RESNETS.DEFORM_ON_PER_STAGE", r.DEFORM_ON_PER_STAGE)
    _validate_dropblock_cfg(r.DROPBLOCK)
    num_res5 = RESNET_BLOCKS[r.DEPTH][3]
    grid = list(r.RES5_MULTI_GRID)
    if grid and (len(grid) != num_res5 or not all(isinstance(g, int) and g >= 1 for g in grid)):
        raise _bad("MODEL.RESNETS.RES5_MULTI_GRID", r.RES5_MULTI_GRID,
                   f"[] or {num_res5} positive integers (one per res5 block of depth {r.DEPTH}), e.g. [1, 2, 4]")
    aspp = list(r.RES5_ASPP_RATES)
    if aspp and not all(isinstance(a, int) and a >= 1 for a in aspp):
        raise _bad("MODEL.RESNETS.RES5_ASPP_RATES", r.RES5_ASPP_RATES,
                   "[] (no ASPP) or positive integer dilation rates of ASPP's 3x3 branches, e.g. [2, 4, 6]")
    freeze_at = cfg.MODEL.BACKBONE.FREEZE_AT
    if not isinstance(freeze_at, int) or not 0 <= freeze_at <= 5:
        raise _bad("MODEL.BACKBONE.FREEZE_AT", freeze_at, "an integer in 0..5 (0: none, 1: stem, k: stem+res2..res<k>)")
    if r.NORM not in ("", "BN", "SyncBN", "FrozenBN", "GN"):
        raise _bad("MODEL.RESNETS.NORM", r.NORM, "one of 'FrozenBN', 'BN', 'SyncBN', 'GN', '' (no norm)")
    out_features = list(r.OUT_FEATURES)
    if not out_features or any(f not in FEATURE_NAMES for f in out_features):
        raise _bad("MODEL.RESNETS.OUT_FEATURES", r.OUT_FEATURES, f"a non-empty subset of {FEATURE_NAMES}")
    if r.NORM == "GN":
        bad = [c for c in _all_channels(cfg) if c % 32 != 0]
        if bad:
            raise _bad("MODEL.RESNETS.NORM", r.NORM,
                       f"a norm other than 'GN' for these channel counts ({sorted(set(bad))} are not divisible by "
                       "GN's 32 groups; see STEM_OUT_CHANNELS, RES2_OUT_CHANNELS, NUM_GROUPS * WIDTH_PER_GROUP)")
    for idx, on in enumerate(deform):
        if not on:
            continue
        channels = _stage_channels(cfg, idx)[1]
        if channels % r.DEFORM_NUM_GROUPS != 0:
            raise _bad("MODEL.RESNETS.DEFORM_NUM_GROUPS", r.DEFORM_NUM_GROUPS,
                       f"a divisor of the {channels} input channels of the deformable 3x3 in {STAGE_NAMES[idx]}")


def _per_stage_flags(key: str, value) -> List[bool]:
    flags = list(value)
    if len(flags) != 4 or not all(isinstance(f, bool) for f in flags):
        raise _bad(key, value, "4 booleans, one per stage res2, res3, res4, res5 (e.g. [False, True, True, True] for "
                               "c3-c5)")
    return flags


def _validate_dropblock_cfg(db) -> None:
    prefix = "MODEL.RESNETS.DROPBLOCK."
    if not isinstance(db.PROB, (int, float)) or not 0.0 <= db.PROB < 1.0:
        raise _bad(prefix + "PROB", db.PROB, "a drop probability in [0, 1) (0: no DropBlock)")
    if not isinstance(db.BLOCK_SIZE, int) or db.BLOCK_SIZE < 1 or db.BLOCK_SIZE % 2 == 0:
        raise _bad(prefix + "BLOCK_SIZE", db.BLOCK_SIZE, "an odd integer >= 1 (feature-map cells)")
    _per_stage_flags(prefix + "ON_PER_STAGE", db.ON_PER_STAGE)
    if not isinstance(db.WARMUP_ITERS, int) or db.WARMUP_ITERS < 0:
        raise _bad(prefix + "WARMUP_ITERS", db.WARMUP_ITERS, "an integer >= 0")


def _stage_channels(cfg, stage_idx: int):
    """(out_channels, channels of the 3x3 convs) of stage ``stage_idx`` (0 = res2); both double per stage."""
    r = cfg.MODEL.RESNETS
    out_channels = r.RES2_OUT_CHANNELS * 2 ** stage_idx
    if r.DEPTH in (18, 34):
        return out_channels, out_channels
    return out_channels, r.NUM_GROUPS * r.WIDTH_PER_GROUP * 2 ** stage_idx


def _all_channels(cfg) -> List[int]:
    channels = [cfg.MODEL.RESNETS.STEM_OUT_CHANNELS]
    for idx in range(4):
        channels.extend(_stage_channels(cfg, idx))
    return channels


def build_resnet(cfg, input_shape: Optional[ShapeSpec] = None) -> ResNet:
    """Build the ResNet cfg.MODEL.RESNETS describes (validated first; errors name the key and value)."""
    _validate_resnet_cfg(cfg)
    r = cfg.MODEL.RESNETS
    in_channels = input_shape.channels if input_shape is not None and input_shape.channels else 3
    stem = BasicStem(in_channels, r.STEM_OUT_CHANNELS, norm=r.NORM)
    out_features = list(r.OUT_FEATURES)
    # Build only up to the deepest stage asked for (a DC5 model without res5 features would waste it).
    last_stage = max(FEATURE_NAMES.index(f) for f in out_features)
    basic = r.DEPTH in (18, 34)
    grid = list(r.RES5_MULTI_GRID) or [1] * RESNET_BLOCKS[r.DEPTH][3]

    stages = []
    in_ch = r.STEM_OUT_CHANNELS
    for idx in range(last_stage):
        out_ch, mid_ch = _stage_channels(cfg, idx)
        is_res5 = idx == 3
        first_stride = 1 if idx == 0 or (is_res5 and r.RES5_DILATION == 2) else 2
        blocks = []
        for b in range(RESNET_BLOCKS[r.DEPTH][idx]):
            dilation = r.RES5_DILATION * grid[b] if is_res5 else 1
            common = dict(stride=first_stride if b == 0 else 1, norm=r.NORM, dilation=dilation,
                          deform=r.DEFORM_ON_PER_STAGE[idx], deform_modulated=r.DEFORM_MODULATED,
                          deform_num_groups=r.DEFORM_NUM_GROUPS)
            if basic:
                blocks.append(BasicBlock(in_ch, out_ch, **common))
            else:
                blocks.append(BottleneckBlock(in_ch, out_ch, bottleneck_channels=mid_ch, num_groups=r.NUM_GROUPS,
                                              stride_in_1x1=r.STRIDE_IN_1X1, **common))
            if r.DROPBLOCK.PROB > 0 and r.DROPBLOCK.ON_PER_STAGE[idx]:
                blocks[-1].drop_block = DropBlock2d(float(r.DROPBLOCK.PROB), r.DROPBLOCK.BLOCK_SIZE,
                                                    r.DROPBLOCK.WARMUP_ITERS)
            in_ch = out_ch
        if is_res5 and r.RES5_ASPP_RATES:
            blocks.append(ASPPBlock(out_ch, list(r.RES5_ASPP_RATES), norm=r.NORM))
        stages.append(blocks)
    return ResNet(stem, stages, out_features, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """A bare ResNet returning MODEL.RESNETS.OUT_FEATURES (e.g. ["res5"] with RES5_DILATION 2 for DC5)."""
    return build_resnet(cfg, input_shape)
