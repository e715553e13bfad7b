"""scale_schedule: MAX_ITER, STEPS and WARMUP_ITERS scaled together; user overrides win; steps stay valid."""

import pytest

from det_dcn.config import get_cfg, scale_schedule


def _cfg(max_iter=1400, steps=(1150, 1330), warmup=100):
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = max_iter, steps, warmup
    return cfg


def test_scales_steps_and_warmup():
    assert scale_schedule(_cfg(), 140) == ["SOLVER.MAX_ITER", "140", "SOLVER.STEPS", "(115,133,)",
                                           "SOLVER.WARMUP_ITERS", "10"]
    assert scale_schedule(_cfg(), 2800)[3] == "(2300,2660,)"


def test_steps_stay_increasing_and_inside_the_run():
    assert scale_schedule(_cfg(), 2)[:4] == ["SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()"]
    assert scale_schedule(_cfg(), 6)[3] == "(5,)"  # 4.9 and 5.7 round to 5 and 6: 6 is the end, dropped


def test_user_keys_are_left_alone_and_bad_lengths_fail():
    assert scale_schedule(_cfg(), 90, ["SOLVER.STEPS", "SOLVER.WARMUP_ITERS"]) == ["SOLVER.MAX_ITER", "90"]
    with pytest.raises(ValueError, match="must be > 0"):
        scale_schedule(_cfg(), 0)
