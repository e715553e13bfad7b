"""tools/train.py end to end on a tiny generated shapes dataset: train + evaluate, --eval-only, --resume,
--num-gpus 2 on CPU (gloo)."""

import importlib.util
import json
import logging
import os

import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.engine import default_argument_parser

from train_tool_helpers import TRAIN_PY, make_tiny_setup, run_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("train_tool"))
    make_tiny_setup(folder)
    out = os.path.join(folder, "out")
    proc = run_train(folder, "OUTPUT_DIR", out)
    return folder, out, proc


def _records(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_train_writes_outputs_and_prints_ap_table(trained):
    folder, out, proc = trained
    names = set(os.listdir(out))
    assert {"config.yaml", "metrics.json", "last_checkpoint", "model_final.pth", "model_0000001.pth",
            "model_0000003.pth", "log.txt"} <= names, names
    assert not any(n.endswith(".tmp") for n in names)
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    # the saved config is complete and loads back
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(out, "config.yaml"))
    assert cfg.SOLVER.MAX_ITER == 4 and cfg.OUTPUT_DIR == out and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 6
    records = _records(out)
    train = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in train] == [0, 1, 2, 3]
    for key in ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "lr", "time", "data_time",
                "eta_seconds", "memory"):
        assert key in train[-1], key
    final = [r for r in records if "bbox/AP" in r]
    assert len(final) == 1 and final[0]["iteration"] == 4
    assert {"bbox/AP50", "bbox/AP75", "bbox/APs", "bbox/AP-circle"} <= set(final[0])
    # the AP table is printed at the end
    assert "| AP | AP50 | AP75 | APs | APm | APl |" in proc.stdout
    assert "Per-category AP" in proc.stdout and "circle" in proc.stdout
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert ckpt["iteration"] == 3 and {"model", "optimizer", "scheduler", "rng_states"} <= set(ckpt)


def test_eval_only_reproduces_the_final_evaluation(trained):
    folder, out, _ = trained
    out2 = os.path.join(folder, "eval_only")
    proc = run_train(folder, "--eval-only", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
                     "OUTPUT_DIR", out2)
    assert "| AP | AP50 | AP75 | APs | APm | APl |" in proc.stdout
    final = [r for r in _records(out) if "bbox/AP" in r][0]
    row = proc.stdout.split("| AP | AP50 | AP75 | APs | APm | APl |")[1].splitlines()[2]
    ap = float(row.strip("| ").split(" | ")[0])
    assert ap == pytest.approx(final["bbox/AP"], abs=1e-3)
    assert not os.path.exists(os.path.join(out2, "model_final.pth"))


def _load_train_tool():
    spec = importlib.util.spec_from_file_location("det_dcn_train_tool", TRAIN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restore_logging():
    logger = logging.getLogger("det_dcn")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for h in list(logger.handlers):
        if h not in saved[0]:
            h.close()
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


def test_eval_only_with_missing_weights_names_the_file(trained, restore_logging, monkeypatch):
    folder, _, _ = trained
    monkeypatch.setenv("DET_DCN_DATASETS", os.path.join(folder, "datasets"))
    tool = _load_train_tool()
    missing = os.path.join(folder, "no_such_model.pth")
    args = default_argument_parser().parse_args(
        ["--config-file", os.path.join(folder, "tiny.yaml"), "--eval-only", "MODEL.WEIGHTS", missing,
         "OUTPUT_DIR", os.path.join(folder, "eval_missing")])
    with pytest.raises(FileNotFoundError, match="no_such_model.pth"):
        tool.main(args)
    args.opts = ["OUTPUT_DIR", os.path.join(folder, "eval_missing")]
    with pytest.raises(ValueError, match="--eval-only needs MODEL.WEIGHTS"):
        tool.main(args)


def test_two_cpu_processes_with_gloo(trained):
    folder, _, _ = trained
    out = os.path.join(folder, "ddp")
    proc = run_train(folder, "--num-gpus", "2", "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out)
    names = set(os.listdir(out))
    assert {"config.yaml", "metrics.json", "last_checkpoint", "model_final.pth", "log.txt"} <= names, names
    log = open(os.path.join(out, "log.txt")).read()
    assert "World size: 2" in log and "rank0]" in log
    assert "1 per batch per process" in log  # IMS_PER_BATCH 2 split over 2 processes
    assert [r["iteration"] for r in _records(out) if "total_loss" in r] == [0, 1]
    assert "| AP | AP50 |" in proc.stdout
