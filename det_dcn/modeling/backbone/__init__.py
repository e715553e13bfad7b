"""Backbones: ResNet (+DCN, +dilation, +multi-grid) and FPN, registered in BACKBONE_REGISTRY."""

from .backbone import Backbone, ShapeSpec
from .blocks import ASPPBlock, BasicBlock, BasicStem, BottleneckBlock, CNNBlockBase
from .build import BACKBONE_REGISTRY, build_backbone
from .conv import Conv2d
from .fpn import FPN, LastLevelMaxPool, build_resnet_fpn_backbone
from .resnet import ResNet, build_resnet, build_resnet_backbone

__all__ = [
    "ASPPBlock", "BACKBONE_REGISTRY", "Backbone", "BasicBlock", "BasicStem", "BottleneckBlock", "CNNBlockBase", "Conv2d", "FPN",
    "LastLevelMaxPool", "ResNet", "ShapeSpec", "build_backbone", "build_resnet", "build_resnet_backbone",
    "build_resnet_fpn_backbone",
]
