"""Turning command-line inputs (paths, globs, folders) into image files (read them with det_dcn.data.read_image)."""

import glob
import os
from typing import List, Sequence, Tuple

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
