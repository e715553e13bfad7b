"""Run state with its owner (trainer / hook state_dict), metrics.json contract and clean-up after a resume,
keep-last-N checkpoints, the deferred NaN check, unreadable weights files, flags after the overrides."""

import json
import os
import pickle
import time

import pytest
import torch

from det_dcn.checkpoint import DetectionCheckpointer
from det_dcn.engine import NonFiniteLossError, default_argument_parser
from det_dcn.evaluation import DatasetEvaluator, inference_on_dataset
from det_dcn.utils.events import EventStorage

from engine_helpers import TinyModel, TinyTrainer, tiny_cfg, train_tiny


def _records(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_trainer_state_dict_holds_iteration_hooks_optimizer_and_rng(tmp_path):
    trainer = train_tiny(tiny_cfg(str(tmp_path / "a")))
    state = trainer.state_dict()
    assert state["iteration"] == trainer.iter == 6
    assert set(state) == {"iteration", "scheduler", "optimizer", "rng_states"}
    assert state["scheduler"]["last_epoch"] == 6 and len(state["rng_states"]) == 1
    fresh = TinyTrainer(tiny_cfg(str(tmp_path / "b")))
    fresh.load_state_dict(state)
    assert fresh.start_iter == 7 and fresh.scheduler.last_epoch == 6
    assert fresh.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()
    with pytest.raises(KeyError, match="no 'iteration'"):
        fresh.load_state_dict({"optimizer": state["optimizer"]})


def test_metrics_contract_train_time_and_s_per_iter(tmp_path):
    out = str(tmp_path / "run")
    trainer = train_tiny(tiny_cfg(out, **{"SOLVER.MAX_ITER": 12, "LOG_PERIOD": 5}))
    records = _records(out)
    last = [r for r in records if r["iteration"] == 11]
    assert len(last) == 1 and "total_loss" in last[0]
    times = [v for v, _ in trainer.storage.history("time").values()]
    assert len(times) == 12
    # more than 10 iterations: the first 5 are left out of the mean
    assert last[0]["train_s_per_iter"] == pytest.approx(sum(times[5:]) / 7)
    assert sum(times) <= last[0]["total_train_time_s"]
    assert not any("total_train_time_s" in r for r in records if r["iteration"] != 11)


def test_inference_ms_per_image_goes_into_the_storage():
    class Slow(torch.nn.Module):
        def forward(self, inputs):
            time.sleep(0.02)
            return [{} for _ in inputs]

    loader = [[{"image": None}] * 2 for _ in range(8)]
    with EventStorage(0) as storage:
        storage.iter = 7
        inference_on_dataset(Slow(), loader, DatasetEvaluator())
        value, it = storage.latest()["inference_ms_per_image"]
    assert it == 7 and value >= 10.0  # 20 ms per batch of 2 images
    inference_on_dataset(Slow(), loader, DatasetEvaluator())  # outside training: no storage, no error


class Interrupted(TinyTrainer):
    stop_at = 5

    def run_step(self):
        if self.iter == self.stop_at:
            raise KeyboardInterrupt("simulated kill")
        super().run_step()


def test_resume_drops_metrics_written_past_the_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    overrides = {"SOLVER.MAX_ITER": 8, "SOLVER.CHECKPOINT_PERIOD": 4, "LOG_PERIOD": 1}
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_cfg(out, **overrides), trainer_cls=Interrupted)
    assert [r["iteration"] for r in _records(out)] == [0, 1, 2, 3, 4]  # checkpoint at 3, record 4 abandoned
    stale = {r["iteration"]: r["total_loss"] for r in _records(out)}
    resumed = train_tiny(tiny_cfg(out, **overrides), resume=True)
    assert resumed.start_iter == 4
    iters = [r["iteration"] for r in _records(out)]
    assert iters == list(range(8)), iters
    assert [r["total_loss"] for r in _records(out)][:4] == [stale[i] for i in range(4)]


def test_keep_last_n_checkpoints_never_deletes_final_or_last(tmp_path):
    out = str(tmp_path / "run")
    train_tiny(tiny_cfg(out, **{"SOLVER.MAX_ITER": 7, "SOLVER.CHECKPOINT_PERIOD": 1, "SOLVER.CHECKPOINT_MAX_KEEP": 2}))
    pths = sorted(n for n in os.listdir(out) if n.endswith(".pth"))
    assert pths == ["model_0000005.pth", "model_0000006.pth", "model_final.pth"], pths
    # a checkpoint that last_checkpoint names is kept even when it is not among the newest N by iteration
    ckpt = DetectionCheckpointer(TinyModel(), out, save_to_disk=True)
    torch.save({"model": {}}, os.path.join(out, "model_0000099.pth"))
    ckpt.save("model_0000003", iteration=3)
    from det_dcn.engine.hooks import PeriodicCheckpointer

    hook = PeriodicCheckpointer(ckpt, period=1, max_iter=100, max_to_keep=1)
    hook._delete_old()
    assert sorted(n for n in os.listdir(out) if n.endswith(".pth")) == [
        "model_0000003.pth", "model_0000099.pth", "model_final.pth"]
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_MAX_KEEP"):
        TinyTrainer(tiny_cfg(out, **{"SOLVER.CHECKPOINT_MAX_KEEP": -1}))


class DeferredCheck(TinyTrainer):
    loss_check_period = 4


def test_deferred_loss_check_records_the_same_values(tmp_path):
    every = train_tiny(tiny_cfg(str(tmp_path / "a"), **{"SOLVER.MAX_ITER": 10}))
    deferred = train_tiny(tiny_cfg(str(tmp_path / "b"), **{"SOLVER.MAX_ITER": 10}), trainer_cls=DeferredCheck)
    for name in ("total_loss", "loss_mse", "loss_l1"):
        assert every.storage.history(name).values() == deferred.storage.history(name).values()
    assert _records(str(tmp_path / "a")) != [] and [r["iteration"] for r in _records(str(tmp_path / "b"))] == \
        [r["iteration"] for r in _records(str(tmp_path / "a"))]


@pytest.mark.parametrize("checkpoint_period,found_at,last_good", [(100, 7, None), (3, 5, "model_0000002.pth")])
def test_deferred_loss_check_stops_within_the_period_and_before_a_checkpoint(tmp_path, checkpoint_period,
                                                                             found_at, last_good):
    class NaNDeferred(DeferredCheck):
        nan_at_call = 4  # iteration 4; checked at iteration 7 (every 4) or before the checkpoint of iteration 5

    out = str(tmp_path / "run")
    cfg = tiny_cfg(out, **{"SOLVER.MAX_ITER": 20, "SOLVER.CHECKPOINT_PERIOD": checkpoint_period, "LOG_PERIOD": 100})
    with pytest.raises(NonFiniteLossError) as info:
        train_tiny(cfg, trainer_cls=NaNDeferred)
    msg = str(info.value)
    assert "non-finite at iteration 4" in msg and "loss_mse=nan" in msg and f"Found at iteration {found_at}" in msg
    assert (f"last good checkpoint is '{os.path.join(out, last_good)}'" in msg) if last_good else \
        "No checkpoint had been written yet" in msg
    for name in os.listdir(out):  # nothing written after the NaN
        if name.endswith(".pth"):
            ckpt = torch.load(os.path.join(out, name), weights_only=True)
            assert ckpt["iteration"] < 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_unreadable_weights_files_are_described_without_unsafe_advice(tmp_path):
    ckpt = DetectionCheckpointer(TinyModel())
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint") as info:
        ckpt.load(str(text))
    assert "notes.pth" in str(info.value)
    pickled = tmp_path / "pickled.pth"  # a plain pickle under a checkpoint's name (a .pkl gets the converter hint)
    with open(pickled, "wb") as f:
        pickle.dump({"a": 1}, f, protocol=4)
    zoo = tmp_path / "model_final.pkl"
    zoo.write_bytes(pickled.read_bytes())
    trunc = tmp_path / "trunc.pth"
    torch.save({"model": TinyModel().state_dict()}, str(trunc))
    trunc.write_bytes(trunc.read_bytes()[:300])
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path, words in ((pickled, "not a plain PyTorch checkpoint"), (trunc, "truncated or corrupt"),
                        (empty, "is empty"), (zoo, "convert it: python tools/convert_weights.py detectron2")):
        with pytest.raises(ValueError, match=words) as info:
            ckpt.load(str(path))
        msg = str(info.value)
        assert os.path.basename(str(path)) in msg
        assert "weights_only" not in msg and "Re-running" not in msg
        err = info.value  # torch's hint is not chained
        assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_flags_after_the_overrides_are_flags():
    args = default_argument_parser().parse_args(
        ["--config-file", "a.yaml", "SOLVER.MAX_ITER", "5", "--resume", "SEED", "-1", "--num-gpus", "2"])
    assert args.resume and args.num_gpus == 2 and args.config_file == "a.yaml"
    assert args.opts == ["SOLVER.MAX_ITER", "5", "SEED", "-1"]
    with pytest.raises(SystemExit):
        default_argument_parser().parse_args(["--config-file", "a.yaml", "SEED", "1", "--no-such-flag"])
