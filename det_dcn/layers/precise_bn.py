"""update_bn_stats: "precise BN", BatchNorm statistics recomputed over many batches with the final weights.

A BatchNorm layer normalises with the statistics of its batch in training and with ``running_mean`` /
``running_var`` at test time. Those are an exponential average (momentum 0.1: about the last 20 batches) taken while
the weights were still moving. Precise BN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"; fvcore's
``update_bn_stats`` and detectron2's ``PreciseBN`` hook, TEST.PRECISE_BN) runs the model in training mode over
``num_iters`` batches with the weights fixed and sets each layer's statistics to the average of what it normalised
with: the mean of the batch means and the mean of the (unbiased) batch variances, over every call of the layer.
"""

import itertools
import logging
from typing import Callable, Iterable, List, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

logger = logging.getLogger(__name__)


def batch_norm_layers(model: nn.Module) -> List[_BatchNorm]:
    """The BatchNorm / SyncBatchNorm layers of ``model`` that keep running statistics (FrozenBN and GN have none)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


class _BatchStatsAverage:
    """Forward pre-hook on one layer: the running sums of its inputs' per-channel means and unbiased variances."""

    def __init__(self, bn: _BatchNorm):
        self.mean_sum = torch.zeros_like(bn.running_mean, dtype=torch.float64)
        self.var_sum = torch.zeros_like(bn.running_var, dtype=torch.float64)
        self.calls = 0

    def __call__(self, module: nn.Module, inputs) -> None:
        x = inputs[0].detach()
        x = x.to(torch.promote_types(x.dtype, torch.float32))  # bfloat16 / float16 under autocast: in float32
        dims = [d for d in range(x.dim()) if d != 1]  # (N, C, ...): statistics per channel
        var, mean = torch.var_mean(x, dim=dims, correction=1)
        self.mean_sum += mean.double()
        self.var_sum += var.double()
        self.calls += 1


@torch.no_grad()
def update_bn_stats(model: nn.Module, data_loader: Iterable, num_iters: int = 200,
                    forward: Optional[Callable[[object], object]] = None) -> int:
    """Set the running statistics of every BatchNorm layer of ``model`` to their average over ``num_iters`` batches.

    Args:
        model: run in training mode during the pass (so every layer sees what it saw in training); its mode is
            restored after. Its parameters are not changed.
        data_loader: batches for ``forward``; the training loader (same augmentation as training).
        num_iters: batches to average over (detectron2's TEST.PRECISE_BN.NUM_ITER default: 200).
        forward: runs the model on one batch (e.g. under the training's autocast); default ``model(batch)``.

    Returns the number of layers updated. With several processes the averages are averaged over the processes, so
    every rank keeps the same statistics. A layer the batches never reach keeps its statistics, with a warning.
    Raises ValueError if ``data_loader`` ends before ``num_iters`` batches; then every statistic is left as it was.
    """
    if num_iters < 1:
        raise ValueError(f"update_bn_stats: num_iters must be >= 1, got {num_iters}")
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    forward = forward or model
    saved = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in layers]
    averages = [_BatchStatsAverage(bn) for bn in layers]
    handles = [bn.register_forward_pre_hook(avg) for bn, avg in zip(layers, averages)]
    was_training = model.training
    model.train()
    try:
        seen = 0
        for batch in itertools.islice(data_loader, num_iters):
            forward(batch)
            seen += 1
        if seen < num_iters:
            raise ValueError(f"update_bn_stats: the data loader ended after {seen} batches; {num_iters} were asked "
                             "for (TEST.PRECISE_BN.NUM_ITER)")
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        # The pass's own momentum updates are discarded either way: the averages replace them below.
        for bn, (mean, var, count) in zip(layers, saved):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(count)

    unreached = []
    for bn, avg in zip(layers, averages):
        calls = torch.tensor([float(avg.calls)], dtype=torch.float64, device=avg.mean_sum.device)
        stats = torch.cat([avg.mean_sum, avg.var_sum, calls])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(stats)
        mean_sum, var_sum, total_calls = stats.split([len(avg.mean_sum), len(avg.var_sum), 1])
        if total_calls.item() == 0:
            unreached.append(bn)
            continue
        bn.running_mean.copy_(mean_sum / total_calls)
        bn.running_var.copy_(var_sum / total_calls)
    if unreached:
        names = [name for name, m in model.named_modules() if any(m is bn for bn in unreached)]
        logger.warning(f"Precise BN: {len(unreached)} BatchNorm layer(s) never ran in {num_iters} batches and keep "
                       f"their statistics: {names[:5]}{' ...' if len(names) > 5 else ''}")
    return len(layers) - len(unreached)
