"""EventStorage, JSONWriter (detectron2's metrics.json format), CommonMetricPrinter, TensorBoard, logger."""

import json
import logging
import os

import pytest
import torch

from det_dcn.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    JSONWriter,
    TensorboardWriter,
    get_event_storage,
    tensorboard_available,
)
from det_dcn.utils.logger import setup_logger


def test_storage_smoothing_and_errors():
    with pytest.raises(RuntimeError, match="outside an EventStorage"):
        get_event_storage()
    with EventStorage(start_iter=0) as storage:
        assert get_event_storage() is storage
        for i, v in enumerate([1.0, 100.0, 3.0]):
            storage.iter = i
            storage.put_scalar("loss", torch.tensor(v))
            storage.put_scalar("lr", 0.1 * (i + 1), smoothing_hint=False)
        smoothed = storage.latest_with_smoothing_hint(window_size=3)
        assert smoothed["loss"] == (3.0, 2)  # median of 1, 100, 3
        assert smoothed["lr"] == (pytest.approx(0.3), 2)
        with pytest.raises(ValueError, match="one-element"):
            storage.put_scalar("bad", torch.zeros(2))
        with pytest.raises(KeyError, match="nope"):
            storage.history("nope")


def test_json_writer_writes_one_object_per_iteration(tmp_path):
    path = str(tmp_path / "metrics.json")
    writer = JSONWriter(path, window_size=1)
    with EventStorage() as storage:
        for it in range(4):
            storage.iter = it
            storage.put_scalars(total_loss=1.0 / (it + 1), loss_cls=0.5, time=0.2, data_time=0.01)
            storage.put_scalar("lr", 0.01, smoothing_hint=False)
            if it % 2 == 1:
                writer.write()
        storage.put_scalars(**{"bbox/AP": 50.0, "bbox/AP50": 70.0}, smoothing_hint=False, cur_iter=4)
        writer.write()
        writer.write()  # nothing new: nothing appended
    writer.close()
    lines = [json.loads(line) for line in open(path)]
    assert [r["iteration"] for r in lines] == [1, 3, 4]
    assert lines[1] == {"iteration": 3, "total_loss": 0.25, "loss_cls": 0.5, "time": 0.2, "data_time": 0.01,
                        "lr": 0.01}
    assert lines[2] == {"iteration": 4, "bbox/AP": 50.0, "bbox/AP50": 70.0}


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_printer_line_has_eta_losses_times_lr_and_memory():
    printer = CommonMetricPrinter(max_iter=100)
    handler = _ListHandler()
    printer.logger.addHandler(handler)
    printer.logger.setLevel(logging.INFO)
    try:
        with EventStorage() as storage:
            for it in range(3):
                storage.iter = it
                storage.put_scalars(total_loss=2.0, loss_cls=1.5, time=0.5, data_time=0.1)
                storage.put_scalar("lr", 0.02, smoothing_hint=False)
            printer.write()
            assert storage.latest()["eta_seconds"][0] == pytest.approx(0.5 * 97)
            assert storage.latest()["memory"][0] > 0
    finally:
        printer.logger.removeHandler(handler)
    line = handler.messages[-1]
    for part in ("eta: 0:00:48", "iter: 2", "total_loss: 2", "loss_cls: 1.5", "time: 0.5000", "data_time: 0.1000",
                 "lr: 0.02", "max_mem:"):
        assert part in line, (part, line)
    assert line.index("total_loss") < line.index("loss_cls")


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard not installed")
def test_tensorboard_writer_creates_event_file(tmp_path):
    writer = TensorboardWriter(str(tmp_path))
    with EventStorage() as storage:
        storage.put_scalar("total_loss", 1.0)
        writer.write()
    writer.close()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))


def test_logger_names_rank_and_only_rank0_writes_a_file(tmp_path, capsys):
    logger = setup_logger(str(tmp_path / "r0"), distributed_rank=0, name="det_dcn_test_logger", color=False)
    logger.info("hello from zero")
    out = capsys.readouterr().out
    assert "rank0]" in out and "hello from zero" in out
    assert "hello from zero" in open(tmp_path / "r0" / "log.txt").read()

    logger = setup_logger(str(tmp_path / "r1"), distributed_rank=1, name="det_dcn_test_logger", color=False)
    logger.info("quiet info")
    logger.warning("loud warning")
    captured = capsys.readouterr()
    assert "quiet info" not in captured.out + captured.err
    assert "rank1]" in captured.err and "loud warning" in captured.err
    assert not os.path.exists(tmp_path / "r1")
    # reconfiguring replaced the handlers instead of stacking them
    assert len(logger.handlers) == 1
