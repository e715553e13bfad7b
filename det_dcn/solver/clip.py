"""Gradient clipping selected by ``SOLVER.CLIP_GRADIENTS`` ("value" or "norm")."""

from typing import Callable, Iterable, Optional

import torch

CLIP_TYPES = ("value", "norm")


def build_gradient_clipper(cfg) -> Optional[Callable[[Iterable[torch.Tensor]], None]]:
    """A function that clips the gradients of the parameters it is given, or None when clipping is disabled.

    "value": every gradient element into [-CLIP_VALUE, CLIP_VALUE]; "norm": the total NORM_TYPE-norm of all
    gradients scaled down to at most CLIP_VALUE.
    """
    c = cfg.SOLVER.CLIP_GRADIENTS
    if not c.ENABLED:
        return None
    if c.CLIP_TYPE not in CLIP_TYPES:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE: got '{c.CLIP_TYPE}', expected one of {CLIP_TYPES}")
    if c.CLIP_VALUE <= 0:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be > 0, got {c.CLIP_VALUE}")
    clip_value = float(c.CLIP_VALUE)
    if c.CLIP_TYPE == "value":

        def clip(params: Iterable[torch.Tensor]) -> None:
            torch.nn.utils.clip_grad_value_(params, clip_value)

        return clip
    norm_type = float(c.NORM_TYPE)

    def clip(params: Iterable[torch.Tensor]) -> None:
        torch.nn.utils.clip_grad_norm_(params, clip_value, norm_type)

    return clip
