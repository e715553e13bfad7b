"""The exported detector's contract, shared by the exporter (torch side) and OnnxPredictor (numpy side only)."""

METADATA_PREFIX = "det_dcn."
CONTRACT = (
    "Input 'image': uint8 [H, W, 3], any H and W, channels in the metadata's input_format (BGR: what cv2.imread "
    "returns). Resize to min_size_test / max_size_test, normalisation, detection and the mapping back to the input's "
    "pixels happen inside. Outputs: 'boxes' float32 [N, 4] (x1, y1, x2, y2 in input pixels), 'scores' float32 [N], "
    "'classes' int64 [N] in [0, num_classes), by decreasing score: the same as det_dcn's DefaultPredictor."
)
# Written by det_dcn.deploy.quantize into an int8 file; a file without them is float32 (det_dcn.deploy.export_onnx).
PRECISION_KEY = f"{METADATA_PREFIX}precision"  # "fp32" or "int8"
CALIBRATION_KEY = f"{METADATA_PREFIX}calibration"  # JSON: {"count", "dataset", "method", ...}
