"""RoI heads: pooling, box head, box predictor."""

from .box_head import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead, build_box_head
from .fast_rcnn import FastRCNNOutputLayers
from .poolers import POOLER_REGISTRY, ROIPooler, assign_boxes_to_levels, build_roi_pooler
from .roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, build_roi_heads
from .cascade_rcnn import CascadeROIHeads
