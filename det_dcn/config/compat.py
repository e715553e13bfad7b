"""detectron2 config keys of parts det_dcn does not have: accepted while off, refused at build time when on.

detectron2's config files carry keys of its other heads (Base-RCNN-FPN.yaml has ROI_MASK_HEAD) and switches for
training features det_dcn lacks. defaults.py declares all of them with detectron2's defaults, so such files merge
unchanged; ``check_supported_parts(cfg)`` (called by build_model) raises one line naming the key when a config
turns one of those parts on. Names of registered components (META_ARCHITECTURE, ROI_HEADS.NAME, ...) are checked
by their registries, whose errors list what det_dcn registers.
"""

from typing import Any, Callable, List, Tuple

from .config import ConfigError

# (key, "is it on?", what det_dcn does instead). Only keys whose part det_dcn lacks.
_Check = Tuple[str, Callable[[Any], bool], str]
_PARTS: List[_Check] = [
    ("MODEL.MASK_ON", bool, "det_dcn detects boxes only (Faster R-CNN, no mask head); set MODEL.MASK_ON False"),
    ("MODEL.KEYPOINT_ON", bool, "det_dcn detects boxes only (no keypoint head); set MODEL.KEYPOINT_ON False"),
    ("MODEL.LOAD_PROPOSALS", bool, "det_dcn computes proposals with its RPN (no precomputed proposal files); "
                                   "set MODEL.LOAD_PROPOSALS False"),
    ("MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES", bool, "det_dcn trains the box head on proposals only; set it False"),
    ("MODEL.ROI_BOX_HEAD.USE_FED_LOSS", bool, "det_dcn has the softmax cross-entropy box classifier only; set it False"),
    ("MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", bool, "det_dcn has the softmax cross-entropy box classifier only; "
                                                "set it False"),
    ("SOLVER.REFERENCE_WORLD_SIZE", bool, "det_dcn does not rescale the schedule to the number of processes; set "
                                          "SOLVER.REFERENCE_WORLD_SIZE 0 and SOLVER.IMS_PER_BATCH / BASE_LR yourself"),
    ("TEST.EXPECTED_RESULTS", bool, "det_dcn does not check results against expected values; set "
                                    "TEST.EXPECTED_RESULTS []"),
    ("VIS_PERIOD", bool, "det_dcn has no training-time visualisation (see tools/visualize_offsets.py); set VIS_PERIOD 0"),
    ("FLOAT32_PRECISION", bool, "det_dcn does not set torch's float32 matmul precision; set FLOAT32_PRECISION ''"),
]


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_supported_parts(cfg) -> None:
    """ConfigError (one line: key, value, what det_dcn supports) if ``cfg`` turns on a part det_dcn does not have."""
    for key, is_on, instead in _PARTS:
        value = _get(cfg, key)
        if is_on(value):
            raise ConfigError(f"{key}={value!r} is not supported: {instead}")
