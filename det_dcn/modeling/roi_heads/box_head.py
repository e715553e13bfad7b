"""Box heads: pooled RoI features -> one feature vector per RoI."""

from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...layers.norm import get_norm
from ...utils.registry import Registry

ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD")
ROI_BOX_HEAD_REGISTRY.__doc__ = (
    "Box heads: a class with from_config(cfg, input_shape: (C, H, W)) or fn(cfg, input_shape) -> nn.Module with an "
    "``output_size`` attribute (the per-RoI feature length)."
)


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHead(nn.Module):
    """``NUM_CONV`` 3x3 convs (+norm) then ``NUM_FC`` fully connected layers, each followed by ReLU.

    Attributes (checkpoint names): ``conv1``..``convN``, ``fc1``..``fcM`` (2FC: fc1, fc2, like detectron2).
    Input ``[R, C, H, W]``; output ``[R, output_size]``.
    """

    def __init__(
        self, input_shape: Tuple[int, int, int], conv_dims: Sequence[int] = (), fc_dims: Sequence[int] = (),
        conv_norm: str = "",
    ):
        super().__init__()
        channels, height, width = input_shape
        self.conv_names: List[str] = []
        for k, dim in enumerate(conv_dims):
            conv = nn.Conv2d(channels, dim, 3, padding=1, bias=not conv_norm)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            norm = get_norm(conv_norm, dim)
            layer = nn.Sequential(conv, norm) if norm is not None else conv
            self.add_module(f"conv{k + 1}", layer)
            self.conv_names.append(f"conv{k + 1}")
            channels = dim
        size = channels * height * width
        self.fc_names: List[str] = []
        for k, dim in enumerate(fc_dims):
            fc = nn.Linear(size, dim)
            # Uniform fan-in init with gain 1 ("c2_xavier_fill"), zero bias.
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
            self.add_module(f"fc{k + 1}", fc)
            self.fc_names.append(f"fc{k + 1}")
            size = dim
        self.output_size = size

    @classmethod
    def from_config(cls, cfg, input_shape: Tuple[int, int, int]) -> "FastRCNNConvFCHead":
        head = cfg.MODEL.ROI_BOX_HEAD
        if head.NUM_CONV < 0 or head.NUM_FC < 0:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.NUM_CONV / NUM_FC must be >= 0, got {head.NUM_CONV} / {head.NUM_FC}")
        if head.NUM_CONV + head.NUM_FC == 0:
            raise ValueError("MODEL.ROI_BOX_HEAD needs NUM_CONV + NUM_FC > 0 (e.g. NUM_FC 2 for the 2FC head)")
        return cls(input_shape, [head.CONV_DIM] * head.NUM_CONV, [head.FC_DIM] * head.NUM_FC, head.NORM)

    def forward(self, x: Tensor) -> Tensor:
        for name in self.conv_names:
            x = F.relu_(getattr(self, name)(x))
        if self.fc_names:
            x = torch.flatten(x, 1)
            for name in self.fc_names:
                x = F.relu_(getattr(self, name)(x))
        return x.flatten(1)


def build_box_head(cfg, input_shape: Tuple[int, int, int]) -> nn.Module:
    name = cfg.MODEL.ROI_BOX_HEAD.NAME
    obj = ROI_BOX_HEAD_REGISTRY.get_configured("MODEL.ROI_BOX_HEAD.NAME", name)
    if hasattr(obj, "from_config"):
        return obj.from_config(cfg, input_shape)
    return obj(cfg, input_shape)
