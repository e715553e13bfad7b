"""Evaluation: COCOEvaluator (box AP via pycocotools), inference_on_dataset, print_csv_format."""

from .coco_evaluation import COCOEvaluator
from .evaluator import DatasetEvaluator, inference_context, inference_on_dataset, print_csv_format

__all__ = ["COCOEvaluator", "DatasetEvaluator", "inference_context", "inference_on_dataset", "print_csv_format"]
