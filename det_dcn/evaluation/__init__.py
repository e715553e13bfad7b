"""Evaluation: COCOEvaluator (COCO box AP, pycocotools' exact numbers, vectorised), PascalVOCDetectionEvaluator
(VOC AP), build_evaluator (the one TEST.EVALUATOR picks), inference_on_dataset, print_csv_format; ``evaluate_boxes``
evaluates column-wise detections against a ``GroundTruth`` directly."""

from .build import EVALUATOR_CHOICES, build_evaluator
from .coco_evaluation import COCOEvaluator
from .coco_protocol import EvalResult
from .coco_tables import Detections, GroundTruth
from .evaluator import DatasetEvaluator, inference_context, inference_on_dataset, print_csv_format
from .fast_cocoeval import evaluate_boxes
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator

__all__ = ["COCOEvaluator", "DatasetEvaluator", "Detections", "EVALUATOR_CHOICES", "EvalResult", "GroundTruth",
           "PascalVOCDetectionEvaluator", "build_evaluator", "evaluate_boxes", "inference_context",
           "inference_on_dataset", "print_csv_format"]
