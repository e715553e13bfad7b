"""DefaultPredictor: one image in (as cv2.imread gives it), detections in that image's pixels out."""

import contextlib
import logging
from typing import Dict

import numpy as np
import torch

from det_dcn.checkpoint import DetectionCheckpointer

from .model_ema import use_ema_weights

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: CUDA's check, or on the CPU AVX512-BF16 or AMX (without them
    oneDNN emulates bfloat16, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(check is not None and check() for check in checks)


def precision_context(precision: str, device_type: str):
    """The context a model of ``precision`` runs in: bfloat16 autocast for "bf16" (its weights channels-last: oneDNN's
    bfloat16 convolutions are several times faster in NHWC than NCHW), nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"DefaultPredictor: precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and not native_bf16(device):
        from .env_info import cpu_model

        what = f"CPU '{cpu_model()}' (torch kernels {torch.backends.cpu.get_cpu_capability()})" \
            if device.type == "cpu" else f"device {device}"
        raise RuntimeError(f"DefaultPredictor(precision='bf16'): the {what} has no bfloat16 instructions "
                           f"(AVX512-BF16 or AMX on a CPU); bfloat16 would be emulated, slower than float32. "
                           f"Use precision='fp32'.")


class DefaultPredictor:
    """Builds the model from ``cfg``, loads ``MODEL.WEIGHTS`` (its averaged weights with MODEL_EMA, see
    ``use_ema_weights``) and runs it in eval mode on single images.

    ``predictor(image)`` takes an ``HxWx3`` uint8 BGR array (what ``cv2.imread`` returns), converts it to
    ``INPUT.FORMAT``, and returns ``{"boxes": [K, 4] float XYXY, "scores": [K], "classes": [K] int64}`` on the CPU,
    with boxes in the given image's pixels. Resizing to ``INPUT.MIN_SIZE_TEST`` happens inside the model; with
    TEST.AUG.ENABLED a call runs the test-time augmentation of TEST.AUG instead (``runner``, a GeneralizedRCNNWithTTA
    around ``model``; ``model`` stays the detector, which is what export and the offset tools use).

    ``precision="bf16"`` runs the model under bfloat16 autocast with channels-last weights (where the device has
    bfloat16 instructions, else RuntimeError): convolutions and linear layers in bfloat16, the deformable ops, box
    decoding and NMS in float32 (det_dcn.layers compute in float32 under autocast); outputs stay float32.
    """

    def __init__(self, cfg, precision: str = "fp32"):
        from det_dcn.modeling import build_model

        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if cfg.MODEL.WEIGHTS:
            DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS, ema=use_ema_weights(cfg))
        else:
            logger.warning("MODEL.WEIGHTS is empty: the predictor runs a randomly initialised model")
        # ``model`` stays the detector (what tools export and inspect); ``runner`` is what a call runs
        self.runner = self.model
        if cfg.TEST.AUG.ENABLED:
            from det_dcn.modeling.test_time_augmentation import GeneralizedRCNNWithTTA

            self.runner = GeneralizedRCNNWithTTA.from_config(cfg, self.model).eval()
            logger.info(f"Test-time augmentation: {self.runner.describe()}")
        self.input_format = cfg.INPUT.FORMAT
        self.device = next(self.model.parameters()).device
        _check_precision(precision, self.device)
        self.precision = precision
        if precision == "bf16":
            self.model.to(memory_format=torch.channels_last)  # see precision_context

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
        with torch.inference_mode(), precision_context(self.precision, self.device.type):
            output = self.runner([{"image": tensor, "height": height, "width": width}])[0]
        return {"boxes": output["boxes"].float().cpu(), "scores": output["scores"].float().cpu(),
                "classes": output["classes"].cpu()}
