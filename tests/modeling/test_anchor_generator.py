
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList as TVImageList

from det_dcn.modeling.proposal_generator import DefaultAnchorGenerator, build_anchor_generator
from det_dcn.modeling.backbone import ShapeSpec

from heads_test_utils import tiny_cfg


def feats(*sizes):
    return [torch.zeros(1, 1, h, w) for h, w in sizes]


def test_count_centres_sizes_and_ratios():
    ag = DefaultAnchorGenerator([[32, 64]], [[0.5, 1.0, 2.0]], strides=[8], offset=0.5)
    (anchors,) = ag(feats((3, 4)))
    assert anchors.shape == (3 * 4 * 6, 4)
    a = anchors.view(3, 4, 6, 4)
    centres = (a[..., :2] + a[..., 2:]) / 2
    # every anchor of grid cell (i, j) is centred at ((j + 0.5) * 8, (i + 0.5) * 8)
    torch.testing.assert_close(centres[2, 1], torch.tensor([[12.0, 20.0]] * 6))
    w = a[0, 0, :, 2] - a[0, 0, :, 0]
    h = a[0, 0, :, 3] - a[0, 0, :, 1]
    # size-major order: (32, 0.5), (32, 1), (32, 2), (64, 0.5), ...
    torch.testing.assert_close(torch.sqrt(w * h), torch.tensor([32.0] * 3 + [64.0] * 3))
    torch.testing.assert_close(h / w, torch.tensor([0.5, 1.0, 2.0] * 2))


def test_location_major_order_and_per_level_sizes():
    ag = DefaultAnchorGenerator([[16], [32]], [[1.0, 2.0]], strides=[4, 8])
    a4, a8 = ag(feats((2, 3), (1, 2)))
    assert a4.shape == (12, 4) and a8.shape == (4, 4)
    # index = (row * W + col) * A + anchor; offset 0: cell (row 1, col 2) has its centre at (8, 4)
    idx = (1 * 3 + 2) * 2
    torch.testing.assert_close((a4[idx, :2] + a4[idx, 2:]) / 2, torch.tensor([8.0, 4.0]))
    torch.testing.assert_close(a8[0, 2] - a8[0, 0], torch.tensor(32.0))
    assert ag.num_anchors == [2, 2]


@pytest.mark.parametrize("sizes,ratios", [
    (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),  # torchvision's FPN anchors
    (((32, 64, 128),) * 2, ((0.5, 1.0, 2.0),) * 2),  # several sizes per level
])
def test_equals_torchvision_anchor_generator(sizes, ratios):
    # Padded image 800 x 1088: P6 is 13 x 17, so torchvision's P6 stride is 800 // 13 = 61 vertically.
    image = torch.zeros(1, 3, 800, 1088)
    strides = [4, 8, 16, 32, 64][: len(sizes)]
    grid = [(200, 272), (100, 136), (50, 68), (25, 34), (13, 17)][: len(sizes)]
    fmaps = [torch.zeros(1, 1, h, w) for h, w in grid]
    tv = TVAnchorGenerator(sizes, ratios)(TVImageList(image, [(800, 1088)]), fmaps)[0]
    ours = DefaultAnchorGenerator(
        [list(s) for s in sizes], [list(r) for r in ratios], strides,
        round_base=True, ratio_major=True, stride_from_image_size=True,
    )(fmaps, (800, 1088))
    torch.testing.assert_close(torch.cat(ours), tv, rtol=0, atol=0)


def test_rounding_and_nominal_strides_are_the_detectron2_default():
    ag = DefaultAnchorGenerator([[32]], [[0.5]], strides=[64])
    (a,) = ag(feats((13, 17)), (800, 1088))
    assert not torch.equal(a, a.round())  # 32 / sqrt(0.5) / 2 = 22.627...
    torch.testing.assert_close(a[17, 1] - a[0, 1], torch.tensor(64.0))  # one row down = nominal stride


def test_build_from_config_and_errors():
    shapes = [ShapeSpec(channels=8, stride=s) for s in (4, 8, 16)]
    cfg = tiny_cfg(overrides=["MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64], [128]]])
    ag = build_anchor_generator(cfg, shapes)
    assert ag.num_anchors == [3, 3, 3] and ag.strides == [4, 8, 16]

    cfg = tiny_cfg(overrides=["MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64]]])
    with pytest.raises(ValueError, match=r"SIZES has 2 lists but .* 3 feature levels"):
        build_anchor_generator(cfg, shapes)
    cfg = tiny_cfg(overrides=["MODEL.ANCHOR_GENERATOR.CELL_ANCHOR_ORDER", "random"])
    with pytest.raises(ValueError, match="CELL_ANCHOR_ORDER"):
        build_anchor_generator(cfg, shapes)
    cfg = tiny_cfg(overrides=["MODEL.ANCHOR_GENERATOR.NAME", "Nope"])
    with pytest.raises(ValueError, match="DefaultAnchorGenerator"):
        build_anchor_generator(cfg, shapes)
    with pytest.raises(ValueError, match="OFFSET"):
        DefaultAnchorGenerator([[32]], [[1.0]], [8], offset=1.5)
    with pytest.raises(ValueError, match="ASPECT_RATIOS"):
        DefaultAnchorGenerator([[32]], [[-1.0]], [8])
