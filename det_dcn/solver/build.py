"""build_optimizer / build_lr_scheduler: SGD with per-parameter hyper-parameters and the warmup schedules.

Parameter groups (detectron2's rules, with WEIGHT_DECAY_NORM covering norm layers' weights *and* biases):
- weights and biases of norm layers (BatchNorm, SyncBatchNorm, GroupNorm, LayerNorm, ...): ``WEIGHT_DECAY_NORM``;
- other biases: ``WEIGHT_DECAY_BIAS`` (< 0: same as ``WEIGHT_DECAY``);
- every other parameter: ``WEIGHT_DECAY``;
- every bias (norm biases included) runs at ``BASE_LR * BIAS_LR_FACTOR``, the rest at ``BASE_LR``.
Frozen parameters (``requires_grad=False``) are left out; a parameter shared by two modules appears once.
"""

import logging
from collections import OrderedDict
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR

logger = logging.getLogger(__name__)

NORM_MODULE_TYPES: Tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm,  # BatchNorm1d/2d/3d and SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: float = -1.0,
) -> List[Dict[str, Any]]:
    """Parameter groups for ``torch.optim`` following the rules in the module docstring.

    Parameters with identical (lr, weight_decay) share one group, in first-seen order, so the groups are few and
    deterministic.
    """
    if weight_decay_bias < 0:
        weight_decay_bias = weight_decay
    groups: "OrderedDict[Tuple[float, float], List[nn.Parameter]]" = OrderedDict()
    seen = set()
    for module in model.modules():
        is_norm = isinstance(module, NORM_MODULE_TYPES)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            is_bias = name == "bias"
            lr = base_lr * bias_lr_factor if is_bias else base_lr
            if is_norm:
                wd = weight_decay_norm
            elif is_bias:
                wd = weight_decay_bias
            else:
                wd = weight_decay
            groups.setdefault((lr, wd), []).append(param)
    if not groups:
        raise ValueError(f"The model ({type(model).__name__}) has no trainable parameters to optimize")
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (``SOLVER.MOMENTUM``, ``SOLVER.NESTEROV``) over ``get_default_optimizer_params`` from ``cfg.SOLVER``."""
    s = cfg.SOLVER
    if s.BASE_LR <= 0:
        raise ValueError(f"SOLVER.BASE_LR must be > 0, got {s.BASE_LR}")
    if not 0.0 <= s.MOMENTUM < 1.0:
        raise ValueError(f"SOLVER.MOMENTUM must be in [0, 1), got {s.MOMENTUM}")
    if s.NESTEROV and s.MOMENTUM == 0:
        raise ValueError("SOLVER.NESTEROV True needs SOLVER.MOMENTUM > 0, got 0")
    for key in ("WEIGHT_DECAY", "WEIGHT_DECAY_NORM"):
        if s[key] < 0:
            raise ValueError(f"SOLVER.{key} must be >= 0, got {s[key]}")
    if s.BIAS_LR_FACTOR <= 0:
        raise ValueError(f"SOLVER.BIAS_LR_FACTOR must be > 0, got {s.BIAS_LR_FACTOR}")
    params = get_default_optimizer_params(
        model,
        base_lr=s.BASE_LR,
        weight_decay=s.WEIGHT_DECAY,
        weight_decay_norm=s.WEIGHT_DECAY_NORM,
        bias_lr_factor=s.BIAS_LR_FACTOR,
        weight_decay_bias=s.WEIGHT_DECAY_BIAS,
    )
    return torch.optim.SGD(params, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """``SOLVER.LR_SCHEDULER_NAME``: "WarmupMultiStepLR" (STEPS, GAMMA) or "WarmupCosineLR" (MAX_ITER, BASE_LR_END)."""
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    if s.BASE_LR_END and name != "WarmupCosineLR":
        logger.warning("SOLVER.BASE_LR_END %s is ignored: only WarmupCosineLR ends at it, not %s", s.BASE_LR_END, name)
    if name == "WarmupMultiStepLR":
        return WarmupMultiStepLR(
            optimizer,
            s.STEPS,
            s.GAMMA,
            warmup_factor=s.WARMUP_FACTOR,
            warmup_iters=s.WARMUP_ITERS,
            warmup_method=s.WARMUP_METHOD,
            max_iter=s.MAX_ITER,
        )
    if name == "WarmupCosineLR":
        if s.BASE_LR_END and not (s.BASE_LR > 0 and 0 <= s.BASE_LR_END <= s.BASE_LR):
            raise ValueError(f"SOLVER.BASE_LR_END {s.BASE_LR_END}: the LR the cosine ends at must lie in "
                             f"[0, SOLVER.BASE_LR {s.BASE_LR}] with SOLVER.BASE_LR > 0")
        return WarmupCosineLR(
            optimizer,
            s.MAX_ITER,
            warmup_factor=s.WARMUP_FACTOR,
            warmup_iters=s.WARMUP_ITERS,
            warmup_method=s.WARMUP_METHOD,
            end_factor=s.BASE_LR_END / s.BASE_LR if s.BASE_LR_END else 0.0,
        )
    raise ValueError(
        f"SOLVER.LR_SCHEDULER_NAME: unknown scheduler '{name}'; expected 'WarmupMultiStepLR' or 'WarmupCosineLR'"
    )
