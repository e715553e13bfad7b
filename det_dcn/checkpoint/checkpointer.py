"""DetectionCheckpointer: atomic training checkpoints, resume, and tolerant loading of model weights.

A checkpoint file is ``{"model": state_dict, "optimizer": ..., "scheduler": ..., "grad_scaler": ...,
"iteration": int, ...}``, with ``"model_ema": {"weights": state_dict, "num_updates": int}`` when trained with
MODEL_EMA (det_dcn/engine/model_ema.py; ``load(..., ema=True)`` loads those weights instead of "model"). Files are written to a temporary name in the same folder and renamed with ``os.replace``,
so a crash or kill during a save leaves either the previous file or the new one, never half a file; the
``last_checkpoint`` tag (a one-line text file naming the newest checkpoint) is updated the same way, after the
checkpoint itself is complete. Only the main process writes.

The trainer (``trainer=``) is saved with the model: its ``state_dict()`` (iteration, optimizer, LR schedule, gradient
scaler, every rank's RNG states) goes to the top level of the file, and ``resume_or_load`` hands it back to the
trainer's ``load_state_dict``. If the newest checkpoint cannot be read (truncated, corrupt), resuming falls back to
the newest one that loads, with a warning naming both; it never starts from scratch silently.

``load(path)`` takes a det_dcn checkpoint, a converted one (``{"model": state_dict}``) or a plain state dict; it strips
the ``module.`` prefix DistributedDataParallel adds, skips tensors whose shape differs from the model's (e.g. a box
predictor trained for another NUM_CLASSES) and logs missing, unexpected and skipped keys instead of failing.
"""

import errno
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from det_dcn.utils import comm
from det_dcn.utils.atomic_io import atomic_torch_save, atomic_write_text
from .convert_common import foreign_weights_message

LAST_CHECKPOINT_TAG = "last_checkpoint"
EMA_KEY = "model_ema"  # the trainer's EMAHook state: averaged weights beside the raw ones
_PERIODIC_NAME = re.compile(r"^(.+)_(\d{7})\.pth$")  # model_0004999.pth


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. no space left); the message is one line saying what to do."""


def describe_unreadable(path: str, error: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in words, without torch's advice to disable
    ``weights_only`` (which would let the file run code)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    text = str(error)
    if size == 0:
        return f"Checkpoint '{path}' is empty (0 bytes)"
    if "Weights only load failed" in text:
        detail = text.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0].strip()
        return (f"'{path}' is not a plain PyTorch checkpoint of tensors: it needs Python objects det_dcn does not "
                f"load ({' '.join(detail.split()) or 'unsupported content'}). det_dcn reads only tensors and plain "
                "containers so that a file cannot run code; convert other frameworks' files with "
                "tools/convert_weights.py")
    if head.startswith(b"PK\x03\x04"):
        reason = text.split(". ")[0]
        return f"Checkpoint '{path}' ({size} bytes) is truncated or corrupt ({reason})"
    return (f"'{path}' is not a PyTorch checkpoint: torch.save writes a zip archive, this file begins with "
            f"{head!r} ({size} bytes). MODEL.WEIGHTS must name a .pth file written by torch.save or "
            "tools/convert_weights.py")


def read_checkpoint(path: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; ValueError in words when it fails."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file '{path}' does not exist (check MODEL.WEIGHTS / OUTPUT_DIR)")
    try:
        with warnings.catch_warnings():  # torch's "please file an issue" about a pickle protocol: not the user's
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(describe_unreadable(path, e)) from None


@dataclass
class LoadReport:
    """What ``load`` did with a checkpoint's model weights (also logged)."""

    loaded_keys: List[str] = field(default_factory=list)
    missing_keys: List[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected_keys: List[str] = field(default_factory=list)  # in the checkpoint, not in the model
    # (key, shape in checkpoint, shape in model): not loaded
    mismatched_keys: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)


def _unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def _extract_model_state(checkpoint: Any, path: str, ema: bool = False) -> Dict[str, torch.Tensor]:
    """The model state dict inside a loaded file: ``{"model": sd, ...}`` or a plain ``sd``; with ``ema`` the
    averaged weights (``{"model_ema": {"weights": sd, ...}, ...}``)."""
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"Checkpoint '{path}' holds a {type(checkpoint).__name__}; expected a dict "
            f"(a det_dcn checkpoint {{'model': state_dict, ...}} or a plain state dict)"
        )
    if ema:
        entry = checkpoint.get(EMA_KEY)
        if not isinstance(entry, dict) or not isinstance(entry.get("weights"), dict):
            raise ValueError(
                f"Checkpoint '{path}' has no averaged weights ('{EMA_KEY}'): it was not trained with "
                f"MODEL_EMA.ENABLED. To use its own weights set MODEL_EMA.ENABLED False and "
                f"MODEL_EMA.USE_EMA_WEIGHTS_FOR_EVAL_ONLY False.")
        state = entry["weights"]
    elif "model" in checkpoint:
        state = checkpoint["model"]
    elif "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], dict):
        state = checkpoint["state_dict"]
    else:
        state = checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"Checkpoint '{path}': its 'model' entry is a {type(state).__name__}, expected a state dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"Checkpoint '{path}': entries {bad[:5]} are not tensors; expected a state dict of tensors "
            f"(is this a det_dcn or converted checkpoint? see tools/convert_weights.py)"
        )
    return state


def _strip_prefix(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


class DetectionCheckpointer:
    """Saves and loads a model plus any objects with ``state_dict`` / ``load_state_dict`` (optimizer, ...).

    Args:
        model: the model (a DistributedDataParallel wrapper is unwrapped).
        save_dir: folder of the checkpoints and the ``last_checkpoint`` tag ("" = cannot save).
        save_to_disk: whether this process writes files; default: only the main process.
        trainer: an object with ``state_dict`` / ``load_state_dict`` whose state is stored at the top level of
            the file (the trainer: iteration, optimizer, scheduler, RNG states); its ``state_dict`` may be a
            collective, so ``save`` must then be called on every rank.
        **checkpointables: other objects stored under their names, e.g. ``optimizer=..., scheduler=...``.
    """

    def __init__(self, model: nn.Module, save_dir: str = "", *, save_to_disk: Optional[bool] = None,
                 trainer: Any = None, **checkpointables: Any):
        self.model = _unwrap(model)
        self.trainer = trainer
        self.save_dir = save_dir
        self.save_to_disk = comm.is_main_process() if save_to_disk is None else save_to_disk
        for name, obj in checkpointables.items():
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise TypeError(f"Checkpointable '{name}' ({type(obj).__name__}) has no state_dict/load_state_dict")
        self.checkpointables = dict(checkpointables)
        self.logger = logging.getLogger(__name__)

    # ------------------------------------------------------------------------------------------------ saving
    def save(self, name: str, **extra: Any) -> Optional[str]:
        """Write ``save_dir/name.pth`` atomically and point ``last_checkpoint`` at it; returns the path.

        ``extra`` (e.g. ``iteration=4999``) is stored alongside. Processes other than the main one return None.
        A full disk raises CheckpointSaveError (ENOSPC) naming the folder and the bytes needed; the previous
        checkpoint and ``last_checkpoint`` are left as they were.
        """
        run_state = self.trainer.state_dict() if self.trainer is not None else {}  # on every rank: may gather
        if not self.save_to_disk:
            return None
        if not self.save_dir:
            raise ValueError("DetectionCheckpointer.save: save_dir is empty; set OUTPUT_DIR to save checkpoints")
        os.makedirs(self.save_dir, exist_ok=True)
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        for source in (run_state, extra):
            clash = set(source) & set(data)
            if clash:
                raise ValueError(f"DetectionCheckpointer.save: keys {sorted(clash)} are given twice")
            data.update(source)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        try:
            atomic_torch_save(data, path)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            previous = self.get_checkpoint_file()
            kept = f"the previous checkpoint '{previous}' is kept" if previous else "no earlier checkpoint exists"
            raise CheckpointSaveError(
                errno.ENOSPC, f"Cannot save checkpoint '{path}' in the output folder '{self.save_dir}': "
                f"{e.strerror}; {kept}. Free space (or set OUTPUT_DIR elsewhere), then continue with --resume."
            ) from None
        self.tag_last_checkpoint(basename)
        self.logger.info(f"Saved checkpoint to {path}")
        return path

    def tag_last_checkpoint(self, basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, LAST_CHECKPOINT_TAG), basename, fsync=True)

    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and os.path.exists(os.path.join(self.save_dir, LAST_CHECKPOINT_TAG))

    def get_checkpoint_file(self) -> str:
        """Path of the checkpoint ``last_checkpoint`` names; "" when there is none."""
        tag = os.path.join(self.save_dir, LAST_CHECKPOINT_TAG)
        try:
            with open(tag, "r", encoding="utf-8") as f:
                last = f.read().strip()
        except FileNotFoundError:
            return ""
        if not last:
            raise ValueError(f"'{tag}' is empty; expected the file name of the newest checkpoint")
        return os.path.join(self.save_dir, last)

    def list_checkpoints(self) -> List[Tuple[int, str]]:
        """(iteration, path) of the periodic checkpoints ``<prefix>_<7 digits>.pth`` in save_dir, oldest first."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        found = []
        for name in os.listdir(self.save_dir):
            m = _PERIODIC_NAME.match(name)
            if m:
                found.append((int(m.group(2)), os.path.join(self.save_dir, name)))
        return sorted(found)

    def _read_newest_loadable(self) -> Tuple[str, Any]:
        """The checkpoint ``last_checkpoint`` names, or, when it cannot be read, the newest other one that can
        (warning naming both). Raises naming the unreadable file when none can be read."""
        newest = self.get_checkpoint_file()
        try:
            return newest, read_checkpoint(newest)
        except (ValueError, FileNotFoundError) as e:
            problem = str(e)
        final = os.path.join(self.save_dir, "model_final.pth")
        candidates = [p for _, p in self.list_checkpoints()] + ([final] if os.path.isfile(final) else [])
        candidates = sorted((p for p in candidates if os.path.abspath(p) != os.path.abspath(newest)),
                            key=os.path.getmtime, reverse=True)
        for path in candidates:
            try:
                checkpoint = read_checkpoint(path)
            except ValueError:
                continue
            if isinstance(checkpoint, dict) and "iteration" in checkpoint:
                self.logger.warning(f"Cannot resume from the newest checkpoint: {problem}. Resuming from the "
                                    f"newest one that loads instead: '{path}'")
                return path, checkpoint
        raise ValueError(f"Cannot resume: {problem}; no other checkpoint in '{self.save_dir}' loads. Delete "
                         f"'{os.path.join(self.save_dir, LAST_CHECKPOINT_TAG)}' to start from MODEL.WEIGHTS instead")

    # ----------------------------------------------------------------------------------------------- loading
    def resume_or_load(self, path: str, *, resume: bool = True, ema: bool = False) -> Dict[str, Any]:
        """Resume from ``last_checkpoint`` (model and all checkpointables) when ``resume`` and one exists; else
        load only the model weights from ``path`` ("" = nothing). Returns the checkpoint's other entries
        (e.g. ``iteration``), {} when nothing was loaded. Resuming restores the trainer too (``trainer=``).
        ``ema``: the model gets the file's averaged weights (for inference; see ``load``)."""
        if resume and self.has_checkpoint():
            path, checkpoint = self._read_newest_loadable()
            remaining = self._apply(checkpoint, path, None, ema)
            if self.trainer is not None:
                try:
                    self.trainer.load_state_dict(remaining)
                except KeyError as e:
                    raise ValueError(f"Checkpoint '{path}': {e.args[0]}") from None
            return remaining
        if resume:
            self.logger.info(f"No checkpoint to resume from in '{self.save_dir}'; starting from MODEL.WEIGHTS")
        if not path:
            return {}
        return self.load(path, checkpointables=[], ema=ema)

    def load(self, path: str, checkpointables: Optional[List[str]] = None, ema: bool = False) -> Dict[str, Any]:
        """Load model weights (tolerantly, see the module docstring) and the named checkpointables from ``path``.

        Args:
            checkpointables: names to restore; None = all that are in the file (resume), [] = model only.
            ema: load the averaged weights (``"model_ema"``, MODEL_EMA) into the model instead of ``"model"``;
                ValueError naming the file when it has none.
        Returns the file's entries that were not consumed (e.g. ``iteration``); the load report is in
        ``self.last_load_report``.
        """
        if not path:
            raise ValueError("DetectionCheckpointer.load: empty path")
        foreign = foreign_weights_message(path)
        if foreign:
            raise ValueError(foreign)
        return self._apply(read_checkpoint(path), path, checkpointables, ema)

    def _apply(self, checkpoint: Any, path: str, checkpointables: Optional[List[str]],
               ema: bool = False) -> Dict[str, Any]:
        what = "the averaged weights (MODEL_EMA) of checkpoint" if ema else "checkpoint from"
        self.logger.info(f"Loading {what} {path}")
        self.last_load_report = self._load_model(_extract_model_state(checkpoint, path, ema), path)
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:
            return {}
        remaining = {k: v for k, v in checkpoint.items() if k != "model"}
        names = list(self.checkpointables) if checkpointables is None else checkpointables
        for name in names:
            if name not in self.checkpointables:
                raise KeyError(f"'{name}' is not a checkpointable of this checkpointer: {sorted(self.checkpointables)}")
            if name in remaining:
                self.logger.info(f"Loading {name} from {path}")
                self.checkpointables[name].load_state_dict(remaining.pop(name))
            elif checkpointables is not None:
                raise KeyError(f"Checkpoint '{path}' has no '{name}' entry; it has {sorted(checkpoint)}")
        for name in self.checkpointables:
            remaining.pop(name, None)
        return remaining

    def _load_model(self, state: Dict[str, torch.Tensor], path: str) -> LoadReport:
        state = _strip_prefix(state, "module.")
        model_state = self.model.state_dict()
        report = LoadReport()
        to_load = {}
        for key, value in state.items():
            if key not in model_state:
                report.unexpected_keys.append(key)
            elif tuple(value.shape) != tuple(model_state[key].shape):
                report.mismatched_keys.append((key, tuple(value.shape), tuple(model_state[key].shape)))
            else:
                to_load[key] = value
        report.loaded_keys = sorted(to_load)
        # num_batches_tracked is a BN counter no model relies on; FrozenBN checkpoints omit it.
        report.missing_keys = sorted(
            k for k in model_state if k not in state and not k.endswith("num_batches_tracked")
        )
        incompatible = self.model.load_state_dict(to_load, strict=False)
        # load_state_dict may reject keys that _load_from_state_dict hooks consume differently; report those too.
        extra_missing = set(incompatible.missing_keys) - set(report.missing_keys) - {k for k, _, _ in
                                                                                   report.mismatched_keys}
        report.missing_keys += sorted(k for k in extra_missing if not k.endswith("num_batches_tracked"))
        self._log_report(report, path)
        return report

    def _log_report(self, report: LoadReport, path: str) -> None:
        log = self.logger
        log.info(f"Loaded {len(report.loaded_keys)} tensors from '{path}'")
        if report.mismatched_keys:
            lines = "\n".join(f"  {k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in report.mismatched_keys)
            log.warning(f"Skipped {len(report.mismatched_keys)} tensors whose shape differs from the model:\n{lines}")
        if report.missing_keys:
            log.warning(
                f"{len(report.missing_keys)} model tensors are not in the checkpoint (left as initialised):\n"
                + "\n".join(f"  {k}" for k in _group_keys(report.missing_keys))
            )
        if report.unexpected_keys:
            log.warning(
                f"{len(report.unexpected_keys)} checkpoint tensors are not used by the model:\n"
                + "\n".join(f"  {k}" for k in _group_keys(report.unexpected_keys))
            )


def _group_keys(keys: List[str]) -> List[str]:
    """["a.b.weight", "a.b.bias", "c"] -> ["a.b.{bias, weight}", "c"]: one line per module in the report."""
    groups: Dict[str, List[str]] = {}
    for key in sorted(keys):
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, []).append(leaf)
    lines = []
    for prefix, leaves in groups.items():
        if not prefix:
            lines.extend(leaves)
        elif len(leaves) == 1:
            lines.append(f"{prefix}.{leaves[0]}")
        else:
            lines.append(f"{prefix}.{{{', '.join(leaves)}}}")
    return lines
