"""deform_roi_pool: equality with roi_align, an independent naive reference, exact gradients, edge cases."""

import pytest
import torch
from torchvision.ops import roi_align

from det_dcn.layers import DeformRoIPool, deform_roi_pool
from det_dcn.layers.deform_roi_pool_torch import deform_roi_pool_torch
from deform_roi_pool_naive import naive_deform_roi_pool


def random_rois(num, n_images, img_h, img_w, generator, min_size=0.5, max_size=None, outside=0.0):
    """[num, 5] float64 boxes with random sizes; ``outside`` lets them stick out of the image by that fraction."""
    max_size = max_size or max(img_h, img_w)
    size = torch.empty(num, 2, dtype=torch.float64).uniform_(min_size, max_size, generator=generator)
    lo = torch.tensor([-outside * img_w, -outside * img_h], dtype=torch.float64)
    hi = torch.tensor([img_w * (1 + outside), img_h * (1 + outside)], dtype=torch.float64)
    ctr = lo + torch.rand(num, 2, dtype=torch.float64, generator=generator) * (hi - lo)
    idx = torch.randint(0, n_images, (num, 1), generator=generator).double()
    return torch.cat([idx, ctr - size / 2, ctr + size / 2], dim=1)


@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 3])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25, 1.0 / 8])
def test_no_offset_equals_roi_align(sampling_ratio, spatial_scale):
    g = torch.Generator().manual_seed(int(sampling_ratio * 100 + 1 / spatial_scale))
    x = torch.randn(2, 5, 11, 14, dtype=torch.float64, generator=g)
    rois = random_rois(30, 2, 11 / spatial_scale, 14 / spatial_scale, g, outside=0.2)
    expected = roi_align(x, rois, (3, 4), spatial_scale, sampling_ratio, aligned=True)
    torch.testing.assert_close(deform_roi_pool(x, rois, None, (3, 4), spatial_scale, sampling_ratio), expected)
    zero = torch.zeros(30, 2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(deform_roi_pool(x, rois, zero, (3, 4), spatial_scale, sampling_ratio), expected)
    # float32 too (the common case)
    out32 = deform_roi_pool(x.float(), rois.float(), None, (3, 4), spatial_scale, sampling_ratio)
    torch.testing.assert_close(out32, roi_align(x.float(), rois.float(), (3, 4), spatial_scale, sampling_ratio,
                                                aligned=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 3])
def test_offsets_match_naive_reference(sampling_ratio):
    g = torch.Generator().manual_seed(7 + sampling_ratio)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=g)
    rois = random_rois(8, 2, 12, 14, g, min_size=0.2, outside=0.3)
    rois[:2, [1, 3]] = rois[:2, [3, 1]]  # two RoIs with x2 < x1 (negative width)
    # large offsets push many samples into the border band and beyond it
    offset = torch.randn(8, 2, 2, 3, dtype=torch.float64, generator=g) * 2.0
    out = deform_roi_pool(x, rois, offset, (2, 3), 0.5, sampling_ratio, gamma=0.3)
    ref = naive_deform_roi_pool(x, rois, offset, (2, 3), 0.5, sampling_ratio, 0.3)
    torch.testing.assert_close(out, ref)
    assert (ref == 0).any() and (ref != 0).any()


def test_border_band_samples():
    # Bins placed on the band: centre samples at -1 / (3, 2.5) are clamped onto the border, -1.5 / (4.1, 3.1)
    # are dropped.
    x = torch.arange(12, dtype=torch.float64).view(1, 1, 3, 4) + 1
    rois = torch.tensor([[0, -1.0, -1.0, 0.0, 0.0], [0, -1.5, -1.5, -0.5, -0.5],
                         [0, 3.5, 2.5, 4.5, 3.5], [0, 4.6, 3.6, 5.6, 4.6]], dtype=torch.float64)
    for offset in (None, torch.full((4, 2, 1, 1), 0.7, dtype=torch.float64)):
        out = deform_roi_pool(x, rois, offset, 1, 1.0, 1, gamma=0.5)
        torch.testing.assert_close(out, naive_deform_roi_pool(x, rois, offset, (1, 1), 1.0, 1, 0.5))
    out = deform_roi_pool(x, rois, None, 1, 1.0, 1)
    assert out.flatten().tolist() == [1.0, 0.0, 12.0, 0.0]


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_gradcheck_input_and_offset(sampling_ratio):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    rois = random_rois(4, 2, 10, 12, g, outside=0.2)
    offset = (torch.randn(4, 2, 2, 2, dtype=torch.float64, generator=g) * 0.8).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, o: deform_roi_pool(a, rois, o, (2, 2), 0.5, sampling_ratio, 0.3), (x, offset))


def test_empty_rois():
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    out = deform_roi_pool(x, torch.zeros(0, 5), torch.zeros(0, 2, 3, 3), 3)
    assert out.shape == (0, 4, 3, 3)
    out.sum().backward()
    assert x.grad is not None and (x.grad == 0).all()


def test_degenerate_rois_give_zeros_and_finite_grads():
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 2.0, 2.0, 2.0, 2.0], [0, 4.0, 1.0, 4.0, 5.0], [0, 5.0, 5.0, 1.0, 1.0]],
                        dtype=torch.float64)
    offset = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    out = deform_roi_pool(x, rois, offset, 2, 1.0, 0)
    assert (out == 0).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(offset.grad).all()
    # with a fixed grid a zero-size RoI samples one point, exactly as roi_align does; gradients stay finite
    out = deform_roi_pool(x, rois, offset, 2, 1.0, 2)
    torch.testing.assert_close(out, naive_deform_roi_pool(x, rois, offset, (2, 2), 1.0, 2, 0.1))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(offset.grad).all()


def test_module_and_rectangular_output():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64, generator=g)
    rois = random_rois(4, 1, 18, 18, g)
    offset = torch.randn(4, 2, 2, 4, dtype=torch.float64, generator=g) * 0.5
    pool = DeformRoIPool((2, 4), spatial_scale=0.5, sampling_ratio=0, gamma=0.2)
    torch.testing.assert_close(pool(x, rois, offset), naive_deform_roi_pool(x, rois, offset, (2, 4), 0.5, 0, 0.2))


def test_mixed_sample_grids_keep_roi_order():
    # RoIs of very different sizes (different adaptive grids, some without samples) in shuffled order
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=g)
    rois = torch.cat([random_rois(10, 2, 16, 16, g, min_size=0.2, max_size=40),
                      torch.tensor([[1, 3.0, 3.0, 3.0, 9.0]], dtype=torch.float64)])[torch.randperm(11, generator=g)]
    offset = torch.randn(11, 2, 3, 3, dtype=torch.float64, generator=g)
    out = deform_roi_pool_torch(x, rois, offset, (3, 3), 0.5, 0, 0.1)
    torch.testing.assert_close(out, naive_deform_roi_pool(x, rois, offset, (3, 3), 0.5, 0, 0.1))
