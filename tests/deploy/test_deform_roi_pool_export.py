"""The export form of deformable RoI pooling (RoIAlign) equals det_dcn's op on the same inputs."""

import pytest
import torch

from det_dcn.deploy.deform_roi_pool_export import deform_roi_pool_export
from det_dcn.layers import deform_roi_pool


def _inputs(num_images: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_images, 5, 13, 17, dtype=torch.float64, generator=g)
    r = 40
    # RoIs partly outside the image (the [-1, H] band rule), one of zero width, one inverted
    xy = torch.rand(r, 2, dtype=torch.float64, generator=g) * torch.tensor([17 * 8.0, 13 * 8.0]) - 24
    wh = torch.rand(r, 2, dtype=torch.float64, generator=g) * 90
    rois = torch.cat([torch.randint(0, num_images, (r, 1), generator=g).double(), xy, xy + wh], 1)
    rois[0, 3] = rois[0, 1]
    rois[1, 1:5] = torch.tensor([60.0, 50.0, 20.0, 10.0], dtype=torch.float64)
    # RoIs whose size is a multiple of the bin count (1 or 2 feature pixels per bin): adaptive sampling's count
    # ceil(size / bins) sits exactly on an integer there
    corner = torch.randint(-2, 12, (12, 2), generator=g).double() * 8
    multiple = torch.randint(1, 3, (12, 2), generator=g).double() * 56
    rois[-12:, 1:5] = torch.cat([corner, corner + multiple], 1)
    offset = torch.randn(r, 2, 7, 7, dtype=torch.float64, generator=g) * 1.5
    return x, rois, offset


@pytest.mark.parametrize("num_images", [1, 2])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 0])
@pytest.mark.parametrize("with_offset", [False, True])
def test_equals_det_dcn_op(num_images, sampling_ratio, with_offset):
    x, rois, offset = _inputs(num_images)
    offset = offset if with_offset else None
    expected = deform_roi_pool(x, rois, offset, 7, 1 / 8, sampling_ratio, 0.1)
    got = deform_roi_pool_export(x, rois, offset, (7, 7), 1 / 8, sampling_ratio, 0.1)
    assert got.shape == expected.shape
    assert expected.abs().max() > 0.1  # not a vacuous comparison of zeros
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_no_rois():
    x, rois, offset = _inputs(1)
    for ratio in (2, 0):
        out = deform_roi_pool_export(x, rois[:0], offset[:0], (7, 7), 1 / 8, ratio, 0.1)
        assert out.shape == (0, 5, 7, 7)


def test_adaptive_sampling_in_onnxruntime(tmp_path):
    """sampling_ratio 0 (a per-RoI sample count, traced as a data-dependent size) exported to ONNX and run by
    onnxruntime equals det_dcn's op on RoIs and a feature map of other sizes than the traced ones."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")

    class Pool(torch.nn.Module):
        def forward(self, x, rois, offset):
            return deform_roi_pool_export(x, rois, offset, (7, 7), 1 / 8, 0, 0.1)

    x, rois, offset = (t.float() for t in _inputs(1))
    dims = torch.export.Dim("h", min=2), torch.export.Dim("w", min=2), torch.export.Dim("r", min=0)
    program = torch.export.export(Pool(), (x, rois[:5], offset[:5]),
                                  dynamic_shapes=({2: dims[0], 3: dims[1]}, {0: dims[2]}, {0: dims[2]}))
    path = str(tmp_path / "pool.onnx")
    torch.onnx.export(program, (x, rois[:5], offset[:5]), path, dynamo=True, opset_version=19)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "RoiAlign" in ops and not ops & {"GridSample", "NonZero", "Loop"}  # no padding, no data-dependent sizes
    x2 = torch.randn(1, 5, 21, 11)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), (x2, rois, offset))})[0]
    expected = deform_roi_pool(x2, rois, offset, 7, 1 / 8, 0, 0.1)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-4)
