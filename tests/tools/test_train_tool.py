"""tools/train.py end to end on a tiny generated shapes dataset: train + evaluate, --eval-only, --num-gpus 2 on CPU
(gloo), and the launch scripts tools/dist_train.sh (torchrun) and tools/slurm_train.sh (with a fake srun)."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from det_dcn.config import get_cfg
from det_dcn.engine import default_argument_parser

from load_tool import load_tool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_PY = os.path.join(REPO, "tools", "train.py")

TINY_CONFIG = """\
_BASE_: "{base}"
MODEL:
  DEVICE: "cpu"
  WEIGHTS: ""
  PIXEL_MEAN: [127.5, 127.5, 127.5]
  PIXEL_STD: [64.0, 64.0, 64.0]
  BACKBONE:
    FREEZE_AT: 0
  RESNETS:
    DEPTH: 18
    NORM: "FrozenBN"
    STEM_OUT_CHANNELS: 8
    RES2_OUT_CHANNELS: 8
  FPN:
    OUT_CHANNELS: 16
  ANCHOR_GENERATOR:
    SIZES: [[16], [32], [64], [128], [256]]
  RPN:
    BATCH_SIZE_PER_IMAGE: 32
    PRE_NMS_TOPK_TRAIN: 100
    PRE_NMS_TOPK_TEST: 100
    POST_NMS_TOPK_TRAIN: 32
    POST_NMS_TOPK_TEST: 20
  ROI_HEADS:
    NUM_CLASSES: 6
    BATCH_SIZE_PER_IMAGE: 16
    SCORE_THRESH_TEST: 0.0
  ROI_BOX_HEAD:
    FC_DIM: 32
    POOLER_RESOLUTION: 7
    POOLER_SAMPLING_RATIO: 2
INPUT:
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 96
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 96
DATASETS:
  TRAIN: ("shapes_train",)
  TEST: ("shapes_val",)
DATALOADER:
  NUM_WORKERS: 0
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.01
  WARMUP_ITERS: 2
  STEPS: (3,)
  MAX_ITER: 4
  CHECKPOINT_PERIOD: 2
TEST:
  DETECTIONS_PER_IMAGE: 10
SEED: 5
LOG_PERIOD: 1
"""


def make_tiny_setup(folder: str, num_train: int = 8, num_val: int = 4) -> str:
    """Generate the shapes dataset under ``folder``/datasets/shapes and write ``folder``/tiny.yaml; returns it."""
    from det_dcn.data import shapes

    shapes.ensure_shapes(os.path.join(folder, "datasets", "shapes"), {"train": num_train, "val": num_val},
                         show_progress=False, workers=1)
    path = os.path.join(folder, "tiny.yaml")
    with open(path, "w") as f:
        f.write(TINY_CONFIG.format(base=os.path.join(REPO, "configs", "Base-RCNN-FPN.yaml")))
    return path


def run_train(folder: str, *args: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    """``python tools/train.py --config-file folder/tiny.yaml ARGS`` with the datasets root in ``folder``."""
    env = dict(os.environ, DET_DCN_DATASETS=os.path.join(folder, "datasets"))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    proc = subprocess.run(
        [sys.executable, TRAIN_PY, "--config-file", os.path.join(folder, "tiny.yaml"), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tools/train.py {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


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


def _detections(output_dir):
    with open(os.path.join(output_dir, "inference", "shapes_val", "coco_instances_results.json")) as f:
        return [x for d in json.load(f) for x in (d["image_id"], d["category_id"], d["score"], *d["bbox"])]


def test_precise_bn_in_training_and_eval_only(trained):
    """TEST.PRECISE_BN on a BatchNorm model: the pass runs before the final evaluation (so model_final holds its
    statistics) and --eval-only, recomputing them from the same batches, reproduces the final detections; without
    the pass the same file's running statistics give other detections."""
    folder, _, _ = trained
    out, again, off = (os.path.join(folder, name) for name in ("precise_bn", "precise_bn_eval", "precise_bn_off"))
    bn = ["MODEL.RESNETS.NORM", "BN", "MODEL.FPN.NORM", "BN", "TEST.PRECISE_BN.NUM_ITER", "2"]
    run_train(folder, "OUTPUT_DIR", out, "TEST.PRECISE_BN.ENABLED", "True", *bn)
    assert "Precise BN: the statistics of 28 BatchNorm layers averaged over 2 training batches" in _log(out)
    weights = os.path.join(out, "model_final.pth")
    run_train(folder, "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", again, "TEST.PRECISE_BN.ENABLED", "True",
              *bn)
    assert "Precise BN: the statistics of 28" in _log(again)
    final = _detections(out)
    assert len(final) > 0 and _detections(again) == pytest.approx(final, abs=1e-4)
    # the check can fail: statistics left as the file holds them (the pass's) give the same detections, while
    # this run's own running averages (a second training without the pass) give others
    run_train(folder, "OUTPUT_DIR", off, *bn)
    assert "Precise BN" not in _log(off) and _detections(off) != pytest.approx(final, abs=1e-4)


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
    tool = load_tool("train")
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


FAKE_SRUN = """#!/usr/bin/env bash
# fake srun: runs --ntasks copies of the command on this machine with SLURM's per-task variables
echo "$@" > "$FAKE_SRUN_LOG"
N=1; PER=1
while [ $# -gt 0 ]; do
  case "$1" in
    -p) shift 2;;
    --ntasks=*) N=${1#*=}; shift;;
    --ntasks-per-node=*) PER=${1#*=}; shift;;
    --*) shift;;
    *) break;;
  esac
done
pids=()
for ((i=0; i<N; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % PER)) SLURM_NTASKS=$N SLURM_NTASKS_PER_NODE="$PER(x1)" \\
    SLURM_JOB_NODELIST=fakenode "$@" &
  pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc
"""


def _script_env(folder, **extra):
    env = dict(os.environ, DET_DCN_DATASETS=os.path.join(folder, "datasets"), PYTHON=sys.executable, **extra)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PORT", "NNODES"):
        env.pop(k, None)
    return env


def _check_two_process_run(out):
    names = set(os.listdir(out))
    assert {"config.yaml", "metrics.json", "last_checkpoint", "model_final.pth", "log.txt"} <= names, names
    log = open(os.path.join(out, "log.txt")).read()
    assert "World size: 2" in log


def _run_script(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    # Known flake (seen once in ~10 runs): a gloo worker aborted at interpreter exit ("terminate called without an
    # active exception", exit 134) AFTER training finished. Suspected cause, since fixed in launch(): a group object
    # outliving destroy_process_group. Until that is shown over many runs, retry once in that exact case only; any
    # other failure, or a second abort, still fails the test.
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr + proc.stdout:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_dist_train_sh_runs_torchrun(trained):
    folder, _, _ = trained
    out = os.path.join(folder, "dist_sh")
    _run_script(["bash", os.path.join(REPO, "tools", "dist_train.sh"), os.path.join(folder, "tiny.yaml"), "2",
                 "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()", "OUTPUT_DIR", out], _script_env(folder))
    _check_two_process_run(out)


def test_slurm_train_sh_uses_env_rendezvous_from_slurm_variables(trained, tmp_path):
    folder, _, _ = trained
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho 127.0.0.1\n")
    for name in ("srun", "scontrol"):
        os.chmod(bin_dir / name, 0o755)
    out = os.path.join(folder, "slurm_sh")
    with socket.socket() as s:  # a free rendezvous port (the script's default is random)
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = _script_env(folder, FAKE_SRUN_LOG=str(tmp_path / "srun_args.txt"), PORT=port)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    _run_script(["bash", os.path.join(REPO, "tools", "slurm_train.sh"), "gpu", "tiny_job",
                 os.path.join(folder, "tiny.yaml"), "2", "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()",
                 "OUTPUT_DIR", out], env)
    _check_two_process_run(out)
    srun_args = (tmp_path / "srun_args.txt").read_text()
    for part in ("-p gpu", "--job-name=tiny_job", "--ntasks=2", "--ntasks-per-node=2", "--gres=gpu:2"):
        assert part in srun_args, (part, srun_args)


def test_scripts_reject_bad_arguments(tmp_path):
    for script, args in (("dist_train.sh", ["missing.yaml", "2"]), ("dist_train.sh", ["x.yaml", "two"]),
                         ("slurm_train.sh", ["p", "j", "missing.yaml", "2"]), ("slurm_train.sh", ["p"])):
        proc = subprocess.run(["bash", os.path.join(REPO, "tools", script), *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2, (script, args, proc.stderr)
        assert proc.stderr.strip(), (script, args)


# ----------------------------------------------------------------------------------------- preemption and faults
LONG_RUN = ("SOLVER.MAX_ITER", "100000", "SOLVER.CHECKPOINT_PERIOD", "100000", "DATASETS.TEST", "()",
            "LOG_PERIOD", "1")


def _children(pid):
    """Pids of the processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def _rank_processes(pid):
    """The spawned rank processes of a launching tools/train.py (not multiprocessing's resource tracker)."""
    ranks = []
    for child in _children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            ranks.append(child)
    return ranks


def _start_train(folder, *args, cmd=None, env=None):
    env = env or dict(os.environ, DET_DCN_DATASETS=os.path.join(folder, "datasets"))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    cmd = cmd or [sys.executable, TRAIN_PY, "--config-file", os.path.join(folder, "tiny.yaml")]
    return subprocess.Popen([*cmd, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a cluster job


def _wait_for_iterations(proc, out, n, timeout=300):
    """Block until OUTPUT_DIR/metrics.json has ``n`` training records (LOG_PERIOD 1)."""
    deadline = time.monotonic() + timeout
    path = os.path.join(out, "metrics.json")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tools/train.py ended early ({proc.returncode}):\n{proc.communicate()[1][-4000:]}")
        if os.path.exists(path):
            with open(path) as f:
                if sum('"total_loss"' in line for line in f) >= n:
                    return
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no {n} iterations within {timeout} s")


def _check_stopped(proc, out, signal_name):
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 75, f"exit {proc.returncode}\n{stdout[-3000:]}\n{stderr[-4000:]}"
    lines = [line for line in stdout.splitlines() if "received: stopped after iteration" in line]
    assert len(lines) == 1 and signal_name in lines[0] and "--resume" in lines[0], stdout[-3000:]
    assert "Traceback" not in stderr, stderr[-4000:]
    with open(os.path.join(out, "last_checkpoint")) as f:
        name = f.read().strip()
    ckpt = torch.load(os.path.join(out, name), weights_only=True)
    assert name == f"model_{ckpt['iteration']:07d}.pth" and f"after iteration {ckpt['iteration']} " in lines[0]
    assert not any(n.endswith(".tmp") for n in os.listdir(out))
    return ckpt["iteration"]


def test_sigterm_to_a_real_train_process_saves_and_resume_continues(trained):
    folder, _, _ = trained
    out = os.path.join(folder, "sigterm")
    proc = _start_train(folder, *LONG_RUN, "DATALOADER.NUM_WORKERS", "1", "OUTPUT_DIR", out)
    _wait_for_iterations(proc, out, 2)
    # to every process of the job, the data loader's worker included (it must not die under the trainer)
    os.killpg(proc.pid, signal.SIGTERM)
    stopped_at = _check_stopped(proc, out, "SIGTERM")
    # --resume after the overrides (flags may follow them) continues at the next iteration
    resumed = run_train(folder, "SOLVER.MAX_ITER", str(stopped_at + 2), "DATASETS.TEST", "()", "LOG_PERIOD", "1",
                        "OUTPUT_DIR", out, "--resume")
    assert f"Resuming training at iteration {stopped_at + 1}" in resumed.stdout
    iters = [r["iteration"] for r in _records(out) if "total_loss" in r]
    assert iters == list(range(stopped_at + 2)), iters


@pytest.mark.slow
def test_sigusr1_to_one_of_two_gloo_processes_stops_both_at_the_same_iteration(trained):
    folder, _, _ = trained
    out = os.path.join(folder, "sigusr1_ddp")
    proc = _start_train(folder, "--num-gpus", "2", *LONG_RUN, "OUTPUT_DIR", out)
    _wait_for_iterations(proc, out, 2)
    ranks = _rank_processes(proc.pid)
    assert len(ranks) == 2, ranks
    os.kill(max(ranks), signal.SIGUSR1)  # one rank only; the other learns it from the per-iteration agreement
    _check_stopped(proc, out, "SIGUSR1")


@pytest.mark.slow
def test_a_rank_killed_with_sigkill_stops_the_job_within_seconds(trained):
    folder, _, _ = trained
    out = os.path.join(folder, "sigkill_ddp")
    proc = _start_train(folder, "--num-gpus", "2", *LONG_RUN, "OUTPUT_DIR", out)
    _wait_for_iterations(proc, out, 2)
    ranks = _rank_processes(proc.pid)
    os.kill(max(ranks), signal.SIGKILL)
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0 and "SIGKILL" in stderr, stderr[-3000:]
    assert elapsed < 30, elapsed  # no hang waiting for the dead peer (the issue measured under 2 s)
    for pid in ranks:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


@pytest.mark.slow
def test_slurm_train_sh_requeues_on_the_signal_and_the_requeued_job_resumes(trained, tmp_path):
    folder, _, _ = trained
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text(
        '#!/usr/bin/env bash\nif [ "$1" = requeue ]; then echo "$2" >> "$REQUEUE_LOG"; else echo 127.0.0.1; fi\n')
    for name in ("srun", "scontrol"):
        os.chmod(bin_dir / name, 0o755)
    out = os.path.join(folder, "slurm_requeue")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = _script_env(folder, FAKE_SRUN_LOG=str(tmp_path / "srun_args.txt"), PORT=port, SLURM_JOB_ID="4242",
                      REQUEUE_LOG=str(tmp_path / "requeued.txt"))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    script = ["bash", os.path.join(REPO, "tools", "slurm_train.sh"), "gpu", "job", os.path.join(folder, "tiny.yaml"),
              "1"]
    proc = _start_train(folder, *LONG_RUN, "OUTPUT_DIR", out, cmd=script, env=env)
    _wait_for_iterations(proc, out, 2)
    tasks = [pid for srun in _children(proc.pid) for pid in _children(srun)]  # script -> srun -> tasks
    python = [pid for pid in tasks if b"train.py" in open(f"/proc/{pid}/cmdline", "rb").read()]
    assert python, tasks
    for pid in python:
        os.kill(pid, signal.SIGUSR1)  # what `#SBATCH --signal=USR1@120` does to the job's tasks
    stopped_at = _check_stopped(proc, out, "SIGUSR1")
    assert (tmp_path / "requeued.txt").read_text().split() == ["4242"]
    # the requeued job: same command, SLURM_RESTART_COUNT set
    env["SLURM_RESTART_COUNT"] = "1"
    resumed = _run_script([*script, "SOLVER.MAX_ITER", str(stopped_at + 2), "DATASETS.TEST", "()",
                           "OUTPUT_DIR", out], env)
    assert f"Resuming training at iteration {stopped_at + 1}" in resumed.stdout


def test_eval_only_with_test_time_augmentation(trained):
    """TEST.AUG.ENABLED adds the "bbox_TTA" evaluation (files under inference_TTA/): one unmirrored pass at the
    model's own test size reproduces the plain AP; four passes (two sizes, mirrored) are evaluated too."""
    folder, out, _ = trained
    weights = os.path.join(out, "model_final.pth")
    same = os.path.join(folder, "eval_tta_same")
    proc = run_train(folder, "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", same, "TEST.AUG.ENABLED", "True",
                     "TEST.AUG.MIN_SIZES", "(64,)", "TEST.AUG.MAX_SIZE", "96", "TEST.AUG.FLIP", "False")
    tables = proc.stdout.split("| AP | AP50 | AP75 | APs | APm | APl |")
    assert len(tables) == 3  # the plain evaluation, then the augmented one
    plain_ap, tta_ap = (float(t.splitlines()[2].strip("| ").split(" | ")[0]) for t in tables[1:])
    assert tta_ap == pytest.approx(plain_ap, abs=1e-3)
    assert os.path.isdir(os.path.join(same, "inference_TTA", "shapes_val"))
    assert "1 passes per image" in _log(same)
    four = os.path.join(folder, "eval_tta_four")
    proc = run_train(folder, "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", four, "TEST.AUG.ENABLED", "True",
                     "TEST.AUG.MIN_SIZES", "(48, 80)", "TEST.AUG.MAX_SIZE", "120", "TEST.AUG.MERGE", "vote")
    assert proc.stdout.count("| AP | AP50 | AP75 | APs | APm | APl |") == 2
    assert "4 passes per image" in _log(four) and "box voting" in _log(four)


def _log(output_dir):
    with open(os.path.join(output_dir, "log.txt"), encoding="utf-8") as f:
        return f.read()


def test_model_ema_trains_evaluates_the_average_and_eval_only_reproduces_it(trained):
    """MODEL_EMA.ENABLED: the final evaluation is of the averaged weights, which --eval-only with the same keys
    loads back (same AP); a checkpoint trained without it is refused by name."""
    folder, plain_out, _ = trained
    out = os.path.join(folder, "ema")
    keys = ["MODEL_EMA.ENABLED", "True", "MODEL_EMA.DECAY", "0.5", "MODEL_EMA.DECAY_WARM_UP_FACTOR", "3"]
    proc = run_train(folder, "OUTPUT_DIR", out, *keys)
    assert "Evaluating the averaged weights (MODEL_EMA)" in proc.stdout + _log(out)
    final = [r for r in _records(out) if "bbox/AP" in r][0]
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert ckpt["model_ema"]["num_updates"] == 4
    again = run_train(folder, "--eval-only", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
                      "OUTPUT_DIR", os.path.join(folder, "ema_eval"), *keys)
    row = again.stdout.split("| AP | AP50 | AP75 | APs | APm | APl |")[1].splitlines()[2]
    assert float(row.strip("| ").split(" | ")[0]) == pytest.approx(final["bbox/AP"], abs=1e-3)
    assert "averaged weights (MODEL_EMA) of checkpoint" in _log(os.path.join(folder, "ema_eval"))
    refused = run_train(folder, "--eval-only", "MODEL.WEIGHTS", os.path.join(plain_out, "model_final.pth"),
                        "OUTPUT_DIR", os.path.join(folder, "ema_refused"), *keys, check=False)
    assert refused.returncode != 0
    assert "has no averaged weights ('model_ema')" in refused.stderr
