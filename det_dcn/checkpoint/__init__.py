"""Checkpoints: DetectionCheckpointer (save / resume / tolerant load)."""

from .checkpointer import DetectionCheckpointer, LoadReport

__all__ = ["DetectionCheckpointer", "LoadReport"]
