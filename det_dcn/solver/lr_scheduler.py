"""Iteration-based LR schedules with warmup: WarmupMultiStepLR and WarmupCosineLR.

Both are ``torch.optim.lr_scheduler.LRScheduler`` subclasses whose LR is a closed-form function of the iteration
(``last_epoch`` counts iterations here), so ``state_dict()`` / ``load_state_dict()`` make a resumed run continue the
schedule exactly. The trainer calls ``step()`` once after every iteration: the LR used in iteration ``i`` is
``base_lr * warmup_factor(i) * decay(i)``.
"""

import bisect
import logging
import math
from typing import List, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

logger = logging.getLogger(__name__)

WARMUP_METHODS = ("linear", "constant")


def warmup_factor_at_iter(method: str, iteration: int, warmup_iters: int, warmup_factor: float) -> float:
    """Multiplier of the base LR at ``iteration`` during warmup; 1.0 from ``warmup_iters`` on.

    "constant": ``warmup_factor`` throughout warmup. "linear": from ``warmup_factor`` at iteration 0 rising linearly
    to 1.0 at ``warmup_iters``.
    """
    if iteration >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = iteration / warmup_iters
        return warmup_factor * (1.0 - alpha) + alpha
    raise ValueError(f"Unknown warmup method '{method}'; expected one of {WARMUP_METHODS}")


class _WarmupLR(LRScheduler):
    """The LR of iteration ``i`` is ``base_lr * warmup_factor(i) * self._decay(i)``; subclasses define ``_decay``."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_factor: float, warmup_iters: int,
                 warmup_method: str, last_epoch: int):
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(f"SOLVER.WARMUP_METHOD: got '{warmup_method}', expected one of {WARMUP_METHODS}")
        if warmup_iters < 0:
            raise ValueError(f"SOLVER.WARMUP_ITERS must be >= 0, got {warmup_iters}")
        if not 0.0 <= warmup_factor <= 1.0:
            raise ValueError(f"SOLVER.WARMUP_FACTOR must be in [0, 1], got {warmup_factor}")
        self.warmup_factor = float(warmup_factor)
        self.warmup_iters = int(warmup_iters)
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def _decay(self, iteration: int) -> float:
        raise NotImplementedError

    def _factor(self, iteration: int) -> float:
        warmup = warmup_factor_at_iter(self.warmup_method, iteration, self.warmup_iters, self.warmup_factor)
        return warmup * self._decay(iteration)

    def get_lr(self) -> List[float]:
        factor = self._factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return self.get_lr()


class WarmupMultiStepLR(_WarmupLR):
    """Warmup, then the LR multiplied by ``gamma`` at each milestone iteration (detectron2's default schedule)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        max_iter: int = 0,
        last_epoch: int = -1,
    ):
        milestones = [int(m) for m in milestones]
        if milestones != sorted(milestones) or len(set(milestones)) != len(milestones):
            raise ValueError(f"SOLVER.STEPS must be strictly increasing iterations, got {milestones}")
        if any(m <= 0 for m in milestones):
            raise ValueError(f"SOLVER.STEPS must be positive iterations, got {milestones}")
        if max_iter > 0 and any(m >= max_iter for m in milestones):
            logger.warning(
                f"SOLVER.STEPS {milestones} has steps at or after SOLVER.MAX_ITER={max_iter}; they never apply"
            )
        self.milestones: List[int] = milestones
        self.gamma = float(gamma)
        super().__init__(optimizer, warmup_factor, warmup_iters, warmup_method, last_epoch)

    def _decay(self, iteration: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, iteration)


class WarmupCosineLR(_WarmupLR):
    """Warmup, then half a cosine from the base LR at iteration 0 down to ``end_factor`` x the base LR at ``max_iter``
    (detectron2's ``SOLVER.BASE_LR_END / SOLVER.BASE_LR``; 0 by default)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
        end_factor: float = 0.0,
    ):
        if max_iter <= 0:
            raise ValueError(f"SOLVER.MAX_ITER must be > 0 for WarmupCosineLR, got {max_iter}")
        if not (math.isfinite(end_factor) and 0.0 <= end_factor <= 1.0):
            raise ValueError(
                f"WarmupCosineLR: the final LR must lie between 0 and the base LR (SOLVER.BASE_LR_END / "
                f"SOLVER.BASE_LR in [0, 1]), got a ratio of {end_factor}"
            )
        self.max_iter = int(max_iter)
        self.end_factor = float(end_factor)
        super().__init__(optimizer, warmup_factor, warmup_iters, warmup_method, last_epoch)

    def _decay(self, iteration: int) -> float:
        progress = min(iteration, self.max_iter) / self.max_iter
        return self.end_factor + (1.0 - self.end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
