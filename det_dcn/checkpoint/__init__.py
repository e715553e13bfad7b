"""Checkpoints: DetectionCheckpointer (save / resume / tolerant load)."""

from .checkpointer import CheckpointSaveError, DetectionCheckpointer, LoadReport, read_checkpoint

__all__ = ["CheckpointSaveError", "DetectionCheckpointer", "LoadReport", "read_checkpoint"]
