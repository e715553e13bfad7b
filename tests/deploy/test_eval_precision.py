"""det_dcn.deploy.evaluate: box AP of predictors on a dataset, through the test loader and COCOEvaluator. Checked
against known answers: a predictor returning the ground truth scores 100 AP, one returning nothing 0."""

import os
import sys

import numpy as np
import pytest
import torch

from det_dcn.data import DatasetCatalog
from det_dcn.data.builtin import register_all_builtin
from det_dcn.data.shapes import ensure_shapes
from det_dcn.deploy.evaluate import evaluate_predictors
from det_dcn.engine.predictor import native_bf16

from deploy_helpers import REPO, variant_cfg


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    ensure_shapes(str(root / "shapes"), {"train": 2, "val": 6})
    register_all_builtin(str(root))
    yield "shapes_val"
    register_all_builtin()  # back to $DET_DCN_DATASETS for the other tests


def test_ground_truth_scores_100_and_nothing_scores_0(shapes_val):
    cfg = variant_cfg("plain")
    truth = {os.path.basename(d["file_name"]): d for d in DatasetCatalog.get(shapes_val)}
    sizes = {(d["height"], d["width"]): d for d in truth.values()}
    assert len(sizes) == len(truth), "the test needs images of distinct sizes to find their ground truth"
    seen = []

    def oracle(bgr):
        d = sizes[bgr.shape[:2]]
        seen.append(bgr)
        boxes = np.array([a["bbox"] for a in d["annotations"]], np.float32).reshape(-1, 4)  # XYXY, contiguous ids
        return {"boxes": boxes, "scores": np.ones(len(boxes), np.float32),
                "classes": np.array([a["category_id"] for a in d["annotations"]], np.int64)}

    def nothing(bgr):
        return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
                "classes": np.zeros(0, np.int64)}

    results = evaluate_predictors(cfg, {"oracle": oracle, "nothing": nothing}, shapes_val)
    assert results["oracle"]["AP"] == pytest.approx(100.0) and results["nothing"]["AP"] == pytest.approx(0.0)
    assert len(seen) == len(truth) and all(img.dtype == np.uint8 and img.shape[2] == 3 for img in seen)


def test_eval_precision_tool_prints_the_table(shapes_val, tmp_path, capsys):
    """tools/eval_precision.py on the tiny model of tests/tools (fp32 eager, and bf16 where the CPU has it)."""
    sys.path[:0] = [os.path.join(REPO, "tools"), os.path.join(REPO, "tests", "tools")]
    import eval_precision
    from tiny_model import write_tiny_model

    bf16 = native_bf16(torch.device("cpu"))
    results = eval_precision.main(["--config-file", write_tiny_model(str(tmp_path)), "--dataset", shapes_val]
                                  + (["--bf16"] if bf16 else []))
    assert list(results) == ["fp32 eager"] + (["bf16 eager"] if bf16 else [])
    out = capsys.readouterr().out
    assert "| fp32 eager |" in out and "+0.00 |" in out


def test_eval_precision_compares_with_what_the_files_run(shapes_val, tmp_path, monkeypatch, capsys):
    """With --onnx files and TEST.SOFT_NMS on, the eager rows run NMS as the exported files do (and say so)."""
    sys.path[:0] = [os.path.join(REPO, "tools"), os.path.join(REPO, "tests", "tools")]
    import eval_precision
    from tiny_model import write_tiny_model

    class FileStandIn:  # an exported file's predictor: no detections (only the eager row's config matters here)
        precision = "fp32"

        def __init__(self, path, threads=0):
            pass

        def __call__(self, bgr):
            return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
                    "classes": np.zeros(0, np.int64)}

    built = []
    real_predictor = eval_precision.DefaultPredictor
    monkeypatch.setattr(eval_precision, "OnnxPredictor", FileStandIn)
    monkeypatch.setattr(eval_precision, "DefaultPredictor",
                        lambda cfg, **kw: built.append(cfg.TEST.SOFT_NMS.ENABLED) or real_predictor(cfg, **kw))
    config = ["--config-file", write_tiny_model(str(tmp_path)), "--dataset", shapes_val]
    soft_nms = ["TEST.SOFT_NMS.ENABLED", "True"]
    eval_precision.main(config + soft_nms)
    assert built == [True] and "soft-NMS" not in capsys.readouterr().err  # no file: eager as configured
    results = eval_precision.main(config + ["--onnx", "model.onnx"] + soft_nms)  # the key ends the --onnx list
    assert built == [True, False]
    out = capsys.readouterr()
    assert "soft-NMS loops over the data and is not exported" in out.out + out.err
    assert results["model.onnx (fp32 onnxruntime)"]["AP"] == pytest.approx(0.0)
