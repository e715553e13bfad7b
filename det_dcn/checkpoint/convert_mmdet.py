"""mmdetection 2.x / 3.x Faster R-CNN checkpoints (R50 / R101 FPN, dcn / dcnv2 backbones, dpool / mdpool) -> det_dcn.

Key mapping (mmdetection names on the left):

- ``backbone.*`` (its ResNet uses torchvision's names, ``layer1.0.bn2``; DCN / DCNv2 3x3s keep their offset conv in
  ``conv2.conv_offset``, as det_dcn) -> ``backbone.bottom_up.*``;
- ``neck.lateral_convs.<i>.conv`` / ``neck.fpn_convs.<i>.conv`` -> ``backbone.fpn_lateral<i+2>`` /
  ``backbone.fpn_output<i+2>``;
- ``rpn_head.rpn_conv`` / ``rpn_cls`` / ``rpn_reg`` -> ``proposal_generator.rpn_head.conv`` / ``objectness_logits`` /
  ``anchor_deltas`` (one sigmoid logit and 4 deltas per anchor, anchors of a location in ratio order, as det_dcn);
- ``roi_head.bbox_head.shared_fcs.0`` / ``.1`` -> ``roi_heads.box_head.fc1`` / ``fc2``; ``fc_cls`` / ``fc_reg`` ->
  ``roi_heads.box_predictor.cls_score`` / ``bbox_pred``. mmdetection >= 2.0 puts the background class last, as
  det_dcn does, so rows are kept in order (mmdetection 1.x's background-first head is refused);
- ``roi_head.bbox_roi_extractor.roi_layers.<i>.offset_fc`` / ``mask_fc`` (dpool / mdpool: mmdetection's
  SingleRoIExtractor builds one DeformRoIPoolPack / ModulatedDeformRoIPoolPack per FPN level, each with its own
  offset and mask branch) -> ``roi_heads.box_pooler.level_poolers.<i>.*``: det_dcn's ROIPooler also holds one
  pooler per level (P2..P5), with mmcv's layer indices, so the mapping is one to one.

Everything else (e.g. a mask head) is returned as unmatched.
"""

import re
from typing import Optional

from .convert_common import Converted, StateDict, rename_keys, torchvision_resnet_key

_NECK = re.compile(r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)$")
_RPN = re.compile(r"^rpn_head\.(rpn_conv|rpn_cls|rpn_reg)\.(weight|bias)$")
_RPN_NAMES = {"rpn_conv": "conv", "rpn_cls": "objectness_logits", "rpn_reg": "anchor_deltas"}
_BBOX = re.compile(r"^roi_head\.bbox_head\.(shared_fcs\.[01]|fc_cls|fc_reg)\.(weight|bias)$")
_BBOX_NAMES = {"shared_fcs.0": "box_head.fc1", "shared_fcs.1": "box_head.fc2", "fc_cls": "box_predictor.cls_score",
               "fc_reg": "box_predictor.bbox_pred"}
_POOLER = re.compile(r"^roi_head\.bbox_roi_extractor\.roi_layers\.(\d+)\.((?:offset|mask)_fc\.\d+\.(?:weight|bias))$")


def _mmdet_key(key: str) -> Optional[str]:
    if key.startswith("backbone."):
        new = torchvision_resnet_key(key[len("backbone."):])
        return None if new is None else "backbone.bottom_up." + new
    m = _NECK.match(key)
    if m:
        kind = "fpn_lateral" if m.group(1) == "lateral_convs" else "fpn_output"
        return f"backbone.{kind}{int(m.group(2)) + 2}.{m.group(3)}"
    m = _RPN.match(key)
    if m:
        return f"proposal_generator.rpn_head.{_RPN_NAMES[m.group(1)]}.{m.group(2)}"
    m = _BBOX.match(key)
    if m:
        return f"roi_heads.{_BBOX_NAMES[m.group(1)]}.{m.group(2)}"
    m = _POOLER.match(key)
    if m:
        return f"roi_heads.box_pooler.level_poolers.{m.group(1)}.{m.group(2)}"
    return None


def convert_mmdet(state: StateDict) -> Converted:
    """mmdetection Faster R-CNN state dict -> (det_dcn GeneralizedRCNN state dict, unmatched keys).

    ValueError for a state dict without mmdetection's ``backbone.layer1`` / ``rpn_head`` keys, or with a
    background-first (mmdetection 1.x) box predictor: ``fc_cls`` [K+1, D] must come with ``fc_reg`` [4K, D].
    """
    if not any(k.startswith("backbone.layer1.") for k in state) or not any(k.startswith("rpn_head.") for k in state):
        raise ValueError(f"Not an mmdetection Faster R-CNN state dict: expected 'backbone.layer1.*' and 'rpn_head.*' "
                         f"keys; first keys are {sorted(state)[:5]}")
    cls, reg = state.get("roi_head.bbox_head.fc_cls.weight"), state.get("roi_head.bbox_head.fc_reg.weight")
    if cls is not None and reg is not None and reg.shape[0] != 4 * (cls.shape[0] - 1):
        raise ValueError(
            f"roi_head.bbox_head.fc_reg has {reg.shape[0]} rows for {cls.shape[0]} fc_cls classes; expected "
            f"4 * {cls.shape[0] - 1} (mmdetection >= 2.0: class-specific regression, background last). "
            f"Class-agnostic heads and mmdetection 1.x's background-first head are not supported"
        )
    return rename_keys(state, _mmdet_key)
