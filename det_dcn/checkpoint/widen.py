"""Function-preserving widening: load a trained model's weights into a wider copy that computes the same thing.

The capacity control for the fine-tune experiments (``tools/quickstart_zoo.py``, variant ``ft_wide_head``): the
plain model's box head (``fc1 -> ReLU -> fc2 -> ReLU -> predictor``) widened from FC_DIM D to D' > D, as in Net2Net's
"wider" operation but with zero outgoing weights instead of copied units. Each grown ``nn.Linear`` weight
``[out', in']`` gets the trained block ``[:out, :in]``, zeros in ``[:out, in:]`` (old units do not see the new ones)
and the wider model's own initialisation in the new rows ``[out:, :]``; grown biases keep the trained values first.
The new units then compute something from the start (and get gradients) while nothing they compute reaches the
output: the widened model's outputs equal the trained model's until training moves the zero weights.
"""

import os
from typing import Dict

import torch
from torch import nn

from det_dcn.utils.atomic_io import atomic_torch_save
from .checkpointer import _extract_model_state, _strip_prefix, read_checkpoint


def _linear_parameters(model: nn.Module) -> Dict[str, str]:
    """state-dict key -> "weight" / "bias" for every nn.Linear parameter of ``model``."""
    return {f"{name}.{kind}": kind for name, module in model.named_modules() if isinstance(module, nn.Linear)
            for kind in ("weight", "bias") if getattr(module, kind, None) is not None}


def widen_state_dict(trained: Dict[str, torch.Tensor], wide_model: nn.Module) -> Dict[str, torch.Tensor]:
    """``trained`` (a narrower model's state dict) widened to ``wide_model``'s shapes, function-preserving.

    Tensors whose shape matches are returned as they are; keys of ``wide_model`` absent from ``trained`` are left
    out (the loader keeps the model's initialisation). Only ``nn.Linear`` parameters may grow, and only in the
    hidden width of a stack of Linear layers: a grown input dimension must be appended units of a grown Linear
    before it, which holds for detectron2-style FC box heads (fc1, fc2, box predictor). Raises ValueError naming
    the key when a tensor shrinks, changes rank, or is not an nn.Linear parameter.
    """
    wide = wide_model.state_dict()
    linear = _linear_parameters(wide_model)
    out = {}
    for key, old in trained.items():
        new = wide.get(key)
        if new is None or tuple(new.shape) == tuple(old.shape):
            out[key] = old
            continue
        if key not in linear:
            raise ValueError(f"Cannot widen '{key}' from {tuple(old.shape)} to {tuple(new.shape)}: only nn.Linear "
                             "weights and biases can be widened function-preservingly")
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ValueError(f"Cannot widen '{key}' from {tuple(old.shape)} to {tuple(new.shape)}: the wider "
                             "model must have the same rank and every dimension at least as large")
        grown = new.detach().clone().to(old.dtype)
        if linear[key] == "bias":
            grown[: old.shape[0]] = old
        else:
            rows, cols = old.shape
            grown[:rows, :cols] = old
            grown[:rows, cols:] = 0  # the trained units must not see the new ones
        out[key] = grown
    return out


def widen_checkpoint(weights: str, wide_model: nn.Module, output: str) -> Dict[str, torch.Tensor]:
    """Read ``weights`` (a narrower model's checkpoint), widen it to ``wide_model`` (whose own initialisation fills
    the new units' inputs) and write ``{"model": state}`` to ``output`` atomically (its folder created)."""
    trained = _strip_prefix(_extract_model_state(read_checkpoint(weights), weights), "module.")
    state = widen_state_dict(trained, wide_model)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    atomic_torch_save({"model": state, "widened_from": weights}, output)
    return state
