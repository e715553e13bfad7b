"""default_argument_parser flags and default_setup (output dir, config.yaml, seed, logging)."""

import os
import random

import pytest
import yaml

from det_dcn.config import get_cfg
from det_dcn.engine import default_argument_parser, default_setup


def test_parser_has_detectron2_flags():
    args = default_argument_parser().parse_args(
        ["--config-file", "a.yaml", "--resume", "--eval-only", "--num-gpus", "2", "--num-machines", "3",
         "--machine-rank", "1", "--dist-url", "tcp://10.0.0.1:1234", "SOLVER.MAX_ITER", "5", "OUTPUT_DIR", "x"]
    )
    assert args.config_file == "a.yaml" and args.resume and args.eval_only
    assert (args.num_gpus, args.num_machines, args.machine_rank) == (2, 3, 1)
    assert args.dist_url == "tcp://10.0.0.1:1234"
    assert args.opts == ["SOLVER.MAX_ITER", "5", "OUTPUT_DIR", "x"]
    defaults = default_argument_parser().parse_args([])
    assert (defaults.num_gpus, defaults.dist_url, defaults.resume, defaults.opts) == (1, "auto", False, [])


def _setup(tmp_path, seed):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.SEED = seed
    cfg.freeze()
    args = default_argument_parser().parse_args([])
    default_setup(cfg, args)
    return cfg


def test_setup_writes_config_and_log_and_seeds(tmp_path):
    cfg = _setup(tmp_path, 7)
    out = cfg.OUTPUT_DIR
    assert sorted(os.listdir(out)) == ["config.yaml", "log.txt"]
    saved = yaml.safe_load(open(os.path.join(out, "config.yaml")))
    assert saved["SEED"] == 7 and saved["OUTPUT_DIR"] == out
    first = random.random()
    _setup(tmp_path, 7)
    assert random.random() == first
    log = open(os.path.join(out, "log.txt")).read()
    assert "rank0]" in log and "Environment info" in log and "Full config saved" in log


def test_negative_seed_is_drawn_logged_and_saved(tmp_path):
    cfg = _setup(tmp_path, -1)
    assert cfg.SEED >= 0 and cfg.is_frozen()
    saved = yaml.safe_load(open(os.path.join(cfg.OUTPUT_DIR, "config.yaml")))
    assert saved["SEED"] == cfg.SEED
    assert f"generated seed {cfg.SEED}" in open(os.path.join(cfg.OUTPUT_DIR, "log.txt")).read()


def test_empty_output_dir_is_an_error():
    cfg = get_cfg()
    cfg.OUTPUT_DIR = ""
    with pytest.raises(ValueError, match="OUTPUT_DIR"):
        default_setup(cfg, default_argument_parser().parse_args([]))
