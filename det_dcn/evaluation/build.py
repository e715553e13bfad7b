"""build_evaluator: the evaluator of a test dataset, by the config key TEST.EVALUATOR or the dataset's metadata."""

from typing import Optional

from det_dcn.config.config import ConfigError
from det_dcn.data import MetadataCatalog

from .coco_evaluation import COCOEvaluator
from .evaluator import DatasetEvaluator
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator

# "auto": the dataset's metadata "evaluator_type" decides ("pascal_voc" -> VOC rules, anything else -> COCO's).
EVALUATOR_CHOICES = ("auto", "coco", "pascal_voc")


def check_evaluator_choice(cfg) -> str:
    """TEST.EVALUATOR, or ConfigError naming the key, the value and the allowed values."""
    value = cfg.TEST.EVALUATOR
    if value not in EVALUATOR_CHOICES:
        raise ConfigError(f"TEST.EVALUATOR={value!r} is not one of {list(EVALUATOR_CHOICES)}")
    return value


def build_evaluator(cfg, dataset_name: str, output_dir: Optional[str] = None) -> DatasetEvaluator:
    """COCOEvaluator or PascalVOCDetectionEvaluator for ``dataset_name``, as TEST.EVALUATOR says."""
    kind = check_evaluator_choice(cfg)
    meta = MetadataCatalog.get(dataset_name)
    if kind == "auto":
        kind = "pascal_voc" if meta.get("evaluator_type") == "pascal_voc" else "coco"
    boot = dict(bootstrap_samples=cfg.TEST.BOOTSTRAP.NUM_SAMPLES, bootstrap_confidence=cfg.TEST.BOOTSTRAP.CONFIDENCE)
    if kind == "pascal_voc":
        return PascalVOCDetectionEvaluator(dataset_name, output_dir=output_dir, **boot)
    return COCOEvaluator(dataset_name, output_dir=output_dir, **boot)
