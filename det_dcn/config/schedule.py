"""scale_schedule: the KEY VALUE overrides that stretch a config's LR schedule to another number of iterations."""

from typing import List, Sequence


def scale_schedule(cfg, max_iter: int, user_keys: Sequence[str] = ()) -> List[str]:
    """Overrides that shorten (or lengthen) ``cfg``'s schedule to ``max_iter`` iterations: SOLVER.MAX_ITER, and
    SOLVER.STEPS and SOLVER.WARMUP_ITERS scaled by the same factor (unless ``user_keys`` overrides them), so that a
    short run still warms up and decays the learning rate as the full one does. STEPS stay strictly increasing,
    >= 1 and < ``max_iter`` (a step at or after the end would never apply)."""
    if max_iter <= 0:
        raise ValueError(f"SOLVER.MAX_ITER for a scaled schedule must be > 0, got {max_iter}")
    full = int(cfg.SOLVER.MAX_ITER)
    factor = max_iter / full if full > 0 else 1.0
    opts = ["SOLVER.MAX_ITER", str(max_iter)]
    if "SOLVER.STEPS" not in user_keys:
        steps: List[int] = []
        for s in cfg.SOLVER.STEPS:
            s = max(1, int(round(s * factor)))
            if s < max_iter and (not steps or s > steps[-1]):
                steps.append(s)
        opts += ["SOLVER.STEPS", "(" + "".join(f"{s}," for s in steps) + ")"]
    if "SOLVER.WARMUP_ITERS" not in user_keys:
        opts += ["SOLVER.WARMUP_ITERS", str(int(round(cfg.SOLVER.WARMUP_ITERS * factor)))]
    return opts
