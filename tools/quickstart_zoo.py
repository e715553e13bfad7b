#!/usr/bin/env python
"""The quickstart zoo: train and evaluate the plain quickstart and its deformable / dilated variants, one after
another on this machine, and tabulate box AP, training time, inference time and parameters (mmdetection's DCN table,
measured here).

    python tools/quickstart_zoo.py                                  # all 7 variants, full schedule (long: ~7x one run)
    python tools/quickstart_zoo.py --variants plain dconv dpool     # a subset, in this order
    python tools/quickstart_zoo.py --max-iter 100                   # a quick look (schedule scaled to 100 iterations)
    python tools/quickstart_zoo.py --variants dc5 SOLVER.IMS_PER_BATCH 4   # KEY VALUE overrides go to every variant
    python tools/quickstart_zoo.py --dry-run                        # print the commands only

Each variant is ``python tools/train.py --config-file configs/quickstart/faster_rcnn_shapes[_<variant>].yaml
OUTPUT_DIR ... [overrides]`` run as a subprocess in the current directory (relative paths, e.g. ./datasets, mean
what they mean for tools/train.py run from here), strictly ONE AT A TIME: concurrent runs would compete for the cores
and distort every timing. A variant may also be given as a path to a config file (its name is then the file name
without ".yaml").

Where the numbers come from (nothing is re-measured here):
  - box AP / AP50 / AP75: the last "bbox/AP*" record that this run appended to OUTPUT_DIR/metrics.json;
  - training time and s/iter: the trainer's log line "Training time: H:MM:SS for N iterations (X s / it)"
    (total = X * N; this is the training loop only, without dataset loading and evaluation);
  - inference ms/img: the evaluation's log line "Total inference time: ... ; model time X s/iter over N timed
    iterations" (the test loader has batch size 1, so s/iter is s/img; model forward only, warm-up excluded);
  - params: the model built from OUTPUT_DIR/config.yaml (the run's resolved config), all parameters;
  - wall: the subprocess's wall-clock time (startup, data, training, evaluation).
Runs are reproducible: SEED comes from the config (the quickstart fixes it); a variant with SEED < 0 is refused.

Output: a Markdown table (printed, and written atomically to --output, default output/quickstart_zoo/README_table.md)
and the same numbers as JSON next to it (--json, default: --output with ".json"). Both are rewritten after every
variant, so an interrupted zoo leaves the finished rows. Each run's full console output is saved as
<work dir>/logs/<variant>.log. A failed variant is reported with its log path and the zoo goes on; the exit status
is 1 if any variant failed.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
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
    "plain": ("faster_rcnn_shapes.yaml", "baseline: narrow R-18-FPN, RoIAlign"),
    "dconv": ("faster_rcnn_shapes_dconv.yaml", "DCNv1 3x3 in res3-res5"),
    "mdconv": ("faster_rcnn_shapes_mdconv.yaml", "modulated DCNv2 3x3 in res3-res5"),
    "dpool": ("faster_rcnn_shapes_dpool.yaml", "deformable RoI pooling (DCNv1)"),
    "mdpool": ("faster_rcnn_shapes_mdpool.yaml", "modulated deformable RoI pooling (DCNv2)"),
    "dc5": ("faster_rcnn_shapes_dc5.yaml", "dilated res5 (stride 16), single level, no FPN"),
    "mdconv_mdpool": ("faster_rcnn_shapes_mdconv_mdpool.yaml", "DCNv2 in res3-res5 + mdpool"),
}
DEFAULT_OUTPUT = os.path.join("output", "quickstart_zoo", "README_table.md")
TABLE_HEADER = ("variant", "what changes", "box AP", "AP50", "AP75", "train time", "s/iter", "inference ms/img",
                "params")

_TRAIN_TIME_RE = re.compile(r"Training time: \S+ for (\d+) iterations \(([0-9.eE+-]+) s / it\)")
_INFER_TIME_RE = re.compile(r"Total inference time: .*?\(([0-9.eE+-]+) s\); model time ([0-9.eE+-]+) s/iter "
                            r"over (\d+) timed iterations")
_INFER_START_RE = re.compile(r"Start inference on (\d+) batches")
_ITER_RE = re.compile(r"(?:eta: (\S+)\s+)?iter: (\d+)\s")


# ----------------------------------------------------------------------------------------------------- variants
def resolve_variant(spec: str) -> dict:
    """A variant name from VARIANTS, or a path to a config file -> {"name", "config", "description"}."""
    if spec in VARIANTS:
        file_name, description = VARIANTS[spec]
        return {"name": spec, "config": os.path.join(CONFIG_DIR, file_name), "description": description}
    if spec.endswith((".yaml", ".yml")):
        if not os.path.isfile(spec):
            raise ValueError(f"--variants: config file '{spec}' does not exist")
        name = os.path.splitext(os.path.basename(spec))[0]
        return {"name": name, "config": os.path.abspath(spec), "description": f"config {spec}"}
    raise ValueError(f"--variants: unknown variant '{spec}'; expected one of {list(VARIANTS)} or a path to a "
                     f".yaml config file")


def check_overrides(opts: Sequence[str]) -> List[str]:
    """KEY VALUE pairs for every variant; OUTPUT_DIR is per variant (use --work-dir), SOLVER.MAX_ITER has --max-iter
    (which also scales the schedule) but is accepted."""
    opts = list(opts)
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        raise ValueError(f"Options {flags} come after the first KEY VALUE override, where they would be taken as "
                         "config keys; put the options (--variants, --max-iter, ...) before the overrides")
    if len(opts) % 2:
        raise ValueError(f"Config overrides must be KEY VALUE pairs; got an odd number ({len(opts)}): {opts}")
    keys = opts[0::2]
    if "OUTPUT_DIR" in keys:
        raise ValueError("OUTPUT_DIR cannot be overridden for all variants at once (they would overwrite each "
                         "other); use --work-dir DIR to put every variant in DIR/<variant>")
    return opts


def scaled_schedule(cfg, max_iter: int, user_keys: Sequence[str]) -> List[str]:
    """Overrides that shorten (or lengthen) the config's schedule to ``max_iter`` iterations: MAX_ITER, and STEPS and
    WARMUP_ITERS scaled by the same factor (unless the user overrides them), so that a quick look still warms up and
    decays the learning rate as the full run does. STEPS stay strictly increasing, >= 1 and < ``max_iter``."""
    if max_iter <= 0:
        raise ValueError(f"--max-iter must be > 0, got {max_iter}")
    full = int(cfg.SOLVER.MAX_ITER)
    factor = max_iter / full if full > 0 else 1.0
    opts = ["SOLVER.MAX_ITER", str(max_iter)]
    if "SOLVER.STEPS" not in user_keys:
        steps: List[int] = []
        for s in cfg.SOLVER.STEPS:
            s = max(1, int(round(s * factor)))
            if s < max_iter and (not steps or s > steps[-1]):  # a step at or after the end never applies
                steps.append(s)
        opts += ["SOLVER.STEPS", "(" + "".join(f"{s}," for s in steps) + ")"]
    if "SOLVER.WARMUP_ITERS" not in user_keys:
        opts += ["SOLVER.WARMUP_ITERS", str(int(round(cfg.SOLVER.WARMUP_ITERS * factor)))]
    return opts


def plan_variant(variant: dict, overrides: List[str], max_iter: Optional[int], work_dir: Optional[str]) -> dict:
    """Merge the variant's config with the overrides here, before any training, so that a typo in a key or a bad
    value fails in seconds (naming the file and key) rather than after other variants ran. Adds "opts" (everything
    passed to tools/train.py after the config file), "output_dir" and "seed" to ``variant``."""
    from det_dcn.config import get_cfg

    cfg = get_cfg()
    try:
        cfg.merge_from_file(variant["config"])
        cfg.merge_from_list(list(overrides))
    except Exception as e:
        raise ValueError(f"Variant '{variant['name']}' ({variant['config']}): {e}") from e
    opts = list(overrides)
    if max_iter is not None:
        opts += scaled_schedule(cfg, max_iter, overrides[0::2])
    output_dir = os.path.abspath(os.path.join(work_dir, variant["name"]) if work_dir else cfg.OUTPUT_DIR)
    opts += ["OUTPUT_DIR", output_dir]
    if int(cfg.SEED) < 0:
        raise ValueError(f"Variant '{variant['name']}': SEED is {cfg.SEED} in {variant['config']} (with overrides); "
                         "the zoo needs a fixed SEED >= 0 so that its numbers can be reproduced")
    return {**variant, "opts": opts, "output_dir": output_dir, "seed": int(cfg.SEED),
            "test_datasets": list(cfg.DATASETS.TEST),
            "max_iter": int(max_iter if max_iter is not None else cfg.SOLVER.MAX_ITER)}


# --------------------------------------------------------------------------------------------- reading results
def parse_console_log(text: str) -> dict:
    """Training and inference timings from a tools/train.py console log (the last occurrence of each line)."""
    out: dict = {"iterations": None, "s_per_iter": None, "train_time_s": None, "inference_ms_per_img": None,
                 "inference_total_s": None, "num_test_images": None}
    train = _TRAIN_TIME_RE.findall(text)
    if train:
        iters, s_per_it = int(train[-1][0]), float(train[-1][1])
        out.update(iterations=iters, s_per_iter=s_per_it, train_time_s=iters * s_per_it)
    infer = _INFER_TIME_RE.findall(text)
    if infer:
        total_s, model_s, timed = float(infer[-1][0]), float(infer[-1][1]), int(infer[-1][2])
        out.update(inference_total_s=total_s, inference_ms_per_img=model_s * 1000.0 if timed > 0 else None)
    start = _INFER_START_RE.findall(text)
    if start:
        out["num_test_images"] = int(start[-1])
    return out


def read_new_ap(metrics_path: str, offset: int) -> Optional[dict]:
    """The last record with "bbox/AP" among the lines appended to metrics.json after byte ``offset`` (the file is
    appended to by every run in the same OUTPUT_DIR, so older runs' records are skipped)."""
    if not os.path.isfile(metrics_path):
        return None
    with open(metrics_path, "rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    found = None
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run
        if "bbox/AP" in record:
            found = record
    if found is None:
        return None
    return {k: _finite(found.get(f"bbox/{k}")) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def count_parameters(config_yaml: str) -> Optional[int]:
    """All parameters of the model that ``config_yaml`` (a run's resolved config.yaml) builds, on the CPU."""
    import torch

    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(config_yaml)
    cfg.MODEL.DEVICE = "cpu"
    with torch.no_grad():
        model = build_model(cfg)
    return int(sum(p.numel() for p in model.parameters()))


def _finite(value) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


# ------------------------------------------------------------------------------------------------ running one
def _child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a zoo started under torchrun must not make each run join that group
    return env


def _fmt_duration(seconds: Optional[float]) -> str:
    """H:MM:SS, or "12.3 s" under a minute (a quick look's training time would otherwise read 0:00:01)."""
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f} s"
    return str(datetime.timedelta(seconds=int(round(seconds))))


def run_variant(plan: dict, log_path: str, timeout: Optional[float], progress_period: float, on_progress) -> dict:
    """Run tools/train.py for one planned variant, saving its console output to ``log_path``; returns the row."""
    cmd = [sys.executable, TRAIN_PY, "--config-file", plan["config"], *plan["opts"]]
    metrics_path = os.path.join(plan["output_dir"], "metrics.json")
    offset = os.path.getsize(metrics_path) if os.path.isfile(metrics_path) else 0
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    row = {k: plan[k] for k in ("name", "description", "config", "output_dir", "seed", "max_iter", "test_datasets")}
    row.update(log=os.path.abspath(log_path), command=cmd, status="failed", error=None)

    start = time.perf_counter()
    killed = threading.Event()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=_child_env(), bufsize=1, errors="replace")

        def kill():
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        last_report = start
        try:
            for line in proc.stdout:
                log.write(line)
                match = _ITER_RE.search(line)
                now = time.perf_counter()
                if match and now - last_report >= progress_period:
                    last_report = now
                    on_progress(int(match.group(2)), match.group(1), now - start)
            returncode = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    row["wall_s"] = time.perf_counter() - start

    with open(log_path, "r", encoding="utf-8", errors="replace") as f:
        row.update(parse_console_log(f.read()))
    ap = read_new_ap(metrics_path, offset)
    if killed.is_set():
        row["error"] = f"killed after the --timeout of {timeout:g} s"
    elif returncode != 0:
        row["error"] = f"tools/train.py exited with status {returncode}"
    elif ap is None:
        row["error"] = f"no bbox/AP record was appended to {metrics_path} (is DATASETS.TEST empty?)"
    if ap is not None:
        row.update(ap)
    if row["error"] is None:
        row["status"] = "ok"
        missing = [k for k in ("s_per_iter", "inference_ms_per_img") if row[k] is None]
        if missing:
            row["warning"] = (f"{missing} not found in {log_path}: the log lines this tool reads may have changed "
                              "(see the tools/quickstart_zoo.py docstring)")
        try:
            row["params"] = count_parameters(os.path.join(plan["output_dir"], "config.yaml"))
        except Exception as e:  # the run succeeded; a missing count should not turn it into a failure
            row["params"] = None
            row["warning"] = f"could not count parameters: {e}"
    return row


# ------------------------------------------------------------------------------------------------ the report
def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_table(rows: List[dict]) -> str:
    """The Markdown table (mmdetection DCN-table style); failed variants say so and name their log."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|:--|:--|" + "--:|" * (len(TABLE_HEADER) - 2)]
    for r in rows:
        if r["status"] != "ok":
            cells = [r["name"], r["description"], f"FAILED (log: {r['log']})"] + [""] * (len(TABLE_HEADER) - 3)
        else:
            params = "n/a" if r.get("params") is None else f"{r['params'] / 1e6:.2f} M"
            cells = [r["name"], r["description"], _num(r.get("AP"), ".1f"), _num(r.get("AP50"), ".1f"),
                     _num(r.get("AP75"), ".1f"), _fmt_duration(r.get("train_time_s")), _num(r.get("s_per_iter"), ".3f"),
                     _num(r.get("inference_ms_per_img"), ".1f"), params]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def format_report(rows: List[dict], meta: dict) -> str:
    """Table plus how it was made (command, machine, date), ready to paste into README."""
    m = meta["machine"]
    device = m["cuda"] or f"CPU ({m['cpu_count']} cores, {m['processor']})"
    datasets = sorted({d for r in rows for d in r.get("test_datasets", [])}) or ["shapes_val"]
    return (f"Quickstart zoo on {', '.join(datasets)}, measured {meta['date']} on {device}, torch {m['torch']}, "
            f"one variant at a time:\n\n    {meta['command']}\n\n{format_table(rows)}\n\n"
            "box AP / AP50 / AP75: COCO box AP (%). train time: training loop only (no data "
            "generation or evaluation), s/iter = train time / iterations. inference: model forward per image "
            "(batch 1, warm-up excluded). params: all parameters.\n")


def _write_atomic(path: str, text: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_outputs(rows: List[dict], meta: dict, md_path: str, json_path: str) -> None:
    _write_atomic(md_path, format_report(rows, meta))
    _write_atomic(json_path, json.dumps({**meta, "variants": rows}, indent=2, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Variants: " + ", ".join(f"{k} ({v[1]})" for k, v in VARIANTS.items()))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME_OR_YAML",
                        help="variants to run, in this order (default: all)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="train N iterations instead of the config's SOLVER.MAX_ITER (STEPS and WARMUP_ITERS "
                             "scaled alike) for a quick look; the numbers are then not the quickstart's")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"Markdown table path (default {DEFAULT_OUTPUT})")
    parser.add_argument("--json", default=None, help="JSON path (default: --output with the extension .json)")
    parser.add_argument("--work-dir", default=None,
                        help="put each variant's OUTPUT_DIR in WORK_DIR/<variant> (default: the config's "
                             "OUTPUT_DIR, e.g. ./output/quickstart_dconv)")
    parser.add_argument("--timeout", type=float, default=None, help="kill a variant after this many seconds")
    parser.add_argument("--progress-period", type=float, default=60.0,
                        help="seconds between progress lines while a variant trains (default 60)")
    parser.add_argument("--dry-run", action="store_true", help="check the configs and print the commands only")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every variant")
    return parser


_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")
_VALUE_OPTIONS = ("--max-iter", "--output", "--json", "--work-dir", "--timeout", "--progress-period")


def split_overrides(argv: Sequence[str]) -> tuple:
    """(options, overrides): the overrides start at the first config key (e.g. SOLVER.MAX_ITER) that is not an
    option's value. argparse alone cannot tell where ``--variants a b`` ends and ``KEY VALUE`` pairs begin."""
    argv = list(argv)
    for i, token in enumerate(argv):
        if _KEY_RE.match(token) and (i == 0 or argv[i - 1] not in _VALUE_OPTIONS):
            return argv[:i], argv[i:]
    return argv, []


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    head, tail = split_overrides(argv)
    args = build_parser().parse_args(head)
    args.opts = list(args.opts or []) + tail
    try:
        overrides = check_overrides(args.opts)
        if len(set(args.variants)) != len(args.variants):
            raise ValueError(f"--variants lists a variant twice: {args.variants}")
        plans = [plan_variant(resolve_variant(v), overrides, args.max_iter, args.work_dir) for v in args.variants]
    except ValueError as e:
        print(f"quickstart_zoo: {e}", file=sys.stderr)
        return 2
    json_path = args.json or os.path.splitext(args.output)[0] + ".json"
    log_dir = os.path.join(args.work_dir or os.path.dirname(os.path.abspath(args.output)), "logs")

    if args.dry_run:
        for p in plans:
            print(shlex.join([sys.executable, TRAIN_PY, "--config-file", p["config"], *p["opts"]]))
        return 0

    meta = {"command": shlex.join(["python", "tools/quickstart_zoo.py", *argv]),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
            "overrides": overrides, "max_iter": args.max_iter}
    rows: List[dict] = []
    durations: List[float] = []
    zoo_start = time.perf_counter()
    n = len(plans)
    for i, plan in enumerate(plans):
        log_path = os.path.join(log_dir, f"{plan['name']}.log")
        eta = _fmt_duration(sum(durations) / len(durations) * (n - i)) if durations else "unknown until one finishes"
        print(f"[{i + 1}/{n}] {plan['name']}: training {plan['max_iter']} iterations "
              f"({os.path.relpath(plan['config'], REPO)}), log {log_path}; zoo ETA {eta}", flush=True)

        def on_progress(iteration, run_eta, elapsed, name=plan["name"], max_iter=plan["max_iter"], left=n - i - 1):
            per_variant = sum(durations) / len(durations) if durations else None
            rest = f", then ~{_fmt_duration(per_variant * left)} for {left} more" if per_variant and left else ""
            print(f"      {name}: iter {iteration}/{max_iter} after {_fmt_duration(elapsed)}, "
                  f"training ETA {run_eta or 'n/a'}{rest}", flush=True)

        row = run_variant(plan, log_path, args.timeout, args.progress_period, on_progress)
        durations.append(row["wall_s"])
        rows.append(row)
        if row["status"] == "ok":
            print(f"[{i + 1}/{n}] {plan['name']}: box AP {_num(row.get('AP'), '.1f')}, train "
                  f"{_fmt_duration(row['train_time_s'])} ({_num(row['s_per_iter'], '.3f')} s/iter), inference "
                  f"{_num(row['inference_ms_per_img'], '.1f')} ms/img, wall {_fmt_duration(row['wall_s'])}", flush=True)
            if row.get("warning"):
                print(f"      warning: {row['warning']}", flush=True)
        else:
            print(f"[{i + 1}/{n}] {plan['name']}: FAILED ({row['error']}); see {row['log']}", flush=True)
        meta["total_wall_s"] = time.perf_counter() - zoo_start
        write_outputs(rows, meta, args.output, json_path)

    print("\n" + format_table(rows), flush=True)
    print(f"\nWritten {args.output} and {json_path} (total {_fmt_duration(meta['total_wall_s'])})", flush=True)
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        print("Failed variants: " + "; ".join(f"{r['name']} ({r['error']}; log {r['log']})" for r in failed),
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)  # run from a checkout without `pip install -e .`
    sys.exit(main())
