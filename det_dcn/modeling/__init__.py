"""det_dcn.modeling: build_model and every registry a config (or a plugin) selects components from."""

from .backbone import BACKBONE_REGISTRY, Backbone, ShapeSpec, build_backbone
from .box_coder import Box2BoxTransform
from .image_list import ImageList
from .matcher import Matcher
from .meta_arch import META_ARCH_REGISTRY, GeneralizedRCNN, build_model, resolve_device
from .proposal_generator import (
    ANCHOR_GENERATOR_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    RPN,
    RPN_HEAD_REGISTRY,
    DefaultAnchorGenerator,
    StandardRPNHead,
)
from .roi_heads import (
    POOLER_REGISTRY,
    ROI_BOX_HEAD_REGISTRY,
    ROI_HEADS_REGISTRY,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    ROIPooler,
    StandardROIHeads,
)
from .sampling import subsample_labels

__all__ = [
    "build_model", "resolve_device", "build_backbone", "Backbone", "ShapeSpec", "ImageList", "GeneralizedRCNN",
    "RPN", "StandardRPNHead", "DefaultAnchorGenerator", "StandardROIHeads", "FastRCNNConvFCHead",
    "FastRCNNOutputLayers", "ROIPooler", "Box2BoxTransform", "Matcher", "subsample_labels",
    "META_ARCH_REGISTRY", "BACKBONE_REGISTRY", "PROPOSAL_GENERATOR_REGISTRY", "ANCHOR_GENERATOR_REGISTRY",
    "RPN_HEAD_REGISTRY", "ROI_HEADS_REGISTRY", "ROI_BOX_HEAD_REGISTRY", "POOLER_REGISTRY",
]
