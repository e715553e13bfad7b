"""The iteration loop: TrainerBase (hooks around each step) and SimpleTrainer (one SGD step, with AMP).

``SimpleTrainer.run_step`` does: fetch a batch -> forward (under autocast when AMP is on) -> average the loss terms
over all ranks and stop on a NaN / inf -> backward (scaled on CUDA fp16) -> optional gradient clipping -> optimizer
step -> record losses and data time. Everything else (LR schedule, checkpoints, evaluation, logging) is a hook.
"""

import logging
import math
import time
import weakref
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from det_dcn.utils import comm
from det_dcn.utils.events import EventStorage

logger = logging.getLogger(__name__)


class HookBase:
    """Called by TrainerBase around training: ``before_train``, ``before_step``, ``after_step``, ``after_train``.

    ``self.trainer`` is a weak reference's target, set by ``register_hooks``.
    """

    trainer: "TrainerBase" = None

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


class TrainerBase:
    """Runs ``run_step`` for iterations ``start_iter .. max_iter - 1`` with hooks, inside an EventStorage.

    ``self.iter`` is the iteration being run; after a complete run it equals ``max_iter``.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: Optional[EventStorage] = None
        self.train_succeeded = False

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        for h in hooks:
            if h is None:
                continue
            if not isinstance(h, HookBase):
                raise TypeError(f"register_hooks: expected HookBase instances, got {type(h).__name__}")
            # A weak proxy avoids a reference cycle trainer <-> hook.
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    def train(self, start_iter: int, max_iter: int) -> None:
        logger.info(f"Starting training from iteration {start_iter} to {max_iter}")
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        self.train_succeeded = False
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                # range() leaves iter at max_iter - 1; max_iter marks a finished run.
                self.iter += 1
                self.train_succeeded = True
            except Exception:
                logger.exception(f"Exception during training at iteration {self.iter}:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        raise NotImplementedError


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the iteration and the terms."""


def _autocast_dtype(device: torch.device) -> torch.dtype:
    # fp16 needs a gradient scaler and is what CUDA tensor cores are fast at; CPUs run bfloat16 natively and need none.
    return torch.float16 if device.type == "cuda" else torch.bfloat16


class SimpleTrainer(TrainerBase):
    """One optimizer step per iteration on batches from ``data_loader`` (an infinite iterable of lists of dicts).

    Args:
        model: returns a dict of scalar loss tensors in training mode (may be DDP-wrapped).
        data_loader: infinite iterable; its iterator is created by ``reset_data_loader`` / on first use.
        optimizer: a torch optimizer.
        amp: autocast the forward pass (fp16 + ``grad_scaler`` on CUDA, bfloat16 on CPU).
        grad_scaler: a ``torch.amp.GradScaler`` (CUDA fp16 only); None otherwise.
        clip_gradients: function clipping the gradients of the parameters given, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Optional[Iterable] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        *,
        amp: bool = False,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
        clip_gradients: Optional[Callable[[Iterable[torch.Tensor]], None]] = None,
    ):
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter: Optional[Iterator] = None
        self.optimizer = optimizer
        self.amp = amp
        self.grad_scaler = grad_scaler
        self.clip_gradients = clip_gradients
        self.device = next(model.parameters()).device
        self._loss_names: Optional[List[str]] = None

    def reset_data_loader(self, data_loader: Optional[Iterable] = None) -> None:
        """(Re)create the iterator over ``data_loader`` (or the one given before)."""
        if data_loader is not None:
            self.data_loader = data_loader
        if self.data_loader is None:
            raise RuntimeError("SimpleTrainer has no data loader; pass one or override build_train_loader")
        self._data_loader_iter = iter(self.data_loader)

    def close_data_loader(self) -> None:
        """Stop the data loader's iterator (and its worker processes) now rather than at garbage collection."""
        it, self._data_loader_iter = self._data_loader_iter, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError(f"[SimpleTrainer] the model was switched to eval mode before iteration {self.iter}")
        if self._data_loader_iter is None:
            self.reset_data_loader()
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(device_type=self.device.type, dtype=_autocast_dtype(self.device), enabled=self.amp):
            loss_dict = self.model(data)
        loss_dict = self._check_loss_dict(loss_dict)
        losses = sum(loss_dict.values())
        averaged = self._average_and_check(loss_dict)

        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
            if self.clip_gradients is not None:
                self.grad_scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                self.clip_gradients(self._params_with_grad())
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            losses.backward()
            if self.clip_gradients is not None:
                self.clip_gradients(self._params_with_grad())
            self.optimizer.step()

        self.storage.put_scalar("data_time", data_time)
        self.storage.put_scalars(total_loss=sum(averaged.values()), **averaged)

    def _params_with_grad(self) -> List[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    def _check_loss_dict(self, loss_dict) -> Dict[str, torch.Tensor]:
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        if not isinstance(loss_dict, dict) or not loss_dict:
            raise TypeError(
                f"In training mode the model must return a non-empty dict of scalar loss tensors; "
                f"{type(self.model).__name__} returned {type(loss_dict).__name__}"
            )
        for k, v in loss_dict.items():
            if not isinstance(v, torch.Tensor) or v.numel() != 1:
                raise TypeError(f"Loss '{k}' must be a scalar tensor, got {type(v).__name__} "
                                f"{tuple(v.shape) if isinstance(v, torch.Tensor) else ''}")
        return loss_dict

    def _average_and_check(self, loss_dict: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """Loss terms averaged over all ranks (for logging); raises NonFiniteLossError on every rank at once
        when any rank has a NaN / inf term, so no rank is left waiting in a collective."""
        names = sorted(loss_dict)
        values = torch.stack([loss_dict[k].detach().float().reshape(()) for k in names])
        world = comm.get_world_size()
        if self._loss_names is None:
            # Ranks must agree on the loss names, or the summed vector would mix different terms: checked once.
            all_names = comm.all_gather(names)
            if any(n != names for n in all_names):
                raise RuntimeError(f"Ranks returned different loss terms at iteration {self.iter}: {all_names}")
            self._loss_names = names
        elif names != self._loss_names:
            raise RuntimeError(
                f"The model returned loss terms {names} at iteration {self.iter}, but {self._loss_names} before; "
                "the set of loss terms must stay the same for the whole run"
            )
        if world > 1:
            gathered = values.clone()
            dist.all_reduce(gathered)  # a NaN on any rank makes the sum NaN on every rank
            values = gathered / world
        values = values.cpu().tolist()
        bad = {k: v for k, v in zip(names, values) if not math.isfinite(v)}
        if bad:
            good = {k: v for k, v in zip(names, values) if math.isfinite(v)}
            raise NonFiniteLossError(
                f"Loss became non-finite at iteration {self.iter}: "
                + ", ".join(f"{k}={v}" for k, v in bad.items())
                + (f" (finite: {', '.join(f'{k}={v:.4g}' for k, v in good.items())})" if good else "")
                + ". Training stopped before the optimizer step; the checkpoints written so far are intact. "
                "Lower SOLVER.BASE_LR, lengthen SOLVER.WARMUP_ITERS or enable SOLVER.CLIP_GRADIENTS."
            )
        return dict(zip(names, values))

    def state_dict(self) -> dict:
        return {"iteration": self.iter}
