"""Feature Pyramid Network (Lin et al. 2017) on a bottom-up backbone, P2-P6 with P6 by max-pooling P5."""

import math
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from det_dcn.layers import get_norm

from .backbone import Backbone, ShapeSpec
from .build import BACKBONE_REGISTRY
from .conv import Conv2d
from .resnet import build_resnet
from .weight_init import c2_xavier_fill


class LastLevelMaxPool(nn.Module):
    """P6 = max_pool2d(P5, kernel 1, stride 2): the extra coarse level Faster R-CNN's RPN uses."""

    num_levels = 1
    in_feature = "p5"

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x: [N, C, H, W] -> [[N, C, ceil(H / 2), ceil(W / 2)]]."""
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class FPN(Backbone):
    """Top-down pathway with lateral 1x1 convs and 3x3 output convs over ``in_features`` of ``bottom_up``.

    Output names are "p<log2(stride)>" (p2..p5 from res2..res5, then the top block's levels, e.g. p6).
    Modules are named ``fpn_lateral<k>`` / ``fpn_output<k>`` as in detectron2. The top-down map is upsampled
    (nearest) to the lateral's exact size, so inputs need not be multiples of the largest stride.
    """

    def __init__(self, bottom_up: Backbone, in_features: List[str], out_channels: int, norm: str = "",
                 top_block: Optional[nn.Module] = None, fuse_type: str = "sum"):
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"MODEL.FPN.FUSE_TYPE={fuse_type!r} is invalid: expected 'sum' or 'avg'")
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if not in_features or missing:
            raise ValueError(f"MODEL.FPN.IN_FEATURES={list(in_features)!r} is invalid: expected a non-empty subset "
                             f"of the bottom-up features {list(shapes)} (MODEL.RESNETS.OUT_FEATURES); "
                             f"missing: {missing}")
        strides = [shapes[f].stride for f in in_features]
        for prev, cur in zip(strides[:-1], strides[1:]):
            if cur != 2 * prev:
                raise ValueError(
                    f"MODEL.FPN.IN_FEATURES={list(in_features)!r} is invalid: expected features whose strides double "
                    f"from one to the next, got strides {strides} (a dilated res5, MODEL.RESNETS.RES5_DILATION=2, "
                    f"has the same stride as res4 and cannot be an FPN input)")
        if norm not in ("", "BN", "SyncBN", "FrozenBN", "GN"):
            raise ValueError(f"MODEL.FPN.NORM={norm!r} is invalid: expected one of '', 'BN', 'SyncBN', 'FrozenBN', "
                             f"'GN'")
        if norm == "GN" and out_channels % 32 != 0:
            raise ValueError(f"MODEL.FPN.NORM='GN' is invalid with MODEL.FPN.OUT_CHANNELS={out_channels}: "
                             f"expected channels divisible by 32")
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        self.top_block = top_block
        self._fuse_type = fuse_type
        use_bias = norm == ""
        lateral_convs, output_convs = [], []
        for feature, stride in zip(self.in_features, strides):
            level = int(math.log2(stride))
            lateral = Conv2d(shapes[feature].channels, out_channels, kernel_size=1, bias=use_bias,
                             norm=get_norm(norm, out_channels))
            output = Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=use_bias,
                            norm=get_norm(norm, out_channels))
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"fpn_lateral{level}", lateral)
            self.add_module(f"fpn_output{level}", output)
            lateral_convs.append(lateral)
            output_convs.append(output)
        # Top-down order (coarsest first); plain lists so the modules are registered only once, by name above.
        self._lateral_convs = lateral_convs[::-1]
        self._output_convs = output_convs[::-1]

        self._out_feature_strides = {f"p{int(math.log2(s))}": s for s in strides}
        if top_block is not None and top_block.in_feature not in self._out_feature_strides:
            raise ValueError(
                f"MODEL.FPN.IN_FEATURES={list(in_features)!r} is invalid with {type(top_block).__name__}: it takes "
                f"'{top_block.in_feature}', so the inputs must include that level; they give "
                f"{list(self._out_feature_strides)}")
        if top_block is not None:
            last = int(math.log2(strides[-1]))
            for k in range(top_block.num_levels):
                self._out_feature_strides[f"p{last + k + 1}"] = 2 ** (last + k + 1)
        self._out_features = list(self._out_feature_strides)
        self._out_feature_channels = {f: out_channels for f in self._out_features}
        self._size_divisibility = strides[-1]

    @property
    def size_divisibility(self) -> int:
        """The largest bottom-up stride (32 for res2-res5), so every level's top-down map aligns exactly."""
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [N, 3, H, W] -> {"p2": [N, C, H/4, W/4], ..., "p6": [N, C, H/64, W/64]} (sizes rounded up)."""
        bottom_up = self.bottom_up(x)
        laterals = [bottom_up[f] for f in self.in_features[::-1]]
        prev = self._lateral_convs[0](laterals[0])
        results = [self._output_convs[0](prev)]
        for feature, lateral_conv, output_conv in zip(laterals[1:], self._lateral_convs[1:], self._output_convs[1:]):
            lateral = lateral_conv(feature)
            top_down = F.interpolate(prev, size=lateral.shape[-2:], mode="nearest")
            prev = lateral + top_down
            if self._fuse_type == "avg":
                prev = prev / 2
            results.insert(0, output_conv(prev))
        if self.top_block is not None:
            top_input = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_input))
        return dict(zip(self._out_features, results))


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet (MODEL.RESNETS) + FPN (MODEL.FPN) with P6 from LastLevelMaxPool: features p2..p6."""
    bottom_up = build_resnet(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    return FPN(bottom_up, in_features, cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM,
               top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
