"""int8 ONNX detectors: onnxruntime's static quantization (QDQ, calibrated on training images) of an exported file.

The fp32 file of det_dcn.deploy.export_onnx is folded by onnxruntime's quantization pre-processing (FrozenBN's
Mul / Add into the convolutions, constant folding), then ``onnxruntime.quantization.quantize_static`` inserts
QuantizeLinear / DequantizeLinear pairs (default ONNX domain) around the convolutions and the box head's fully
connected layers; onnxruntime fuses them into int8 kernels when it loads the file. Everything else stays float32:
deformable convolutions (``DeformConv``) and the layers that predict their offsets, RoiAlign and the deformable RoI
pooling's offset / mask layers, the RPN's objectness and box-delta layers, the box predictor and everything after
it (box decoding, NMS): they output positions or final scores, where 8 bits would move boxes, and cost little.
The file keeps the export contract (one uint8 image in, boxes / scores / classes out); OnnxPredictor runs it.
"""

import json
import logging
import os
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..utils.atomic_io import atomic_open
from .metadata import CALIBRATION_KEY, METADATA_PREFIX, PRECISION_KEY
from .predictor import model_input

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")
# Layers (by their weight's parameter name) that stay float32: they predict sampling positions (DCN offsets,
# deformable RoI pooling offsets and masks) or final scores / box deltas.
FLOAT_LAYERS = ("conv_offset", "offset_fc", "mask_fc", "box_predictor", "rpn_head.objectness_logits",
                "rpn_head.anchor_deltas")
# minmax keeps two numbers per tensor; percentile and entropy keep every activation of every calibration image in
# memory (gigabytes at COCO size: use a few images)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIBRATION_IMAGES = 100
_INSTALL_HINT = "int8 export needs onnx and onnxruntime: pip install onnx onnxruntime (or pip install -e '.[export]')"


def calibration_files(cfg, count: int) -> List[str]:
    """``count`` image files of the config's DATASETS.TRAIN, evenly spaced over the dataset (all if it has fewer)."""
    from ..data.build import get_detection_dataset_dicts, register_custom_from_cfg

    if count < 1:
        raise ValueError(f"--calibration-images must be >= 1, got {count}")
    if not cfg.DATASETS.TRAIN:
        raise ValueError("int8 calibration reads DATASETS.TRAIN, which is empty; set it to the training set")
    register_custom_from_cfg(cfg)
    dicts = get_detection_dataset_dicts(list(cfg.DATASETS.TRAIN), filter_empty=False)
    picks = np.unique(np.linspace(0, len(dicts) - 1, min(count, len(dicts))).round().astype(int))
    return [dicts[i]["file_name"] for i in picks]


class ImageCalibrationReader:
    """onnxruntime's CalibrationDataReader over image files: each is read as BGR and fed as OnnxPredictor feeds it
    (det_dcn.deploy.predictor.model_input). Unreadable files raise BadDataError naming the file."""

    def __init__(self, files: Sequence[str], input_name: str, input_format: str):
        self.files, self.input_name, self.input_format = list(files), input_name, input_format
        self._next = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        from ..data.detection_utils import read_image

        if self._next >= len(self.files):
            return None
        self._next += 1
        image = read_image(self.files[self._next - 1], "BGR")
        return {self.input_name: model_input(image, self.input_format)}

    def rewind(self) -> None:
        self._next = 0


def layers_to_quantize(proto) -> List[str]:
    """Names of the nodes of ``proto`` (an ONNX ModelProto) to quantize: Conv / Gemm / MatMul whose weight (an
    initialiser named after the model's parameter) is not one of FLOAT_LAYERS'."""
    initializers = {t.name for t in proto.graph.initializer}
    names = []
    for node in proto.graph.node:
        if node.op_type not in QUANTIZED_OP_TYPES:
            continue
        weights = [i for i in node.input[1:2] if i in initializers]
        if weights and not any(layer in weights[0] for layer in FLOAT_LAYERS):
            names.append(node.name)
    return names


def quantize_onnx(fp32_path: str, output: str, files: Sequence[str], dataset: str, method: str = "minmax") -> None:
    """Write the int8 (QDQ) form of the fp32 detector ``fp32_path`` to ``output``, calibrated on image ``files``.

    Activations uint8, weights int8 per output channel (onnxruntime's recommended pair on x86). ``output`` is
    written atomically: a failure leaves no file (and the previous one, if any, as it was).
    """
    try:
        import onnx
        from onnxruntime import quantization as q
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} (missing: {e.name})") from None
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if not files:
        raise ValueError("int8 quantization needs at least one calibration image")
    fp32 = onnx.load(fp32_path)
    metadata = {p.key: p.value for p in fp32.metadata_props}
    input_format = metadata.get(f"{METADATA_PREFIX}input_format")
    if input_format not in ("BGR", "RGB"):
        raise ValueError(f"'{fp32_path}' has no det_dcn metadata (input_format {input_format!r}); quantize a file "
                         f"written by det_dcn's exporter (tools/export.py)")
    if metadata.get(PRECISION_KEY, "fp32") != "fp32":
        raise ValueError(f"'{fp32_path}' is already {metadata[PRECISION_KEY]}; quantize the fp32 export")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="det_dcn_int8_") as folder:
        folded = os.path.join(folder, "folded.onnx")
        # onnxruntime's basic graph optimisations (FrozenBN folded into Conv, constants folded), no symbolic shape
        # inference (the graph's sizes depend on the image and the detections)
        quant_pre_process(fp32_path, folded, skip_symbolic_shape=True)
        quantized = os.path.join(folder, "int8.onnx")
        nodes = layers_to_quantize(onnx.load(folded))
        logger.info("Calibrating %d layers on %d images (%s)...", len(nodes), len(files), method)
        q.quantize_static(
            folded, quantized, ImageCalibrationReader(files, fp32.graph.input[0].name, input_format),
            quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OP_TYPES), nodes_to_quantize=nodes,
            per_channel=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
            calibrate_method={"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
                              "entropy": q.CalibrationMethod.Entropy}[method])
        proto = onnx.load(quantized)
    metadata[PRECISION_KEY] = "int8"
    metadata[CALIBRATION_KEY] = json.dumps({"count": len(files), "dataset": dataset, "method": method,
                                            "quantized_layers": len(nodes), "format": "QDQ U8S8 per-channel"})
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_open(output, "wb", fsync=True) as f:
        f.write(proto.SerializeToString())
    logger.info("Wrote %s (int8, %.1f MB) in %.1f s", output, proto.ByteSize() / 2**20, time.perf_counter() - start)


def export_int8(cfg, output: str, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                opset_version: Optional[int] = None, method: str = "minmax"):
    """Export ``cfg``'s model (MODEL.WEIGHTS) to fp32 ONNX in a temporary folder, then quantize it into ``output``
    calibrated on ``calibration_images`` images of DATASETS.TRAIN. Returns the exported (float) model."""
    from .build import export_model
    from .export import DEFAULT_OPSET

    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ValueError(f"output '{output}': folder '{folder}' does not exist")
    files = calibration_files(cfg, calibration_images)  # a wrong dataset fails before the minutes of export
    with tempfile.TemporaryDirectory(prefix="det_dcn_fp32_") as folder:
        fp32_path = os.path.join(folder, "fp32.onnx")
        model = export_model(cfg, fp32_path, "onnx", opset_version or DEFAULT_OPSET)
        quantize_onnx(fp32_path, output, files, ",".join(cfg.DATASETS.TRAIN), method)
    return model
