"""ROIAlign / ROIPool modules: same numbers as torchvision, gradients, empty RoIs."""

import pytest
import torch
from torchvision.ops import roi_align, roi_pool

from det_dcn.layers import ROIAlign, ROIPool

ROIS = torch.tensor([[0, 1.0, 1.0, 10.0, 12.0], [1, 3.5, 0.0, 7.0, 15.0], [0, -2.0, -3.0, 4.0, 5.0]],
                    dtype=torch.float64)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_matches_torchvision(aligned, sampling_ratio):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    m = ROIAlign((2, 3), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(m(x, ROIS), roi_align(x, ROIS, (2, 3), 0.5, sampling_ratio, aligned))
    assert torch.autograd.gradcheck(lambda a: m(a, ROIS), (x,))
    # Same input gradient as torchvision's kernel (the CPU aligned path runs det_dcn's own implementation).
    g = torch.randn(3, 3, 2, 3, dtype=torch.float64)
    (ours,) = torch.autograd.grad(m(x, ROIS), x, g)
    (theirs,) = torch.autograd.grad(roi_align(x, ROIS, (2, 3), 0.5, sampling_ratio, aligned), x, g)
    torch.testing.assert_close(ours, theirs)


def test_roi_pool_matches_torchvision():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    m = ROIPool(2, 0.5)
    torch.testing.assert_close(m(x, ROIS), roi_pool(x, ROIS, 2, 0.5))
    assert torch.autograd.gradcheck(lambda a: m(a, ROIS), (x,))


def test_empty_rois():
    x = torch.randn(2, 3, 8, 8)
    assert ROIAlign(7, 0.5, 0)(x, torch.zeros(0, 5)).shape == (0, 3, 7, 7)
    assert ROIPool(7, 0.5)(x, torch.zeros(0, 5)).shape == (0, 3, 7, 7)
