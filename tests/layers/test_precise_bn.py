"""update_bn_stats against statistics computed by hand from each BatchNorm layer's inputs."""

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from det_dcn.layers.precise_bn import batch_norm_layers, update_bn_stats


class TwoNorms(nn.Module):
    """conv -> bn_a -> relu -> shared (called twice: on the features and on their mirror); ``unused`` never runs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(4)
        self.shared = nn.BatchNorm2d(4)
        self.unused = nn.BatchNorm2d(4)

    def forward(self, x):
        y = torch.relu(self.bn_a(self.conv(x)))
        return self.shared(y) + self.shared(y.flip(-1) * 2 + 1).flip(-1)


def _batches(n):
    g = torch.Generator().manual_seed(0)
    # different sizes per batch, so the average is over unequal batches as in detection
    return [torch.randn(2 + i % 2, 3, 5 + i, 6, generator=g, dtype=torch.float64) * 3 + 1 for i in range(n)]


def _expected(model, batches):
    """Per-layer mean of the batch means and of the unbiased batch variances, every call counted, with training-mode
    normalisation (batch statistics) written out with F.batch_norm."""
    calls = {"bn_a": [], "shared": []}

    def normalise(name, x):
        calls[name].append((x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=True)))
        bn = getattr(model, name)
        return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)

    for x in batches:
        y = torch.relu(normalise("bn_a", model.conv(x)))
        normalise("shared", y)
        normalise("shared", y.flip(-1) * 2 + 1)
    return {name: (torch.stack([m for m, _ in c]).mean(0), torch.stack([v for _, v in c]).mean(0))
            for name, c in calls.items()}


def test_statistics_are_the_averages_of_every_call_and_nothing_else_changes(caplog):
    torch.manual_seed(0)
    model = TwoNorms().double().eval()
    with torch.no_grad():
        for bn in batch_norm_layers(model):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
            bn.running_mean.fill_(7.0)
    params = {k: v.clone() for k, v in model.named_parameters()}
    unused_before = (model.unused.running_mean.clone(), model.unused.running_var.clone())
    batches = _batches(6)
    with torch.no_grad():
        expected = _expected(model, batches)

    with caplog.at_level(logging.WARNING, logger="det_dcn"):
        assert update_bn_stats(model, iter(batches), num_iters=6) == 2

    for name, (mean, var) in expected.items():
        bn = getattr(model, name)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-12, atol=1e-12)
        assert bn.num_batches_tracked.item() == 0  # the pass is not counted as training
    assert torch.equal(model.unused.running_mean, unused_before[0])
    assert torch.equal(model.unused.running_var, unused_before[1])
    assert "1 BatchNorm layer(s) never ran" in caplog.text and "unused" in caplog.text
    assert not model.training  # mode restored
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k


def test_a_loader_that_ends_early_raises_and_leaves_the_statistics():
    model = TwoNorms()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"ended after 3 batches; 5 were asked for \(TEST.PRECISE_BN.NUM_ITER\)"):
        update_bn_stats(model, iter([b.float() for b in _batches(3)]), num_iters=5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training


def test_forward_function_and_models_without_batch_norm():
    model = TwoNorms()
    seen = []

    def forward(batch):
        seen.append(batch.dtype)
        model(batch.float())

    assert update_bn_stats(model, iter(_batches(4)), num_iters=2, forward=forward) == 2
    assert seen == [torch.float64] * 2  # only num_iters batches are taken
    no_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    assert batch_norm_layers(no_bn) == []
    assert update_bn_stats(no_bn, iter(_batches(1)), num_iters=1) == 0
    with pytest.raises(ValueError, match="num_iters must be >= 1, got 0"):
        update_bn_stats(model, iter(_batches(1)), num_iters=0)
