"""MODEL_EMA: the moving average against a hand computation, swapping weights in and out, the trainer's hook
(evaluates the average, checkpoints it, resumes it bit for bit) and loading the average for inference."""

import os

import pytest
import torch
from torch import nn

from det_dcn.checkpoint import DetectionCheckpointer
from det_dcn.config import ConfigError, get_cfg
from det_dcn.engine import DefaultPredictor, ModelEMA, use_ema_weights

from engine_helpers import TinyTrainer, tiny_cfg, train_tiny


def _linear(value):
    m = nn.Linear(2, 1).double()
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(-value)
    return m


def test_average_matches_the_hand_computation():
    model = _linear(1.0)
    ema = ModelEMA(decay=0.9)
    ema.init_from(model)
    for value in (2.0, 4.0):
        with torch.no_grad():
            model.weight.fill_(value)
            model.bias.fill_(-value)
        ema.update(model)
    expected = 0.9 * (0.9 * 1.0 + 0.1 * 2.0) + 0.1 * 4.0  # 1.29
    torch.testing.assert_close(ema.weights["weight"], torch.full((1, 2), expected, dtype=torch.float64))
    torch.testing.assert_close(ema.weights["bias"], torch.full((1,), -expected, dtype=torch.float64))
    assert ema.num_updates == 2


def test_warm_up_is_d2go_rule_and_capped_by_decay():
    ema = ModelEMA(decay=0.99, warm_up_factor=10)
    assert [ema.decay_at(n) for n in (1, 2, 3)] == [2 / 11, 3 / 12, 4 / 13]
    assert ema.decay_at(10_000) == 0.99  # (1 + n) / (10 + n) passes 0.99 at n = 891
    model = _linear(0.0)
    ema.init_from(model)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.weights["weight"], torch.full((1, 2), 1 - 2 / 11, dtype=torch.float64))


def test_buffers_averaged_integer_buffers_copied():
    bn = nn.BatchNorm1d(3)
    ema = ModelEMA(decay=0.5)
    ema.init_from(bn)
    bn.train()
    bn(torch.randn(8, 3) + 4.0)
    ema.update(bn)
    torch.testing.assert_close(ema.weights["running_mean"], 0.5 * bn.running_mean)  # from zeros
    assert ema.weights["num_batches_tracked"].item() == 1 and ema.weights["num_batches_tracked"].dtype == torch.long


def test_applied_to_swaps_in_place_and_restores_even_after_an_error():
    model = _linear(3.0)
    weight = model.weight
    ema = ModelEMA(decay=0.5)
    ema.init_from(_linear(7.0))
    with ema.applied_to(model):
        assert model.weight is weight and torch.all(model.weight == 7.0)
    assert torch.all(model.weight == 3.0) and torch.all(model.bias == -3.0)
    with pytest.raises(RuntimeError, match="boom"):
        with ema.applied_to(model):
            raise RuntimeError("boom")
    assert torch.all(model.weight == 3.0)


def test_state_round_trip_and_errors_name_what_is_wrong():
    ema = ModelEMA(decay=0.5)
    ema.init_from(_linear(2.0))
    ema.update(_linear(4.0))
    other = ModelEMA(decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and torch.equal(other.weights["weight"], ema.weights["weight"])
    with pytest.raises(KeyError, match="'model_ema' must hold 'weights' and 'num_updates'"):
        other.load_state_dict({"weights": {}})
    with pytest.raises(KeyError, match=r"not in the model: \['bias'\]"):
        other.update(nn.Linear(2, 1, bias=False).double())
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.0"):
        ModelEMA(decay=1.0)
    cfg = get_cfg()
    cfg.MODEL_EMA.DECAY = 1.5
    with pytest.raises(ConfigError, match=r"MODEL_EMA.DECAY=1.5"):
        ModelEMA.from_config(cfg)


class RecordingTrainer(TinyTrainer):
    """Records the weights after every step and the weights the evaluation sees."""

    def run_step(self):
        super().run_step()
        self.after_steps = getattr(self, "after_steps", [])
        self.after_steps.append({k: v.clone() for k, v in self.model_without_ddp.state_dict().items()})

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        cls.evaluated = {k: v.clone() for k, v in model.state_dict().items()}
        return {"bbox": {"AP": 42.0}}


def _ema_cfg(out, **more):
    return tiny_cfg(out, **{"MODEL_EMA.ENABLED": True, "MODEL_EMA.DECAY": 0.6, "DATASETS.TEST": ("fake_val",),
                            **more})


def test_trainer_averages_every_step_evaluates_the_average_and_checkpoints_it(tmp_path):
    out = str(tmp_path / "run")
    trainer = RecordingTrainer(_ema_cfg(out))
    start = {k: v.clone() for k, v in trainer.model_without_ddp.state_dict().items()}
    trainer.resume_or_load(resume=False)
    trainer.train()
    expected = {}
    for name, value in start.items():
        avg = value.clone()
        for step in trainer.after_steps:
            avg = 0.6 * avg + 0.4 * step[name]
        expected[name] = avg
        torch.testing.assert_close(trainer.model_ema.weights[name], avg)
        torch.testing.assert_close(RecordingTrainer.evaluated[name], avg)  # the evaluation saw the average
        # and the model got its own weights back
        assert torch.equal(trainer.model_without_ddp.state_dict()[name], trainer.after_steps[-1][name])
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert ckpt["model_ema"]["num_updates"] == 6
    for name in expected:
        torch.testing.assert_close(ckpt["model_ema"]["weights"][name], expected[name])
        assert torch.equal(ckpt["model"][name], trainer.after_steps[-1][name])  # "model" stays the raw weights

    # loading for inference takes the average; a file without one is refused by name
    model = TinyTrainer.build_model(None)
    DetectionCheckpointer(model).load(os.path.join(out, "model_final.pth"), ema=True)
    torch.testing.assert_close(model.state_dict()["fc.weight"], expected["fc.weight"])
    plain = str(tmp_path / "plain.pth")
    torch.save({"model": ckpt["model"]}, plain)
    with pytest.raises(ValueError, match=r"plain.pth' has no averaged weights \('model_ema'\).*MODEL_EMA.ENABLED"):
        DetectionCheckpointer(model).load(plain, ema=True)


def test_resume_restores_the_average_bit_for_bit(tmp_path):
    overrides = {"SOLVER.MAX_ITER": 7, "SOLVER.CHECKPOINT_PERIOD": 2}
    full = train_tiny(_ema_cfg(str(tmp_path / "full"), **overrides))

    class Interrupted(TinyTrainer):
        def run_step(self):
            if self.iter == 4:
                raise KeyboardInterrupt("simulated kill")
            super().run_step()

    out = str(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train_tiny(_ema_cfg(out, **overrides), trainer_cls=Interrupted)
    resumed = train_tiny(_ema_cfg(out, **overrides), resume=True)
    assert resumed.start_iter == 4 and resumed.model_ema.num_updates == full.model_ema.num_updates == 7
    for name, value in full.model_ema.weights.items():
        assert torch.equal(resumed.model_ema.weights[name], value), name


def test_inference_loading_follows_the_keys(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "tiny_faster_rcnn.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    raw = DefaultPredictor(cfg).model.state_dict()
    averaged = {k: v + 1 if v.is_floating_point() else v for k, v in raw.items()}
    path = str(tmp_path / "model_final.pth")
    torch.save({"model": raw, "model_ema": {"weights": averaged, "num_updates": 5}}, path)
    cfg.MODEL.WEIGHTS = path
    assert not use_ema_weights(cfg)
    name = next(k for k, v in raw.items() if v.is_floating_point())
    assert torch.equal(DefaultPredictor(cfg).model.state_dict()[name], raw[name])
    for key in ("ENABLED", "USE_EMA_WEIGHTS_FOR_EVAL_ONLY"):
        c = cfg.clone()
        c.MODEL_EMA[key] = True
        assert use_ema_weights(c)
        assert torch.equal(DefaultPredictor(c).model.state_dict()[name], averaged[name])
