"""The hooks DefaultTrainer registers, in this order:

IterationTimer (time per iteration) -> LRScheduler (records lr, steps the schedule) -> PeriodicCheckpointer (saves
every CHECKPOINT_PERIOD iterations and at the end, with all ranks' RNG states) -> EvalHook (every EVAL_PERIOD
iterations and after the last one) -> PeriodicWriter (console / metrics.json / TensorBoard every LOG_PERIOD).
The checkpoint is written before the evaluation so a crash during evaluation loses no training.
"""

import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional

import torch

from det_dcn.checkpoint import DetectionCheckpointer
from det_dcn.utils import comm
from det_dcn.utils.events import EventWriter

from .seeding import get_rng_state
from .train_loop import HookBase

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    """Records ``time`` (seconds per iteration, hooks included) and logs the total training time at the end."""

    def __init__(self) -> None:
        self._step_start: Optional[float] = None
        self._train_start: Optional[float] = None

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        self.trainer.storage.put_scalars(time=time.perf_counter() - self._step_start)

    def after_train(self) -> None:
        done = self.trainer.iter - self.trainer.start_iter
        total = time.perf_counter() - self._train_start
        if done > 0:
            logger.info(
                f"Training time: {datetime.timedelta(seconds=int(total))} for {done} iterations "
                f"({total / done:.4f} s / it)"
            )


class LRScheduler(HookBase):
    """Records the LR used in this iteration (``lr``) and steps the scheduler once per iteration."""

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


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}`` after every ``period``-th iteration and ``model_final`` after the last one.

    A checkpoint holds the iteration just finished and every rank's RNG states (gathered, so all ranks take part;
    only the main process writes).
    """

    def __init__(self, checkpointer: DetectionCheckpointer, period: int, max_iter: int, file_prefix: str = "model"):
        if period <= 0:
            raise ValueError(f"SOLVER.CHECKPOINT_PERIOD must be > 0, got {period}")
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_iter = int(max_iter)
        self.file_prefix = file_prefix

    def _save(self, name: str, iteration: int) -> None:
        rng_states = comm.all_gather(get_rng_state())
        self.checkpointer.save(name, iteration=iteration, rng_states=rng_states)

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if (iteration + 1) % self.period == 0:
            self._save(f"{self.file_prefix}_{iteration:07d}", iteration)
        if iteration >= self.max_iter - 1:
            self._save(f"{self.file_prefix}_final", iteration)


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
        if self.period > 0 and next_iter % self.period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval()

    def after_train(self) -> None:
        # A run that stopped on an error is not evaluated: its weights are not the final ones.
        if self.trainer.train_succeeded:
            self._do_eval()


class PeriodicWriter(HookBase):
    """Calls each writer every ``period`` iterations, after the last iteration and at the end of training."""

    def __init__(self, writers: List[EventWriter], period: int):
        if period <= 0:
            raise ValueError(f"LOG_PERIOD must be > 0, got {period}")
        self.writers = list(writers)
        self.period = int(period)

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if (iteration + 1) % self.period == 0 or iteration == self.trainer.max_iter - 1:
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
