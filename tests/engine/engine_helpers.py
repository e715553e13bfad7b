"""Small stand-ins for engine tests: a tiny model, a deterministic sharded loader, and a trainer using them.

The tiny model has a GroupNorm (no batch statistics, so DDP equals a single process), returns per-image-averaged
losses (so averaging over ranks equals averaging over the global batch) and optionally dropout (so a resume test
sees whether the RNG state continues).
"""

import os
from typing import Dict, List

import torch
from torch import nn

from det_dcn.config import get_cfg
from det_dcn.engine import DefaultTrainer
from det_dcn.utils import comm

DATASET_SIZE = 10
# names of the generated shapes splits registered by the `dataset` fixture (conftest.py)
SHAPES_TRAIN, SHAPES_VAL = "engine_test_shapes_train", "engine_test_shapes_val"


class TinyModel(nn.Module):
    """conv -> GroupNorm -> ReLU -> (dropout) -> pool -> linear; loss_mse to the target and loss_l1 of the output."""

    def __init__(self, dropout: float = 0.0, nan_at_call: int = -1):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4, 2)
        self.nan_at_call = nan_at_call
        self.calls = 0

    def forward(self, batched_inputs: List[Dict]) -> Dict[str, torch.Tensor]:
        images = torch.stack([d["image"] for d in batched_inputs]).float()
        targets = torch.stack([d["target"] for d in batched_inputs])
        x = self.drop(torch.relu(self.norm(self.conv(images))))
        out = self.fc(x.mean(dim=(2, 3)))
        loss_mse = ((out - targets) ** 2).sum(dim=1).mean()
        loss_l1 = 0.1 * out.abs().sum(dim=1).mean()
        if self.calls == self.nan_at_call:
            loss_mse = loss_mse * float("nan")
        self.calls += 1
        return {"loss_mse": loss_mse, "loss_l1": loss_l1}


def make_item(index: int) -> Dict:
    g = torch.Generator().manual_seed(1000 + index)
    return {"image": torch.rand(3, 8, 8, generator=g) * 255, "target": torch.randn(2, generator=g), "index": index}


class ShardedLoader:
    """Infinite batches: global batch b holds stream positions [b*G, (b+1)*G) of a seeded permutation stream;
    rank r takes positions r, r+W, ... of it, so the union of the ranks' batches is the single-process batch."""

    def __init__(self, total_batch: int, seed: int, start_iter: int = 0):
        self.world, self.rank = comm.get_world_size(), comm.get_rank()
        self.total, self.seed, self.start_iter = total_batch, seed, start_iter

    def _stream(self):
        g = torch.Generator().manual_seed(self.seed)
        while True:
            yield from torch.randperm(DATASET_SIZE, generator=g).tolist()

    def __iter__(self):
        stream = self._stream()
        # skip the global batches before start_iter
        for _ in range(self.start_iter * self.total):
            next(stream)
        while True:
            positions = [next(stream) for _ in range(self.total)]
            yield [make_item(i) for i in positions[self.rank::self.world]]


class TinyTrainer(DefaultTrainer):
    """DefaultTrainer on TinyModel and ShardedLoader; evaluation returns a fixed fake AP."""

    dropout = 0.0
    nan_at_call = -1

    @classmethod
    def build_model(cls, cfg):
        return TinyModel(cls.dropout, cls.nan_at_call)

    @classmethod
    def build_train_loader(cls, cfg, start_iter=0):
        return ShardedLoader(cfg.SOLVER.IMS_PER_BATCH, cfg.SEED, start_iter)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        return {"bbox": {"AP": 42.0, "AP50": 60.0}}


def tiny_cfg(output_dir: str, **overrides):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = output_dir
    cfg.SEED = 3
    cfg.MODEL.DEVICE = "cpu"
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.MAX_ITER = 6
    cfg.SOLVER.STEPS = (4,)
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 3
    cfg.SOLVER.WEIGHT_DECAY = 1e-3
    cfg.LOG_PERIOD = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def train_tiny(cfg, resume: bool = False, trainer_cls=TinyTrainer):
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def ddp_worker(cfg_yaml: str, out_file: str) -> None:
    """Run in each spawned process: train the tiny model, rank 0 saves its weights."""
    from det_dcn.config import CfgNode

    cfg = CfgNode.load_cfg(cfg_yaml)
    trainer = train_tiny(cfg)
    assert comm.get_world_size() == 2, comm.get_world_size()
    if comm.is_main_process():
        torch.save({k: v.clone() for k, v in trainer.model_without_ddp.state_dict().items()}, out_file)
    # Only rank 0 writes: rank 1 must not have created its own files in OUTPUT_DIR.
    comm.synchronize()


def rank_report_worker(out_dir: str) -> None:
    """Writes this process's rank, world size and local rank to out_dir/rank<r>.txt (launch test)."""
    with open(os.path.join(out_dir, f"rank{comm.get_rank()}.txt"), "w") as f:
        f.write(f"{comm.get_rank()} {comm.get_world_size()} {comm.get_local_rank()} {comm.get_local_size()}")


def failing_worker() -> None:
    if comm.get_rank() == 1:
        raise ValueError("boom from rank 1")
    comm.synchronize()


class UnusedParamTrainer(TinyTrainer):
    """TinyModel plus a layer its forward never uses: DDP needs find_unused_parameters."""

    @classmethod
    def build_model(cls, cfg):
        model = TinyModel()
        model.unused = nn.Linear(2, 2)
        return model


def unused_param_worker(cfg_yaml: str) -> None:
    from det_dcn.config import CfgNode

    train_tiny(CfgNode.load_cfg(cfg_yaml), trainer_cls=UnusedParamTrainer)


def bn_model_and_batches(rank: int):
    """A conv + BatchNorm model with the same weights on every rank, and three batches of this rank's own."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    g = torch.Generator().manual_seed(100 + rank)
    return model, [torch.randn(2, 3, 6, 6, generator=g) * (rank + 1) for _ in range(3)]


def precise_bn_worker(out_dir: str) -> None:
    """Run in each spawned process: update_bn_stats on this rank's batches; each rank saves its statistics."""
    from det_dcn.layers import update_bn_stats

    model, batches = bn_model_and_batches(comm.get_rank())
    update_bn_stats(model, iter(batches), num_iters=3)
    bn = model[1]
    torch.save({"mean": bn.running_mean, "var": bn.running_var}, os.path.join(out_dir, f"rank{comm.get_rank()}.pth"))
