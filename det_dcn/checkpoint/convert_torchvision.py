"""torchvision checkpoints -> det_dcn state dicts.

Two sources are understood:

- a torchvision ImageNet ResNet (``torchvision.models.resnet50().state_dict()``): ``conv1``, ``bn1``,
  ``layer1.0.conv1`` ... become ``stem.conv1``, ``stem.conv1.norm``, ``res2.0.conv1`` ... (under ``prefix``,
  by default ``backbone.bottom_up.`` so a detector loads them); ``fc.*`` has no counterpart and is reported.
- a torchvision ``fasterrcnn_resnet50_fpn`` detector: ``backbone.body`` -> ``backbone.bottom_up``, the FPN's
  ``inner_blocks`` / ``layer_blocks`` -> ``fpn_lateral<k>`` / ``fpn_output<k>``, the RPN head and the box head
  renamed, and the 91-way predictor re-ordered: torchvision's class 0 is background and classes 1..90 are
  foreground, det_dcn's foreground classes are 0..89 and background is the last index; the class-specific box
  regressor drops torchvision's 4 background rows. With ``coco80=True`` only the rows of the 80 category ids
  that COCO 2017 annotates (``COCO_2017_CATEGORY_IDS``) are kept, in increasing id order, so det_dcn class c is
  the c-th used id, as det_dcn's COCO loader numbers them (evaluate with MODEL.ROI_HEADS.NUM_CLASSES 80).

BatchNorm ``num_batches_tracked`` counters are dropped (det_dcn's frozen norms have none). Every other key
without a counterpart is returned in the "unmatched" list, so callers can report it.
"""

import re
from typing import List, Optional, Sequence, Tuple

import torch

from .convert_common import StateDict, rename_keys, torchvision_resnet_key


def convert_torchvision_resnet(state: StateDict, prefix: str = "") -> Tuple[StateDict, List[str]]:
    """torchvision ImageNet ResNet state dict -> (det_dcn ResNet state dict with ``prefix``, unmatched keys)."""

    def rename(key: str) -> Optional[str]:
        new = torchvision_resnet_key(key)
        return None if new is None else prefix + new

    return rename_keys(state, rename)


# FPN: torchvision >= 0.13 wraps each conv in Conv2dNormActivation ("inner_blocks.0.0.weight"); older
# checkpoints (the published COCO weights) have "inner_blocks.0.weight". Index i is FPN level i + 2.
_FPN = re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(?:0\.)?(weight|bias)$")
_RPN = re.compile(r"^rpn\.head\.(conv|cls_logits|bbox_pred)\.(?:0\.0\.)?(weight|bias)$")
_RPN_NAMES = {"conv": "conv", "cls_logits": "objectness_logits", "bbox_pred": "anchor_deltas"}
_BOX_HEAD = re.compile(r"^roi_heads\.box_head\.(fc6|fc7)\.(weight|bias)$")


def _detector_key(key: str) -> Optional[str]:
    if key.startswith("backbone.body."):
        new = torchvision_resnet_key(key[len("backbone.body."):])
        return None if new is None else "backbone.bottom_up." + new
    m = _FPN.match(key)
    if m:
        kind = "fpn_lateral" if m.group(1) == "inner_blocks" else "fpn_output"
        return f"backbone.{kind}{int(m.group(2)) + 2}.{m.group(3)}"
    m = _RPN.match(key)
    if m:
        return f"proposal_generator.rpn_head.{_RPN_NAMES[m.group(1)]}.{m.group(2)}"
    m = _BOX_HEAD.match(key)
    if m:
        return f"roi_heads.box_head.{'fc1' if m.group(1) == 'fc6' else 'fc2'}.{m.group(2)}"
    if key in ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias",
               "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias"):
        return key
    return None


def move_background_last(cls_score: torch.Tensor) -> torch.Tensor:
    """Rows [bg, c1..cK] (torchvision) -> [c1..cK, bg] (det_dcn); works for weight [K+1, D] and bias [K+1]."""
    return torch.cat([cls_score[1:], cls_score[:1]], dim=0)


# The 80 category ids that COCO 2017 annotates (1..90 with 10 gaps); det_dcn's COCO loader numbers them 0..79.
COCO_2017_CATEGORY_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45))
                          + list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))
_PREDICTOR = "roi_heads.box_predictor."


def keep_torchvision_classes(state: StateDict, category_ids: Sequence[int],
                             expected_num_classes: Optional[int] = None) -> StateDict:
    """Copy of a torchvision detector state dict whose predictor keeps background + ``category_ids`` only.

    cls_score rows [K, D] / [K] (row 0 background, row k = torchvision label k) become rows [0, *category_ids];
    bbox_pred rows [4K, D] / [4K] keep rows 0..3 and 4k..4k+3 for each k, in the order given. The result is
    still in torchvision layout (background first), ready for ``convert_torchvision_faster_rcnn``.
    ``expected_num_classes``: K the head must have (background included), else ValueError.
    """
    keys = [f"{_PREDICTOR}{m}.{leaf}" for m in ("cls_score", "bbox_pred") for leaf in ("weight", "bias")]
    absent = [k for k in keys if k not in state]
    if absent:
        raise ValueError(f"Cannot select predictor classes: the state dict lacks {absent}")
    num = state[keys[0]].shape[0]
    if expected_num_classes is not None and num != expected_num_classes:
        raise ValueError(f"roi_heads.box_predictor.cls_score has {num} classes (background included); expected "
                         f"{expected_num_classes} (torchvision's COCO head: background + category ids 1..90)")
    if state[keys[2]].shape[0] != 4 * num:
        raise ValueError(f"roi_heads.box_predictor.bbox_pred has {state[keys[2]].shape[0]} rows; expected 4 per "
                         f"class = {4 * num} (class-specific regression)")
    ids = list(category_ids)
    if ids != sorted(set(ids)) or not ids or ids[0] < 1 or ids[-1] >= num:
        raise ValueError(f"category_ids must be increasing, unique and in [1, {num - 1}]; got {ids}")
    cls_rows = torch.tensor([0] + ids)
    box_rows = (cls_rows[:, None] * 4 + torch.arange(4)).flatten()
    out = dict(state)
    for leaf in ("weight", "bias"):
        out[f"{_PREDICTOR}cls_score.{leaf}"] = state[f"{_PREDICTOR}cls_score.{leaf}"][cls_rows]
        out[f"{_PREDICTOR}bbox_pred.{leaf}"] = state[f"{_PREDICTOR}bbox_pred.{leaf}"][box_rows]
    return out


def convert_torchvision_faster_rcnn(state: StateDict, coco80: bool = False) -> Tuple[StateDict, List[str]]:
    """torchvision fasterrcnn_resnet50_fpn state dict -> (det_dcn GeneralizedRCNN state dict, unmatched keys).

    The result has NUM_CLASSES = (torchvision classes - 1) foreground classes: torchvision class c >= 1 is
    det_dcn class c - 1. With ``coco80`` the 91-class COCO head (ValueError otherwise) keeps only the
    ``COCO_2017_CATEGORY_IDS``: NUM_CLASSES 80, det_dcn class c = ``COCO_2017_CATEGORY_IDS[c]``.
    """
    if coco80:
        state = keep_torchvision_classes(state, COCO_2017_CATEGORY_IDS, expected_num_classes=91)
    out, unmatched = rename_keys(state, _detector_key)
    for leaf in ("weight", "bias"):
        key = f"roi_heads.box_predictor.cls_score.{leaf}"
        if key in out:
            out[key] = move_background_last(out[key])
        key = f"roi_heads.box_predictor.bbox_pred.{leaf}"
        if key in out:
            out[key] = out[key][4:]  # drop the background class's 4 regression rows
    return out, unmatched


def detect_torchvision_kind(state: StateDict) -> str:
    """"faster_rcnn" or "resnet" for a torchvision state dict; ValueError if it is neither."""
    if any(k.startswith(("backbone.body.", "rpn.head.")) for k in state):
        return "faster_rcnn"
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in state):
        return "resnet"
    sample = sorted(state)[:5]
    raise ValueError(f"Not a torchvision ResNet or Faster R-CNN state dict: expected keys like 'conv1.weight' / "
                     f"'layer1.0.conv1.weight' or 'backbone.body.*' / 'rpn.head.*'; first keys are {sample}")


def convert_torchvision(state: StateDict, coco80: bool = False) -> Tuple[StateDict, List[str], str]:
    """Convert either kind of torchvision checkpoint for loading into a det_dcn detector.

    Returns (state dict, unmatched keys, kind); ResNet keys get the ``backbone.bottom_up.`` prefix.
    ``coco80``: see ``convert_torchvision_faster_rcnn``; ValueError for a ResNet (it has no class head).
    """
    kind = detect_torchvision_kind(state)
    if kind == "faster_rcnn":
        out, unmatched = convert_torchvision_faster_rcnn(state, coco80=coco80)
    elif coco80:
        raise ValueError("coco80 applies to a Faster R-CNN checkpoint; this is a torchvision ResNet (no class head)")
    else:
        out, unmatched = convert_torchvision_resnet(state, prefix="backbone.bottom_up.")
    return out, unmatched, kind
