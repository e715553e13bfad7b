"""launch(): spawned gloo CPU processes, ranks and local groups, error propagation, torchrun (env://)."""

import os
import subprocess
import sys
import textwrap

import pytest

from det_dcn.engine import launch
from det_dcn.engine.launch import launched_by_torchrun

from engine_helpers import failing_worker, rank_report_worker

HERE = os.path.dirname(os.path.abspath(__file__))


def _read_reports(out_dir, n):
    reports = {}
    for r in range(n):
        with open(os.path.join(out_dir, f"rank{r}.txt")) as f:
            reports[r] = f.read().split()
    return reports


def test_launch_spawns_cpu_processes_with_ranks_and_local_group(tmp_path):
    launch(rank_report_worker, num_gpus_per_machine=2, args=(str(tmp_path),), backend="gloo")
    reports = _read_reports(tmp_path, 2)
    # rank, world size, local rank, local size
    assert reports == {0: ["0", "2", "0", "2"], 1: ["1", "2", "1", "2"]}


def test_launch_single_process_runs_inline(tmp_path):
    launch(rank_report_worker, num_gpus_per_machine=1, args=(str(tmp_path),))
    assert _read_reports(tmp_path, 1) == {0: ["0", "1", "0", "1"]}


def test_exception_in_a_worker_fails_the_launch_and_is_reported_with_its_rank(capfd):
    with pytest.raises(Exception) as info:
        launch(failing_worker, num_gpus_per_machine=2, backend="gloo")
    err = capfd.readouterr().err
    # The parent raises the first failure it notices (the root cause or a peer's broken connection); the root
    # cause is always printed, marked with its rank.
    assert "boom from rank 1" in str(info.value) or "[rank1] failed with" in err
    assert "ValueError: boom from rank 1" in err


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="--num-gpus"):
        launch(print, num_gpus_per_machine=0)
    with pytest.raises(ValueError, match="--machine-rank"):
        launch(print, num_gpus_per_machine=1, num_machines=2, machine_rank=2)
    with pytest.raises(ValueError, match="--dist-url auto"):
        launch(print, num_gpus_per_machine=1, num_machines=2, machine_rank=0, dist_url="auto")


def test_runs_under_torchrun_with_env_rendezvous(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {HERE!r})
        from det_dcn.engine import launch
        from engine_helpers import rank_report_worker
        launch(rank_report_worker, num_gpus_per_machine=1, args=({str(tmp_path)!r},), backend="gloo")
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        check=True, env=env, timeout=120, capture_output=True,
    )
    assert _read_reports(tmp_path, 2) == {0: ["0", "2", "0", "2"], 1: ["1", "2", "1", "2"]}


def test_torchrun_detection(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not launched_by_torchrun()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert launched_by_torchrun()


def test_bad_backend_is_named():
    with pytest.raises(ValueError, match="backend"):
        launch(print, num_gpus_per_machine=1, backend="mpi")
