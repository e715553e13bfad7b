"""Shared by the deploy tests: small random detectors that give real detections, test images, detection matching."""

import math
import os
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

from det_dcn.config import get_cfg
from det_dcn.layers import ASPP, DeformConv2d, DeformRoIPoolPack, ModulatedDeformRoIPoolPack
from det_dcn.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# quickstart-size variants: the quickstart configs (narrow R-18-FPN, 160 px) and a multi-grid res5, with BatchNorm
# (the quickstart's first recipe): a random BN model with a background bias detects nothing on a flat image, the
# check that NMS may keep no box. The quickstart's GroupNorm divides a flat image's tiny border variations (zero
# padding) by their tiny per-image spread and detects confidently there; "gn" covers GroupNorm's export.
_BN = ["MODEL.RESNETS.NORM", "BN", "MODEL.FPN.NORM", ""]
VARIANTS = {
    "plain": ("faster_rcnn_shapes.yaml", _BN),
    "dconv": ("faster_rcnn_shapes_dconv.yaml", _BN),
    "mdconv": ("faster_rcnn_shapes_mdconv.yaml", _BN),
    "dpool": ("faster_rcnn_shapes_dpool.yaml", _BN),
    "mdpool": ("faster_rcnn_shapes_mdpool.yaml", _BN),
    "mdconv_mdpool": ("faster_rcnn_shapes_mdconv_mdpool.yaml", _BN),
    "dc5": ("faster_rcnn_shapes_dc5.yaml", _BN),
    "dc5_aspp": ("faster_rcnn_shapes_dc5_aspp.yaml", _BN),
    "multigrid": ("faster_rcnn_shapes_mdconv.yaml", _BN + ["MODEL.RESNETS.RES5_MULTI_GRID", [1, 2]]),
    "gn": ("faster_rcnn_shapes_mdconv_mdpool.yaml", []),
    # the quickstart resizes as torchvision does; detectron2's and mmdetection's resizes (uint8, rounded sizes)
    "resize_detectron2": ("faster_rcnn_shapes.yaml", _BN + ["INPUT.RESIZE_STYLE", "detectron2"]),
    "resize_mmdet": ("faster_rcnn_shapes.yaml", _BN + ["INPUT.RESIZE_STYLE", "mmdet"]),
}
# random_detector's seed per variant where seed 0 detects (almost) nothing on the test images (mdconv: 1 detection
# over IMAGE_SIZES with seed 0, 208 with seed 1), which would leave the comparison empty
VARIANT_SEEDS = {"mdconv": 1, "multigrid": 1}
SCORE_THRESH = 0.3


def variant_cfg(name: str, extra: Sequence = ()):
    config, overrides = VARIANTS[name]
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "quickstart", config))
    cfg.merge_from_list(list(overrides) + list(extra) + [
        "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", SCORE_THRESH])
    return cfg


def random_detector(cfg, seed: int = 0) -> torch.nn.Module:
    """An eval model of ``cfg`` with random weights that behaves like a trained one where it matters here:
    non-zero DCN / dpool offsets and masks (their branches start at zero) and class scores that differ between
    boxes (a fresh head scores every class ~1/K), with a background bias so that a flat image detects nothing."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DeformConv2d) and hasattr(m, "conv_offset"):
                m.conv_offset.weight.normal_(0, 0.05)
                m.conv_offset.bias.normal_(0, 0.5)
            if isinstance(m, (DeformRoIPoolPack, ModulatedDeformRoIPoolPack)):
                m.offset_fc[-1].weight.normal_(0, 0.01)
                m.offset_fc[-1].bias.normal_(0, 0.3)
            if isinstance(m, ModulatedDeformRoIPoolPack):
                m.mask_fc[2].weight.normal_(0, 0.01)
                m.mask_fc[2].bias.normal_(0, 1.0)
            if isinstance(m, ASPP):  # a fresh ASPP is the identity (its projection starts at zero)
                for p in m.project.parameters():
                    p.normal_(0, 0.05)
        # RPN objectness and class logits spread by ~2 on a test image: a fresh head's near-equal logits make
        # top-k and NMS pick among near-ties, which float noise of another runtime reorders
        image = make_image(160, 213, seed=99)
        objectness = model.proposal_generator.rpn_head.objectness_logits
        logits = []
        hook = objectness.register_forward_hook(lambda module, args, out: logits.append(out.flatten()))
        eager_detections(model, image, cfg.INPUT.FORMAT)
        hook.remove()
        scale = 2.0 / (float(torch.cat(logits).std()) + 1e-6)
        objectness.weight.mul_(scale)
        objectness.bias.mul_(scale)
        predictor = model.roi_heads.box_predictor
        features = []
        hook = predictor.register_forward_pre_hook(lambda module, args: features.append(args[0].flatten(1)))
        eager_detections(model, image, cfg.INPUT.FORMAT)
        hook.remove()
        rms = float(features[0].pow(2).mean().sqrt()) + 1e-6
        predictor.cls_score.weight.normal_(0, 2.0 / (rms * features[0].shape[1] ** 0.5))
        predictor.cls_score.bias[-1] = 2.0  # background
        predictor.bbox_pred.weight.normal_(0, 0.1 / (rms * features[0].shape[1] ** 0.5))
    return model


def make_image(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [H, W, 3] BGR: noise, a gradient and a few filled shapes (edges and blobs for the features)."""
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, 3)) * 60 + np.linspace(0, 120, width)[None, :, None]).astype(np.uint8)
    for _ in range(6):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(6, max(7, min(height, width) // 3)))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), r, color, -1)
        else:
            cv2.rectangle(image, (x - r, y - r // 2), (x + r, y + r // 2), color, -1)
    return image


def flat_image(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 127, dtype=np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[M, 4], [N, 4] -> [M, N]"""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def count_matched(expected: Dict, got: Dict, iou: float = 0.99, score_tol: float = 1e-3) -> int:
    """How many ``expected`` detections have a distinct ``got`` detection of the same class with IoU >= ``iou``
    and a score within ``score_tol`` (greedy, by decreasing expected score). Values: numpy arrays or tensors."""
    e = {k: np.asarray(v) for k, v in expected.items()}
    g = {k: np.asarray(v) for k, v in got.items()}
    if len(e["scores"]) == 0 or len(g["scores"]) == 0:
        return 0
    ok = (_iou(e["boxes"], g["boxes"]) >= iou) & (e["classes"][:, None] == g["classes"][None, :])
    ok &= np.abs(e["scores"][:, None] - g["scores"][None, :]) <= score_tol
    used, matched = set(), 0
    for i in np.argsort(-e["scores"], kind="stable"):
        j = next((j for j in np.nonzero(ok[i])[0] if j not in used), None)
        if j is not None:
            used.add(j)
            matched += 1
    return matched


def eager_detections(model, image_bgr: np.ndarray, input_format: str) -> Dict[str, np.ndarray]:
    """What DefaultPredictor computes (BGR -> INPUT.FORMAT, model in eval), as numpy."""
    image = image_bgr[:, :, ::-1] if input_format == "RGB" else image_bgr
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    h, w = image_bgr.shape[:2]
    with torch.inference_mode():
        out = model([{"image": tensor, "height": h, "width": w}])[0]
    return {k: out[k].numpy() for k in ("boxes", "scores", "classes")}


# A size where a float32 size rule resizes to another size than eager's double one: at the quickstart's
# MIN_SIZE_TEST 160 / MAX_SIZE_TEST 256, 417 x 256 -> floor(417 * (256 / 417)) = 255 in double, 256 in float32.
BOUNDARY_SIZE = (417, 256)
# sizes other than the export size (160 x 213), several aspect ratios, and one below MIN_SIZE_TEST
IMAGE_SIZES: List = [(240, 320), (300, 180), (128, 420), (97, 131)]


def reference_size(h: int, w: int, short: int, max_size: int, style: str):
    """torchvision's GeneralizedRCNNTransform (floor) and detectron2's ResizeShortestEdge (round), in doubles."""
    if style == "torchvision":
        scale = min(short / min(h, w), max_size / max(h, w))
        return math.floor(h * scale), math.floor(w * scale)
    scale = short / min(h, w)
    if max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def sweep_pairs():
    """(H, W): heights 100-1,399 at aspect 3:4 and 4:3 (5,200 pairs), plus sizes where the long side alone
    decides, e.g. 417 x 256 at (160, 256): 256 / 417 * 417 is 255.99999999999997 in double, 256.0 in float32."""
    pairs = [(h, w) for h in range(100, 1400) for w in (h * 3 // 4, h * 4 // 3, (h * 3 + 3) // 4, (h * 4 + 2) // 3)]
    pairs += [(417, 256), (256, 417), (2001, 1201), (1201, 2001), (97, 131), (160, 160), (201, 333)]
    return sorted(set(pairs))
