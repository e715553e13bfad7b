"""Training engine: trainer, hooks, launcher, command line, predictor."""

from .defaults import default_argument_parser, default_setup
from .hooks import (
    CallbackHook,
    EMAHook,
    EvalHook,
    IterationTimer,
    LRScheduler,
    PeriodicCheckpointer,
    PeriodicWriter,
    PreciseBN,
)
from .launch import launch
from .model_ema import ModelEMA, use_ema_weights
from .predictor import DefaultPredictor
from .preemption import EXIT_STOPPED, TrainingStopped
from .train_loop import HookBase, NonFiniteLossError, SimpleTrainer, TrainerBase
from .trainer import DefaultTrainer, create_ddp_model
from det_dcn.utils.seeding import get_rng_state, seed_all_rng, set_rng_state

__all__ = [
    "default_argument_parser",
    "default_setup",
    "launch",
    "DefaultTrainer",
    "DefaultPredictor",
    "SimpleTrainer",
    "TrainerBase",
    "HookBase",
    "CallbackHook",
    "EMAHook",
    "ModelEMA",
    "use_ema_weights",
    "EvalHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PreciseBN",
    "NonFiniteLossError",
    "TrainingStopped",
    "EXIT_STOPPED",
    "create_ddp_model",
    "seed_all_rng",
    "get_rng_state",
    "set_rng_state",
]
