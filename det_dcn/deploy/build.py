"""Export from a config: the model DefaultPredictor runs (MODEL.WEIGHTS loaded), on the CPU, to a file."""

import logging
import os

from .export import DEFAULT_OPSET, export_onnx, export_program, save_program

FORMATS = ("onnx", "torch_export")

logger = logging.getLogger(__name__)


def exported_config(cfg):
    """A copy of ``cfg`` that describes what an exported file computes, so that eager runs compare like with like:
    soft-NMS (TEST.SOFT_NMS), a loop over the data that does not trace, becomes NMS, with a warning."""
    cfg = cfg.clone()
    if cfg.TEST.SOFT_NMS.ENABLED:
        logger.warning("TEST.SOFT_NMS.ENABLED: soft-NMS loops over the data and is not exported; the file runs NMS at "
                       f"MODEL.ROI_HEADS.NMS_THRESH_TEST {cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST} (as evaluation with "
                       "TEST.SOFT_NMS.ENABLED False)")
        cfg.defrost()
        cfg.TEST.SOFT_NMS.ENABLED = False
    return cfg


def export_model(cfg, output: str, fmt: str = "onnx", opset_version: int = DEFAULT_OPSET):
    """Build the eval model of ``cfg`` with its MODEL.WEIGHTS (as DefaultPredictor does) and export it.

    Args:
        fmt: "onnx" (a plain .onnx file, default-domain operators) or "torch_export" (a ``torch.export`` .pt2).
    Returns:
        the model that was exported (eval mode, CPU).
    """
    from ..engine.predictor import DefaultPredictor

    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got '{fmt}'")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ValueError(f"output '{output}': folder '{folder}' does not exist")
    cfg = exported_config(cfg)
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"  # export traces on the CPU; the file runs wherever its runtime does
    if cfg.TEST.AUG.ENABLED:
        logger.warning("TEST.AUG.ENABLED: test-time augmentation is not exported; the file runs the model once, at "
                       f"INPUT.MIN_SIZE_TEST {cfg.INPUT.MIN_SIZE_TEST} (as evaluation's plain 'bbox' result)")
    model = DefaultPredictor(cfg).model
    if fmt == "onnx":
        export_onnx(model, cfg, output, opset_version)
    else:
        save_program(export_program(model, cfg), output)
    return model
