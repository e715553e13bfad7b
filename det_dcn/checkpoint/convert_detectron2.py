"""detectron2 checkpoints -> det_dcn state dicts.

- ``convert_detectron2``: a detectron2 Faster R-CNN (model-zoo ``.pkl``: ``{"model": {name: numpy array},
  "__author__": ...}``, or a ``.pth`` from its trainer), FPN (``backbone.bottom_up.res2.0.conv1.weight``,
  ``backbone.fpn_lateral2.weight`` ...) or DC5 (the ResNet is the backbone: ``backbone.stem.conv1.weight``,
  ``backbone.res5.2.conv3.norm.bias`` ...). det_dcn uses detectron2's module names, so keys of the parts det_dcn has
  (ResNet / ResNeXt, FPN, RPN head, box head and predictor, both with background last) are kept; the one difference
  is the deformable 3x3: detectron2's offset conv ``resN.B.conv2_offset`` sits beside ``conv2``, det_dcn's inside it
  (``conv2.conv_offset``, mmcv's layout; the same channel layout, modulated ``chunk(3)`` = x/y offsets, mask). C4
  models (Res5ROIHeads: res5 in ``roi_heads.res5.*``) are refused, as det_dcn has no Res5ROIHeads. Cascade
  R-CNN's stages (``roi_heads.box_head.<k>``, ``roi_heads.box_predictor.<k>``) are CascadeROIHeads' names. Heads
  det_dcn does not have (mask, keypoint) and the non-weight ``pixel_mean`` / ``pixel_std`` are returned as
  unmatched.
- ``convert_detectron2_c2``: the MSRA / FAIR Caffe2-format ImageNet backbones detectron2 configs start from
  (``ImageNetPretrained/MSRA/R-50.pkl``, ``FAIR/X-101-32x8d.pkl``): ``conv1_w``, ``res_conv1_bn_s``,
  ``res2_0_branch2a_w``, ``res2_0_branch1_bn_b`` ... -> ``backbone.bottom_up.stem.conv1.weight``, ``...res2.0.conv1
  .weight`` ... Their norms are affine only (``_bn_s`` scale, ``_bn_b`` shift); FrozenBN statistics mean 0 and var 1
  are added, as detectron2 does when it loads them. The classifier (``fc1000_*`` / ``pred_*``), the stem's unused
  ``conv1_b`` and Caffe2's ``*_momentum`` blobs are unmatched. They expect detectron2's input: BGR, PIXEL_MEAN
  [103.53, 116.28, 123.675], PIXEL_STD [1, 1, 1], STRIDE_IN_1X1 True (the X-101-32x8d one: STRIDE_IN_1X1 False and
  PIXEL_STD [57.375, 57.12, 58.395], as its detectron2 config says).
"""

import re
from typing import Optional

import torch

from .convert_common import Converted, StateDict, rename_keys

BOTTOM_UP = "backbone.bottom_up."
# The ResNet's modules: under the FPN (backbone.bottom_up.) or the backbone itself (DC5: backbone.).
_RESNET = re.compile(r"^backbone\.(bottom_up\.)?(stem|res[2-5])\.")
# Prefixes of det_dcn's (= detectron2's) module names for the other parts det_dcn has.
_KEPT = ("backbone.fpn_lateral", "backbone.fpn_output", "proposal_generator.rpn_head.", "roi_heads.box_head.",
         "roi_heads.box_predictor.")
_DETECTOR = ("proposal_generator.", "roi_heads.")  # what only a detector has (an ImageNet backbone has neither)
_C4_RES5 = "roi_heads.res5."
_DCN_OFFSET = re.compile(r"^(backbone\.(?:bottom_up\.)?res[2-5]\.\d+)\.conv2_offset\.(weight|bias)$")


def _detectron2_key(key: str) -> Optional[str]:
    m = _DCN_OFFSET.match(key)
    if m:
        return f"{m.group(1)}.conv2.conv_offset.{m.group(2)}"
    return key if _RESNET.match(key) or key.startswith(_KEPT) else None


def convert_detectron2(state: StateDict) -> Converted:
    """detectron2 GeneralizedRCNN state dict (FPN or DC5) -> (det_dcn state dict, unmatched keys: heads det_dcn
    lacks, ...). ValueError for a C4 model or a state dict that is not a detector."""
    if not any(k.startswith(_DETECTOR) for k in state):
        raise ValueError(f"Not a detectron2 detector state dict: no 'proposal_generator.*' or 'roi_heads.*' keys; "
                         f"first keys are {sorted(state)[:5]} (a Caffe2 ImageNet backbone such as R-50.pkl: use "
                         f"'detectron2-c2')")
    c4 = sorted(k for k in state if k.startswith(_C4_RES5))
    if c4:
        raise ValueError(f"A detectron2 C4 model (Res5ROIHeads: res5 inside the RoI head, e.g. '{c4[0]}'): det_dcn has "
                         f"no Res5ROIHeads (ROI_HEADS.NAME 'StandardROIHeads' only); FPN and DC5 models convert")
    if not any(_RESNET.match(k) for k in state):
        raise ValueError(f"A detectron2 detector state dict without a ResNet backbone ('{BOTTOM_UP}res2.*' for FPN, "
                         f"'backbone.res2.*' for DC5); first keys are {sorted(state)[:5]}")
    return rename_keys(state, _detectron2_key)


# Caffe2 names: "res<stage>_<block>_branch<1|2a|2b|2c>_<leaf>", stem "conv1_w" and "res_conv1_bn_<leaf>".
_C2_BLOCK = re.compile(r"^res([2-5])_(\d+)_branch(1|2a|2b|2c)_(w|bn_\w+|gn_\w+)$")
_C2_BRANCH = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_C2_LEAF = {"s": "norm.weight", "gamma": "norm.weight", "b": "norm.bias", "beta": "norm.bias",
            "rm": "norm.running_mean", "riv": "norm.running_var"}


def _c2_leaf(leaf: str) -> Optional[str]:
    if leaf == "w":
        return "weight"
    kind, _, rest = leaf.partition("_")  # "bn_s" / "gn_b": norm parameters; GN has no running statistics
    if kind == "gn" and rest in ("rm", "riv"):
        return None
    return _C2_LEAF.get(rest)


def _c2_key(key: str) -> Optional[str]:
    if key == "conv1_w":
        return BOTTOM_UP + "stem.conv1.weight"
    if key.startswith(("res_conv1_bn_", "conv1_gn_")):
        leaf = _c2_leaf(key[len("res_conv1_"):] if key.startswith("res_") else key[len("conv1_"):])
        return None if leaf is None else BOTTOM_UP + "stem.conv1." + leaf
    m = _C2_BLOCK.match(key)
    if m:
        stage, block, branch, leaf = m.groups()
        new_leaf = _c2_leaf(leaf)
        return None if new_leaf is None else f"{BOTTOM_UP}res{stage}.{block}.{_C2_BRANCH[branch]}.{new_leaf}"
    return None


def convert_detectron2_c2(state: StateDict) -> Converted:
    """Caffe2-format ImageNet ResNet / ResNeXt blobs -> (det_dcn backbone state dict under ``backbone.bottom_up.``,
    unmatched keys). BN norms without statistics get running_mean 0 and running_var 1 (shape ``[C]``)."""
    if "conv1_w" not in state or not any(_C2_BLOCK.match(k) for k in state):
        raise ValueError(f"Not a Caffe2 ImageNet ResNet (expected 'conv1_w' and 'res2_0_branch2a_w'-style keys); "
                         f"first keys are {sorted(state)[:5]}")
    out, unmatched = rename_keys({k: torch.as_tensor(v) for k, v in state.items()}, _c2_key)
    # BN norms (Caffe2 "_bn_", not "_gn_": GN keeps no statistics) whose file has no statistics.
    bn_weights = {_c2_key(k) for k in state if k.endswith(("_bn_s", "_bn_gamma"))} - {None}
    for key in sorted(bn_weights):
        prefix = key[: -len("weight")]
        out.setdefault(prefix + "running_mean", torch.zeros_like(out[key]))
        out.setdefault(prefix + "running_var", torch.ones_like(out[key]))
    return out, unmatched
