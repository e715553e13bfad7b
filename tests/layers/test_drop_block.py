"""DropBlock2d: zeroed squares of the right size and rate, the rescale, the warm-up, the identity at test time."""

import pytest
import torch
import torch.nn.functional as F

from det_dcn.layers import DropBlock2d


def _dropped(p, block_size, shape=(4, 32, 48, 40), seed=0):
    torch.manual_seed(seed)
    module = DropBlock2d(p, block_size).train()
    out = module(torch.ones(shape))
    return out, out == 0


def test_dropped_cells_form_whole_squares_at_the_asked_rate():
    p, k = 0.15, 5
    out, zero = _dropped(p, k)
    # Every dropped cell lies in a dropped k x k square inside the map: a morphological opening of the mask (the
    # centres whose whole square is dropped, dilated back by the square) gives the mask back; dropout would not.
    mask, r = zero.float(), k // 2
    centres = -F.max_pool2d(-mask, k, stride=1, padding=r)
    centres[..., :r, :] = centres[..., -r:, :] = 0  # a square's centre is at least r cells from the border
    centres[..., :r] = centres[..., -r:] = 0
    assert torch.equal(F.max_pool2d(centres, k, stride=1, padding=r), mask)
    # torchvision's gamma gives about p of the cells dropped (overlapping squares make it a little less)
    assert 0.7 * p < zero.float().mean().item() < 1.05 * p
    # the kept cells are rescaled so the mean is preserved: all equal to numel / kept
    kept = out[~zero]
    torch.testing.assert_close(kept, torch.full_like(kept, zero.numel() / (~zero).sum().item()), rtol=1e-5, atol=0)


def test_identity_in_eval_mode_with_p_zero_and_before_the_warm_up():
    x = torch.randn(2, 8, 16, 16)
    assert DropBlock2d(0.3, 3).eval()(x) is x
    assert DropBlock2d(0.0, 3).train()(x) is x
    module = DropBlock2d(0.3, 3, warmup_iters=10).train()
    module.set_iteration(0)
    assert module(x) is x


def test_warm_up_is_linear_then_constant():
    module = DropBlock2d(0.2, 3, warmup_iters=8)
    assert module.current_p == 0.2  # no trainer has set the iteration: the full probability
    expected = {0: 0.0, 2: 0.05, 4: 0.1, 8: 0.2, 100: 0.2}
    for iteration, p in expected.items():
        module.set_iteration(iteration)
        assert module.current_p == pytest.approx(p)
    no_warm_up = DropBlock2d(0.2, 3)
    no_warm_up.set_iteration(0)
    assert no_warm_up.current_p == 0.2


@pytest.mark.parametrize("hw", [(4, 6), (2, 2), (1, 9)])
def test_a_block_larger_than_the_map_shrinks_to_an_odd_size_that_fits(hw):
    torch.manual_seed(0)
    out = DropBlock2d(0.5, 7).train()(torch.ones(2, 16, *hw))
    assert out.shape == (2, 16, *hw) and torch.isfinite(out).all()


def test_bfloat16_autocast_and_gradients():
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    module = DropBlock2d(0.2, 3).train()
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    torch.manual_seed(2)
    out = module(x)
    out.sum().backward()
    # the gradient is the mask times the rescale: zero exactly where the output was zeroed
    assert torch.equal(x.grad == 0, out == 0)


@pytest.mark.parametrize("kwargs, words", [
    (dict(p=1.0, block_size=3), ["p=1.0", "[0, 1)"]),
    (dict(p=-0.1, block_size=3), ["p=-0.1"]),
    (dict(p=0.1, block_size=4), ["block_size=4", "odd"]),
    (dict(p=0.1, block_size=3, warmup_iters=-1), ["warmup_iters=-1", ">= 0"]),
])
def test_bad_arguments_name_the_value(kwargs, words):
    with pytest.raises(ValueError) as e:
        DropBlock2d(**kwargs)
    for w in words:
        assert w in str(e.value)
