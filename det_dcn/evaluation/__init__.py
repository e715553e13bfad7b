"""Evaluation: COCOEvaluator (COCO box AP, pycocotools' exact numbers, vectorised), inference_on_dataset,
print_csv_format; ``evaluate_boxes`` evaluates column-wise detections against a ``GroundTruth`` directly."""

from .coco_evaluation import COCOEvaluator
from .coco_protocol import EvalResult
from .coco_tables import Detections, GroundTruth
from .evaluator import DatasetEvaluator, inference_context, inference_on_dataset, print_csv_format
from .fast_cocoeval import evaluate_boxes

__all__ = ["COCOEvaluator", "DatasetEvaluator", "Detections", "EvalResult", "GroundTruth", "evaluate_boxes",
           "inference_context", "inference_on_dataset", "print_csv_format"]
