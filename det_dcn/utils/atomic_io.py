"""Write result files atomically (temporary file in the same folder, then ``os.replace``), so a reader or a crash
never sees a half-written JSON or picture under the final name."""

import json
import os
import tempfile
from typing import Any

import cv2
import numpy as np


def _dumps(obj: Any) -> str:
    """JSON with one top-level key per line (compact values): readable, yet short for long box lists."""
    if not isinstance(obj, dict):
        return json.dumps(obj)
    items = [f" {json.dumps(str(k))}: {json.dumps(v)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n}"


def atomic_write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a dict gets one top-level key per line)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_dumps(obj) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results should be readable like any other output
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_imwrite(path: str, image: np.ndarray) -> None:
    """Encode ``image`` ([H, W, 3] uint8 BGR) with the format of ``path``'s extension and write it atomically.

    Raises ValueError naming the file when OpenCV cannot encode that format.
    """
    ext = os.path.splitext(path)[1].lower()
    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"Cannot encode image '{path}' as '{ext}' with OpenCV")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results should be readable like any other output
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
