"""configs/quickstart variants and tools/quickstart_zoo.py: each variant changes only its own keys of the plain
quickstart; the zoo's parsing / schedule / table helpers; and the zoo end to end on a tiny generated shapes dataset
(two real variants and one that fails at run time: the zoo goes on, reports it, writes table + JSON, exits 1)."""

import json
import os
import subprocess
import sys

import pytest

from det_dcn.config import get_cfg

from load_tool import load_tool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO_PY = os.path.join(REPO, "tools", "quickstart_zoo.py")
QUICKSTART = os.path.join(REPO, "configs", "quickstart")


zoo = load_tool("quickstart_zoo")

# What each variant may change with respect to faster_rcnn_shapes.yaml (merged configs compared key by key).
EXPECTED_CHANGES = {
    "dconv": {"MODEL.RESNETS.DEFORM_ON_PER_STAGE"},
    "mdconv": {"MODEL.RESNETS.DEFORM_ON_PER_STAGE", "MODEL.RESNETS.DEFORM_MODULATED"},
    "dpool": {"MODEL.ROI_BOX_HEAD.POOLER_TYPE", "MODEL.ROI_BOX_HEAD.DEFORM_POOL_FC_DIM"},
    "mdpool": {"MODEL.ROI_BOX_HEAD.POOLER_TYPE", "MODEL.ROI_BOX_HEAD.DEFORM_POOL_FC_DIM"},
    "dc5": {"MODEL.BACKBONE.NAME", "MODEL.RESNETS.OUT_FEATURES", "MODEL.RESNETS.RES5_DILATION",
            "MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.RPN.IN_FEATURES", "MODEL.ROI_HEADS.IN_FEATURES"},
    "mdconv_mdpool": {"MODEL.RESNETS.DEFORM_ON_PER_STAGE", "MODEL.RESNETS.DEFORM_MODULATED",
                      "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "MODEL.ROI_BOX_HEAD.DEFORM_POOL_FC_DIM"},
}


def _merged(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


def _flatten(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------------------ the configs
def test_zoo_lists_every_quickstart_config():
    files = {f for f in os.listdir(QUICKSTART) if f.endswith(".yaml")}
    assert files == {v[0] for v in zoo.VARIANTS.values()}
    assert set(EXPECTED_CHANGES) | {"plain"} == set(zoo.VARIANTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_variants_change_only_their_keys(name):
    """Derived from the plain quickstart via _BASE_, with a header comment, so that the lead's solver / size tuning
    of faster_rcnn_shapes.yaml reaches every variant; only the variant's own keys and OUTPUT_DIR differ."""
    path = os.path.join(QUICKSTART, zoo.VARIANTS[name][0])
    text = open(path, encoding="utf-8").read()
    assert text.startswith("# Quickstart variant"), f"{path}: missing header comment"
    assert '_BASE_: "faster_rcnn_shapes.yaml"' in text
    plain = _flatten(_merged(os.path.join(QUICKSTART, "faster_rcnn_shapes.yaml")))
    variant = _flatten(_merged(path))
    changed = {k for k in plain if plain[k] != variant[k]}
    assert changed == EXPECTED_CHANGES[name] | {"OUTPUT_DIR"}, changed
    assert variant["OUTPUT_DIR"] == f"./output/quickstart_{name}"
    assert variant["SEED"] >= 0


def test_variant_values():
    c = {name: _merged(os.path.join(QUICKSTART, f)) for name, (f, _) in zoo.VARIANTS.items()}
    for name in ("dconv", "mdconv", "mdconv_mdpool"):
        assert list(c[name].MODEL.RESNETS.DEFORM_ON_PER_STAGE) == [False, True, True, True]
    assert not c["dconv"].MODEL.RESNETS.DEFORM_MODULATED and c["mdconv"].MODEL.RESNETS.DEFORM_MODULATED
    assert c["dpool"].MODEL.ROI_BOX_HEAD.POOLER_TYPE == "DeformRoIPool"
    for name in ("mdpool", "mdconv_mdpool"):
        assert c[name].MODEL.ROI_BOX_HEAD.POOLER_TYPE == "ModulatedDeformRoIPool"
    dc5 = c["dc5"].MODEL
    assert dc5.BACKBONE.NAME == "build_resnet_backbone" and dc5.RESNETS.RES5_DILATION == 2
    assert list(dc5.RESNETS.OUT_FEATURES) == list(dc5.RPN.IN_FEATURES) == list(dc5.ROI_HEADS.IN_FEATURES) == ["res5"]
    plain_sizes = [s for level in c["plain"].MODEL.ANCHOR_GENERATOR.SIZES for s in level]
    assert [list(x) for x in dc5.ANCHOR_GENERATOR.SIZES] == [plain_sizes]  # the same sizes, on one level


def test_dc5_is_a_single_stride16_res5_level():
    from det_dcn.modeling import build_model

    cfg = _merged(os.path.join(QUICKSTART, "faster_rcnn_shapes_dc5.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    shapes = model.backbone.output_shape()
    assert list(shapes) == ["res5"] and shapes["res5"].stride == 16 and shapes["res5"].channels == 256


# ------------------------------------------------------------------------------------------------ the helpers
TRAIN_LOG = """\
[11/28 07:22:25 rank0] det_dcn.utils.events INFO: eta: 0:00:03  iter: 1  total_loss: 2.9  time: 0.4  lr: 0.03
[11/28 07:22:26 rank0] det_dcn.engine.hooks INFO: Training time: 0:07:12 for 900 iterations (0.4800 s / it)
[11/28 07:22:26 rank0] det_dcn.evaluation.evaluator INFO: Start inference on 300 batches (rank 0 of 1)
[11/28 07:22:27 rank0] det_dcn.evaluation.evaluator INFO: Total inference time: 0:00:15 (15.25 s); model time \
0.0412 s/iter over 295 timed iterations
"""


def test_parse_console_log():
    r = zoo.parse_console_log(TRAIN_LOG)
    assert r["iterations"] == 900 and r["s_per_iter"] == pytest.approx(0.48)
    assert r["train_time_s"] == pytest.approx(432.0)
    assert r["inference_ms_per_img"] == pytest.approx(41.2) and r["inference_total_s"] == pytest.approx(15.25)
    assert r["num_test_images"] == 300
    empty = zoo.parse_console_log("nothing here")
    assert all(v is None for v in empty.values())


def test_scaled_schedule():
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 900, (700, 850), 100
    assert zoo.scaled_schedule(cfg, 90, []) == ["SOLVER.MAX_ITER", "90", "SOLVER.STEPS", "(70,85,)",
                                                "SOLVER.WARMUP_ITERS", "10"]
    # steps that would land at or after the end (or collide) are dropped: the scheduler requires increasing steps
    assert zoo.scaled_schedule(cfg, 2, [])[:4] == ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()"]
    assert zoo.scaled_schedule(cfg, 6, [])[3] == "(5,)"
    assert zoo.scaled_schedule(cfg, 90, ["SOLVER.STEPS", "SOLVER.WARMUP_ITERS"]) == ["SOLVER.MAX_ITER", "90"]
    with pytest.raises(ValueError, match="--max-iter must be > 0, got 0"):
        zoo.scaled_schedule(cfg, 0, [])


def test_split_overrides_and_bad_arguments(capsys):
    assert zoo.split_overrides(["--variants", "plain", "dc5", "SOLVER.IMS_PER_BATCH", "4", "SEED", "1"]) == (
        ["--variants", "plain", "dc5"], ["SOLVER.IMS_PER_BATCH", "4", "SEED", "1"])
    assert zoo.split_overrides(["--output", "OUT", "--max-iter", "3"]) == (["--output", "OUT", "--max-iter", "3"], [])
    with pytest.raises(ValueError, match="odd number"):
        zoo.check_overrides(["SOLVER.MAX_ITER"])
    with pytest.raises(ValueError, match="--work-dir"):
        zoo.check_overrides(["OUTPUT_DIR", "x"])
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        zoo.resolve_variant("nope")
    with pytest.raises(ValueError, match="missing.yaml' does not exist"):
        zoo.resolve_variant("missing.yaml")
    for argv, message in ((["--variants", "plain", "MODEL.NO_SUCH_KEY", "1"], "MODEL.NO_SUCH_KEY"),
                          (["--variants", "plain", "plain"], "twice"),
                          (["SEED", "1", "--max-iter", "3"], "put the options"),
                          (["--variants", "plain", "SEED", "-1"], "SEED is -1")):
        assert zoo.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err, (argv, err)


def test_dry_run_prints_one_command_per_variant(capsys, tmp_path):
    assert zoo.main(["--dry-run", "--variants", "dc5", "plain", "--max-iter", "9", "--work-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "faster_rcnn_shapes_dc5.yaml" in lines[0] and "faster_rcnn_shapes.yaml" in lines[1]
    assert "SOLVER.MAX_ITER 9" in lines[0] and f"OUTPUT_DIR {tmp_path / 'dc5'}" in lines[0]


def test_read_new_ap_skips_older_runs_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 9, "bbox/AP": 11.0, "bbox/AP50": 20.0, "bbox/AP75": 9.0}\n')
    offset = path.stat().st_size
    assert zoo.read_new_ap(str(path), offset) is None
    with open(path, "a") as f:
        f.write('{"iteration": 1, "total_loss": 3.0}\n{"iteration": 2, "bbox/AP": 55.5, "bbox/AP50": NaN, '
                '"bbox/AP75": 50.0}\n{"iteration": 3, "bbox/A')
    ap = zoo.read_new_ap(str(path), offset)
    assert ap["AP"] == 55.5 and ap["AP50"] is None and ap["AP75"] == 50.0  # NaN -> None (valid JSON out)
    assert zoo.read_new_ap(str(tmp_path / "none.json"), 0) is None


def test_table_and_atomic_outputs(tmp_path):
    ok = {"name": "plain", "description": "baseline", "status": "ok", "AP": 51.23, "AP50": 80.0, "AP75": 55.0,
          "train_time_s": 432.0, "s_per_iter": 0.48, "inference_ms_per_img": 41.2, "params": 3892302}
    bad = {"name": "dc5", "description": "dilated", "status": "failed", "log": "/x/dc5.log"}
    table = zoo.format_table([ok, bad])
    lines = table.splitlines()
    assert lines[0] == "| " + " | ".join(zoo.TABLE_HEADER) + " |"
    assert lines[2] == "| plain | baseline | 51.2 | 80.0 | 55.0 | 0:07:12 | 0.480 | 41.2 | 3.89 M |"
    assert "FAILED (log: /x/dc5.log)" in lines[3] and lines[3].count("|") == lines[2].count("|")
    meta = {"command": "python tools/quickstart_zoo.py", "date": "today", "machine": zoo.machine_info()}
    md, js = tmp_path / "out" / "t.md", tmp_path / "out" / "t.json"
    zoo.write_outputs([ok, bad], meta, str(md), str(js))
    assert table in md.read_text() and "python tools/quickstart_zoo.py" in md.read_text()
    assert json.loads(js.read_text())["variants"][0]["AP"] == 51.23
    assert sorted(os.listdir(tmp_path / "out")) == ["t.json", "t.md"]


# ------------------------------------------------------------------------------------------------ end to end
TINY_OVERRIDES = ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
                  "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "96",
                  "INPUT.MAX_SIZE_TEST", "128", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "LOG_PERIOD", "1"]


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    """The zoo on dconv, a broken variant (unknown training dataset: fails inside tools/train.py) and dc5."""
    from det_dcn.data import shapes

    root = tmp_path_factory.mktemp("quickstart_zoo")
    shapes.ensure_shapes(str(root / "datasets" / "shapes"), {"train": 4, "val": 2}, show_progress=False, workers=1)
    broken = root / "broken.yaml"
    broken.write_text(f'_BASE_: "{os.path.join(QUICKSTART, "faster_rcnn_shapes.yaml")}"\n'
                      'DATASETS:\n  TRAIN: ("no_such_dataset",)\n')
    out = root / "table" / "README_table.md"
    env = dict(os.environ, DET_DCN_DATASETS=str(root / "datasets"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, ZOO_PY, "--variants", "dconv", str(broken), "dc5", "--max-iter", "2",
         "--work-dir", str(root / "work"), "--output", str(out), *TINY_OVERRIDES],
        env=env, capture_output=True, text=True, timeout=300, cwd=str(root))
    return root, out, proc


def test_zoo_end_to_end(zoo_run):
    root, out, proc = zoo_run
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one variant failed
    assert "[1/3] dconv:" in proc.stdout and "[3/3] dc5: box AP" in proc.stdout
    assert "zoo ETA" in proc.stdout
    broken_log = root / "work" / "logs" / "broken.log"
    assert "[2/3] broken: FAILED (tools/train.py exited with status" in proc.stdout
    assert str(broken_log) in proc.stdout and str(broken_log) in proc.stderr
    assert "no_such_dataset" in broken_log.read_text()

    data = json.loads((out.parent / "README_table.json").read_text())
    rows = {r["name"]: r for r in data["variants"]}
    assert list(rows) == ["dconv", "broken", "dc5"] and rows["broken"]["status"] == "failed"
    assert data["max_iter"] == 2 and data["overrides"] == TINY_OVERRIDES
    for name in ("dconv", "dc5"):
        r = rows[name]
        assert r["status"] == "ok" and r["seed"] == 42 and "warning" not in r, r
        assert r["output_dir"] == str(root / "work" / name)
        assert r["iterations"] == 2 and 0 < r["s_per_iter"] < 60
        assert r["train_time_s"] == pytest.approx(2 * r["s_per_iter"])
        assert 0 < r["inference_ms_per_img"] < 10000 and r["num_test_images"] == 2
        for key in ("AP", "AP50", "AP75"):
            assert r[key] is None or 0.0 <= r[key] <= 100.0, (key, r[key])
        assert r["AP50"] is not None and r["AP50"] >= r["AP"]
        assert r["wall_s"] >= r["train_time_s"]
    # the narrow model: millions of parameters; dc5's box head sees 256 instead of 64 channels
    assert 1e6 < rows["dconv"]["params"] < rows["dc5"]["params"] < 2e7

    table = out.read_text()
    assert "| " + " | ".join(zoo.TABLE_HEADER) + " |" in table
    body = [line for line in table.splitlines() if line.startswith("| ") and "variant" not in line]
    assert [line.split(" | ")[0] for line in body] == ["| dconv", "| broken", "| dc5"]
    assert "FAILED (log: " in body[1] and body[0].endswith(" M |")
    assert sorted(os.listdir(out.parent)) == ["README_table.json", "README_table.md"]  # no temporary files left
