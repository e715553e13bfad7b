"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A reader, a crash or a kill never sees a half-written checkpoint, result file or picture under the final name; on
failure the temporary file is removed and the previous file (if any) is left as it was. Every det_dcn writer of
checkpoints, configs, JSON results and pictures goes through :func:`atomic_open`.
"""

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on a clean exit it is renamed to ``path``.

    ``mode`` is "w" (text, UTF-8) or "wb". ``fsync`` flushes to disk before the rename (checkpoints), so a power
    loss cannot leave an empty file under the final name either.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    # mkstemp gives a unique name, so concurrent writers of the same path never share a temporary file.
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs should be readable like any other file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str, fsync: bool = False) -> None:
    with atomic_open(path, "w", fsync=fsync) as f:
        f.write(text)


def _dumps_one_key_per_line(obj: Any) -> str:
    """JSON with one top-level key per line (compact values): readable, yet short for long box lists."""
    if not isinstance(obj, dict):
        return json.dumps(obj)
    items = [f" {json.dumps(str(k))}: {json.dumps(v)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n}"


def atomic_write_json(path: str, obj: Any, compact: bool = False) -> None:
    """Write ``obj`` as JSON; a dict gets one top-level key per line unless ``compact`` (large result lists)."""
    text = json.dumps(obj) if compact else _dumps_one_key_per_line(obj)
    atomic_write_text(path, text + "\n")


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` through a temporary file, flushed to disk before the rename."""
    import torch

    with atomic_open(path, "wb", fsync=True) as f:
        torch.save(obj, f)


def atomic_imwrite(path: str, image: np.ndarray) -> None:
    """Encode ``image`` ([H, W, 3] uint8 BGR) with the format of ``path``'s extension and write it atomically.

    Raises ValueError naming the file when OpenCV cannot encode that format.
    """
    import cv2

    ext = os.path.splitext(path)[1].lower()
    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"Cannot encode image '{path}' as '{ext}' with OpenCV")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())


def ensure_output_dir(path: str, what: str = "--output") -> str:
    """Create the folder ``path`` (and its parents) or raise ValueError saying why it cannot hold outputs: it is a
    file, it lies under a file, or it is not writable. Tools call this before loading a model, so a wrong output
    location costs nothing. Returns ``path``."""
    if not path:
        raise ValueError(f"{what} is empty; give a folder for the outputs")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} '{path}' is a file, not a folder; give a folder (it is created if missing)")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{what} '{path}' cannot be created: '{parent}' is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} '{path}' is not writable: no write permission in '{parent}'")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{what} '{path}' cannot be created: {e.strerror or e}") from e
    return path
