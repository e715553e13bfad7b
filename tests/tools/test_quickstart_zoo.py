"""configs/quickstart variants and tools/quickstart_zoo.py: each variant changes only its own keys of its base
config; the zoo's metrics reader, summary and table; and the zoo end to end on a tiny generated shapes dataset (the
plain run, two fine-tunes from it, and a variant that fails at run time), resumed without retraining, and the fine-tune
mechanism: a DCNv1 / dpool model loaded from the plain weights, or wide_head from the widened plain weights, gives the
plain model's detections (tools/train.py)."""

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
    "bn": {"MODEL.RESNETS.NORM", "MODEL.FPN.NORM"},
    "dc5_multigrid": {"MODEL.RESNETS.RES5_MULTI_GRID"},
    "dc5_aspp": {"MODEL.RESNETS.RES5_ASPP_RATES"},
    "wide_head": {"MODEL.ROI_BOX_HEAD.FC_DIM"},
    "wide_head_dpool": {"MODEL.ROI_BOX_HEAD.FC_DIM"},
}
BASES = {"dc5_multigrid": "dc5", "dc5_aspp": "dc5"}  # variants of a variant; the rest derive from the plain one


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
    base = zoo.VARIANTS[BASES.get(name, "plain")][0]
    assert f'_BASE_: "{base}"' in text
    plain = _flatten(_merged(os.path.join(QUICKSTART, base)))
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


@pytest.mark.parametrize("control, pooler, min_ratio",
                         [("wide_head", "mdpool", 2.5), ("wide_head_dpool", "dpool", 1.8)])
def test_wide_head_matches_pooler_parameter_count(control, pooler, min_ratio):
    """A capacity control separates a pooler's deformation from its extra capacity: same parameter count within
    0.1%, and the pooler's offset branch makes that count far larger than the plain model's."""
    from det_dcn.modeling import build_model

    counts = {}
    for name in (control, pooler, "plain"):
        cfg = _merged(os.path.join(QUICKSTART, zoo.VARIANTS[name][0]))
        cfg.MODEL.DEVICE = "cpu"
        counts[name] = sum(p.numel() for p in build_model(cfg).parameters())
    assert counts[control] == pytest.approx(counts[pooler], rel=1e-3)
    assert counts[pooler] > min_ratio * counts["plain"]


def test_dc5_is_a_single_stride16_res5_level():
    from det_dcn.modeling import build_model

    cfg = _merged(os.path.join(QUICKSTART, "faster_rcnn_shapes_dc5.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    shapes = model.backbone.output_shape()
    assert list(shapes) == ["res5"] and shapes["res5"].stride == 16 and shapes["res5"].channels == 256


# ------------------------------------------------------------------------------------------------ the helpers
def test_read_run_metrics_takes_the_last_records_and_skips_torn_lines(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 9, "bbox/AP": 11.0, "bbox/AP50": 20.0, "bbox/AP75": 9.0}\n'
                    '{"iteration": 10, "total_loss": 3.0, "total_train_time_s": 420.0, "train_s_per_iter": 0.3}\n'
                    '{"iteration": 10, "bbox/AP": 55.5, "bbox/AP50": NaN, "bbox/AP75": 50.0, '
                    '"inference_ms_per_image": 26.0}\n{"iteration": 11, "bbox/A')
    r = zoo.read_run_metrics(str(path))
    assert r["AP"] == 55.5 and r["AP50"] is None and r["AP75"] == 50.0  # NaN -> None (valid JSON out)
    assert (r["total_train_time_s"], r["train_s_per_iter"], r["inference_ms_per_image"]) == (420.0, 0.3, 26.0)
    path.write_text('{"iteration": 1, "total_loss": 3.0}\n')
    assert zoo.read_run_metrics(str(path)) is None  # no evaluation: not a finished run
    assert zoo.read_run_metrics(str(tmp_path / "none.json")) is None


def test_summary_and_table():
    rows = [{"name": "plain", "description": "baseline", "seed": s, "status": "ok", "AP": ap, "AP50": 80.0,
             "AP75": 60.0, "train_s_per_iter": 0.3, "inference_ms_per_image": None, "params": 3892302}
            for s, ap in ((1, 50.0), (2, 54.0), (3, 58.0))]
    rows.append({"name": "dc5", "description": "dilated", "seed": 1, "status": "failed"})
    (plain, dc5) = zoo.summarize(rows)
    assert plain["AP_mean"] == 54.0 and plain["AP_std"] == pytest.approx(4.0) and plain["seeds"] == [1, 2, 3]
    assert dc5["AP_mean"] is None and dc5["failed"] == [1]
    lines = zoo.format_table([plain, dc5]).splitlines()
    assert lines[0] == "| " + " | ".join(zoo.TABLE_HEADER) + " |"
    assert lines[2] == "| plain | baseline | 1,2,3 | 54.0 ± 4.0 | 50.0-58.0 | 80.0 | 60.0 | 0.300 | n/a | 3.89 M |"
    assert lines[3].startswith("| dc5 | dilated | none (failed: 1) | n/a | n/a |")


def test_fingerprint_ignores_output_dir_only():
    a, b = get_cfg(), get_cfg()
    b.OUTPUT_DIR = "elsewhere"
    assert zoo.config_fingerprint(a) == zoo.config_fingerprint(b)
    b.SEED = 7
    assert zoo.config_fingerprint(a) != zoo.config_fingerprint(b)


def test_bad_arguments(capsys, tmp_path):
    assert zoo.split_overrides(["--variants", "plain", "dc5", "SOLVER.IMS_PER_BATCH", "4"]) == (
        ["--variants", "plain", "dc5"], ["SOLVER.IMS_PER_BATCH", "4"])
    assert zoo.split_overrides(["--seeds", "3", "--max-iter", "3"]) == (["--seeds", "3", "--max-iter", "3"], [])
    with pytest.raises(ValueError, match="odd number"):
        zoo.check_overrides(["SOLVER.MAX_ITER"])
    with pytest.raises(ValueError, match="per run"):
        zoo.check_overrides(["SEED", "1"])
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        zoo.resolve_variant("nope")
    bad_results = tmp_path / "r.json"
    bad_results.write_text("{not json")
    for argv, message in ((["--variants", "plain", "MODEL.NO_SUCH_KEY", "1"], "MODEL.NO_SUCH_KEY"),
                          (["--variants", "plain", "plain"], "twice"),
                          (["--seeds", "0"], "--seeds and --jobs"),
                          (["SOLVER.BASE_LR", "1", "--max-iter", "3"], "put the options"),
                          (["--results", str(bad_results)], "r.json' cannot be read")):
        assert zoo.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err, (argv, err)


def test_dry_run_orders_seeds_and_puts_plain_before_fine_tunes(capsys, tmp_path):
    assert zoo.main(["--dry-run", "--variants", "ft_mdconv", "--seeds", "2", "--max-iter", "9",
                     "--work-dir", str(tmp_path), "--results", str(tmp_path / "r.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert "faster_rcnn_shapes.yaml" in lines[0] and "SEED 1" in lines[0] and "SOLVER.MAX_ITER 9" in lines[0]
    assert "faster_rcnn_shapes_mdconv.yaml" in lines[1]
    assert f"MODEL.WEIGHTS {tmp_path / 'plain' / 'seed1' / 'model_final.pth'}" in lines[1]
    assert f"OUTPUT_DIR {tmp_path / 'ft_mdconv' / 'seed1'}" in lines[1] and "SEED 2" in lines[2]


# ------------------------------------------------------------------------------------------------ end to end
TINY_OVERRIDES = ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
                  "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "96",
                  "INPUT.MAX_SIZE_TEST", "128", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "LOG_PERIOD", "1"]


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    """The zoo on ft_dconv and ft_wide_head (so plain first, then the fine-tunes) and a broken variant (unknown
    training dataset: fails inside tools/train.py), one seed, two iterations; then the same command again."""
    from det_dcn.data import shapes

    root = tmp_path_factory.mktemp("quickstart_zoo")
    shapes.ensure_shapes(str(root / "datasets" / "shapes"), {"train": 4, "val": 2}, show_progress=False, workers=1)
    broken = root / "broken.yaml"
    broken.write_text(f'_BASE_: "{os.path.join(QUICKSTART, "faster_rcnn_shapes.yaml")}"\n'
                      'DATASETS:\n  TRAIN: ("no_such_dataset",)\n')
    results = root / "results.json"
    env = dict(os.environ, DET_DCN_DATASETS=str(root / "datasets"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, ZOO_PY, "--variants", "ft_dconv", "ft_wide_head", str(broken), "--seeds", "1",
           "--max-iter", "2", "--jobs", "2", "--work-dir", str(root / "work"), "--results", str(results),
           *TINY_OVERRIDES]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(root))
    data = json.loads(results.read_text())
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(root))
    return root, data, first, second, env


def test_zoo_end_to_end_and_resume(zoo_run):
    root, data, first, second, _ = zoo_run
    assert first.returncode == 1, first.stdout + first.stderr  # one run failed
    assert "4 runs planned, 0 already in" in first.stdout
    assert "broken/seed1: FAILED (tools/train.py exited with status" in first.stdout
    runs = data["runs"]
    assert sorted(runs) == ["broken/seed1", "ft_dconv/seed1", "ft_wide_head/seed1", "plain/seed1"]
    assert "no_such_dataset" in open(os.path.join(zoo.REPO, runs["broken/seed1"]["log"])).read()
    for key in ("plain/seed1", "ft_dconv/seed1", "ft_wide_head/seed1"):
        r = runs[key]
        assert r["status"] == "ok" and r["seed"] == 1 and r["max_iter"] == 2 and r["jobs"] == 2, r
        assert r["AP50"] is not None and 0.0 <= r["AP"] <= r["AP50"] <= 100.0
        assert 1e6 < r["params"] < 2e7
    assert runs["ft_dconv/seed1"]["params"] > runs["plain/seed1"]["params"]  # + the offset branches
    assert runs["ft_wide_head/seed1"]["params"] > 2.5 * runs["plain/seed1"]["params"]  # FC_DIM 1613
    assert (root / "work" / "ft_wide_head" / "seed1" / zoo.WIDENED_WEIGHTS).is_file()
    assert (root / "work" / "plain" / "seed1" / "model_final.pth").is_file()
    # the rerun trains only the failed run again
    assert "4 runs planned, 3 already in" in second.stdout and "1 to train" in second.stdout
    assert "[start] plain/seed1" not in second.stdout and "[start] broken/seed1" in second.stdout
    assert "| plain | baseline" in second.stdout and "| ft_dconv |" in second.stdout


def _eval_detections(root, env, config, weights, name):
    out = root / "eval" / name
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), "--config-file", config,
                           "--eval-only", "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out), *TINY_OVERRIDES],
                          env=env, capture_output=True, text=True, timeout=300, cwd=str(root))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files if f == "coco_instances_results.json"]
    return json.load(open(path))


@pytest.mark.parametrize("variant", ["dconv", "wide_head", pytest.param("dpool", marks=pytest.mark.slow)])
def test_fine_tune_starts_as_the_plain_model(zoo_run, variant):
    """Step 0 of a fine-tune: the variant's config loading the plain weights (its offset branches missing, hence
    zero; for ft_wide_head the plain weights as the zoo widened them) gives the plain model's detections, end to end
    through tools/train.py."""
    root, _, _, _, env = zoo_run
    weights = root / "work" / "plain" / "seed1" / "model_final.pth"
    plain = _eval_detections(root, env, os.path.join(QUICKSTART, "faster_rcnn_shapes.yaml"), weights, "plain")
    variant_weights = weights
    if variant == "wide_head":  # the file the zoo's ft_wide_head run started from
        variant_weights = root / "work" / "ft_wide_head" / "seed1" / zoo.WIDENED_WEIGHTS
    other = _eval_detections(root, env, os.path.join(QUICKSTART, zoo.VARIANTS[variant][0]), variant_weights,
                             variant)
    assert plain, "the tiny model should still output some boxes at score threshold 0"
    assert len(other) == len(plain)
    for a, b in zip(plain, other):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert b["bbox"] == pytest.approx(a["bbox"], abs=1e-3) and b["score"] == pytest.approx(a["score"], abs=1e-5)


def test_ft_wide_head_loads_the_widened_plain_weights(tmp_path):
    """ft_wide_head's run loads OUTPUT_DIR/widened_plain.pth, written from the plain run's final weights before
    training; without those weights the run fails at once, naming the file (no training starts)."""
    plan = zoo.plan_run(zoo.resolve_variant("ft_wide_head"), 2, [], None, str(tmp_path))
    out = tmp_path / "ft_wide_head" / "seed2"
    assert plan["widen_from"] == str(tmp_path / "plain" / "seed2" / "model_final.pth")
    assert plan["opts"][plan["opts"].index("MODEL.WEIGHTS") + 1] == str(out / zoo.WIDENED_WEIGHTS)
    assert plan["cfg"].MODEL.ROI_BOX_HEAD.FC_DIM == 1613
    assert zoo.plan_run(zoo.resolve_variant("ft_dconv"), 2, [], None, str(tmp_path))["widen_from"] is None
    row = zoo.run_plan(plan, str(tmp_path / "logs" / "ft_wide_head.log"), None)
    assert row["status"] == "failed" and "widening" in row["error"] and "plain/seed2/model_final.pth" in row["error"]
    assert not (tmp_path / "logs" / "ft_wide_head.log").exists()


def test_a_recorded_plain_run_without_its_weights_is_trained_again_for_a_fine_tune(tmp_path, capsys):
    plain, ft = (zoo.plan_run(zoo.resolve_variant(v), 1, [], None, str(tmp_path)) for v in ("plain", "ft_mdpool"))
    other = zoo.plan_run(zoo.resolve_variant("dconv"), 1, [], None, str(tmp_path))
    plans = [plain, other, ft]
    assert [p["key"] for p in zoo._with_missing_bases(plans, [ft])] == ["plain/seed1", "ft_mdpool/seed1"]
    assert "plain/seed1: recorded, but ft_mdpool/seed1 needs its final weights" in capsys.readouterr().out
    os.makedirs(plain["output_dir"])
    open(os.path.join(plain["output_dir"], "model_final.pth"), "wb").close()
    assert zoo._with_missing_bases(plans, [ft]) == [ft]
    assert zoo._with_missing_bases(plans, [other]) == [other]


def test_fingerprint_survives_a_new_default_key():
    """A run recorded before det_dcn gained a config key (whose default keeps the old behaviour) keeps its
    fingerprint; a changed value does not."""
    from yacs.config import CfgNode

    old_defaults, new_defaults = get_cfg(), get_cfg()
    new_defaults.INPUT.SOME_NEW_KEY = 3
    new_defaults.NEW_SECTION = CfgNode({"X": 1})
    old_run, new_run = old_defaults.clone(), new_defaults.clone()
    for run in (old_run, new_run):
        run.merge_from_list(["SEED", "5", "MODEL.RESNETS.NORM", "GN"])
    assert zoo.config_fingerprint(old_run, old_defaults) == zoo.config_fingerprint(new_run, new_defaults)
    new_run.INPUT.SOME_NEW_KEY = 4
    assert zoo.config_fingerprint(old_run, old_defaults) != zoo.config_fingerprint(new_run, new_defaults)
