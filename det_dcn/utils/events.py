"""Training metrics: an EventStorage that collects scalars per iteration, and writers that publish them.

- ``EventStorage``: the trainer opens one for the whole run; any code can ``get_event_storage().put_scalar(...)``.
- ``JSONWriter``: appends one JSON object per logged iteration to ``OUTPUT_DIR/metrics.json`` in detectron2's format
  (``{"iteration": 19, "total_loss": ..., "loss_cls": ..., "lr": ..., "time": ..., "data_time": ...,
  "eta_seconds": ..., "memory": ...}``; evaluation results as ``"bbox/AP"``, ``"bbox/AP50"``, ... with
  ``inference_ms_per_image``; at the end of a finished run ``total_train_time_s`` and ``train_s_per_iter``). A run
  starting at iteration S first drops the file's records of iterations >= S (written by an interrupted run past the
  checkpoint it resumes from, or by an earlier run in the same folder), so the file describes one run.
- ``CommonMetricPrinter``: the console line with ETA, losses, iteration time, data time, LR and peak memory.
- ``TensorboardWriter``: the same scalars to TensorBoard, when ``torch.utils.tensorboard`` imports.
"""

import datetime
import json
import logging
import os
import resource
import statistics
import sys
import time
from collections import defaultdict, deque
from typing import Deque, Dict, List, Optional, Tuple

import torch

from det_dcn.utils.atomic_io import atomic_write_text

_CURRENT_STORAGE_STACK: List["EventStorage"] = []


def get_event_storage() -> "EventStorage":
    """The innermost EventStorage opened with ``with EventStorage(...)``; errors outside training."""
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() was called outside an EventStorage context; "
            "metrics can only be recorded inside `with EventStorage(...)` (the trainer opens one)"
        )
    return _CURRENT_STORAGE_STACK[-1]


def current_event_storage() -> Optional["EventStorage"]:
    """The innermost open EventStorage, or None outside training (e.g. evaluation run on its own)."""
    return _CURRENT_STORAGE_STACK[-1] if _CURRENT_STORAGE_STACK else None


class HistoryBuffer:
    """The last ``max_length`` (value, iteration) pairs of one scalar, plus its running global average."""

    def __init__(self, max_length: int = 1_000_000):
        self._data: Deque[Tuple[float, int]] = deque(maxlen=max_length)
        self._count = 0
        self._global_avg = 0.0

    def update(self, value: float, iteration: int) -> None:
        self._data.append((value, iteration))
        self._count += 1
        self._global_avg += (value - self._global_avg) / self._count

    def latest(self) -> float:
        return self._data[-1][0]

    def _window(self, window_size: int) -> List[float]:
        n = len(self._data)
        return [self._data[i][0] for i in range(max(0, n - window_size), n)]

    def median(self, window_size: int) -> float:
        return statistics.median(self._window(window_size))

    def avg(self, window_size: int) -> float:
        window = self._window(window_size)
        return sum(window) / len(window)

    def global_avg(self) -> float:
        return self._global_avg

    def values(self) -> List[Tuple[float, int]]:
        return list(self._data)


class EventStorage:
    """Per-iteration scalar metrics of a training run.

    ``iter`` is the iteration being run; ``put_scalar`` records a value at it. A scalar put with
    ``smoothing_hint=True`` (losses, timings) is reported by writers as the median of its last values; one put with
    ``smoothing_hint=False`` (LR, evaluation results, ETA) is reported as is.
    """

    def __init__(self, start_iter: int = 0):
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest_scalars: Dict[str, Tuple[float, int]] = {}
        self.start_iter = int(start_iter)  # the first iteration of this run (segment)
        self._iter = self.start_iter

    @property
    def iter(self) -> int:
        return self._iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = int(value)

    def put_scalar(self, name: str, value, smoothing_hint: bool = True, cur_iter: Optional[int] = None) -> None:
        """Record ``value`` (a number or a one-element tensor) for ``name`` at ``cur_iter`` (default: ``iter``)."""
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"put_scalar('{name}'): expected a one-element tensor, got shape {tuple(value.shape)}")
            value = value.detach().item()
        value = float(value)
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)
        previous_hint = self._smoothing_hints.get(name)
        if previous_hint is not None and previous_hint != smoothing_hint:
            raise ValueError(f"put_scalar('{name}'): smoothing_hint changed from {previous_hint} to {smoothing_hint}")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **kwargs) -> None:
        for name, value in kwargs.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def history(self, name: str) -> HistoryBuffer:
        if name not in self._history:
            raise KeyError(f"No scalar named '{name}' was recorded; recorded: {sorted(self._history)}")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """name -> (latest value, the iteration it was recorded at)."""
        return dict(self._latest_scalars)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like ``latest`` but scalars with a smoothing hint are the median of their last ``window_size`` values."""
        result = {}
        for name, (value, it) in self._latest_scalars.items():
            if self._smoothing_hints[name]:
                value = self._history[name].median(window_size)
            result[name] = (value, it)
        return result

    def __enter__(self) -> "EventStorage":
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert _CURRENT_STORAGE_STACK[-1] is self, "EventStorage contexts closed out of order"
        _CURRENT_STORAGE_STACK.pop()


class EventWriter:
    """Publishes what the current EventStorage holds; ``write`` is called every LOG_PERIOD iterations."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def peak_memory_mb() -> float:
    """Peak memory of this process in MiB: CUDA ``max_memory_allocated`` when on a GPU, else the CPU RSS peak."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 1024.0 / 1024.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1024.0 / 1024.0 if sys.platform == "darwin" else peak / 1024.0


class JSONWriter(EventWriter):
    """Appends one JSON object per iteration with new scalars to ``json_file`` (e.g. OUTPUT_DIR/metrics.json).

    Appending (not overwriting) means a resumed run continues the same file; on its first write the file's records
    of iterations >= the storage's ``start_iter`` are dropped (rewritten atomically), see the module docstring.
    """

    def __init__(self, json_file: str, window_size: int = 20):
        parent = os.path.dirname(json_file)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._path = json_file
        self._file = None
        self._window_size = window_size
        self._last_write = -1

    def _open(self, start_iter: int) -> None:
        if os.path.exists(self._path):
            with open(self._path, "r", encoding="utf-8") as f:
                lines = f.readlines()
            kept = [line for line in lines if _record_iteration(line) < start_iter]
            if len(kept) != len(lines):
                atomic_write_text(self._path, "".join(kept))
                logging.getLogger(__name__).info(
                    f"{self._path}: dropped {len(lines) - len(kept)} records of iterations >= {start_iter} "
                    "(written past the checkpoint this run starts from)")
        self._file = open(self._path, "a", encoding="utf-8")

    def write(self) -> None:
        storage = get_event_storage()
        if self._file is None:
            self._open(storage.start_iter)
        by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_write:
                by_iter[it][name] = value
        for it in sorted(by_iter):
            self._file.write(json.dumps({"iteration": it, **by_iter[it]}, sort_keys=True) + "\n")
        if by_iter:
            self._last_write = max(by_iter)
        self._file.flush()
        try:
            os.fsync(self._file.fileno())
        except OSError:  # some file systems (e.g. pipes in tests) do not support fsync; flushing is enough there
            pass

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _record_iteration(line: str) -> float:
    """The iteration of one metrics.json line; an unreadable line (cut by a kill mid-write) counts as infinite
    (dropped)."""
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


class TensorboardWriter(EventWriter):
    """Writes the scalars to TensorBoard event files in ``log_dir`` (needs ``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: str, window_size: int = 20):
        from torch.utils.tensorboard import SummaryWriter  # imported here: optional and slow to import

        self._writer = SummaryWriter(log_dir)
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        newest = self._last_write
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_write:
                self._writer.add_scalar(name, value, it)
                newest = max(newest, it)
        self._last_write = newest
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def tensorboard_available() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class CommonMetricPrinter(EventWriter):
    """Logs ``eta  iter  total_loss  <losses>  time  data_time  lr  max_mem`` to the console.

    Also records ``eta_seconds`` and ``memory`` (MiB) in the storage so JSONWriter (called after it) saves them.
    """

    def __init__(self, max_iter: int, window_size: int = 20):
        self.logger = logging.getLogger("det_dcn.utils.events")
        self._max_iter = max_iter
        self._window_size = window_size
        self._last_eta: Optional[Tuple[int, float]] = None  # (iteration, wall time) to estimate ETA early on

    def _eta_seconds(self, storage: EventStorage, iteration: int) -> Optional[float]:
        remaining = self._max_iter - iteration - 1
        try:
            return storage.history("time").median(1000) * remaining
        except KeyError:
            # No "time" recorded (IterationTimer records it every iteration; a trainer without that hook has
            # none): estimate from the wall time between writes.
            now = time.perf_counter()
            eta = None
            if self._last_eta is not None and iteration > self._last_eta[0]:
                per_iter = (now - self._last_eta[1]) / (iteration - self._last_eta[0])
                eta = per_iter * remaining
            self._last_eta = (iteration, now)
            return eta

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if iteration == self._max_iter:
            return  # after training ends the trainer's iter is max_iter: nothing new to print
        latest = storage.latest()
        if not any(it == iteration for _, it in latest.values()):
            return  # nothing recorded at this iteration (e.g. training stopped by an error inside it)
        eta = self._eta_seconds(storage, iteration)
        if eta is not None:
            storage.put_scalar("eta_seconds", eta, smoothing_hint=False)
        memory = peak_memory_mb()
        storage.put_scalar("memory", memory, smoothing_hint=False)

        def median(name: str) -> str:
            if name not in latest:
                return "N/A"
            return f"{storage.history(name).median(self._window_size):.4f}"

        losses = "  ".join(
            f"{name}: {storage.history(name).median(self._window_size):.4g}"
            for name in sorted(latest, key=lambda n: (n != "total_loss", n))
            if "loss" in name
        )
        lr = f"{latest['lr'][0]:.5g}" if "lr" in latest else "N/A"
        eta_text = f"eta: {datetime.timedelta(seconds=int(eta))}  " if eta is not None else ""
        self.logger.info(
            f"{eta_text}iter: {iteration}  {losses}  time: {median('time')}  data_time: {median('data_time')}  "
            f"lr: {lr}  max_mem: {memory:.0f}M"
        )
