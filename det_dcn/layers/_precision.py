"""Runs an op in a precision its kernel supports: float64 stays float64, everything else (float16, bfloat16,
float32) is computed in float32 with autocast switched off, so the ops work under autocast on every device."""

import contextlib

import torch

from ._checks import autocast_active


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 -> float64, any other floating dtype -> float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def no_autocast(device_type: str):
    """A context that disables autocast on ``device_type`` if it is on (otherwise a no-op)."""
    if autocast_active(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def autocast_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    """The lower-precision dtype autocast uses on ``device_type`` when it is on, else ``default``."""
    if autocast_active(device_type):
        return torch.get_autocast_dtype(device_type)
    return default
