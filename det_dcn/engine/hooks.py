"""The hooks DefaultTrainer registers, in this order (see HookBase for when each method runs):

IterationTimer (time per iteration; total training time and s/iter at the end) -> LRScheduler (records lr, steps
the schedule, owns its state) -> DropBlockWarmup (with MODEL.RESNETS.DROPBLOCK: the drop probability of the
coming step) -> EMAHook (with MODEL_EMA: updates the averaged weights, owns them) -> PreciseBN (with
TEST.PRECISE_BN and BatchNorm layers: their statistics recomputed every EVAL_PERIOD and after the last iteration) ->
PeriodicCheckpointer (saves every CHECKPOINT_PERIOD iterations, at the end and when
a stop signal arrived; keeps the newest CHECKPOINT_MAX_KEEP) -> EvalHook (every EVAL_PERIOD iterations and after the
last one) -> PeriodicWriter (console / metrics.json / TensorBoard every LOG_PERIOD).
The checkpoint is written before the evaluation so a crash during evaluation loses no training. Hooks that run on
every rank call ``trainer.flush_losses()`` first (a collective) so what they save or write has been checked.
"""

import datetime
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional

import torch

from det_dcn.checkpoint import DetectionCheckpointer
from det_dcn.checkpoint.checkpointer import EMA_KEY
from det_dcn.layers import DropBlock2d
from det_dcn.utils import comm
from det_dcn.utils.events import EventWriter

from .model_ema import ModelEMA
from .preemption import EXIT_STOPPED, resume_command
from .train_loop import HookBase

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    """Records ``time`` (seconds of each iteration's step, before the other hooks' ``after_step``); at the last
    iteration of the run also ``total_train_time_s`` (wall seconds of the loop so far, this run's iterations and
    hooks) and ``train_s_per_iter`` (mean ``time``, without the first ``warmup`` iterations when the run has more
    than ``2 * warmup``), so metrics.json's record of the last iteration carries them."""

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = warmup
        self._step_start: Optional[float] = None
        self._train_start: Optional[float] = None
        self._step_times: List[float] = []

    def before_train(self) -> None:
        self._train_start = time.perf_counter()
        self._step_times = []

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def _per_iter(self) -> float:
        times = self._step_times
        timed = times[self.warmup:] if len(times) > 2 * self.warmup else times
        return sum(timed) / len(timed)

    def after_step(self) -> None:
        seconds = time.perf_counter() - self._step_start
        self._step_times.append(seconds)
        storage = self.trainer.storage
        storage.put_scalars(time=seconds)
        if self.trainer.iter == self.trainer.max_iter - 1:
            storage.put_scalars(total_train_time_s=time.perf_counter() - self._train_start,
                                train_s_per_iter=self._per_iter(), smoothing_hint=False)

    def after_train(self) -> None:
        if self._step_times:
            total = time.perf_counter() - self._train_start
            logger.info(f"Training time: {datetime.timedelta(seconds=int(total))} for {len(self._step_times)} "
                        f"iterations ({self._per_iter():.4f} s / it)")


class LRScheduler(HookBase):
    """Records the LR used in this iteration (``lr``) and steps the scheduler once per iteration."""

    checkpoint_key = "scheduler"  # the schedule's state in a checkpoint, as detectron2 names it

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.optimizer = optimizer
        self.scheduler = scheduler
        # Report the group holding the most parameters: the one running at BASE_LR in the default grouping.
        sizes = [len(g["params"]) for g in optimizer.param_groups]
        self._group = sizes.index(max(sizes))

    def after_step(self) -> None:
        lr = self.optimizer.param_groups[self._group]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


class EMAHook(HookBase):
    """Updates a ModelEMA after every step (before the checkpointer saves it); its state is the checkpoint's
    ``"model_ema"`` entry. The average starts from the model's weights when training starts, unless resuming
    restored it."""

    def __init__(self, ema: ModelEMA, model: torch.nn.Module):
        self.ema, self.model = ema, model

    @property
    def checkpoint_key(self) -> str:
        return EMA_KEY

    def before_train(self) -> None:
        if not self.ema.weights:
            self.ema.init_from(self.model)

    def after_step(self) -> None:
        self.ema.update(self.model)

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state)


class DropBlockWarmup(HookBase):
    """Before every step, sets each DropBlock2d of the model (MODEL.RESNETS.DROPBLOCK) to its warm-up's drop
    probability for the trainer's iteration. No state of its own: a resumed run continues the ramp where it stopped."""

    def __init__(self, model: torch.nn.Module):
        self.drop_blocks = [m for m in model.modules() if isinstance(m, DropBlock2d)]

    def before_step(self) -> None:
        for module in self.drop_blocks:
            module.set_iteration(self.trainer.iter)


class PreciseBN(HookBase):
    """TEST.PRECISE_BN: ``update()`` (the BatchNorm statistics recomputed over fresh training batches,
    layers.update_bn_stats) after every ``period``-th iteration (0: only at the end) and after the last one, before
    the checkpointer saves and the evaluation runs, so both see the new statistics. Skipped when a stop signal
    arrived (saving comes first). Parameters are untouched and the caller restores the RNG states, so the training
    that follows is the same with the hook or without."""

    def __init__(self, period: int, update: Callable[[], None]):
        if period < 0:
            raise ValueError(f"TEST.EVAL_PERIOD must be >= 0, got {period}")
        self.period, self.update = int(period), update

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if self.trainer.stopped_by:
            return
        if next_iter == self.trainer.max_iter or (self.period > 0 and next_iter % self.period == 0):
            self.update()


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}`` after every ``period``-th iteration and ``model_final`` after the last one, and
    ``model_{iter:07d}`` after the iteration at which a stop signal arrived (then logs how to resume).

    A checkpoint holds the model and the trainer's state (iteration just finished, optimizer, schedule, every
    rank's RNG states): all ranks take part, only the main process writes. ``max_to_keep`` > 0 keeps only the
    newest that many ``model_{iter:07d}`` files (detectron2's ``max_to_keep``); ``model_final`` and the file
    ``last_checkpoint`` names are never deleted. 0 keeps all.
    """

    def __init__(self, checkpointer: DetectionCheckpointer, period: int, max_iter: int, file_prefix: str = "model",
                 max_to_keep: int = 0):
        if period <= 0:
            raise ValueError(f"SOLVER.CHECKPOINT_PERIOD must be > 0, got {period}")
        if max_to_keep < 0:
            raise ValueError(f"SOLVER.CHECKPOINT_MAX_KEEP must be >= 0 (0 = keep all), got {max_to_keep}")
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_iter = int(max_iter)
        self.file_prefix = file_prefix
        self.max_to_keep = int(max_to_keep)

    def _save(self, name: str) -> Optional[str]:
        self.trainer.flush_losses()  # a NaN found here stops training before it reaches a checkpoint
        path = self.checkpointer.save(name)
        if self.max_to_keep > 0 and comm.is_main_process():
            self._delete_old()
        return path

    def _delete_old(self) -> None:
        keep = os.path.abspath(self.checkpointer.get_checkpoint_file())
        periodic = [p for _, p in self.checkpointer.list_checkpoints()
                    if os.path.basename(p).startswith(self.file_prefix + "_")]
        for path in periodic[:-self.max_to_keep]:
            if os.path.abspath(path) != keep:
                os.remove(path)
                logger.info(f"Deleted {path} (SOLVER.CHECKPOINT_MAX_KEEP {self.max_to_keep})")

    def after_step(self) -> None:
        iteration = self.trainer.iter
        path = None
        if (iteration + 1) % self.period == 0:
            path = self._save(f"{self.file_prefix}_{iteration:07d}")
        if iteration >= self.max_iter - 1:
            path = self._save(f"{self.file_prefix}_final")
        stopped_by = self.trainer.stopped_by
        if stopped_by:
            if path is None and (iteration + 1) % self.period != 0:
                path = self._save(f"{self.file_prefix}_{iteration:07d}")
            comm.synchronize()  # every rank leaves only once the checkpoint is on disk
            if comm.is_main_process():
                logger.warning(f"{stopped_by} received: stopped after iteration {iteration} and saved {path}; "
                               f"exiting with status {EXIT_STOPPED}. Continue with: {resume_command()}")


def flatten_results_dict(results: Mapping, prefix: str = "") -> Dict[str, float]:
    """``{"bbox": {"AP": 40.1}}`` -> ``{"bbox/AP": 40.1}``; every leaf must be a number."""
    flat: Dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_results_dict(value, name))
        else:
            try:
                flat[name] = float(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"Evaluation result '{name}' must be a number, got {value!r}") from e
    return flat


class EvalHook(HookBase):
    """Runs ``eval_function()`` every ``eval_period`` iterations (0: never periodically) and after the last
    iteration of a run that finished; its results go to the EventStorage as ``bbox/AP``, ...

    The latest results are kept in ``self.latest_results``.
    """

    def __init__(self, eval_period: int, eval_function: Callable[[], Mapping]):
        if eval_period < 0:
            raise ValueError(f"TEST.EVAL_PERIOD must be >= 0, got {eval_period}")
        self.period = int(eval_period)
        self.eval_function = eval_function
        self.latest_results: Optional[Mapping] = None

    def _do_eval(self) -> None:
        self.trainer.flush_losses()
        results = self.eval_function()
        if results is None:
            results = {}
        if not isinstance(results, Mapping):
            raise TypeError(f"The evaluation function returned {type(results).__name__}; expected a dict")
        self.latest_results = results
        flat = flatten_results_dict(results)
        if flat:
            self.trainer.storage.put_scalars(**flat, smoothing_hint=False)
        # Evaluation can take ranks different times; keep them in step before training goes on.
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if self.trainer.stopped_by:
            return  # stopping on a signal: save and go, do not start a long evaluation
        if self.period > 0 and next_iter % self.period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval()

    def after_train(self) -> None:
        # A run that stopped on an error is not evaluated: its weights are not the final ones.
        if self.trainer.train_succeeded:
            self._do_eval()


class PeriodicWriter(HookBase):
    """Calls each writer every ``period`` iterations, after the last iteration and at the end of training.

    Registered on every rank (it first flushes the trainer's pending losses, a collective); only the main process
    has writers."""

    def __init__(self, writers: List[EventWriter], period: int):
        if period <= 0:
            raise ValueError(f"LOG_PERIOD must be > 0, got {period}")
        self.writers = list(writers)
        self.period = int(period)

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if (iteration + 1) % self.period == 0 or iteration == self.trainer.max_iter - 1 or self.trainer.stopped_by:
            self.trainer.flush_losses()
            for w in self.writers:
                w.write()

    def after_train(self) -> None:
        for w in self.writers:
            # Writers only publish what is newer than what they wrote, so this adds final evaluation results.
            w.write()
            w.close()


class CallbackHook(HookBase):
    """A hook from plain functions ``fn(trainer)``; handy in tests and scripts."""

    def __init__(self, *, before_train=None, after_train=None, before_step=None, after_step=None):
        self._fns: Dict[str, Any] = {
            "before_train": before_train, "after_train": after_train,
            "before_step": before_step, "after_step": after_step,
        }

    def before_train(self) -> None:
        if self._fns["before_train"]:
            self._fns["before_train"](self.trainer)

    def after_train(self) -> None:
        if self._fns["after_train"]:
            self._fns["after_train"](self.trainer)

    def before_step(self) -> None:
        if self._fns["before_step"]:
            self._fns["before_step"](self.trainer)

    def after_step(self) -> None:
        if self._fns["after_step"]:
            self._fns["after_step"](self.trainer)
