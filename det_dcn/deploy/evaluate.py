"""Box AP of one detector in several precisions on a dataset: fp32 / bf16 eager (DefaultPredictor) and exported
ONNX files (fp32 or int8, OnnxPredictor), all through det_dcn.evaluation's COCOEvaluator on the same images."""

from typing import Callable, Dict

import numpy as np
import torch
from torch import nn


class PredictorAsModel(nn.Module):
    """``inference_on_dataset``'s model around a predictor (``predictor(bgr HxWx3 uint8) -> {"boxes", "scores",
    "classes"}``, DefaultPredictor's call): test-loader dicts (``"image"`` [3, H, W] uint8 in ``input_format``, at
    the original size) in, one output dict of tensors per image out."""

    def __init__(self, predictor: Callable, input_format: str):
        super().__init__()
        self.predictor, self.input_format = predictor, input_format

    def forward(self, inputs):
        outputs = []
        for item in inputs:
            image = item["image"].permute(1, 2, 0).numpy()
            bgr = np.ascontiguousarray(image[:, :, ::-1] if self.input_format == "RGB" else image)
            outputs.append({k: torch.as_tensor(np.asarray(v)) for k, v in self.predictor(bgr).items()})
        return outputs


def evaluate_predictors(cfg, predictors: Dict[str, Callable], dataset: str) -> Dict[str, dict]:
    """{name: COCO box metrics ({"AP", "AP50", ...} in percent)} of each predictor on ``dataset`` (a registered
    name), every image at its original size as DefaultPredictor takes it."""
    from ..data import build_detection_test_loader
    from ..evaluation import COCOEvaluator, inference_on_dataset

    results = {}
    for name, predictor in predictors.items():
        loader = build_detection_test_loader(cfg, dataset, num_workers=0)
        model = PredictorAsModel(predictor, cfg.INPUT.FORMAT)
        results[name] = inference_on_dataset(model, loader, COCOEvaluator(dataset, distributed=False))["bbox"]
    return results
