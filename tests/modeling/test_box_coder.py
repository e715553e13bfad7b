import math

import pytest
import torch

from det_dcn.modeling.box_coder import Box2BoxTransform


def random_boxes(n, seed=0, max_size=200.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 500
    wh = torch.rand(n, 2, generator=g) * max_size + 1
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_round_trip(weights):
    t = Box2BoxTransform(weights)
    src, tgt = random_boxes(50, 0), random_boxes(50, 1)
    deltas = t.get_deltas(src, tgt)
    torch.testing.assert_close(t.apply_deltas(deltas, src), tgt, rtol=1e-5, atol=1e-3)


def test_known_values_and_weights():
    t = Box2BoxTransform((10.0, 10.0, 5.0, 5.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    tgt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    expected = torch.tensor([[10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]])
    torch.testing.assert_close(t.get_deltas(src, tgt), expected)


def test_multi_box_rows_are_decoded_independently():
    t = Box2BoxTransform((1.0, 1.0, 1.0, 1.0))
    src = random_boxes(4)
    targets = [random_boxes(4, seed) for seed in (5, 6, 7)]
    deltas = torch.cat([t.get_deltas(src, tg) for tg in targets], dim=1)  # [4, 3*4]: 3 "classes"
    out = t.apply_deltas(deltas, src).view(4, 3, 4)
    for k, tg in enumerate(targets):
        torch.testing.assert_close(out[:, k], tg, rtol=1e-5, atol=1e-3)


def test_scale_clamp_keeps_boxes_finite():
    t = Box2BoxTransform((1.0, 1.0, 1.0, 1.0))
    src = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    out = t.apply_deltas(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), src)
    assert torch.isfinite(out).all()
    # exp(log(1000/16)) * 16 = 1000: the largest box a delta may produce from a 16-px box.
    torch.testing.assert_close(out[0, 2] - out[0, 0], torch.tensor(1000.0))


def test_bad_weights():
    with pytest.raises(ValueError, match="weights"):
        Box2BoxTransform((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="weights"):
        Box2BoxTransform((1.0, 0.0, 1.0, 1.0))
