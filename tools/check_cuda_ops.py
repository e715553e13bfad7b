#!/usr/bin/env python
"""GPU check of det_dcn.layers: the CUDA tests (``pytest -m cuda tests/layers``: every op on CUDA against the CPU
under float32/float64, float16 and bfloat16 autocast, float64 gradchecks of the fused kernels), then the
operator benchmark on CUDA. Exits non-zero when a test fails.

    python tools/check_cuda_ops.py [--skip-bench] [pytest arguments ...]
"""

import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    skip_bench = "--skip-bench" in argv
    argv = [a for a in argv if a != "--skip-bench"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tests = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-rs",
                             os.path.join(ROOT, "tests", "layers")] + argv, cwd=ROOT, env=env)
    if not skip_bench:
        bench = subprocess.call([sys.executable, os.path.join(ROOT, "tools", "benchmark_ops.py"), "--device", "cuda"],
                                cwd=ROOT, env=env)
        tests = tests or bench
    return tests


if __name__ == "__main__":
    sys.exit(main())
