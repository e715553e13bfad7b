"""Checkpoints: DetectionCheckpointer (save / resume / tolerant load); function-preserving widening."""

from .checkpointer import CheckpointSaveError, DetectionCheckpointer, LoadReport, read_checkpoint
from .widen import widen_checkpoint, widen_state_dict

__all__ = ["CheckpointSaveError", "DetectionCheckpointer", "LoadReport", "read_checkpoint", "widen_checkpoint",
           "widen_state_dict"]
