"""Effective receptive fields (Luo et al. 2016): back-propagate a unit gradient from the centre position of a
feature map to the input image and look at where the gradient lands.

The theoretical receptive field says which pixels *can* matter; the effective one shows how much each does: the
gradient mass is roughly Gaussian and concentrated in a small part of the theoretical field.
"""

import contextlib
from typing import Dict, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn


def _group_norm_constant_stats(module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with the per-image mean and variance taken from ``x`` but treated as constants."""
    n, c = x.shape[:2]
    grouped = x.reshape(n, module.num_groups, -1)
    mean = grouped.detach().mean(-1, keepdim=True)
    var = grouped.detach().var(-1, unbiased=False, keepdim=True)
    out = ((grouped - mean) / torch.sqrt(var + module.eps)).reshape_as(x)
    if module.affine:
        shape = (1, c) + (1,) * (x.dim() - 2)
        out = out * module.weight.reshape(shape) + module.bias.reshape(shape)
    return out


@contextlib.contextmanager
def _local_normalisation(model: nn.Module) -> Iterator[None]:
    """GroupNorm's statistics held constant while measuring: they depend on the whole image, so every pixel would
    reach every output through them and the measured field would be the image; in eval mode BatchNorm's running
    statistics are constants already. What is measured is then the field of the convolutions, as in Luo et al."""
    patched = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    for m in patched:
        m.forward = lambda x, m=m: _group_norm_constant_stats(m, x)  # instance attribute, removed below
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def effective_receptive_fields(backbone: nn.Module, images: Iterable[torch.Tensor],
                               features: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """{feature: [H, W] float64}: |d feature[:, centre] / d image| summed over channels and images, scaled to sum 1.

    Args:
        backbone: a det_dcn Backbone (forward(x) -> {name: [N, C, h, w]}), used in eval mode (BatchNorm uses its
            running statistics, GroupNorm's per-image statistics are held constant) and restored afterwards.
        images: [1, C, H, W] (or [C, H, W]) normalised inputs of one size H x W.
        features: names to measure (default: all the backbone returns).
    The centre position of an [h, w] map is (h // 2, w // 2).
    """
    was_training = backbone.training
    backbone.eval()
    sums: Dict[str, np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(backbone.train, was_training)
        stack.enter_context(_local_normalisation(backbone))
        for image in images:
            x = (image[None] if image.dim() == 3 else image).detach().clone().requires_grad_(True)
            if x.shape[0] != 1:
                raise ValueError(f"effective_receptive_fields takes one image at a time, got a batch of {x.shape[0]}")
            outputs = backbone(x)
            names = list(features) if features is not None else list(outputs)
            missing = [n for n in names if n not in outputs]
            if missing:
                raise ValueError(f"features {missing} are not among the backbone's outputs {list(outputs)}")
            for k, name in enumerate(names):
                out = outputs[name]
                grad = torch.zeros_like(out)
                grad[:, :, out.shape[-2] // 2, out.shape[-1] // 2] = 1.0
                (g,) = torch.autograd.grad(out, x, grad, retain_graph=k + 1 < len(names))
                erf = g[0].abs().sum(0).double().cpu().numpy()
                sums[name] = sums[name] + erf if name in sums else erf
    if not sums:
        raise ValueError("effective_receptive_fields got no images")
    return {name: s / s.sum() if s.sum() > 0 else s for name, s in sums.items()}


def centre_of_mass(erf: np.ndarray) -> tuple:
    """(y, x) gradient-weighted centre of an [H, W] map."""
    ys, xs = np.indices(erf.shape)
    total = erf.sum()
    return float((ys * erf).sum() / total), float((xs * erf).sum() / total)


def mass_square(erf: np.ndarray, fraction: float = 0.9) -> int:
    """Side (pixels, odd) of the smallest square centred on the map's peak-mass centre that holds ``fraction`` of
    the gradient mass: a single number for the effective receptive field."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    cy, cx = (int(round(v)) for v in centre_of_mass(erf))
    h, w = erf.shape
    total = erf.sum()
    for half in range(max(h, w) + 1):
        window = erf[max(cy - half, 0): cy + half + 1, max(cx - half, 0): cx + half + 1]
        if window.sum() >= fraction * total - 1e-12:
            return 2 * half + 1
    return 2 * max(h, w) + 1
