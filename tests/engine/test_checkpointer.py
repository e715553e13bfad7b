"""DetectionCheckpointer: round trip, atomic writes, tolerant loading with a report, resume_or_load."""

import logging
import os

import pytest
import torch
from torch import nn

from det_dcn.checkpoint import DetectionCheckpointer


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.cls_score = nn.Linear(4, num_classes + 1)


def _make(tmp_path, num_classes=3):
    torch.manual_seed(num_classes)
    model = Net(num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    return model, opt, sched, DetectionCheckpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt,
                                                   scheduler=sched)


def test_save_and_resume_round_trip(tmp_path):
    model, opt, sched, ckpt = _make(tmp_path)
    model.backbone.weight.grad = torch.ones_like(model.backbone.weight)
    opt.step()
    sched.step()
    path = ckpt.save("model_0000009", iteration=9)
    assert path == os.path.join(str(tmp_path), "model_0000009.pth")
    assert ckpt.get_checkpoint_file() == path
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]

    model2, opt2, sched2, ckpt2 = _make(tmp_path, num_classes=3)
    torch.nn.init.zeros_(model2.backbone.weight)
    extra = ckpt2.resume_or_load("", resume=True)
    assert extra["iteration"] == 9
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    assert sched2.last_epoch == 1
    momentum = [o.state_dict()["state"][0]["momentum_buffer"] for o in (opt, opt2)]
    assert torch.equal(momentum[0], momentum[1])


def test_failure_during_save_leaves_no_partial_file(tmp_path, monkeypatch):
    model, opt, sched, ckpt = _make(tmp_path)
    good = ckpt.save("model_0000001", iteration=1)
    good_bytes = open(good, "rb").read()

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save("model_0000002", iteration=2)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save("model_0000001", iteration=1)  # overwriting an existing checkpoint
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert open(good, "rb").read() == good_bytes
    assert ckpt.get_checkpoint_file() == good
    assert torch.load(good, weights_only=True)["iteration"] == 1


def test_load_reports_mismatched_missing_and_unexpected_keys(tmp_path, caplog):
    src = Net(num_classes=80)
    state = {"module." + k: v for k, v in src.state_dict().items()}  # as saved from a DDP-wrapped model
    state["module.extra.weight"] = torch.zeros(2)
    del state["module.bn.running_var"]
    path = str(tmp_path / "other.pth")
    torch.save({"model": state, "iteration": 5}, path)

    model = Net(num_classes=3)
    before = model.cls_score.weight.clone()
    ckpt = DetectionCheckpointer(model)
    with caplog.at_level(logging.INFO, logger="det_dcn"):
        ckpt.load(path, checkpointables=[])
    report = ckpt.last_load_report
    assert sorted(k for k, _, _ in report.mismatched_keys) == ["cls_score.bias", "cls_score.weight"]
    assert ("cls_score.weight", (81, 4), (4, 4)) in report.mismatched_keys
    assert report.missing_keys == ["bn.running_var"]
    assert report.unexpected_keys == ["extra.weight"]
    assert torch.equal(model.cls_score.weight, before)  # skipped, not half-loaded
    assert torch.equal(model.backbone.weight, src.backbone.weight)  # the rest loaded
    text = caplog.text
    assert "cls_score.weight: checkpoint (81, 4) vs model (4, 4)" in text
    assert "bn.running_var" in text and "extra.weight" in text


def test_report_groups_keys_by_module(tmp_path, caplog):
    path = str(tmp_path / "backbone_only.pth")
    torch.save({"model": {"backbone.weight": Net().backbone.weight}}, path)
    with caplog.at_level(logging.INFO, logger="det_dcn"):
        DetectionCheckpointer(Net()).load(path)
    assert "cls_score.{bias, weight}" in caplog.text
    assert "bn.{bias, running_mean, running_var, weight}" in caplog.text


def test_load_plain_state_dict_and_converted_format(tmp_path):
    src = Net()
    for i, payload in enumerate([src.state_dict(), {"model": src.state_dict(), "__author__": "convert"}]):
        path = str(tmp_path / f"w{i}.pth")
        torch.save(payload, path)
        model = Net()
        DetectionCheckpointer(model).load(path)
        assert torch.equal(model.backbone.weight, src.backbone.weight)


def test_missing_or_bad_file_is_named(tmp_path):
    ckpt = DetectionCheckpointer(Net())
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ckpt.load(missing)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ckpt.resume_or_load(missing, resume=False)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        ckpt.load(str(bad))
    torch.save({"model": {"w": [1, 2]}}, str(tmp_path / "lists.pth"))
    with pytest.raises(ValueError, match="not tensors"):
        ckpt.load(str(tmp_path / "lists.pth"))


def test_only_the_writing_process_saves(tmp_path):
    ckpt = DetectionCheckpointer(Net(), str(tmp_path), save_to_disk=False)
    assert ckpt.save("model_final", iteration=1) is None
    assert os.listdir(tmp_path) == []


def test_resume_without_checkpoint_loads_weights_only(tmp_path):
    src = Net()
    path = str(tmp_path / "init.pth")
    torch.save({"model": src.state_dict(), "optimizer": {"bogus": 1}, "iteration": 77}, path)
    model, opt, sched, ckpt = _make(tmp_path / "out")
    extra = ckpt.resume_or_load(path, resume=True)
    assert torch.equal(model.backbone.weight, src.backbone.weight)
    assert sched.last_epoch == 0  # optimizer / scheduler untouched
    assert extra.get("iteration") == 77
