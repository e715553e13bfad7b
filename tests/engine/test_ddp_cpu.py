"""Two gloo processes on CPU (through launch) train to the same weights as one process on the same total batch;
precise BN averages its statistics over them."""

import os

import pytest
import torch

from det_dcn.engine import launch, seed_all_rng

from engine_helpers import (TinyModel, bn_model_and_batches, ddp_worker, precise_bn_worker, tiny_cfg, train_tiny,
                            unused_param_worker)


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



def _precise_bn_stats(batches):
    from det_dcn.layers import update_bn_stats

    model, _ = bn_model_and_batches(0)
    update_bn_stats(model, iter(batches), num_iters=len(batches))
    return model[1].running_mean, model[1].running_var


def test_precise_bn_averages_the_statistics_over_the_processes(tmp_path):
    launch(precise_bn_worker, num_gpus_per_machine=2, args=(str(tmp_path),), backend="gloo")
    got = [torch.load(str(tmp_path / f"rank{r}.pth"), weights_only=True) for r in range(2)]
    # one process over both ranks' batches (each rank ran as many): the same averages on both ranks
    mean, var = _precise_bn_stats(bn_model_and_batches(0)[1] + bn_model_and_batches(1)[1])
    for rank_stats in got:
        torch.testing.assert_close(rank_stats["mean"], mean)
        torch.testing.assert_close(rank_stats["var"], var)
    # and not what rank 0's batches alone give (the ranks' data differ in scale)
    assert not torch.allclose(got[0]["var"], _precise_bn_stats(bn_model_and_batches(0)[1])[1])
