"""Below the torch version the autocast helpers need, importing det_dcn fails with a message naming it."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_old_torch_is_refused_by_name():
    code = "import torch; torch.__version__ = torch.torch_version.TorchVersion('2.3.1'); import det_dcn.layers"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode != 0
    assert "det_dcn needs torch >= 2.4" in proc.stderr and "found torch 2.3.1" in proc.stderr


def test_setup_states_the_same_minimum():
    import det_dcn

    setup = open(os.path.join(REPO, "setup.py")).read()
    assert f'"torch>={det_dcn.MIN_TORCH_VERSION}"' in setup
