"""tools/benchmark_eval.py end to end on a small generated set (it checks the backends agree and exits otherwise)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def _run(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark_eval.py"), *args], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_benchmark_eval_small():
    out = _run("--images", "15", "--classes", "4", "--dets", "20", "--ranks", "0")
    assert "ratio fast / pycocotools" in out
    assert "largest difference of the 12 numbers and per-category AP: 0.00e+00" in out
    assert "same content: True" in out


@pytest.mark.slow
def test_benchmark_eval_gather_from_two_ranks():
    out = _run("--images", "20", "--classes", "4", "--dets", "20", "--ranks", "2")
    assert "gathering" in out and "gather numpy columns (now)" in out
