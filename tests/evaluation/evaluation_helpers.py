"""Shared by the evaluator tests: a model that returns given outputs, and an evaluation run as ranks 0 and 1 of a
real 2-process gloo group (forked CPU processes, no launcher)."""

import json
import multiprocessing
import socket

import torch

from det_dcn.utils import comm


class OracleModel(torch.nn.Module):
    """Returns ``outputs_by_id[image_id]`` for each input: tests the evaluation loop, not a model."""

    def __init__(self, outputs_by_id: dict):
        super().__init__()
        self.outputs_by_id = outputs_by_id
        self.lin = torch.nn.Linear(1, 1)  # a parameter, so that train/eval mode is a real state

    def forward(self, inputs):
        assert not self.training and not torch.is_grad_enabled()
        return [self.outputs_by_id[d["image_id"]] for d in inputs]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(evaluate, rank, port, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        res = evaluate(rank)
        if rank == 0:
            with open(out_file, "w") as f:
                json.dump(res, f)
        else:
            assert res == {}, f"rank 1 returned {res}; evaluators return results on rank 0 only"
    finally:
        comm.destroy_process_group()


def run_on_two_gloo_ranks(evaluate, out_file: str) -> dict:
    """``evaluate(rank)`` in each of two forked processes joined in a gloo group -> rank 0's result (through JSON,
    so NaN survives); fails unless both processes exit cleanly. Forked: ``evaluate`` need not be picklable."""
    port = _free_port()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rank_main, args=(evaluate, r, port, out_file)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.is_alive():  # hung (e.g. waiting for a rank that died): do not leave it behind
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    with open(out_file) as f:
        return json.load(f)
