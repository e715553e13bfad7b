"""Optimizer, LR schedules and gradient clipping built from ``cfg.SOLVER``."""

from .build import build_lr_scheduler, build_optimizer, get_default_optimizer_params
from .clip import build_gradient_clipper
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, warmup_factor_at_iter

__all__ = [
    "build_optimizer",
    "build_lr_scheduler",
    "get_default_optimizer_params",
    "build_gradient_clipper",
    "WarmupMultiStepLR",
    "WarmupCosineLR",
    "warmup_factor_at_iter",
]
