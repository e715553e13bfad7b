"""Backbone base class and ShapeSpec: what every backbone promises the heads built on top of it."""

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (input pixels per feature pixel) of a tensor; height/width are optional.

    The field order is (channels, stride, height, width), so ``ShapeSpec(256, 4)`` reads "256 channels, stride 4";
    prefer keywords (``ShapeSpec(channels=3)``) where it helps.
    """

    channels: Optional[int] = None
    stride: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network mapping an image batch to named feature maps.

    Subclasses fill ``self._out_features`` (names, in increasing stride), ``self._out_feature_channels`` and
    ``self._out_feature_strides`` (name -> int), and implement :meth:`forward`.
    """

    def __init__(self):
        super().__init__()
        self._out_features = []
        self._out_feature_channels: Dict[str, int] = {}
        self._out_feature_strides: Dict[str, int] = {}

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [N, C, H, W] normalised images -> {feature name: [N, C_f, H / stride_f, W / stride_f]}."""

    @property
    def size_divisibility(self) -> int:
        """Input height and width must be multiples of this (0: any size works)."""
        return 0

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """{feature name: ShapeSpec(channels, stride)} for every feature :meth:`forward` returns."""
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }
