"""DefaultPredictor: one image in (as cv2.imread gives it), detections in that image's pixels out."""

import logging
from typing import Dict

import numpy as np
import torch

from det_dcn.checkpoint import DetectionCheckpointer

logger = logging.getLogger(__name__)


class DefaultPredictor:
    """Builds the model from ``cfg``, loads ``MODEL.WEIGHTS`` and runs it in eval mode on single images.

    ``predictor(image)`` takes an ``HxWx3`` uint8 BGR array (what ``cv2.imread`` returns), converts it to
    ``INPUT.FORMAT``, and returns ``{"boxes": [K, 4] float XYXY, "scores": [K], "classes": [K] int64}`` on the CPU,
    with boxes in the given image's pixels. Resizing to ``INPUT.MIN_SIZE_TEST`` happens inside the model.
    """

    def __init__(self, cfg):
        from det_dcn.modeling import build_model

        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if cfg.MODEL.WEIGHTS:
            DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        else:
            logger.warning("MODEL.WEIGHTS is empty: the predictor runs a randomly initialised model")
        self.input_format = cfg.INPUT.FORMAT
        self.device = next(self.model.parameters()).device

    def __call__(self, original_image: np.ndarray) -> Dict[str, torch.Tensor]:
        if not isinstance(original_image, np.ndarray):
            raise TypeError(
                f"DefaultPredictor expects a numpy HxWx3 uint8 BGR image, got {type(original_image).__name__}"
            )
        if original_image.ndim != 3 or original_image.shape[2] != 3:
            raise ValueError(f"DefaultPredictor expects an HxWx3 BGR image, got shape {original_image.shape}")
        if original_image.dtype != np.uint8:
            raise ValueError(f"DefaultPredictor expects a uint8 image, got dtype {original_image.dtype}")
        height, width = original_image.shape[:2]
        image = original_image[:, :, ::-1] if self.input_format == "RGB" else original_image
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(self.device)
        with torch.inference_mode():
            output = self.model([{"image": tensor, "height": height, "width": width}])[0]
        return {k: output[k].cpu() for k in ("boxes", "scores", "classes")}
