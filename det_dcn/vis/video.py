"""Reading and writing video files frame by frame with OpenCV (for tools/demo.py --video-input)."""

import os
from typing import Iterator, Tuple

import cv2
import numpy as np


class VideoReader:
    """Frames of a video file as [H, W, 3] uint8 BGR arrays.

    Raises ValueError naming the file when OpenCV cannot open it. ``len()`` is the frame count the container
    reports (it can be 0 or approximate for some formats; iteration stops at the real end).
    """

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise ValueError(f"Video file '{path}' does not exist")
        self.path = path
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            self._cap.release()
            raise ValueError(f"Video file '{path}' cannot be opened by OpenCV (not a video, or an unsupported codec)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 25.0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._count = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    return
                yield frame
        finally:
            self._cap.release()


class VideoWriter:
    """Writes [H, W, 3] uint8 BGR frames to ``path`` (the extension picks the container: .mp4 -> mp4v, .avi -> MJPG).

    The file is written under a temporary name and renamed on ``close()``, so a crash never leaves a truncated file
    under the final name.
    """

    _CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}

    def __init__(self, path: str, fps: float, frame_size: Tuple[int, int]):
        ext = os.path.splitext(path)[1].lower()
        if ext not in self._CODECS:
            raise ValueError(f"Video output '{path}': extension must be one of {sorted(self._CODECS)}, got '{ext}'")
        self.path = path
        self._tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp{ext}")
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))  # (width, height)
        fourcc = cv2.VideoWriter_fourcc(*self._CODECS[ext])
        self._writer = cv2.VideoWriter(self._tmp, fourcc, float(fps), self.frame_size)
        if not self._writer.isOpened():
            raise ValueError(f"Cannot write video '{path}' with codec {self._CODECS[ext]} (OpenCV build lacks it?)")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.frame_size:
            frame = cv2.resize(frame, self.frame_size)
        self._writer.write(frame)

    def close(self) -> None:
        self._writer.release()
        os.replace(self._tmp, self.path)
