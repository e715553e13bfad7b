"""DefaultTrainer: the standard training job built from a config.

It builds the model (wrapped in DistributedDataParallel when there are several processes), the SGD optimizer, the LR
schedule, the checkpointer, AMP and gradient clipping, and the hooks (timer, LR schedule, checkpoints, evaluation,
writers); the training data loader is built when ``train()`` starts, at the iteration training resumes from, so the
data order of a resumed run continues where the interrupted run stopped. Typical use (what tools/train.py does)::

    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()

Subclasses can override the ``build_*`` classmethods (model, optimizer, scheduler, loaders, evaluator) to change
one part; ``build_train_loader(cfg, start_iter)`` must continue the data order from ``start_iter``.
"""

import logging
import os
import time
import weakref
from collections import OrderedDict
from typing import List, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from det_dcn.checkpoint import DetectionCheckpointer
from det_dcn.config import ConfigError
from det_dcn.evaluation.build import check_evaluator_choice
from det_dcn.evaluation.results_table import format_results_table
from det_dcn.layers.precise_bn import batch_norm_layers, update_bn_stats
from det_dcn.solver import build_gradient_clipper, build_lr_scheduler, build_optimizer
from det_dcn.utils import comm
from det_dcn.utils.atomic_io import atomic_write_text
from det_dcn.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardWriter, \
    tensorboard_available
from det_dcn.utils.logger import setup_logger
from det_dcn.utils.seeding import get_rng_state, seed_from_cfg, set_rng_state

from . import hooks
from .model_ema import ModelEMA
from .predictor import native_bf16
from .train_loop import NonFiniteLossError, SimpleTrainer, _autocast_dtype

logger = logging.getLogger(__name__)


def create_ddp_model(model: nn.Module, *, find_unused_parameters: bool = False, **kwargs) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when there are several processes; return it as is otherwise.

    ``find_unused_parameters`` costs an extra graph traversal every iteration; turn it on only for models whose
    forward leaves some trainable parameters unused.
    """
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index if device.index is not None else comm.get_local_rank()])
    # Buffers (e.g. BN statistics) are not broadcast each step; frozen / group norms have nothing to sync.
    kwargs.setdefault("broadcast_buffers", False)
    return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters, **kwargs)


def _check_solver_cfg(cfg) -> None:
    s = cfg.SOLVER
    if s.MAX_ITER < 0:
        raise ValueError(f"SOLVER.MAX_ITER must be >= 0, got {s.MAX_ITER}")
    # Periods are checked by the hooks, SOLVER.IMS_PER_BATCH by the train loader: where each is used.
    if not cfg.OUTPUT_DIR:
        raise ValueError("OUTPUT_DIR is empty; training needs a folder for checkpoints and metrics")


def _amp_on(cfg, device: torch.device) -> bool:
    """SOLVER.AMP.ENABLED, except on a CPU without bfloat16 instructions: there oneDNN emulates bfloat16, slower than
    float32, so a config written for AMP (the raccoon recipe) trains in float32 there, with a warning."""
    if not cfg.SOLVER.AMP.ENABLED:
        return False
    if device.type == "cpu" and not native_bf16(device):
        logger.warning("SOLVER.AMP.ENABLED is True but this CPU (torch kernels %s) has no bfloat16 instructions "
                       "(AVX512-BF16 or AMX): bfloat16 would be emulated, slower than float32; training in float32",
                       torch.backends.cpu.get_cpu_capability())
        return False
    return True


class DefaultTrainer(SimpleTrainer):
    """Trainer with detectron2's defaults; see the module docstring.

    Attributes: ``cfg``, ``model`` (DDP-wrapped when distributed), ``model_without_ddp``, ``optimizer``,
    ``scheduler``, ``grad_scaler`` (CUDA AMP only), ``checkpointer``, ``start_iter``, ``max_iter``.
    ``loss_check_period`` (class attribute): see SimpleTrainer; None = by device.
    """

    loss_check_period: Optional[int] = None

    def __init__(self, cfg):
        if not logging.getLogger("det_dcn").handlers:
            setup_logger(distributed_rank=comm.get_rank())
        _check_solver_cfg(cfg)
        check_evaluator_choice(cfg)  # now, not when the first evaluation starts
        # Seeded here too (default_setup did so before): a trainer built from a cfg starts from the same RNG state
        # whatever ran in between. SEED + rank: ranks draw different samples; DDP broadcasts rank 0's weights.
        seed_from_cfg(cfg)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        device = next(model.parameters()).device
        amp = _amp_on(cfg, device)
        grad_scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
        ddp_model = create_ddp_model(model, find_unused_parameters=cfg.FIND_UNUSED_PARAMETERS)
        super().__init__(
            ddp_model,
            None,
            optimizer,
            amp=amp,
            grad_scaler=grad_scaler,
            clip_gradients=build_gradient_clipper(cfg),
            loss_check_period=self.loss_check_period,
        )
        self.cfg = cfg
        self.model_without_ddp = model
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # The trainer's state_dict (iteration, optimizer, schedule via its hook, RNG states) goes into checkpoints.
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._eval_hook: Optional[hooks.EvalHook] = None
        # MODEL_EMA: the averaged weights, updated by EMAHook and evaluated instead of the raw ones
        self.model_ema: Optional[ModelEMA] = ModelEMA.from_config(cfg) if cfg.MODEL_EMA.ENABLED else None
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------------------------------ resume / load
    def resume_or_load(self, resume: bool = True) -> None:
        """``resume`` and OUTPUT_DIR has a ``last_checkpoint``: restore the model and the trainer's state (iteration,
        optimizer, schedule, grad scaler, RNG states) from it (or from the newest checkpoint that loads, with a
        warning). Otherwise load MODEL.WEIGHTS (model only; "" = from scratch) and start at iteration 0."""
        self.start_iter = 0
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if self.start_iter > 0:
            logger.info(f"Resuming training at iteration {self.start_iter}")

    # -------------------------------------------------------------------------------------------------- loop
    def train(self) -> Optional[dict]:
        """Train from ``start_iter`` to SOLVER.MAX_ITER; returns the last evaluation results (main process) or
        None when nothing was evaluated. Raises TrainingStopped (a SystemExit) after saving when SIGTERM /
        SIGUSR1 arrived."""
        # Before the loader's worker processes start, so they inherit the handler (see preemption.StopRequest).
        self.stop_request.install()
        if comm.is_main_process() and len(self.cfg.DATASETS.TEST) > 0:
            from det_dcn.data.build import check_evaluation_images

            check_evaluation_images(self.cfg)  # a broken file is named now, not at the first evaluation
        try:
            self.reset_data_loader(self.build_train_loader(self.cfg, start_iter=self.start_iter))
            # Restored after the loader exists: creating its iterator draws from the torch RNG in both runs alike.
            self.restore_rng_state()
            super().train(self.start_iter, self.max_iter)
        finally:
            self.close_data_loader()
            self.stop_request.uninstall()
        if self._eval_hook is not None and comm.is_main_process():
            return self._eval_hook.latest_results
        return None

    def run_step(self) -> None:
        try:
            super().run_step()
        except RuntimeError as e:
            if "find_unused_parameters" in str(e) and not self.cfg.FIND_UNUSED_PARAMETERS:
                raise RuntimeError(
                    f"{e}\nThis model leaves some trainable parameters without a gradient: set the config key "
                    "FIND_UNUSED_PARAMETERS True (or freeze those parameters)."
                ) from e
            raise
        # det_dcn's training loader skips unreadable images and counts them: make the count visible in metrics.
        stats = getattr(self.data_loader, "stats", None)
        if callable(stats):
            self.storage.put_scalar("data/num_skipped", stats()["num_skipped"], smoothing_hint=False)

    def flush_losses(self) -> None:
        try:
            super().flush_losses()
        except NonFiniteLossError as e:
            last = self.checkpointer.get_checkpoint_file() if comm.is_main_process() else ""
            where = f"The last good checkpoint is '{last}'." if last else "No checkpoint had been written yet."
            raise NonFiniteLossError(f"{e} {where}") from None

    # ---------------------------------------------------------------------------------------------- builders
    def build_hooks(self) -> List[Optional[hooks.HookBase]]:
        cfg = self.cfg
        result: List[Optional[hooks.HookBase]] = [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.scheduler),
            hooks.DropBlockWarmup(self.model_without_ddp) if cfg.MODEL.RESNETS.DROPBLOCK.PROB > 0 else None,
            hooks.EMAHook(self.model_ema, self.model_without_ddp) if self.model_ema is not None else None,
            self._build_precise_bn_hook(),
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.max_iter,
                                       max_to_keep=cfg.SOLVER.CHECKPOINT_MAX_KEEP),
        ]
        if len(cfg.DATASETS.TEST) > 0:

            def evaluate() -> dict:
                if self.model_ema is None:
                    results = self.evaluate(self.cfg, self.model_without_ddp)
                else:
                    logger.info("Evaluating the averaged weights (MODEL_EMA)")
                    with self.model_ema.applied_to(self.model_without_ddp):
                        results = self.evaluate(self.cfg, self.model_without_ddp)
                self.model.train()  # evaluation switched the model to eval mode
                return results

            self._eval_hook = hooks.EvalHook(cfg.TEST.EVAL_PERIOD, evaluate)
            result.append(self._eval_hook)
        # On every rank (it flushes the losses, a collective); only the main process writes.
        writers = self.build_writers() if comm.is_main_process() else []
        result.append(hooks.PeriodicWriter(writers, period=cfg.LOG_PERIOD))
        return result

    def _build_precise_bn_hook(self) -> Optional[hooks.PreciseBN]:
        cfg = self.cfg
        if not cfg.TEST.PRECISE_BN.ENABLED:
            return None
        if self.model_ema is not None:
            raise ConfigError("TEST.PRECISE_BN.ENABLED=True with MODEL_EMA.ENABLED=True: the averaged weights, which "
                              "are evaluated, keep averaged statistics of their own; turn one of the two off")
        if not batch_norm_layers(self.model_without_ddp):
            logger.info("TEST.PRECISE_BN: the model has no BatchNorm layer (FrozenBN and GN keep no batch "
                        "statistics); nothing to recompute")
            return None
        return hooks.PreciseBN(cfg.TEST.EVAL_PERIOD, lambda: self.update_bn_stats(cfg, self.model_without_ddp))

    def build_writers(self) -> List[EventWriter]:
        """Console line, OUTPUT_DIR/metrics.json and (when importable) TensorBoard under OUTPUT_DIR."""
        writers: List[EventWriter] = [
            CommonMetricPrinter(self.max_iter),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")),
        ]
        if tensorboard_available():
            writers.append(TensorboardWriter(self.cfg.OUTPUT_DIR))
        return writers

    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        from det_dcn.modeling import build_model

        model = build_model(cfg)
        num_params = sum(p.numel() for p in model.parameters())
        where = ""
        if comm.is_main_process() and cfg.OUTPUT_DIR and os.path.isdir(cfg.OUTPUT_DIR):
            path = os.path.join(cfg.OUTPUT_DIR, "model.txt")
            atomic_write_text(path, f"{model}\n")
            where = f"; its structure is in {path}"
        logger.info(f"Model: {type(model).__name__}, {num_params / 1e6:.2f} M parameters{where}")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        """Infinite loader of per-process batches whose order continues from iteration ``start_iter``."""
        from det_dcn.data import build_detection_train_loader

        return build_detection_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        from det_dcn.data import build_detection_test_loader

        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: Optional[str] = None):
        """The evaluator TEST.EVALUATOR picks (COCO or Pascal VOC AP; "auto": by the dataset's metadata), writing
        its files under ``output_folder`` (default OUTPUT_DIR/inference/<dataset_name>)."""
        from det_dcn.evaluation import build_evaluator

        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_dir=output_folder)

    @classmethod
    def update_bn_stats(cls, cfg, model: nn.Module) -> None:
        """TEST.PRECISE_BN: ``model``'s BatchNorm statistics recomputed over the first TEST.PRECISE_BN.NUM_ITER
        batches of a fresh training loader (layers.update_bn_stats), the forward under the training's autocast. The
        batches and the pass's random draws (DropBlock) depend on SEED only and the RNG states are restored after,
        so the pass gives the same statistics at the end of training and in ``--eval-only``, and changes no other
        state."""
        num_iter = cfg.TEST.PRECISE_BN.NUM_ITER
        if num_iter < 1:
            raise ConfigError(f"TEST.PRECISE_BN.NUM_ITER={num_iter}: expected a number of batches >= 1 (detectron2's "
                              "default: 200)")
        if not batch_norm_layers(model):
            return
        if len(cfg.DATASETS.TRAIN) == 0:
            raise ConfigError("TEST.PRECISE_BN.ENABLED=True needs training batches to recompute the BatchNorm "
                              "statistics, but DATASETS.TRAIN is empty; name the training set or turn the key off")
        device = next(model.parameters()).device
        amp = _amp_on(cfg, device)

        def forward(batch):
            with torch.autocast(device_type=device.type, dtype=_autocast_dtype(device), enabled=amp):
                model(batch)

        rng, start = get_rng_state(), time.perf_counter()
        seed_from_cfg(cfg)  # the same random draws (dropout, DropBlock) in every pass
        batches = iter(cls.build_train_loader(cfg))
        try:
            num_layers = update_bn_stats(model, batches, num_iter, forward)
        finally:
            if hasattr(batches, "close"):
                batches.close()
            set_rng_state(rng)
        logger.info(f"Precise BN: the statistics of {num_layers} BatchNorm layers averaged over {num_iter} training "
                    f"batches ({time.perf_counter() - start:.0f} s)")

    @classmethod
    def test(cls, cfg, model: nn.Module, evaluators: Optional[list] = None) -> dict:
        """Evaluate ``model`` on every dataset in DATASETS.TEST.

        Returns ``{"bbox": {"AP": ...}}`` for one dataset, ``{name: {"bbox": ...}}`` for several; other ranks than
        the main one get empty results.
        """
        from det_dcn.evaluation import inference_on_dataset

        names = list(cfg.DATASETS.TEST)
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"test: {len(evaluators)} evaluators given for {len(names)} datasets {names}")
        results: "OrderedDict[str, dict]" = OrderedDict()
        for i, name in enumerate(names):
            loader = cls.build_test_loader(cfg, name)
            evaluator = evaluators[i] if evaluators is not None else cls.build_evaluator(cfg, name)
            results[name] = inference_on_dataset(model, loader, evaluator) or {}
            if comm.is_main_process() and results[name]:
                logger.info(f"Evaluation results for {name}:\n{format_results_table(results[name])}")
        if len(results) == 1:
            return next(iter(results.values()))
        return dict(results)

    @classmethod
    def test_with_TTA(cls, cfg, model: nn.Module) -> dict:
        """Evaluate ``model`` with test-time augmentation (TEST.AUG: GeneralizedRCNNWithTTA) on DATASETS.TEST, as
        detectron2 does: results keyed ``"bbox_TTA"`` (``"<dataset>_TTA"`` for several), files under
        OUTPUT_DIR/inference_TTA/<dataset>."""
        from det_dcn.modeling.test_time_augmentation import GeneralizedRCNNWithTTA

        tta = GeneralizedRCNNWithTTA.from_config(cfg, model)
        logger.info(f"Test-time augmentation: {tta.describe()}")
        evaluators = [cls.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
                      for name in cfg.DATASETS.TEST]
        results = cls.test(cfg, tta, evaluators)
        return {f"{key}_TTA": value for key, value in results.items()}

    @classmethod
    def evaluate(cls, cfg, model: nn.Module) -> dict:
        """What the end of training and ``--eval-only`` run: ``test``, and ``test_with_TTA`` too when
        TEST.AUG.ENABLED (its results added beside the plain ones)."""
        results = cls.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results = {**results, **cls.test_with_TTA(cfg, model)}
        return results
