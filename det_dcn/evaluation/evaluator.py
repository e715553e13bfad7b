"""Running a model over a test loader with progress / ETA logging, and printing results for copy-paste."""

import contextlib
import datetime
import logging
import time
from typing import Optional

import torch

from det_dcn.utils import comm
from det_dcn.utils.events import current_event_storage

from .left_out import UNREADABLE_KEY, split_unreadable

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Interface: ``reset()``, ``process(inputs, outputs)`` per batch, ``evaluate() -> dict`` (on rank 0)."""

    def reset(self):
        pass

    def process(self, inputs, outputs):
        pass

    def process_unreadable(self, inputs):
        """Stand-ins for images the loader could not read (see det_dcn/evaluation/left_out.py): leave them out of
        the ground truth and report them."""

    def evaluate(self) -> Optional[dict]:
        return {}


@contextlib.contextmanager
def inference_context(model: torch.nn.Module):
    """Put the model in eval mode for the block and restore its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _fmt_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def inference_on_dataset(model, data_loader, evaluator: Optional[DatasetEvaluator], log_period_s: float = 5.0):
    """Run ``model`` (eval mode, no_grad) on every batch of ``data_loader`` and feed ``evaluator``.

    Logs progress with time per image and ETA about every ``log_period_s`` seconds (the first few images are
    excluded from the timing: warm-up). Returns ``evaluator.evaluate()`` ({} on non-main ranks or without one).
    """
    if evaluator is None:
        evaluator = DatasetEvaluator()
    try:
        total = len(data_loader)
    except TypeError:
        total = None
    logger.info(f"Start inference on {total if total is not None else 'an unknown number of'} batches "
                f"(rank {comm.get_rank()} of {comm.get_world_size()})")
    evaluator.reset()
    num_warmup = min(5, (total or 1) - 1)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    start = time.perf_counter()
    timed_start, t_data, t_model, t_eval, n_timed = start, 0.0, 0.0, 0.0, 0
    last_log, n_images = start, 0
    with inference_context(model), torch.no_grad():
        t_prev = time.perf_counter()
        for idx, inputs in enumerate(data_loader):
            t0 = time.perf_counter()
            if idx == num_warmup:
                timed_start, t_data, t_model, t_eval, n_timed = t_prev, 0.0, 0.0, 0.0, 0
            inputs, unreadable = split_unreadable(inputs)
            for d in unreadable:
                logger.warning(f"Left out of evaluation (unreadable): {d['file_name']}: {d[UNREADABLE_KEY]}")
            if unreadable:
                evaluator.process_unreadable(unreadable)
            outputs = model(inputs) if inputs else []
            sync()
            t1 = time.perf_counter()
            n_images = (0 if idx == num_warmup else n_images) + len(inputs)  # images in the timed batches
            evaluator.process(inputs, outputs)
            t2 = time.perf_counter()
            t_data, t_model, t_eval = t_data + (t0 - t_prev), t_model + (t1 - t0), t_eval + (t2 - t1)
            n_timed += 1
            t_prev = t2
            done = idx + 1
            if t2 - last_log >= log_period_s or (total is not None and done == total):
                last_log = t2
                per = (t2 - timed_start) / max(n_timed, 1)
                eta = f" ETA={_fmt_eta(per * (total - done))}" if total is not None else ""
                logger.info(
                    f"Inference done {done}/{total if total is not None else '?'}. Data: {t_data / max(n_timed, 1):.4f}"
                    f" s/iter. Model: {t_model / max(n_timed, 1):.4f} s/iter. Eval: {t_eval / max(n_timed, 1):.4f}"
                    f" s/iter. Total: {per:.4f} s/iter.{eta}"
                )
    elapsed = time.perf_counter() - start
    storage = current_event_storage()  # training: the record with the evaluation results gets the model time
    if storage is not None and n_timed:
        storage.put_scalar("inference_ms_per_image", 1000.0 * t_model / n_images, smoothing_hint=False)
    logger.info(f"Total inference time: {_fmt_eta(elapsed)} ({elapsed:.2f} s); model time "
                f"{t_model / max(n_timed, 1):.4f} s/iter over {n_timed} timed iterations")
    results = evaluator.evaluate()
    return results if results is not None else {}


def print_csv_format(results: dict) -> None:
    """Log the main metrics of each task as two comma-separated lines (per-class "AP-<name>" left out)."""
    for task, res in results.items():
        if not isinstance(res, dict):
            logger.info(f"copypaste: {task}={res}")
            continue
        main = [(k, v) for k, v in res.items() if "-" not in k]
        logger.info(f"copypaste: Task: {task}")
        logger.info("copypaste: " + ",".join(k for k, _ in main))
        logger.info("copypaste: " + ",".join(f"{v:.4f}" for _, v in main))
