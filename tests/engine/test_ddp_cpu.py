"""Two gloo processes on CPU (through launch) train to the same weights as one process on the same total batch."""

import os

import pytest
import torch

from det_dcn.engine import launch, seed_all_rng

from engine_helpers import TinyModel, ddp_worker, unused_param_worker, tiny_cfg, train_tiny


def test_two_process_ddp_equals_single_process(tmp_path):
    overrides = {"SOLVER.MAX_ITER": 4, "SOLVER.MOMENTUM": 0.9, "SOLVER.CHECKPOINT_PERIOD": 100}
    single = train_tiny(tiny_cfg(str(tmp_path / "single"), **overrides))
    expected = single.model_without_ddp.state_dict()

    ddp_dir = str(tmp_path / "ddp")
    out_file = str(tmp_path / "ddp_weights.pth")
    cfg = tiny_cfg(ddp_dir, **overrides)
    launch(ddp_worker, num_gpus_per_machine=2, args=(cfg.dump(), out_file), backend="gloo")

    got = torch.load(out_file, weights_only=True)
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6, msg=k)
    # the weights moved (the comparison is not trivially between initial weights)
    seed_all_rng(3)
    init = TinyModel().state_dict()
    assert (init["fc.weight"] - got["fc.weight"]).abs().max() > 1e-3
    # only rank 0 wrote files, and they are the usual ones
    names = sorted(os.listdir(ddp_dir))
    assert "model_final.pth" in names and "metrics.json" in names
    assert not any("rank1" in n for n in names)


def test_unused_parameters_error_names_the_config_key(tmp_path):
    cfg = tiny_cfg(str(tmp_path / "unused"), **{"SOLVER.MAX_ITER": 2})
    with pytest.raises(Exception) as info:
        launch(unused_param_worker, num_gpus_per_machine=2, args=(cfg.dump(),), backend="gloo")
    assert "FIND_UNUSED_PARAMETERS" in str(info.value)


def test_find_unused_parameters_key_lets_such_a_model_train(tmp_path):
    cfg = tiny_cfg(str(tmp_path / "unused_ok"), **{"SOLVER.MAX_ITER": 2, "FIND_UNUSED_PARAMETERS": True})
    launch(unused_param_worker, num_gpus_per_machine=2, args=(cfg.dump(),), backend="gloo")
    assert os.path.exists(str(tmp_path / "unused_ok" / "model_final.pth"))
