#!/usr/bin/env python
"""The quickstart zoo: train and evaluate the plain quickstart and its deformable / dilated variants over several
seeds, and tabulate the mean and standard deviation of box AP with training time, inference time and parameters.

    python tools/quickstart_zoo.py --seeds 3                     # every variant, seeds 1-3 (resumes; see below)
    python tools/quickstart_zoo.py --seeds 3 --jobs 2            # two trainings at a time
    python tools/quickstart_zoo.py --variants plain dconv ft_mdconv --seeds 3
    python tools/quickstart_zoo.py --max-iter 100 --results /tmp/look.json   # a quick look (scaled schedule)
    python tools/quickstart_zoo.py --table-only                  # print the table of what the results file holds
    python tools/quickstart_zoo.py --dry-run                     # print the commands only

Each run is ``python tools/train.py --config-file configs/quickstart/faster_rcnn_shapes[_<variant>].yaml
SEED <s> OUTPUT_DIR <work dir>/<variant>/seed<s> [overrides]`` in a subprocess. The seeds are 1..N (never the
config's own SEED, on which the recipe was chosen). Fine-tune variants (``ft_*``) start from the plain variant's
final weights of the same seed (that run comes first) and train the same schedule again with the deformable parts
added (zero-initialised, so the model starts as the plain one); ``ft_wide_head`` and ``ft_wide_head_dpool``, the
capacity controls for mdpool and dpool, start from those weights widened to FC_DIM 1613 / 1054 with the new units'
outgoing weights zero (det_dcn.checkpoint.widen: again the plain model at step 0).

Resumable: every finished run is stored at once (atomically) in the results file (default
docs/quickstart_zoo_results.json, committed), keyed by variant and seed, with a fingerprint of its resolved config
(the entries that differ from det_dcn's defaults);
a rerun trains only the runs that are missing, failed, or whose config changed. A finished run already in its
output folder (same config, a bbox/AP record) is recorded without training again.

Numbers come from each run's OUTPUT_DIR/metrics.json: box AP* from the last ``bbox/*`` record, and the timing keys
the trainer and evaluator write there (``total_train_time_s``, ``train_s_per_iter``, ``inference_ms_per_image``;
absent in metrics.json from before they existed: the table says n/a). Timings measured with --jobs > 1 or on a busy
machine are not comparable to one-at-a-time runs on an idle one; the results file records the jobs count.
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TRAIN_PY = os.path.join(REPO, "tools", "train.py")
CONFIG_DIR = os.path.join(REPO, "configs", "quickstart")

# name -> (config file in configs/quickstart, what it changes with respect to the plain quickstart)
VARIANTS: Dict[str, tuple] = {
    "plain": ("faster_rcnn_shapes.yaml", "baseline: narrow R-18-FPN with GroupNorm, RoIAlign"),
    "bn": ("faster_rcnn_shapes_bn.yaml", "BatchNorm in the backbone, no norm in the FPN (the first recipe)"),
    "dconv": ("faster_rcnn_shapes_dconv.yaml", "DCNv1 3x3 in res3-res5"),
    "mdconv": ("faster_rcnn_shapes_mdconv.yaml", "modulated DCNv2 3x3 in res3-res5"),
    "dpool": ("faster_rcnn_shapes_dpool.yaml", "deformable RoI pooling (DCNv1)"),
    "mdpool": ("faster_rcnn_shapes_mdpool.yaml", "modulated deformable RoI pooling (DCNv2)"),
    "mdconv_mdpool": ("faster_rcnn_shapes_mdconv_mdpool.yaml", "DCNv2 in res3-res5 + mdpool"),
    "wide_head": ("faster_rcnn_shapes_wide_head.yaml", "plain with the box head widened to mdpool's parameter count"),
    "wide_head_dpool": ("faster_rcnn_shapes_wide_head_dpool.yaml",
                        "plain with the box head widened to dpool's parameter count"),
    "dc5": ("faster_rcnn_shapes_dc5.yaml", "dilated res5 (stride 16), single level, no FPN"),
    "dc5_multigrid": ("faster_rcnn_shapes_dc5_multigrid.yaml", "dc5 + res5 multi-grid (1, 2): rates 2, 4"),
    "dc5_aspp": ("faster_rcnn_shapes_dc5_aspp.yaml", "dc5 + ASPP (rates 3, 6, 9, image pooling) after res5"),
}
# Fine-tune variants: (config variant, what it adds); they start from the plain run of the same seed.
FINETUNE: Dict[str, tuple] = {
    "ft_plain": ("plain", "plain, trained again from its own final weights"),
    "ft_dconv": ("dconv", "plain weights + DCNv1 in res3-res5, trained again"),
    "ft_mdconv": ("mdconv", "plain weights + DCNv2 in res3-res5, trained again"),
    "ft_dpool": ("dpool", "plain weights + dpool, trained again"),
    "ft_mdpool": ("mdpool", "plain weights + mdpool, trained again"),
    "ft_wide_head": ("wide_head",
                     "plain weights, box head widened to FC_DIM 1613 (new units start unused), trained again"),
    "ft_wide_head_dpool": ("wide_head_dpool",
                           "plain weights, box head widened to FC_DIM 1054 (new units start unused), trained again"),
}
# Fine-tunes whose model is wider than the plain one: the plain weights are widened first, function-preservingly
# (det_dcn.checkpoint.widen), to OUTPUT_DIR/WIDENED_WEIGHTS, which the run loads.
WIDEN = {"ft_wide_head", "ft_wide_head_dpool"}
WIDENED_WEIGHTS = "widened_plain.pth"
DEFAULT_RESULTS = os.path.join("docs", "quickstart_zoo_results.json")
DEFAULT_WORK_DIR = os.path.join("output", "quickstart_zoo")
TABLE_HEADER = ("variant", "what changes", "seeds", "box AP mean ± std", "AP range", "AP50", "AP75",
                "train s/iter", "inference ms/img", "params")
# Keys of metrics.json this tool reads (written by the trainer and the evaluator).
TIMING_KEYS = ("total_train_time_s", "train_s_per_iter", "inference_ms_per_image")
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
BUSY_S = 600  # a metrics.json written this recently belongs to a run in progress (LOG_PERIOD records)


# ----------------------------------------------------------------------------------------------------- planning
def resolve_variant(spec: str) -> dict:
    """A name from VARIANTS or FINETUNE, or a path to a config file -> {"name", "config", "description", "base"}."""
    if spec in VARIANTS:
        file_name, description = VARIANTS[spec]
        return {"name": spec, "config": os.path.join(CONFIG_DIR, file_name), "description": description,
                "finetune_from": None, "widen": False}
    if spec in FINETUNE:
        base, description = FINETUNE[spec]
        return {**resolve_variant(base), "name": spec, "description": description, "finetune_from": "plain",
                "widen": spec in WIDEN}
    if spec.endswith((".yaml", ".yml")):
        if not os.path.isfile(spec):
            raise ValueError(f"--variants: config file '{spec}' does not exist")
        name = os.path.splitext(os.path.basename(spec))[0]
        return {"name": name, "config": os.path.abspath(spec), "description": f"config {spec}", "finetune_from": None,
                "widen": False}
    raise ValueError(f"--variants: unknown variant '{spec}'; expected one of {list(VARIANTS) + list(FINETUNE)} or "
                     f"a path to a .yaml config file")


def check_overrides(opts: Sequence[str]) -> List[str]:
    """KEY VALUE pairs for every run; OUTPUT_DIR, SEED and MODEL.WEIGHTS are set per run by the zoo."""
    opts = list(opts)
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        raise ValueError(f"Options {flags} come after the first KEY VALUE override, where they would be taken as "
                         "config keys; put the options (--variants, --seeds, ...) before the overrides")
    if len(opts) % 2:
        raise ValueError(f"Config overrides must be KEY VALUE pairs; got an odd number ({len(opts)}): {opts}")
    fixed = [k for k in opts[0::2] if k in ("OUTPUT_DIR", "SEED", "MODEL.WEIGHTS")]
    if fixed:
        raise ValueError(f"{fixed} cannot be overridden for the whole zoo: the zoo sets them per run (--work-dir, "
                         "--seeds; fine-tune variants take the plain run's weights)")
    return opts


def _changed_entries(cfg, defaults, prefix: str = "") -> dict:
    """Dotted key -> value of every entry of ``cfg`` that differs from (or is absent in) ``defaults``."""
    out = {}
    for key, value in cfg.items():
        name = prefix + key
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(value, dict):
            out.update(_changed_entries(value, default if isinstance(default, dict) else {}, name + "."))
        elif not isinstance(defaults, dict) or key not in defaults or default != value:
            out[name] = value
    return out


def config_fingerprint(cfg, defaults=None) -> str:
    """sha256 (16 hex digits) of the entries of the resolved config that differ from det_dcn's defaults, without
    OUTPUT_DIR: equal fingerprints, same training. Hashing only what a run changes keeps recorded runs valid when
    det_dcn gains a config key whose default keeps the old behaviour (changing a default's value needs a rerun)."""
    from det_dcn.config import get_cfg

    changed = _changed_entries(cfg, get_cfg() if defaults is None else defaults)
    changed.pop("OUTPUT_DIR", None)
    text = json.dumps(changed, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan_run(variant: dict, seed: int, overrides: List[str], max_iter: Optional[int], work_dir: str) -> dict:
    """Merge the run's config here, before any training, so a bad key fails in seconds (naming file and key)."""
    from det_dcn.config import get_cfg, scale_schedule

    output_dir = os.path.abspath(os.path.join(work_dir, variant["name"], f"seed{seed}"))
    opts = list(overrides) + ["SEED", str(seed)]
    widen_from = None
    if variant["finetune_from"]:
        plain_dir = os.path.abspath(os.path.join(work_dir, variant["finetune_from"], f"seed{seed}"))
        weights = os.path.join(plain_dir, "model_final.pth")
        if variant["widen"]:
            widen_from, weights = weights, os.path.join(output_dir, WIDENED_WEIGHTS)
        opts += ["MODEL.WEIGHTS", weights]
    cfg = get_cfg()
    try:
        cfg.merge_from_file(variant["config"])
        cfg.merge_from_list(list(opts))
        if max_iter is not None:
            scaled = scale_schedule(cfg, max_iter, overrides[0::2])
            cfg.merge_from_list(scaled)
            opts += scaled
    except Exception as e:
        raise ValueError(f"Variant '{variant['name']}' ({variant['config']}): {e}") from e
    opts += ["OUTPUT_DIR", output_dir]
    cfg.OUTPUT_DIR = output_dir
    return {**variant, "seed": seed, "opts": opts, "output_dir": output_dir, "key": f"{variant['name']}/seed{seed}",
            "fingerprint": config_fingerprint(cfg), "max_iter": int(cfg.SOLVER.MAX_ITER), "cfg": cfg,
            "widen_from": widen_from}


# --------------------------------------------------------------------------------------------- reading results
def read_run_metrics(metrics_path: str) -> Optional[dict]:
    """From a run's metrics.json: the last ``bbox/*`` record's AP values and the last value of each TIMING_KEYS
    key (None where absent); None when there is no bbox/AP record. Torn lines (a killed run) are skipped."""
    if not os.path.isfile(metrics_path):
        return None
    ap, timings = None, {k: None for k in TIMING_KEYS}
    with open(metrics_path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if "bbox/AP" in record:
                ap = {k: _finite(record.get(f"bbox/{k}")) for k in AP_KEYS}
            for k in TIMING_KEYS:
                if k in record:
                    timings[k] = _finite(record[k])
    if ap is None:
        return None
    return {**ap, **timings}


def finished_fingerprint(output_dir: str) -> Optional[str]:
    """The fingerprint of the config.yaml a run in ``output_dir`` resolved to (None without one)."""
    from det_dcn.config import get_cfg

    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return config_fingerprint(cfg)


def _cpu_model(cfg):
    """The model ``cfg`` builds, on the CPU, with its own initialisation (MODEL.WEIGHTS not loaded)."""
    from det_dcn.modeling import build_model

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    return build_model(cfg)


def count_parameters(config_yaml: str) -> int:
    """All parameters of the model that ``config_yaml`` (a run's resolved config.yaml) builds, on the CPU."""
    from det_dcn.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(config_yaml)
    return int(sum(p.numel() for p in _cpu_model(cfg).parameters()))


def widen_plain_weights(plan: dict) -> None:
    """A capacity control's start (WIDEN): the plain run's final weights widened to the run's model (its new units
    initialised with the run's seed), written where the run's MODEL.WEIGHTS points."""
    import torch

    from det_dcn.checkpoint import widen_checkpoint

    torch.manual_seed(plan["seed"])
    widen_checkpoint(plan["widen_from"], _cpu_model(plan["cfg"]), plan["cfg"].MODEL.WEIGHTS)


def _finite(value) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


# ------------------------------------------------------------------------------------------------ running one
def _child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # each run trains this checkout's det_dcn, installed or not
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a zoo started under torchrun must not make each run join that group
    return env


def collect_row(plan: dict) -> dict:
    """The stored result of a finished run in plan["output_dir"] (status "failed" with an error if unusable)."""
    row = {k: plan[k] for k in ("name", "description", "seed", "fingerprint", "max_iter")}
    row.update(config=os.path.relpath(plan["config"], REPO), status="failed", error=None,
               finished=datetime.datetime.now().isoformat(timespec="seconds"))
    metrics = read_run_metrics(os.path.join(plan["output_dir"], "metrics.json"))
    if metrics is None:
        row["error"] = f"no bbox/AP record in {plan['output_dir']}/metrics.json"
        return row
    row.update(metrics, status="ok")
    try:
        row["params"] = count_parameters(os.path.join(plan["output_dir"], "config.yaml"))
    except Exception as e:  # the run itself succeeded; a missing count must not turn it into a failure
        row["params"], row["warning"] = None, f"could not count parameters: {e}"
    return row


def run_plan(plan: dict, log_path: str, timeout: Optional[float]) -> dict:
    """Train and evaluate one planned run (console output to ``log_path``); returns its row."""
    cmd = [sys.executable, TRAIN_PY, "--config-file", plan["config"], *plan["opts"]]
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    metrics = os.path.join(plan["output_dir"], "metrics.json")
    if os.path.isfile(metrics):  # an interrupted or stale run: its records must not be read as this one's
        age = time.time() - os.path.getmtime(metrics)
        if age < BUSY_S:
            return {**collect_row(plan), "status": "failed", "wall_s": 0.0, "log": None,
                    "error": f"{metrics} was written {age:.0f} s ago: another training seems to be running there "
                             f"(let it finish, then rerun the zoo to record it)"}
        os.replace(metrics, metrics + ".old")
    if plan["widen_from"]:
        try:
            widen_plain_weights(plan)
        except (OSError, ValueError) as e:
            return {**collect_row(plan), "status": "failed", "wall_s": 0.0, "log": None,
                    "error": f"widening {plan['widen_from']} failed: {e}"}
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        try:
            returncode = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
                                        timeout=timeout).returncode
            error = None if returncode == 0 else f"tools/train.py exited with status {returncode}"
        except subprocess.TimeoutExpired:
            error = f"killed after the --timeout of {timeout:g} s"
    row = collect_row(plan) if error is None else {**collect_row(plan), "status": "failed", "error": error}
    row.update(wall_s=time.perf_counter() - start, log=os.path.relpath(log_path, REPO))
    return row


# ------------------------------------------------------------------------------------------------ the report
def summarize(rows: Sequence[dict]) -> List[dict]:
    """Per variant (in first-seen order) over its ok runs: n, AP mean / sample std / min / max, means of the rest."""
    by_name: Dict[str, List[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    out = []
    for name, runs in by_name.items():
        ok = sorted((r for r in runs if r["status"] == "ok" and r.get("AP") is not None), key=lambda r: r["seed"])
        aps = [r["AP"] for r in ok]
        summary = {"name": name, "description": runs[0]["description"], "seeds": [r["seed"] for r in ok],
                   "failed": sorted(r["seed"] for r in runs if r["status"] != "ok"),
                   "AP_mean": statistics.fmean(aps) if aps else None,
                   "AP_std": statistics.stdev(aps) if len(aps) > 1 else None,
                   "AP_min": min(aps) if aps else None, "AP_max": max(aps) if aps else None}
        for key, src in (("AP50", "AP50"), ("AP75", "AP75"), ("s_per_iter", "train_s_per_iter"),
                         ("inference_ms", "inference_ms_per_image"), ("params", "params")):
            values = [r[src] for r in ok if r.get(src) is not None]
            summary[key] = statistics.fmean(values) if values else None
        out.append(summary)
    return out


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_table(summaries: Sequence[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|:--|:--|" + "--:|" * (len(TABLE_HEADER) - 2)]
    for s in summaries:
        seeds = ",".join(map(str, s["seeds"])) or "none"
        if s["failed"]:
            seeds += f" (failed: {','.join(map(str, s['failed']))})"
        std = "" if s["AP_std"] is None else f" ± {s['AP_std']:.1f}"
        ap_range = "n/a" if s["AP_min"] is None else f"{s['AP_min']:.1f}-{s['AP_max']:.1f}"
        params = "n/a" if s["params"] is None else f"{s['params'] / 1e6:.2f} M"
        lines.append("| " + " | ".join([
            s["name"], s["description"], seeds, _num(s["AP_mean"], ".1f") + std, ap_range, _num(s["AP50"], ".1f"),
            _num(s["AP75"], ".1f"), _num(s["s_per_iter"], ".3f"), _num(s["inference_ms"], ".1f"), params]) + " |")
    return "\n".join(lines)


def load_results(path: str) -> dict:
    if not os.path.isfile(path):
        return {"runs": {}}
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"results file '{path}' cannot be read as JSON ({e}); fix or move it, the zoo would "
                         "otherwise overwrite it") from e
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise ValueError(f"results file '{path}' has no 'runs' object; expected the format this tool writes")
    return data


def save_results(path: str, data: dict) -> None:
    from det_dcn.utils.atomic_io import atomic_write_text

    runs = dict(sorted(data["runs"].items()))
    atomic_write_text(path, json.dumps({**data, "runs": runs}, indent=1, allow_nan=False) + "\n")


def machine_info() -> dict:
    from det_dcn.engine.env_info import collect_env_info

    return {"env": collect_env_info().splitlines(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


# ------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Variants: " + ", ".join(f"{k} ({v[1]})" for k, v in
                                                                     {**VARIANTS, **FINETUNE}.items()))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME_OR_YAML",
                        help="variants, in this order (default: all non-fine-tune variants)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N per variant (default 3)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time (default 1: comparable timings)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="train N iterations (STEPS and WARMUP_ITERS scaled alike): a quick look, not the "
                             "quickstart's numbers; use another --results file")
    parser.add_argument("--results", default=DEFAULT_RESULTS, help=f"results file (default {DEFAULT_RESULTS})")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                        help=f"runs go to WORK_DIR/<variant>/seed<s> (default {DEFAULT_WORK_DIR})")
    parser.add_argument("--timeout", type=float, default=None, help="kill a run after this many seconds")
    parser.add_argument("--table-only", action="store_true", help="print the table of the results file and exit")
    parser.add_argument("--dry-run", action="store_true", help="check the configs and print the commands only")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every run")
    return parser


def split_overrides(argv: Sequence[str]) -> tuple:
    """(options, overrides): the overrides start at the first config key that is not an option's value."""
    import re

    key_re = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")
    value_options = ("--max-iter", "--results", "--work-dir", "--timeout", "--seeds", "--jobs")
    argv = list(argv)
    for i, token in enumerate(argv):
        if key_re.match(token) and (i == 0 or argv[i - 1] not in value_options):
            return argv[:i], argv[i:]
    return argv, []


def _plans(args, overrides) -> List[dict]:
    if args.seeds < 1 or args.jobs < 1:
        raise ValueError(f"--seeds and --jobs must be >= 1, got {args.seeds} and {args.jobs}")
    if len(set(args.variants)) != len(args.variants):
        raise ValueError(f"--variants lists a variant twice: {args.variants}")
    variants = [resolve_variant(v) for v in args.variants]
    if any(v["finetune_from"] for v in variants) and "plain" not in args.variants:
        variants.insert(0, resolve_variant("plain"))  # the fine-tunes start from its weights
    return [plan_run(v, seed, overrides, args.max_iter, args.work_dir)
            for seed in range(1, args.seeds + 1) for v in variants]


def _with_missing_bases(plans: List[dict], todo: List[dict]) -> List[dict]:
    """``todo`` plus every recorded run whose final weights a fine-tune in ``todo`` needs but that are gone (another
    machine, a fresh checkout): trained again, same config and seed, before the fine-tune; in plan order."""
    keys = {p["key"] for p in todo}
    for plan in todo:
        if not plan["finetune_from"]:
            continue
        base = next(p for p in plans if p["key"] == f"{plan['finetune_from']}/seed{plan['seed']}")
        if base["key"] not in keys and not os.path.isfile(os.path.join(base["output_dir"], "model_final.pth")):
            print(f"{base['key']}: recorded, but {plan['key']} needs its final weights, which are not in "
                  f"{base['output_dir']}: training it again", flush=True)
            keys.add(base["key"])
    return [p for p in plans if p["key"] in keys]


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    head, tail = split_overrides(argv)
    args = build_parser().parse_args(head)
    try:
        overrides = check_overrides(list(args.opts or []) + tail)
        data = load_results(args.results)
        plans = [] if args.table_only else _plans(args, overrides)
    except ValueError as e:
        print(f"quickstart_zoo: {e}", file=sys.stderr)
        return 2
    if args.table_only:
        print(format_table(summarize(list(data["runs"].values()))))
        return 0
    if args.dry_run:
        for p in plans:
            if p["widen_from"]:
                print(f"# then widen {p['widen_from']} to {p['cfg'].MODEL.WEIGHTS} (det_dcn.checkpoint.widen)")
            print(shlex.join([sys.executable, TRAIN_PY, "--config-file", p["config"], *p["opts"]]))
        return 0

    lock = threading.Lock()
    data.update(command=shlex.join(["python", "tools/quickstart_zoo.py", *argv]), machine=machine_info(),
                jobs=args.jobs, updated=datetime.datetime.now().isoformat(timespec="seconds"))

    def record(plan: dict, row: dict) -> None:
        with lock:
            data["runs"][plan["key"]] = row
            data["updated"] = datetime.datetime.now().isoformat(timespec="seconds")
            save_results(args.results, data)

    todo = []
    for plan in plans:
        old = data["runs"].get(plan["key"])
        if old and old.get("status") == "ok" and old.get("fingerprint") == plan["fingerprint"]:
            continue
        if finished_fingerprint(plan["output_dir"]) == plan["fingerprint"]:
            row = collect_row(plan)
            if row["status"] == "ok":  # trained before (e.g. by hand): record it without training again
                print(f"{plan['key']}: found finished in {plan['output_dir']}, box AP {_num(row['AP'], '.1f')}")
                record(plan, row)
                continue
        todo.append(plan)
    todo = _with_missing_bases(plans, todo)
    print(f"quickstart_zoo: {len(plans)} runs planned, {len(plans) - len(todo)} already in {args.results}, "
          f"{len(todo)} to train with {args.jobs} at a time", flush=True)

    failed = []
    done_walls: List[float] = []
    start = time.perf_counter()
    pending = {p["key"]: p for p in todo}
    log_dir = os.path.join(args.work_dir, "logs")

    def run(plan: dict) -> dict:
        base = pending.get(f"{plan['finetune_from']}/seed{plan['seed']}") if plan["finetune_from"] else None
        if base is not None:
            base["done"].wait()  # a fine-tune needs the plain run's final weights
        log = os.path.join(log_dir, f"{plan['name']}_seed{plan['seed']}.log")
        # one write per line: print() writes the text and its newline separately, so two threads' lines could merge
        sys.stdout.write(f"[start] {plan['key']}: {plan['max_iter']} iterations, log {log}\n")
        sys.stdout.flush()
        try:
            return run_plan(plan, log, args.timeout)
        finally:
            plan["done"].set()

    for plan in todo:
        plan["done"] = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run, plan): plan for plan in todo}
        for future in concurrent.futures.as_completed(futures):
            plan = futures[future]
            row = future.result()
            done_walls.append(row["wall_s"])
            record(plan, {**row, "jobs": args.jobs})
            left = len(todo) - len(done_walls)
            eta = datetime.timedelta(seconds=int((time.perf_counter() - start) / len(done_walls) * left))
            if row["status"] == "ok":
                print(f"[done {len(done_walls)}/{len(todo)}] {plan['key']}: box AP {_num(row['AP'], '.1f')}, "
                      f"{_num(row.get('train_s_per_iter'), '.3f')} s/iter, wall {row['wall_s']:.0f} s; "
                      f"ETA of the rest {eta}", flush=True)
            else:
                failed.append(plan["key"])
                print(f"[done {len(done_walls)}/{len(todo)}] {plan['key']}: FAILED ({row['error']}); see "
                      f"{row['log']}", flush=True)

    print("\n" + format_table(summarize(list(data["runs"].values()))), flush=True)
    print(f"\nResults in {args.results}", flush=True)
    if failed:
        print(f"Failed runs: {failed}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)  # run from a checkout without `pip install -e .`
    sys.exit(main())
