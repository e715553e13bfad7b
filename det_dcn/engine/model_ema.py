"""Exponential moving average (EMA) of a model's weights, with d2go's MODEL_EMA keys.

After every optimizer step each floating-point entry of the model's ``state_dict`` (parameters and buffers, as d2go
keeps them: running statistics averaged too) moves towards the model's::

    ema = decay_n * ema + (1 - decay_n) * value,   decay_n = DECAY, or with DECAY_WARM_UP_FACTOR f >= 0:
    decay_n = min(DECAY, (1 + n) / (f + n))        (n = updates so far; TensorFlow's num_updates rule, d2go's key)

Integer buffers are copied. Without a warm-up the start weights keep ``DECAY ** n`` of the average after n updates
(0.999 ** 1600 = 0.20): for a short run from random weights use a warm-up or a smaller DECAY.

With MODEL_EMA.ENABLED the trainer evaluates the averaged weights, and checkpoints keep them beside the raw ones
(``"model_ema": {"weights": state_dict, "num_updates": n}``; "model" stays the raw weights, which training resumes
from). Loading for inference (``--eval-only``, DefaultPredictor, so demo and export) takes the averaged weights when
MODEL_EMA.ENABLED or MODEL_EMA.USE_EMA_WEIGHTS_FOR_EVAL_ONLY: ``use_ema_weights(cfg)``.
"""

import contextlib
from typing import Dict, Iterator, Optional

import torch
from torch import nn

from det_dcn.checkpoint.checkpointer import EMA_KEY
from det_dcn.config import ConfigError


class ModelEMA:
    """The averaged state of one model. ``update(model)`` after each step; ``applied_to(model)`` to run it.

    Args:
        decay: DECAY, in [0, 1).
        warm_up_factor: DECAY_WARM_UP_FACTOR; < 0 = no warm-up.
        device: where the average lives (None = the model's device).
    """

    def __init__(self, decay: float, warm_up_factor: float = -1, device: Optional[str] = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ModelEMA: decay must be in [0, 1), got {decay}")
        self.decay, self.warm_up_factor, self.device = decay, warm_up_factor, device
        self.weights: Dict[str, torch.Tensor] = {}
        self.num_updates = 0

    @classmethod
    def from_config(cls, cfg) -> "ModelEMA":
        ema = cfg.MODEL_EMA
        if not 0.0 <= ema.DECAY < 1.0:
            raise ConfigError(f"MODEL_EMA.DECAY={ema.DECAY!r}: expected a value in [0, 1) (d2go's default 0.999)")
        return cls(ema.DECAY, ema.DECAY_WARM_UP_FACTOR, ema.DEVICE or None)

    def decay_at(self, n: int) -> float:
        """The decay of update number ``n`` (1-based)."""
        if self.warm_up_factor < 0:
            return self.decay
        return min(self.decay, (1.0 + n) / (self.warm_up_factor + n))

    def init_from(self, model: nn.Module) -> None:
        self.weights = {k: v.detach().clone().to(self.device or v.device) for k, v in model.state_dict().items()}
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if not self.weights:
            self.init_from(model)
        self.num_updates += 1
        decay = self.decay_at(self.num_updates)
        averaged, current = [], []
        for name, value in self._matching(model.state_dict()):
            ema = self.weights[name]
            if ema.is_floating_point():
                averaged.append(ema)
                current.append(value.detach().to(ema.device, ema.dtype))
            else:
                ema.copy_(value)
        if averaged:
            torch._foreach_lerp_(averaged, current, 1.0 - decay)  # ema + (1 - decay) * (value - ema)

    def _matching(self, state: Dict[str, torch.Tensor]) -> Iterator:
        if state.keys() != self.weights.keys():
            missing, extra = sorted(self.weights.keys() - state.keys()), sorted(state.keys() - self.weights.keys())
            raise KeyError(f"ModelEMA: the model's entries differ from the averaged ones (not in the model: "
                           f"{missing[:5]}, not averaged: {extra[:5]})")
        return iter(state.items())

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module):
        """Within the block ``model`` holds the averaged weights; its own come back afterwards, also after an
        exception. The tensors are copied in place, so optimizers and DDP keep their references."""
        state = model.state_dict()
        saved = {name: value.detach().clone() for name, value in self._matching(state)}
        try:
            with torch.no_grad():
                for name, value in state.items():
                    value.copy_(self.weights[name])
            yield model
        finally:
            with torch.no_grad():
                for name, value in state.items():
                    value.copy_(saved[name])

    def state_dict(self) -> dict:
        return {"weights": self.weights, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "weights" not in state or "num_updates" not in state:
            raise KeyError(f"'{EMA_KEY}' must hold 'weights' and 'num_updates', got "
                           f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        self.weights = {k: v.to(self.device or v.device) for k, v in state["weights"].items()}
        self.num_updates = int(state["num_updates"])


def use_ema_weights(cfg) -> bool:
    """Whether loading MODEL.WEIGHTS for inference takes the averaged weights (see the module docstring)."""
    return bool(cfg.MODEL_EMA.ENABLED or cfg.MODEL_EMA.USE_EMA_WEIGHTS_FOR_EVAL_ONLY)
