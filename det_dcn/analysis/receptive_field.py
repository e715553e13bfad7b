"""Receptive-field report of a config's backbone: per feature, the theoretical RF (exact, from layer geometry),
the stride and the effective RF (gradient of the centre position), plus the res5 dilation stack for gridding.
What tools/receptive_field.py prints and draws.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from det_dcn.modeling.backbone import ASPPBlock, BasicBlock, BottleneckBlock, ResNet

from .effective_rf import effective_receptive_fields, mass_square
from .geometry import LayerGeometry, dilated_stack
from .gridding import parallel_path_counts, path_counts
from .model_geometry import backbone_geometry

# Geometry is evaluated on an input this large so that the centre position's field is never cut by the border.
UNCLIPPED_SIZE = 4096
FEATURE_ORDER = ["res2", "res3", "res4", "res5", "p2", "p3", "p4", "p5", "p6"]


@dataclass
class FeatureRF:
    name: str
    stride: float
    theoretical: int  # pixels, centre position, unclipped
    erf90: Optional[int] = None  # side of the square holding 90% of the gradient mass
    box: Optional[tuple] = None  # theoretical RF of the centre position on the measured input (x0, y0, x1, y1)
    deformable: bool = False


def _resnet_of(backbone) -> ResNet:
    return backbone if isinstance(backbone, ResNet) else backbone.bottom_up


def _is_deformable(backbone) -> Dict[str, bool]:
    resnet = _resnet_of(backbone)
    out, any_so_far = {}, False
    for name in resnet.stage_names:
        for block in getattr(resnet, name):
            any_so_far |= any(hasattr(m, "conv_offset") for m in block.modules())
        out[name] = any_so_far
    return out


def feature_rfs(backbone, image_size: int, features: Optional[Sequence[str]] = None) -> List[FeatureRF]:
    """Theoretical RF and stride of each feature (res2-res5 and the backbone's outputs, in FEATURE_ORDER)."""
    big = backbone_geometry(backbone, UNCLIPPED_SIZE)
    small = backbone_geometry(backbone, image_size)
    names = [n for n in FEATURE_ORDER if n in big] if features is None else list(features)
    deform = _is_deformable(backbone)
    rows = []
    for name in names:
        if name not in big:
            raise ValueError(f"feature '{name}' is not in this backbone; it has {sorted(big)}")
        node = small[name]
        lo, hi = node.interval(node.size // 2)
        deformable = deform.get(name, any(deform.values()))
        rows.append(FeatureRF(name, big[name].stride, big[name].center_rf(), box=(lo, lo, hi, hi),
                              deformable=deformable))
    return rows


def measure(backbone, images: Sequence[torch.Tensor], features: Optional[Sequence[str]] = None):
    """feature_rfs plus the effective RF of each: (rows, {name: [H, W] ERF map}). Images: [1, C, S, S] (square,
    so the same 1-D geometry holds along both axes)."""
    size = images[0].shape[-1]
    if images[0].shape[-2] != size:
        raise ValueError(f"receptive fields are measured on square inputs, got {tuple(images[0].shape[-2:])}")
    rows = feature_rfs(backbone, size, features)
    names = [r.name for r in rows]
    outputs = set(backbone.output_shape())
    erfs = effective_receptive_fields(backbone, images, [n for n in names if n in outputs])
    inner = [n for n in names if n not in outputs]
    if inner:  # stages the backbone does not return (res2-res5 under an FPN, res2-res4 of DC5)
        resnet = _resnet_of(backbone)
        saved = resnet._out_features
        resnet._out_features = ["stem"] + list(resnet.stage_names)  # returns every stage while measuring
        try:
            erfs.update(effective_receptive_fields(resnet, images, inner))
        finally:
            resnet._out_features = saved
    for row in rows:
        row.erf90 = mass_square(erfs[row.name], 0.9)
    return rows, erfs


def res5_dilation_stack(backbone) -> List[int]:
    """Dilations of res5's 3x3 convs in order (the stack the gridding picture examines), or [] without res5."""
    resnet = _resnet_of(backbone)
    if "res5" not in resnet.stage_names:
        return []
    rates = []
    for block in resnet.res5:  # an ASPP block at the end is parallel, not part of the stack
        if isinstance(block, BasicBlock):
            rates += [block.conv1.dilation[0], block.conv2.dilation[0]]
        elif isinstance(block, BottleneckBlock):
            rates.append(block.conv2.dilation[0])
    return rates


def res5_aspp_rates(backbone) -> List[int]:
    """Rates of the ASPP block ending res5 ([] if none)."""
    resnet = _resnet_of(backbone)
    last = resnet.res5[-1] if "res5" in resnet.stage_names else None
    return list(last.aspp.rates) if isinstance(last, ASPPBlock) else []


def gridding_stacks(label: str, backbone) -> Dict[str, np.ndarray]:
    """{title: path counts} for the backbone's res5 on res4's grid (DC5 layout only: with a stride-2 res5 the grid
    changes inside the stack): the 3x3 stack, and with ASPP that stack followed by ASPP's parallel branches."""
    resnet = _resnet_of(backbone)
    rates = res5_dilation_stack(backbone)
    if not rates or resnet._out_feature_strides.get("res5") != resnet._out_feature_strides.get("res4"):
        return {}
    stack = dilated_stack(rates)
    aspp = res5_aspp_rates(backbone)
    if not aspp:
        return {f"{label} res5 ({','.join(map(str, rates))})": path_counts(stack)}
    branches = [[LayerGeometry(1)]] + [dilated_stack([r]) for r in aspp]
    title = f"{label} res5 ({','.join(map(str, rates))}), ASPP (1x1,{','.join(map(str, aspp))})"
    return {title: parallel_path_counts(stack, branches)}


def theoretical_text(row: FeatureRF) -> str:
    """The theoretical RF for a reader: pixels, or "whole image" when image pooling makes it unbounded."""
    return "whole image (image pooling)" if row.theoretical >= UNCLIPPED_SIZE else f"{row.theoretical}"


def format_table(label: str, rows: Sequence[FeatureRF], image_size: int) -> str:
    lines = [f"{label} (input {image_size}x{image_size})",
             "| feature | stride | theoretical RF (px) | effective RF, 90% mass (px) | ERF / TRF |",
             "|:--|--:|--:|--:|--:|"]
    for r in rows:
        trf = theoretical_text(r) + (" (regular grid; DCN: unbounded)" if r.deformable else "")
        erf = "n/a" if r.erf90 is None else str(r.erf90)
        ratio = "n/a" if r.erf90 is None or r.theoretical >= UNCLIPPED_SIZE else f"{r.erf90 / r.theoretical:.2f}"
        stride = f"{r.stride:g}"
        lines.append(f"| {r.name} | {stride} | {trf} | {erf} | {ratio} |")
    return "\n".join(lines)


def random_images(num: int, size: int, channels: int = 3, seed: int = 0) -> List[torch.Tensor]:
    """``num`` [1, C, size, size] standard-normal inputs (the normalised-image scale), reproducible by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, channels, size, size, generator=g) for _ in range(num)]


def normalise_images(images: Sequence[np.ndarray], pixel_mean, pixel_std, size: int) -> List[torch.Tensor]:
    """[H, W, 3] uint8 images (in the model's INPUT.FORMAT) -> [1, 3, size, size] inputs normalised as the model
    does (centre crop of a resize whose short side is ``size``)."""
    import cv2

    out = []
    mean = torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1)
    for img in images:
        h, w = img.shape[:2]
        scale = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * scale)), max(size, round(h * scale))))
        y0, x0 = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        crop = torch.from_numpy(np.ascontiguousarray(img[y0: y0 + size, x0: x0 + size])).permute(2, 0, 1).float()
        out.append(((crop - mean) / std)[None])
    return out
