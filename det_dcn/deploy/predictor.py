"""OnnxPredictor: DefaultPredictor's call on an exported ONNX detector, with numpy and onnxruntime only (no torch)."""

import json
import os
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np

from .metadata import METADATA_PREFIX, PRECISION_KEY

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
        threads: onnxruntime's intra-op threads (0: its default, one per core).
        profile: record onnxruntime's per-node profile (read it with :meth:`op_times`).
    """

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None, threads: int = 0, profile: bool = False):
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(_INSTALL_HINT) from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime warns about unused initialisers otherwise
        options.intra_op_num_threads = threads
        options.enable_profiling = profile
        options.profile_file_prefix = os.path.join(tempfile.gettempdir(), "det_dcn_onnxruntime_profile")
        try:
            self.session = onnxruntime.InferenceSession(
                path, options, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:
            raise ValueError(f"OnnxPredictor: cannot load '{path}' as an ONNX model ({type(e).__name__}: {e})") from e
        self.path = path
        self.metadata: Dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        key = f"{METADATA_PREFIX}input_format"
        self.input_format = self.metadata.get(key)
        if self.input_format not in ("BGR", "RGB"):
            raise ValueError(f"OnnxPredictor: '{path}' has metadata {key}={self.input_format!r}, expected 'BGR' or "
                             f"'RGB'; was it written by det_dcn's exporter (tools/export.py)?")
        self.precision = self.metadata.get(PRECISION_KEY, "fp32")  # "int8": det_dcn.deploy.quantize
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, original_image: np.ndarray) -> Dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.input_name: model_input(original_image, self.input_format)})
        return dict(zip(self.output_names, outputs))

    def op_times(self) -> List[Dict[str, float]]:
        """Ends the profile (``profile=True``) and returns, per ONNX operator type, the kernel time per call of the
        predictor: ``[{"op": "Conv", "ms": 812.0, "share": 0.86, "nodes": 76}, ...]``, largest first."""
        if not self.session.get_session_options().enable_profiling:
            raise RuntimeError("OnnxPredictor.op_times needs OnnxPredictor(path, profile=True)")
        trace = self.session.end_profiling()
        try:
            with open(trace, encoding="utf-8") as f:
                return op_times_from_trace(json.load(f))
        finally:
            os.remove(trace)


def model_input(original_image: np.ndarray, input_format: str) -> np.ndarray:
    """What an exported file is fed for a BGR image: the ``HxWx3`` uint8 array in ``input_format`` ("BGR" / "RGB"),
    contiguous. Shared by OnnxPredictor and the int8 calibration (det_dcn.deploy.quantize)."""
    if not isinstance(original_image, np.ndarray):
        raise TypeError(f"OnnxPredictor expects a numpy HxWx3 uint8 BGR image, got {type(original_image).__name__}")
    if original_image.ndim != 3 or original_image.shape[2] != 3:
        raise ValueError(f"OnnxPredictor expects an HxWx3 BGR image, got shape {original_image.shape}")
    if original_image.dtype != np.uint8:
        raise ValueError(f"OnnxPredictor expects a uint8 image, got dtype {original_image.dtype}")
    return np.ascontiguousarray(original_image[:, :, ::-1] if input_format == "RGB" else original_image)


def op_times_from_trace(events: List[dict]) -> List[Dict[str, float]]:
    """Aggregate an onnxruntime profile (its JSON list of trace events) per operator type; see OnnxPredictor.op_times.

    A node's kernel event is named ``<node>_kernel_time`` with ``args.op_name``; ``model_run`` events count the calls.
    """
    runs = sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if runs == 0:
        raise ValueError("the onnxruntime profile has no model_run event: the session was never run")
    total_us: Dict[str, float] = {}
    nodes: Dict[str, set] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"]["op_name"]
            total_us[op] = total_us.get(op, 0.0) + e["dur"]
            nodes.setdefault(op, set()).add(e["name"])
    all_us = sum(total_us.values()) or 1.0
    rows = [{"op": op, "ms": us / runs / 1000, "share": us / all_us, "nodes": len(nodes[op])}
            for op, us in total_us.items()]
    return sorted(rows, key=lambda r: -r["ms"])
