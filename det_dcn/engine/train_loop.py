"""The iteration loop: TrainerBase (hooks around each step) and SimpleTrainer (one SGD step, with AMP).

``SimpleTrainer.run_step`` does: fetch a batch -> forward (under autocast when AMP is on) -> keep the loss terms
(on the device) -> backward (scaled on CUDA fp16) -> optional gradient clipping -> optimizer step -> record the data
time. Everything else (LR schedule, checkpoints, evaluation, logging) is a hook.

Loss check: the kept loss terms are averaged over all ranks, read on the host, recorded and checked for NaN / inf
by ``flush_losses``. Reading a loss waits for the device, so on an accelerator that happens every
``loss_check_period`` iterations (default 20) and before every checkpoint, log line and evaluation (the hooks call
it), never per iteration; on the CPU it is free and happens every iteration, before the optimizer step. A
non-finite loss therefore stops training within ``loss_check_period`` iterations, naming the iteration and the
terms, and never reaches a checkpoint.

Run state lives with its owner: ``TrainerBase.state_dict()`` holds the iteration and each hook's state (under the
hook's ``checkpoint_key``), ``SimpleTrainer`` adds the optimizer, the gradient scaler and every rank's RNG states;
the checkpointer saves it and gives it back to ``load_state_dict`` on resume.
"""

import errno
import logging
import math
import time
import weakref
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from det_dcn.utils import comm
from det_dcn.utils.events import EventStorage
from det_dcn.utils.seeding import get_rng_state, set_rng_state

from .preemption import StopRequest, TrainingStopped

logger = logging.getLogger(__name__)


class HookBase:
    """Called by TrainerBase around training, in registration order::

        hook.before_train()
        for iter in range(start_iter, max_iter):
            hook.before_step()
            trainer.run_step()
            hook.after_step()      # trainer.stopped_by is set here when a stop signal arrived
        hook.after_train()         # also after an exception; trainer.train_succeeded says whether the run finished

    ``self.trainer`` is a weak reference's target, set by ``register_hooks``. A hook that owns run state (the LR
    schedule, ...) returns it from ``state_dict`` (non-empty) and gets it back in ``load_state_dict``; the trainer's
    state stores it under ``checkpoint_key``.
    """

    trainer: "TrainerBase" = None

    @property
    def checkpoint_key(self) -> str:
        return type(self).__qualname__

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

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

    ``self.iter`` is the iteration being run; after a complete run it equals ``max_iter``. SIGTERM / SIGUSR1 stop
    the loop after the current iteration on every rank (see ``preemption``): ``stopped_by`` names the signal, the
    hooks see it in ``after_step`` (the checkpointer saves), and ``train`` raises ``TrainingStopped`` at the end.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: Optional[EventStorage] = None
        self.train_succeeded = False
        self.stopped_by: Optional[str] = None
        self.stop_request = StopRequest()

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
        self.stopped_by = None
        self.stop_request.install()  # (unless a subclass installed it earlier, before starting data workers)
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.stopped_by = self.stop_request.agreed()
                    self.after_step()
                    if self.stopped_by:
                        break
                else:
                    # range() leaves iter at max_iter - 1; max_iter marks a finished run.
                    self.iter = max_iter
                    self.train_succeeded = True
            except Exception as e:
                if is_disk_full(e):  # the message says it all (folder, bytes, what to do): no traceback
                    logger.error(f"Training stopped at iteration {self.iter}: {e}")
                else:
                    logger.exception(f"Exception during training at iteration {self.iter}:")
                raise
            finally:
                # Default handlers again for the final evaluation: a signal then ends the process as usual (the
                # final checkpoint is saved).
                self.stop_request.uninstall()
                self.after_train()
        if self.stopped_by:
            raise TrainingStopped(f"Training stopped by {self.stopped_by} after iteration {self.iter}")

    def state_dict(self) -> dict:
        """The iteration just finished and each stateful hook's state (under its ``checkpoint_key``)."""
        state = {"iteration": self.iter}
        for h in self._hooks:
            hook_state = h.state_dict()
            if hook_state:
                if h.checkpoint_key in state:
                    raise KeyError(f"Hook {type(h).__name__}: state key '{h.checkpoint_key}' is already used")
                state[h.checkpoint_key] = hook_state
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue after the iteration ``state`` was saved at: ``start_iter`` = that iteration + 1."""
        if "iteration" not in state:
            raise KeyError("it has no 'iteration' entry, so training cannot resume from it; load it with "
                           "MODEL.WEIGHTS instead of --resume")
        self.iter = int(state["iteration"])
        self.start_iter = self.iter + 1
        for h in self._hooks:
            if h.checkpoint_key in state:
                h.load_state_dict(state[h.checkpoint_key])
            elif h.state_dict():
                logger.warning(f"The checkpoint has no state for hook {h.checkpoint_key}; it starts afresh")

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

    def flush_losses(self) -> None:
        """Record and check what run_step kept back (SimpleTrainer); nothing here."""


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno == errno.ENOSPC


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
        loss_check_period: read, record and check the losses every this many iterations (see the module
            docstring); None: 1 on the CPU, 20 on an accelerator.
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
        loss_check_period: Optional[int] = None,
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
        if loss_check_period is None:
            loss_check_period = 1 if self.device.type == "cpu" else 20
        if loss_check_period < 1:
            raise ValueError(f"loss_check_period must be >= 1, got {loss_check_period}")
        self.loss_check_period = int(loss_check_period)
        self._loss_names: Optional[List[str]] = None
        self._pending_losses: List[Tuple[int, torch.Tensor]] = []  # (iteration, [num_terms]) on the device
        self._rng_state_to_restore: Optional[dict] = None

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
        self._keep_losses(loss_dict)
        if self.loss_check_period == 1 or (self.iter + 1) % self.loss_check_period == 0 \
                or self.iter == self.max_iter - 1:
            self.flush_losses()  # before the step: a NaN found here never reaches the weights

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

    def _keep_losses(self, loss_dict: Dict[str, torch.Tensor]) -> None:
        names = sorted(loss_dict)
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
        values = torch.stack([loss_dict[k].detach().float().reshape(()) for k in names])
        self._pending_losses.append((self.iter, values))

    def flush_losses(self) -> None:
        """Average the kept loss terms over all ranks (one all-reduce, one host read), record them at their
        iterations and raise NonFiniteLossError on every rank alike if any is NaN / inf. A collective when
        something is pending: every rank calls it at the same points (run_step and hooks running on all ranks)."""
        if not self._pending_losses:
            return
        iterations = [it for it, _ in self._pending_losses]
        values = torch.stack([v for _, v in self._pending_losses])  # [iterations, terms]
        self._pending_losses.clear()
        world = comm.get_world_size()
        if world > 1:
            dist.all_reduce(values)  # a NaN on any rank makes the sum NaN on every rank
            values = values / world
        names = self._loss_names
        for it, row in zip(iterations, values.cpu().tolist()):
            bad = {k: v for k, v in zip(names, row) if not math.isfinite(v)}
            if bad:
                raise NonFiniteLossError(self._non_finite_message(it, names, row, bad))
            self.storage.put_scalars(cur_iter=it, total_loss=sum(row), **dict(zip(names, row)))

    def _non_finite_message(self, it: int, names: List[str], row: List[float], bad: Dict[str, float]) -> str:
        good = {k: v for k, v in zip(names, row) if math.isfinite(v)}
        if it == self.iter and self.loss_check_period == 1:
            when = "Training stopped before the optimizer step"
        else:
            when = (f"Found at iteration {self.iter} (losses are read every {self.loss_check_period} iterations "
                    "and before every checkpoint, log line and evaluation); training stopped there")
        return (
            f"Loss became non-finite at iteration {it}: "
            + ", ".join(f"{k}={v}" for k, v in bad.items())
            + (f" (finite: {', '.join(f'{k}={v:.4g}' for k, v in good.items())})" if good else "")
            + f". {when}; the checkpoints written so far are intact. "
            "Lower SOLVER.BASE_LR, lengthen SOLVER.WARMUP_ITERS or enable SOLVER.CLIP_GRADIENTS."
        )

    def state_dict(self) -> dict:
        """TrainerBase's state plus the optimizer, the gradient scaler and every rank's RNG states (gathered: a
        collective, call it on every rank)."""
        state = super().state_dict()
        state["optimizer"] = self.optimizer.state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        state["rng_states"] = comm.all_gather(get_rng_state())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restores the optimizer and gradient scaler now and this rank's RNG state when ``train`` starts (after
        the data loader's iterator exists: creating it draws from the torch RNG in both runs alike)."""
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.grad_scaler is not None and "grad_scaler" in state:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        rng_states: Optional[List[dict]] = state.get("rng_states")
        if rng_states and len(rng_states) == comm.get_world_size():
            self._rng_state_to_restore = rng_states[comm.get_rank()]
        else:
            logger.warning(
                f"The checkpoint holds RNG states of {len(rng_states or [])} processes, this run has "
                f"{comm.get_world_size()}: random draws will not continue exactly as in the interrupted run"
            )

    def restore_rng_state(self) -> None:
        """Apply the RNG state ``load_state_dict`` kept back (once)."""
        if self._rng_state_to_restore is not None:
            set_rng_state(self._rng_state_to_restore)
            self._rng_state_to_restore = None
