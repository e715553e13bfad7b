"""BACKBONE_REGISTRY and build_backbone: how a config selects its backbone (also one registered by a plugin)."""

from typing import Optional

from det_dcn.utils.registry import Registry

from .backbone import Backbone, ShapeSpec

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Builders of backbones, called as ``fn(cfg, input_shape: ShapeSpec) -> Backbone``.
cfg.MODEL.BACKBONE.NAME selects one.
"""


def build_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> Backbone:
    """Build the backbone cfg.MODEL.BACKBONE.NAME names; the input has len(cfg.MODEL.PIXEL_MEAN) channels."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    name = cfg.MODEL.BACKBONE.NAME
    backbone = BACKBONE_REGISTRY.get_configured("MODEL.BACKBONE.NAME", name)(cfg, input_shape)
    if not isinstance(backbone, Backbone):
        raise ValueError(
            f"MODEL.BACKBONE.NAME='{name}' returned a {type(backbone).__name__}, expected a Backbone subclass"
        )
    return backbone
