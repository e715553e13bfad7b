"""Convolutions that carry their own norm (and optional activation), plain or deformable.

Plain and deformable versions share state-dict names: ``<conv>.weight``, ``<conv>.norm.*`` (detectron2 layout);
the deformable one adds only ``<conv>.conv_offset.*``. So a plain model's checkpoint loads into its DCN
variant with just the (zero-initialised) offset branch missing, and a DCNv1 model then gives exactly the plain
model's outputs. A DCNv2 (modulated) model starts with mask sigmoid(0) = 0.5, i.e. as the plain model with those
3x3 weights halved: that is mmcv's and detectron2's init, kept so their checkpoints and recipes carry over.
"""

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from det_dcn.layers import DeformConv2dPack, ModulatedDeformConv2dPack


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` module and ``activation`` callable.

    x: [N, C_in, H, W] -> [N, C_out, H', W'].
    """

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: Optional[Callable] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class _NormActivationMixin:
    """Adds ``norm`` and ``activation`` after a deformable Pack module's own forward."""

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: Optional[Callable] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class DeformConv2dNorm(_NormActivationMixin, DeformConv2dPack):
    """DeformConv2dPack (DCNv1, zero-initialised ``conv_offset``) followed by ``norm`` / ``activation``."""


class ModulatedDeformConv2dNorm(_NormActivationMixin, ModulatedDeformConv2dPack):
    """ModulatedDeformConv2dPack (DCNv2, zero-initialised ``conv_offset``, so mask 0.5 at start) + norm / activation."""


def make_conv3x3(in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1, groups: int = 1,
                 deformable: bool = False, modulated: bool = False, deform_groups: int = 1,
                 norm: Optional[nn.Module] = None) -> nn.Module:
    """A bias-free 3x3 conv with padding = dilation (keeps size at stride 1) and ``norm``.

    ``deformable`` picks DCNv1 (or DCNv2 with ``modulated``) with ``deform_groups`` offset groups; its weight and
    norm keys are the same as the plain conv's.
    """
    if not deformable:
        return Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=dilation, dilation=dilation,
                      groups=groups, bias=False, norm=norm)
    cls = ModulatedDeformConv2dNorm if modulated else DeformConv2dNorm
    return cls(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups,
               deform_groups=deform_groups, bias=False, norm=norm)
