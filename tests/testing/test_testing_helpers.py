"""det_dcn.testing: interleaved timing with torch.utils.benchmark Measurements, and variants that start as the
plain model."""

import time

import pytest
import torch
from torch import nn

from det_dcn.layers import ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack, deform_roi_pool
from det_dcn.testing import start_as_plain_model, time_interleaved


def test_time_interleaved_order_warmup_and_measurements():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: (calls.append("b"), time.sleep(0.02))}
    result = time_interleaved(fns, iters=3, warmup=2, label="demo")
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up first, then the functions take turns
    assert len(result["a"].raw_times) == len(result["b"].raw_times) == 3
    assert result["b"].median >= 0.02 > result["a"].median
    assert result["b"].task_spec.description == "b" and result["b"].metadata is None
    with pytest.raises(ValueError, match="iters must be >= 1"):
        time_interleaved(fns, iters=0)


def test_start_as_plain_model_makes_modulated_layers_plain():
    torch.manual_seed(0)
    conv = ModulatedDeformConv2dPack(4, 6, 3, padding=1, deform_groups=2, bias=True)
    plain_conv = nn.Conv2d(4, 6, 3, padding=1)
    state = {"weight": plain_conv.weight.detach().clone(), "bias": plain_conv.bias.detach().clone()}
    start_as_plain_model(conv, state)
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(conv(x), plain_conv(x))

    pool = ModulatedDeformRoIPoolPack(3, 4, deform_fc_channels=8)
    start_as_plain_model(pool, {})
    rois = torch.tensor([[0, 1.0, 1.0, 7.0, 8.0]])
    torch.testing.assert_close(pool(x, rois), deform_roi_pool(x, rois, None, (3, 3), 1.0, 0, 0.1))

    with pytest.raises(ValueError, match=r"keys of the plain model the variant lacks: \['extra'\]"):
        start_as_plain_model(conv, {**state, "extra": torch.zeros(1)})
