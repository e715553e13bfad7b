"""Optimizer parameter groups, LR schedule values and their resumable state, gradient clipping config."""

import logging
import math

import pytest
import torch
from torch import nn

from det_dcn.config import get_cfg
from det_dcn.layers import FrozenBatchNorm2d
from det_dcn.solver import (
    WarmupCosineLR,
    WarmupMultiStepLR,
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.frozen = FrozenBatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.stem = nn.Conv2d(3, 3, 1)
        self.stem.weight.requires_grad_(False)


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.02
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.BIAS_LR_FACTOR = 2.0
    cfg.SOLVER.WEIGHT_DECAY_BIAS = 0.0
    for k, v in solver.items():
        cfg.SOLVER[k] = v
    return cfg


def _hyper(optimizer):
    out = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            out[id(p)] = (g["lr"], g["weight_decay"])
    return out


def test_param_groups_norm_weight_decay_and_bias_lr():
    model = Net()
    opt = build_optimizer(_cfg(), model)
    h = _hyper(opt)
    assert h[id(model.conv.weight)] == (0.02, 1e-4)
    assert h[id(model.fc.weight)] == (0.02, 1e-4)
    assert h[id(model.conv.bias)] == (0.04, 0.0)  # bias: BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS
    assert h[id(model.bn.weight)] == (0.02, 0.0)  # norm weight: WEIGHT_DECAY_NORM
    assert h[id(model.gn.bias)] == (0.04, 0.0)  # norm bias: bias LR, norm decay
    assert id(model.stem.weight) not in h  # frozen parameters are not optimized
    assert h[id(model.stem.bias)] == (0.04, 0.0)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])
    assert len(opt.param_groups) == 3  # grouped by (lr, weight decay)
    assert opt.defaults["momentum"] == 0.9


def test_negative_bias_decay_means_weight_decay_and_norm_decay_applies():
    model = Net()
    opt = build_optimizer(_cfg(WEIGHT_DECAY_BIAS=-1.0, WEIGHT_DECAY_NORM=5e-5, BIAS_LR_FACTOR=1.0), model)
    h = _hyper(opt)
    assert h[id(model.conv.bias)] == (0.02, 1e-4)
    assert h[id(model.bn.bias)] == (0.02, 5e-5)


def test_shared_parameter_appears_once():
    model = Net()
    model.fc2 = model.fc  # same module twice
    opt = build_optimizer(_cfg(), model)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("key,value", [("BASE_LR", 0.0), ("MOMENTUM", 1.0), ("WEIGHT_DECAY", -1.0)])
def test_bad_solver_values_are_named(key, value):
    with pytest.raises(ValueError, match=f"SOLVER.{key}"):
        build_optimizer(_cfg(**{key: value}), Net())


def _lrs(scheduler, optimizer, n):
    out = []
    for _ in range(n):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def _opt(lr=1.0):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_multistep_values():
    opt = _opt()
    sched = WarmupMultiStepLR(opt, [6, 8], gamma=0.1, warmup_factor=0.1, warmup_iters=4, warmup_method="linear")
    expected = [0.1, 0.325, 0.55, 0.775, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert _lrs(sched, opt, 10) == pytest.approx(expected)


def test_constant_warmup_values():
    opt = _opt()
    sched = WarmupMultiStepLR(opt, [3], warmup_factor=0.5, warmup_iters=2, warmup_method="constant")
    assert _lrs(sched, opt, 5) == pytest.approx([0.5, 0.5, 1.0, 0.1, 0.1])


def test_warmup_cosine_values():
    opt = _opt(2.0)
    sched = WarmupCosineLR(opt, max_iter=10, warmup_factor=0.5, warmup_iters=2)
    lrs = _lrs(sched, opt, 11)
    cos = [2.0 * 0.5 * (1 + math.cos(math.pi * i / 10)) for i in range(11)]
    assert lrs[0] == pytest.approx(cos[0] * 0.5)
    assert lrs[1] == pytest.approx(cos[1] * 0.75)
    assert lrs[2:] == pytest.approx(cos[2:])
    assert lrs[-1] == pytest.approx(0.0)


def test_cosine_ends_at_base_lr_end():
    # detectron2's rule: the cosine runs from BASE_LR down to BASE_LR_END instead of 0
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", MAX_ITER=8, WARMUP_ITERS=0, BASE_LR=0.04, BASE_LR_END=0.004)
    opt = _opt(0.04)
    lrs = _lrs(build_lr_scheduler(cfg, opt), opt, 10)
    expected = [0.004 + 0.036 * 0.5 * (1 + math.cos(math.pi * min(i, 8) / 8)) for i in range(10)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] == pytest.approx(0.04) and lrs[8:] == pytest.approx([0.004, 0.004])


def test_base_lr_end_outside_the_schedule_is_refused_or_reported(caplog):
    for end in (0.05, -0.001, float("nan")):
        cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", MAX_ITER=8, BASE_LR=0.04, BASE_LR_END=end)
        with pytest.raises(ValueError, match=rf"SOLVER.BASE_LR_END {end}: .* \[0, SOLVER.BASE_LR 0.04\]"):
            build_lr_scheduler(cfg, _opt(0.04))
    with pytest.raises(ValueError, match="SOLVER.BASE_LR_END 0.01: .* SOLVER.BASE_LR 0.0"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR=0.0, BASE_LR_END=0.01), _opt(0.0))
    with pytest.raises(ValueError, match="final LR must lie between 0 and the base LR"):
        WarmupCosineLR(_opt(), max_iter=8, end_factor=1.5)
    # the step schedule has no end LR: it runs as configured and says the key is not used
    with caplog.at_level(logging.WARNING, logger="det_dcn.solver.build"):
        sched = build_lr_scheduler(_cfg(STEPS=(3,), BASE_LR_END=0.001), _opt())
    assert isinstance(sched, WarmupMultiStepLR)
    assert "SOLVER.BASE_LR_END 0.001 is ignored" in caplog.text


@pytest.mark.parametrize("name", ["WarmupMultiStepLR", "WarmupCosineLR"])
def test_scheduler_state_dict_resumes_the_schedule(name):
    cfg = _cfg(LR_SCHEDULER_NAME=name, MAX_ITER=20, STEPS=(5, 12), WARMUP_ITERS=3)
    model = Net()
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    full = _lrs(sched, opt, 20)

    opt1 = build_optimizer(cfg, model)
    sched1 = build_lr_scheduler(cfg, opt1)
    first = _lrs(sched1, opt1, 8)
    state_o, state_s = opt1.state_dict(), sched1.state_dict()
    opt2 = build_optimizer(cfg, model)
    sched2 = build_lr_scheduler(cfg, opt2)
    opt2.load_state_dict(state_o)
    sched2.load_state_dict(state_s)
    rest = _lrs(sched2, opt2, 12)
    assert first + rest == full


def test_bad_schedule_config_is_named():
    with pytest.raises(ValueError, match="SOLVER.LR_SCHEDULER_NAME"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="Poly"), _opt())
    with pytest.raises(ValueError, match="SOLVER.WARMUP_METHOD"):
        build_lr_scheduler(_cfg(WARMUP_METHOD="exp"), _opt())
    with pytest.raises(ValueError, match="SOLVER.STEPS"):
        build_lr_scheduler(_cfg(STEPS=(10, 10)), _opt())


def test_gradient_clipper_from_config():
    assert build_gradient_clipper(_cfg()) is None
    cfg = _cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 3.0)
    build_gradient_clipper(cfg)([p])
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    with pytest.raises(ValueError, match="CLIP_TYPE"):
        build_gradient_clipper(cfg)
