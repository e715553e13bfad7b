"""tools/train.py prints a config error as one line (the key, the value, what is expected), not a traceback."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("override, message", [
    (["INPUT.CROP.NOPE", "1"], "Non-existent key: INPUT.CROP.NOPE"),  # refused while merging
    (["MODEL.MASK_ON", "True"], "MODEL.MASK_ON=True is not supported"),  # refused when the model is built
])
def test_config_error_is_one_line(tmp_path, override, message):
    cmd = [sys.executable, os.path.join(REPO, "tools", "train.py"), "--config-file",
           os.path.join(REPO, "configs", "Base-RCNN-FPN.yaml"), "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
           "OUTPUT_DIR", str(tmp_path), *override]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tools/train.py: ") and message in last, last
