"""det_dcn.deploy: export an eval detector (torch.export .pt2, plain ONNX) and run the ONNX file without torch.

``OnnxPredictor`` needs only numpy and onnxruntime: importing it (or this package) does not import torch. The
exporter (torch side) is loaded on first use of its names.
"""

from .predictor import OnnxPredictor

_EXPORT_NAMES = {
    "export_onnx": ".export", "export_program": ".export", "save_program": ".export", "load_program": ".export", "ExportError": ".export_modules",
    "make_exportable": ".export_modules", "ExportableDetector": ".detector", "export_model": ".build",
}


def __getattr__(name):  # PEP 562: keep torch out of `import det_dcn.deploy`
    if name in _EXPORT_NAMES:
        import importlib

        return getattr(importlib.import_module(_EXPORT_NAMES[name], __name__), name)
    raise AttributeError(f"module 'det_dcn.deploy' has no attribute '{name}'")


__all__ = ["OnnxPredictor", *_EXPORT_NAMES]
