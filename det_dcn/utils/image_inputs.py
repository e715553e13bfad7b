"""Turning command-line inputs (paths, globs, folders) into image files, and reading images with clear errors."""

import glob
import os
from typing import List, Sequence, Tuple

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2")


def expand_inputs(entries: Sequence[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Expand ``entries`` into a list of files, in the order given, without duplicates.

    - an existing file is taken as is (even without an image extension: reading it decides);
    - a folder gives its files with an image extension (sorted, not recursive);
    - anything else is treated as a glob pattern (``*``, ``?``, ``[]``, ``**`` recursive), matches sorted.
    Returns (files, problems) where problems are (entry, reason) for entries that gave no file.
    """
    files, problems, seen = [], [], set()

    def add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for entry in entries:
        if os.path.isfile(entry):
            add(entry)
        elif os.path.isdir(entry):
            found = sorted(
                os.path.join(entry, n) for n in os.listdir(entry)
                if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
                and os.path.isfile(os.path.join(entry, n))
            )
            if not found:
                problems.append((entry, f"folder has no files with an image extension {IMAGE_EXTENSIONS}"))
            for f in found:
                add(f)
        elif glob.has_magic(entry):
            found = sorted(p for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append((entry, "pattern matches no file"))
            for f in found:
                add(f)
        else:
            problems.append((entry, "no such file or folder"))
    return files, problems


def read_image(path: str) -> np.ndarray:
    """Read ``path`` as an [H, W, 3] uint8 BGR image (grey and 16-bit images are converted).

    Raises ValueError naming the file when it is not a readable image.
    """
    if not os.path.isfile(path):
        raise ValueError(f"Image '{path}' does not exist or is not a file")
    # imdecode on the bytes instead of imread: works for any path encoding and never half-reads.
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"Image '{path}' is empty (0 bytes)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"Image '{path}' cannot be decoded: not an image, or a corrupt / unsupported file")
    return image
