"""Bad input raises a ValueError that names the argument, what was received and what was expected."""

import pytest
import torch

from det_dcn.layers import (DeformConv2d, DeformConv2dPack, DeformRoIPool, DeformRoIPoolPack,
                            ModulatedDeformConv2d, ModulatedDeformRoIPoolPack, ROIAlign, ROIPool, deform_roi_pool)

X = torch.randn(2, 4, 8, 8)
ROIS = torch.tensor([[0, 1.0, 1.0, 6.0, 6.0], [1, 0.0, 0.0, 4.0, 7.0]])


@pytest.mark.parametrize("pool", [lambda x, r: deform_roi_pool(x, r, None, 3), ROIAlign(3, 1.0, 0),
                                  ROIPool(3, 1.0), DeformRoIPool(3), DeformRoIPoolPack(3, 4, 8)])
def test_rois_errors(pool):
    with pytest.raises(ValueError, match=r"rois must have shape \[R, 5\].*got shape \(2, 4\)"):
        pool(X, ROIS[:, :4])
    with pytest.raises(ValueError, match=r"rois must have shape \[R, 5\].*got shape \(5,\)"):
        pool(X, ROIS[0])
    with pytest.raises(ValueError, match=r"rois\[:, 0\] holds batch index 2.0, expected an integer in \[0, 2\)"):
        pool(X, torch.tensor([[2, 0.0, 0.0, 3.0, 3.0]]))
    with pytest.raises(ValueError, match=r"batch index -1.0"):
        pool(X, torch.tensor([[-1, 0.0, 0.0, 3.0, 3.0]]))
    with pytest.raises(ValueError, match=r"batch index 0.5"):
        pool(X, torch.tensor([[0.5, 0.0, 0.0, 3.0, 3.0]]))
    with pytest.raises(ValueError, match=r"rois has dtype torch.float64 but input has dtype torch.float32"):
        pool(X, ROIS.double())
    with pytest.raises(ValueError, match=r"input must have shape \[N, (C|4), H, W\].*got (shape )?\(4, 8, 8\)"):
        pool(X[0], ROIS)


def test_roi_align_rejects_inverted_boxes():
    with pytest.raises(ValueError, match=r"rois holds box \[0.0, 6.0, 1.0, 1.0, 6.0\] with x2 < x1 or y2 < y1"):
        ROIAlign(3, 1.0, 0)(X, torch.tensor([[0, 6.0, 1.0, 1.0, 6.0]]))


def test_device_mismatch_error():
    meta_rois = ROIS.to("meta")
    with pytest.raises(ValueError, match=r"rois is on device meta but input is on cpu"):
        deform_roi_pool(X, meta_rois)


def test_offset_errors():
    with pytest.raises(ValueError, match=r"offset must have shape \[R, 2, PH, PW\] = \[2, 2, 3, 3\], "
                                         r"got shape \(2, 2, 7, 7\)"):
        deform_roi_pool(X, ROIS, torch.zeros(2, 2, 7, 7), 3)
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 3, 3\)"):
        DeformRoIPool(3)(X, ROIS, torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"offset has dtype torch.float64"):
        deform_roi_pool(X, ROIS, torch.zeros(2, 2, 3, 3, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match=r"sampling_ratio must be an int >= 0.*got -1"):
        deform_roi_pool(X, ROIS, None, 3, 1.0, -1)
    with pytest.raises(ValueError, match=r"output_size must be .* got \(0, 3\)"):
        deform_roi_pool(X, ROIS, None, (0, 3))


def test_pack_channel_errors():
    for cls in (DeformRoIPoolPack, ModulatedDeformRoIPoolPack):
        with pytest.raises(ValueError, match=r"input must have shape \[N, 16, H, W\] \(output_channels=16\), "
                                             r"got \(2, 4, 8, 8\)"):
            cls(3, 16, 8)(X, ROIS)


def test_deform_conv_errors():
    dcn = DeformConv2d(4, 4, 3, padding=1, deform_groups=2)
    with pytest.raises(ValueError, match=r"offset must have shape \[2, 36, 8, 8\], got \(2, 18, 8, 8\)"):
        dcn(X, torch.zeros(2, 18, 8, 8))
    with pytest.raises(ValueError, match=r"x must have 4 channels \(in_channels\), got shape \(2, 3, 8, 8\)"):
        dcn(X[:, :3], torch.zeros(2, 36, 8, 8))
    with pytest.raises(ValueError, match=r"offset has dtype torch.float64 but input has dtype torch.float32"):
        dcn(X, torch.zeros(2, 36, 8, 8, dtype=torch.float64))
    mdcn = ModulatedDeformConv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match=r"mask must have shape \[2, 9, 8, 8\], got \(2, 18, 8, 8\)"):
        mdcn(X, torch.zeros(2, 18, 8, 8), torch.zeros(2, 18, 8, 8))
    with pytest.raises(ValueError, match=r"x must have 5 channels"):
        DeformConv2dPack(5, 4, 3)(X)
    with pytest.raises(ValueError, match=r"in_channels \(4\) must be divisible by deform_groups \(3\)"):
        DeformConv2d(4, 4, 3, deform_groups=3)
    with pytest.raises(ValueError, match=r"must be divisible by groups \(3\)"):
        DeformConv2d(6, 4, 3, groups=3)
    with pytest.raises(ValueError, match=r"too small for kernel"):
        DeformConv2d(4, 4, 3)(X[..., :2, :2], torch.zeros(2, 18, 1, 1))
