"""DefaultTrainer on a tiny stand-in model: determinism, resume, NaN stop, outputs, AMP, clipping."""

import json
import logging
import os

import pytest
import torch

from det_dcn.engine import NonFiniteLossError

from engine_helpers import TinyTrainer, tiny_cfg, train_tiny


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.model_without_ddp.state_dict().items()}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class DropoutTrainer(TinyTrainer):
    dropout = 0.3


def test_two_runs_with_fixed_seed_are_bit_identical(tmp_path):
    a = train_tiny(tiny_cfg(str(tmp_path / "a")), trainer_cls=DropoutTrainer)
    b = train_tiny(tiny_cfg(str(tmp_path / "b")), trainer_cls=DropoutTrainer)
    _assert_identical(_weights(a), _weights(b))
    c = train_tiny(tiny_cfg(str(tmp_path / "c"), SEED=4), trainer_cls=DropoutTrainer)
    assert not torch.equal(_weights(a)["fc.weight"], _weights(c)["fc.weight"])


def test_resume_is_bit_identical_to_uninterrupted_run(tmp_path):
    # k + m = 4 + 3 iterations; a checkpoint every 2 iterations, so iteration 3 ends with model_0000003.pth.
    full = train_tiny(tiny_cfg(str(tmp_path / "full"), **{"SOLVER.MAX_ITER": 7, "SOLVER.CHECKPOINT_PERIOD": 2}),
                      trainer_cls=DropoutTrainer)

    out = str(tmp_path / "resumed")
    # "stop" after 4 iterations: a run whose MAX_ITER is larger, interrupted by an exception at iteration 4.
    class Interrupted(DropoutTrainer):
        def run_step(self):
            if self.iter == 4:
                raise KeyboardInterrupt("simulated kill")
            super().run_step()

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_cfg(out, **{"SOLVER.MAX_ITER": 7, "SOLVER.CHECKPOINT_PERIOD": 2}), trainer_cls=Interrupted)
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000003.pth"
    assert not os.path.exists(os.path.join(out, "model_final.pth"))

    resumed = DropoutTrainer(tiny_cfg(out, **{"SOLVER.MAX_ITER": 7, "SOLVER.CHECKPOINT_PERIOD": 2}))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    resumed.train()
    _assert_identical(_weights(full), _weights(resumed))
    # the LR schedule continued: same LR after the last step
    assert resumed.scheduler.last_epoch == full.scheduler.last_epoch == 7
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    # metrics.json continues (appended), iterations 4.. after 0..3
    with open(os.path.join(out, "metrics.json")) as f:
        iters = [json.loads(line)["iteration"] for line in f]
    assert iters == [1, 3, 5, 6]


def test_nan_loss_stops_with_iteration_and_terms_and_keeps_checkpoint(tmp_path):
    class NaNTrainer(TinyTrainer):
        nan_at_call = 4  # 5th forward = iteration 4

    out = str(tmp_path / "nan")
    cfg = tiny_cfg(out, **{"SOLVER.MAX_ITER": 8, "SOLVER.CHECKPOINT_PERIOD": 2})
    trainer = NaNTrainer(cfg)
    trainer.resume_or_load(resume=False)
    before = _weights(trainer)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    msg = str(info.value)
    assert "iteration 4" in msg and "loss_mse=nan" in msg and "loss_l1=" in msg, msg
    assert "model_0000003.pth" in msg, msg
    # The checkpoint of iteration 3 is intact, no final model was written, and no NaN reached the weights.
    ckpt = torch.load(os.path.join(out, "model_0000003.pth"), weights_only=True)
    assert ckpt["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000003.pth"
    assert all(torch.isfinite(v).all() for v in _weights(trainer).values())
    assert not all(torch.equal(before[k], v) for k, v in _weights(trainer).items())


def test_outputs_metrics_checkpoints_and_eval(tmp_path):
    out = str(tmp_path / "run")
    cfg = tiny_cfg(out, **{"DATASETS.TEST": ("fake_val",), "TEST.EVAL_PERIOD": 3})
    trainer = TinyTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert results == {"bbox": {"AP": 42.0, "AP50": 60.0}}
    names = set(os.listdir(out))
    assert {"metrics.json", "last_checkpoint", "model_final.pth", "model_0000002.pth", "model_0000005.pth"} <= names
    assert not any(n.endswith(".tmp") for n in names)
    with open(os.path.join(out, "metrics.json")) as f:
        records = [json.loads(line) for line in f]
    train_records = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in train_records] == [1, 3, 5]
    for r in train_records:
        for key in ("loss_mse", "loss_l1", "total_loss", "lr", "time", "data_time", "memory"):
            assert key in r, (key, r)
    assert "eta_seconds" in train_records[-1]
    evals = [r for r in records if "bbox/AP" in r]
    # periodic evaluation after iteration 2 (3 iterations done) and the final one at MAX_ITER
    assert [r["iteration"] for r in evals] == [2, 6]
    assert evals[-1]["bbox/AP50"] == 60.0
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert set(ckpt) >= {"model", "optimizer", "scheduler", "iteration", "rng_states"}
    assert ckpt["iteration"] == 5


def test_lr_recorded_follows_warmup_and_steps(tmp_path):
    trainer = train_tiny(tiny_cfg(str(tmp_path), **{"LOG_PERIOD": 1}))
    lrs = [v for v, _ in trainer.storage.history("lr").values()]
    base = 0.05
    expected = [base * 0.001, base * (0.001 * 0.5 + 0.5), base, base, base * 0.1, base * 0.1]
    assert lrs == pytest.approx(expected)


def _train_amp_recording_dtypes(tmp_path):
    seen = []

    class AmpTrainer(TinyTrainer):
        @classmethod
        def build_model(cls, cfg):
            model = super().build_model(cfg)
            model.conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
            return model

    trainer = train_tiny(tiny_cfg(str(tmp_path), **{"SOLVER.AMP.ENABLED": True, "SOLVER.MAX_ITER": 2}),
                         trainer_cls=AmpTrainer)
    return trainer, seen


def test_amp_on_cpu_uses_bfloat16_and_trains(tmp_path, monkeypatch):
    monkeypatch.setattr("det_dcn.engine.trainer.native_bf16", lambda device: True)
    trainer, seen = _train_amp_recording_dtypes(tmp_path)
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert trainer.amp and trainer.grad_scaler is None
    assert all(torch.isfinite(v).all() for v in _weights(trainer).values())


def test_amp_on_a_cpu_without_bfloat16_trains_in_float32_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr("det_dcn.engine.trainer.native_bf16", lambda device: False)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # the trainer's setup_logger may stop propagation to caplog's root handler
    logging.getLogger("det_dcn.engine.trainer").addHandler(handler)
    try:
        trainer, seen = _train_amp_recording_dtypes(tmp_path)
    finally:
        logging.getLogger("det_dcn.engine.trainer").removeHandler(handler)
    assert seen and all(d == torch.float32 for d in seen)
    assert not trainer.amp
    assert any("no bfloat16 instructions" in r.getMessage() and "training in float32" in r.getMessage()
               for r in records)


def test_gradient_clipping_by_value_limits_the_update(tmp_path):
    # One SGD step without momentum: |update| <= lr * clip_value for every weight.
    cfg = tiny_cfg(str(tmp_path), **{
        "SOLVER.MAX_ITER": 1, "SOLVER.MOMENTUM": 0.0, "SOLVER.WEIGHT_DECAY": 0.0, "SOLVER.WARMUP_ITERS": 0,
        "SOLVER.BASE_LR": 1.0, "SOLVER.CLIP_GRADIENTS.ENABLED": True, "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 1e-3,
    })
    trainer = TinyTrainer(cfg)
    before = _weights(trainer)
    trainer.train()
    after = _weights(trainer)
    for k in before:
        assert (after[k] - before[k]).abs().max() <= 1e-3 + 1e-7, k


def test_bad_solver_config_names_key(tmp_path):
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_PERIOD"):
        TinyTrainer(tiny_cfg(str(tmp_path), **{"SOLVER.CHECKPOINT_PERIOD": 0}))
    with pytest.raises(ValueError, match="SOLVER.STEPS"):
        TinyTrainer(tiny_cfg(str(tmp_path), **{"SOLVER.STEPS": (5, 3)}))
