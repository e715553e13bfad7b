"""Faults inside one process: SIGTERM / SIGUSR1 stop and save, a second signal during the save, a full disk during a
save, a truncated newest checkpoint on resume. (Real tools/train.py processes, one and two, are signalled and
killed in tests/tools/test_train_tool.py.)"""

import errno
import logging
import os
import signal

import pytest
import torch

from det_dcn.checkpoint import CheckpointSaveError
from det_dcn.engine import CallbackHook
from det_dcn.engine.preemption import EXIT_STOPPED, TrainingStopped
from det_dcn.utils import atomic_io

from engine_helpers import TinyTrainer, tiny_cfg, train_tiny

@pytest.fixture
def det_dcn_records(caplog):
    """caplog of the "det_dcn" logger, which trainers set not to propagate to the root logger."""
    logger = logging.getLogger("det_dcn")
    logger.addHandler(caplog.handler)
    logger.propagate = False  # (restored by conftest) so records are not seen twice
    caplog.handler.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


OVERRIDES = {"SOLVER.MAX_ITER": 8, "SOLVER.CHECKPOINT_PERIOD": 3, "LOG_PERIOD": 1}


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.model_without_ddp.state_dict().items()}


class DropoutTrainer(TinyTrainer):
    dropout = 0.3


def signal_trainer(signum, at_iter):
    class Signalled(DropoutTrainer):
        def build_hooks(self):
            # the signal arrives while iteration `at_iter` runs
            send = CallbackHook(before_step=lambda t: t.iter == at_iter and os.kill(os.getpid(), signum))
            return [send] + super().build_hooks()

    return Signalled


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_stops_after_the_iteration_saves_and_resumes_bit_identically(tmp_path, det_dcn_records, signum):
    caplog = det_dcn_records
    full = train_tiny(tiny_cfg(str(tmp_path / "full"), **OVERRIDES), trainer_cls=DropoutTrainer)
    out = str(tmp_path / "stopped")
    before = signal.getsignal(signum)
    with pytest.raises(TrainingStopped) as info:
        train_tiny(tiny_cfg(out, **OVERRIDES), trainer_cls=signal_trainer(signum, 4))
    assert info.value.code == EXIT_STOPPED
    name = signal.Signals(signum).name
    lines = [r.getMessage() for r in caplog.records if "received: stopped" in r.getMessage()]
    assert len(lines) == 1 and f"{name} received: stopped after iteration 4" in lines[0], lines
    assert "model_0000004.pth" in lines[0] and "--resume" in lines[0]
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000004.pth"
    assert torch.load(os.path.join(out, "model_0000004.pth"), weights_only=True)["iteration"] == 4
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    # the default handlers are back after training
    assert signal.getsignal(signum) == before

    resumed = train_tiny(tiny_cfg(out, **OVERRIDES), resume=True, trainer_cls=DropoutTrainer)
    assert resumed.start_iter == 5
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_second_signal_during_the_save_corrupts_nothing(tmp_path, monkeypatch, capfd):
    out = str(tmp_path / "run")
    real_save = atomic_io.atomic_torch_save
    sent = []

    def save_while_signalled(obj, path):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of writing the checkpoint
        sent.append(path)
        real_save(obj, path)

    monkeypatch.setattr("det_dcn.checkpoint.checkpointer.atomic_torch_save", save_while_signalled)
    with pytest.raises(TrainingStopped):
        train_tiny(tiny_cfg(out, **{**OVERRIDES, "SOLVER.CHECKPOINT_PERIOD": 100}),
                   trainer_cls=signal_trainer(signal.SIGTERM, 2))
    assert sent == [os.path.join(out, "model_0000002.pth")]
    assert "received again" in capfd.readouterr().err
    ckpt = torch.load(os.path.join(out, "model_0000002.pth"), weights_only=True)
    assert ckpt["iteration"] == 2 and not any(n.endswith(".tmp") for n in os.listdir(out))


@pytest.mark.parametrize("where", ["before_writing", "while_writing"])
def test_full_disk_during_a_save_is_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                                      det_dcn_records, where):
    caplog = det_dcn_records
    out = str(tmp_path / "run")
    calls = []

    class FullDiskTrainer(TinyTrainer):
        def build_hooks(self):
            def fill_disk(trainer):
                if trainer.iter != 3 or calls:
                    return
                calls.append(1)
                if where == "before_writing":
                    usage = atomic_io.shutil.disk_usage(out)
                    monkeypatch.setattr(atomic_io.shutil, "disk_usage", lambda p: usage._replace(free=1000))
                else:
                    def no_space(fd):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    monkeypatch.setattr(atomic_io.os, "fsync", no_space)

            return [CallbackHook(before_step=fill_disk)] + super().build_hooks()

    with pytest.raises(CheckpointSaveError) as info:
        train_tiny(tiny_cfg(out, **OVERRIDES), trainer_cls=FullDiskTrainer)
    monkeypatch.undo()
    msg = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert "No space left on device" in msg and f"output folder '{out}'" in msg and " bytes" in msg
    assert "model_0000005.pth" in msg and "model_0000002.pth' is kept" in msg
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None and "No space left on device" in errors[0].getMessage()
    assert sorted(os.listdir(out)) == ["last_checkpoint", "metrics.json", "model_0000002.pth"]
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000002.pth"
    assert torch.load(os.path.join(out, "model_0000002.pth"), weights_only=True)["iteration"] == 2


class Interrupted(TinyTrainer):
    def run_step(self):
        if self.iter == 7:
            raise KeyboardInterrupt("simulated kill")
        super().run_step()


def test_resume_falls_back_from_a_truncated_newest_checkpoint(tmp_path, det_dcn_records):
    caplog = det_dcn_records
    out = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_cfg(out, **{**OVERRIDES, "SOLVER.CHECKPOINT_PERIOD": 2}), trainer_cls=Interrupted)
    newest = os.path.join(out, "model_0000005.pth")
    data = open(newest, "rb").read()
    with open(newest, "wb") as f:
        f.write(data[: len(data) // 2])
    trainer = TinyTrainer(tiny_cfg(out, **OVERRIDES))
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 4  # from model_0000003.pth
    warning = [r.getMessage() for r in caplog.records if "Cannot resume from the newest" in r.getMessage()]
    assert len(warning) == 1 and "model_0000005.pth" in warning[0] and "truncated or corrupt" in warning[0]
    assert "model_0000003.pth" in warning[0]
    trainer.train()

    # nothing loadable: a clear failure naming the corrupt file, not a silent fresh start
    for name in ("model_0000001.pth", "model_0000003.pth", "model_0000005.pth", "model_0000007.pth",
                 "model_final.pth"):
        with open(os.path.join(out, name), "wb") as f:
            f.write(b"garbage")
    with pytest.raises(ValueError, match="Cannot resume: .*model_final.pth.*no other checkpoint"):
        TinyTrainer(tiny_cfg(out, **OVERRIDES)).resume_or_load(resume=True)
