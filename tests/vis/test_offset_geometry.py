"""The sampling geometry drawn by tools/visualize_offsets.py agrees with what the ops actually compute.

Trick: convolve / pool a "ramp" feature map whose value is its own x (or y) index; bilinear sampling of a linear
function is exact, so the op's output IS the sampled coordinate, which must equal the drawn point.
"""

import numpy as np
import pytest
import torch

from det_dcn.vis.deform_sampling import DCNRecord, dcn_sampling_points, nearest_unit, propagate_sampling, roi_bins

layers = pytest.importorskip("det_dcn.layers")
if not hasattr(layers, "DeformConv2d"):
    pytest.skip("det_dcn.layers has no deformable ops yet", allow_module_level=True)


def _ramps(h, w):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    return xs, ys


@pytest.mark.parametrize("stride,dilation", [(1, 1), (1, 2), (2, 1)])
def test_dcn_points_match_deform_conv(stride, dilation):
    torch.manual_seed(0)
    h = w = 24
    xs, ys = _ramps(h, w)
    x = torch.stack([xs, ys])[None]  # [1, 2, H, W]: channel 0 = x index, channel 1 = y index
    conv = layers.DeformConv2d(2, 18, 3, stride=stride, padding=dilation, dilation=dilation).double()
    # Output channel 2k copies the x ramp at kernel point k, channel 2k + 1 the y ramp.
    with torch.no_grad():
        conv.weight.zero_()
        for k in range(9):
            conv.weight[2 * k, 0].view(-1)[k] = 1.0
            conv.weight[2 * k + 1, 1].view(-1)[k] = 1.0
    ho = (h + 2 * dilation - 2 * dilation - 1) // stride + 1
    # |offset| < 2.5 and units >= 5 cells from the border: every sample stays inside the map (no zero padding).
    offset = (0.8 * torch.randn(1, 18, ho, ho, dtype=torch.float64)).clamp(-2.4, 2.4)
    out = conv(x, offset)[0].detach().numpy()  # [18, Ho, Ho]

    in_stride = 4.0  # any stride: points are mapped to image pixels and back
    rec = DCNRecord("l", (3, 3), (stride,) * 2, (dilation,) * 2, (dilation,) * 2, in_stride, offset[0].numpy())
    for oy, ox in [(5, 6), (6, 5), (ho - 6, 5)]:
        centre = np.array([ox * rec.out_stride + 0.5, oy * rec.out_stride + 0.5])
        assert nearest_unit(rec, centre)[0] == (ox, oy)
        pts, weights = dcn_sampling_points(rec, centre[None])
        feat = (pts[0] - 0.5) / in_stride  # [9, 2] input feature indices
        np.testing.assert_allclose(feat[:, 0], out[0::2, oy, ox], atol=1e-9)
        np.testing.assert_allclose(feat[:, 1], out[1::2, oy, ox], atol=1e-9)
        assert np.all(weights == 1)


def test_modulated_record_and_regular_grid():
    rec = DCNRecord("l", (3, 3), (1, 1), (2, 2), (2, 2), 8.0, np.zeros((18, 5, 5)), np.full((9, 5, 5), 0.25))
    pts, weights = dcn_sampling_points(rec, np.array([[16.5, 16.5]]))
    reg, _ = dcn_sampling_points(rec, np.array([[16.5, 16.5]]), regular=True)
    np.testing.assert_allclose(pts, reg)
    np.testing.assert_allclose(weights, 0.25)
    # Dilation 2 at input stride 8: the regular grid is 16 px apart, centred on the unit.
    np.testing.assert_allclose(sorted(set(reg[0, :, 0])), [0.5, 16.5, 32.5])
    levels = propagate_sampling([rec, rec], (16.5, 16.5))
    assert [lv[0].shape for lv in levels] == [(9, 2), (81, 2)]
    np.testing.assert_allclose(levels[1][1], 0.25 * 0.25)


def test_dpool_bins_match_deform_roi_pool():
    torch.manual_seed(0)
    h = w = 40
    xs, ys = _ramps(h, w)
    feat = torch.stack([xs, ys])[None]
    scale, ph, pw, gamma = 0.25, 3, 4, 0.1
    roi = np.array([30.0, 42.0, 110.0, 98.0])  # image pixels; well inside the 160 px map after shifts
    offset = 0.5 * torch.randn(1, 2, ph, pw, dtype=torch.float64)
    rois = torch.tensor([[0.0, *roi]], dtype=torch.float64)
    out = layers.deform_roi_pool(feat, rois, offset, (ph, pw), scale, sampling_ratio=2, gamma=gamma)[0].numpy()

    bins = roi_bins(roi, (ph, pw), offset[0].numpy(), gamma)
    centres = (bins[..., :2] + bins[..., 2:]) / 2  # [PH, PW, 2] image pixels
    # deform_roi_pool's feature index of an image coordinate c is c * scale - 0.5 (aligned RoIs).
    np.testing.assert_allclose(centres[..., 0] * scale - 0.5, out[0], atol=1e-9)
    np.testing.assert_allclose(centres[..., 1] * scale - 0.5, out[1], atol=1e-9)
    regular = roi_bins(roi, (ph, pw))
    np.testing.assert_allclose(regular[0, 0], [30.0, 42.0, 50.0, 42.0 + 56.0 / 3])
