"""OnnxPredictor: DefaultPredictor's call on an exported ONNX detector, with numpy and onnxruntime only (no torch)."""

from typing import Dict, Optional, Sequence

import numpy as np

from .metadata import METADATA_PREFIX

_INSTALL_HINT = "OnnxPredictor needs onnxruntime: pip install onnxruntime (or pip install -e '.[export]')"


class OnnxPredictor:
    """Runs a file written by ``tools/export.py`` (det_dcn.deploy.export_onnx) on single images.

    ``predictor(image)`` takes an ``HxWx3`` uint8 BGR array (what ``cv2.imread`` returns), converts it to the file's
    input format (metadata ``det_dcn.input_format``) and returns ``{"boxes": [K, 4] float32 XYXY, "scores": [K]
    float32, "classes": [K] int64}`` as numpy arrays, boxes in the given image's pixels: DefaultPredictor's
    call, without torch.

    Args:
        path: the .onnx file.
        providers: onnxruntime execution providers (default: CPU).
    """

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None):
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(_INSTALL_HINT) from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime warns about unused initialisers otherwise
        try:
            self.session = onnxruntime.InferenceSession(
                path, options, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:
            raise ValueError(f"OnnxPredictor: cannot load '{path}' as an ONNX model ({type(e).__name__}: {e})") from e
        self.metadata: Dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        key = f"{METADATA_PREFIX}input_format"
        self.input_format = self.metadata.get(key)
        if self.input_format not in ("BGR", "RGB"):
            raise ValueError(f"OnnxPredictor: '{path}' has metadata {key}={self.input_format!r}, expected 'BGR' or "
                             f"'RGB'; was it written by det_dcn's exporter (tools/export.py)?")
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, original_image: np.ndarray) -> Dict[str, np.ndarray]:
        if not isinstance(original_image, np.ndarray):
            raise TypeError(f"OnnxPredictor expects a numpy HxWx3 uint8 BGR image, got {type(original_image).__name__}")
        if original_image.ndim != 3 or original_image.shape[2] != 3:
            raise ValueError(f"OnnxPredictor expects an HxWx3 BGR image, got shape {original_image.shape}")
        if original_image.dtype != np.uint8:
            raise ValueError(f"OnnxPredictor expects a uint8 image, got dtype {original_image.dtype}")
        image = original_image[:, :, ::-1] if self.input_format == "RGB" else original_image
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(image)})
        return dict(zip(self.output_names, outputs))
