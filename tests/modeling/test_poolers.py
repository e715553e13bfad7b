"""ROIPooler: level assignment, every registered pooler type, deformable poolers per level, build-time errors."""

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from det_dcn.modeling import POOLER_REGISTRY
from det_dcn.modeling.backbone import ShapeSpec
from det_dcn.modeling.roi_heads.poolers import assign_boxes_to_levels, build_roi_pooler

from heads_test_utils import tiny_cfg

STRIDES = (4, 8, 16, 32)


def square(side, x=0.0, dtype=torch.float32):
    return torch.tensor([[x, x, x + side, x + side]], dtype=dtype)


def test_level_assignment_canonical_224_at_level_4():
    boxes = [torch.cat([square(s) for s in (10, 111.9, 112, 223.9, 224, 447, 448, 2000)])]
    levels = assign_boxes_to_levels(boxes, 2, 5) + 2
    assert levels.tolist() == [2, 2, 3, 3, 4, 4, 5, 5]
    levels = assign_boxes_to_levels(boxes, 2, 5, canonical_box_size=28, canonical_level=4) + 2
    assert levels.tolist() == [2, 5, 5, 5, 5, 5, 5, 5]


def test_level_mappers_differ_only_at_the_boundary():
    # sqrt(area) just below 224: torchvision's eps (1e-6, outside the log) lifts it to level 4, detectron2's not.
    boxes = [square(224 * (1 - 3e-7), dtype=torch.float64)]
    assert assign_boxes_to_levels(boxes, 2, 5, mapper="detectron2").item() + 2 == 3
    assert assign_boxes_to_levels(boxes, 2, 5, mapper="torchvision").item() + 2 == 4
    with pytest.raises(ValueError, match="level mapper"):
        assign_boxes_to_levels(boxes, 2, 5, mapper="caffe2")


def features_and_boxes(channels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(2, channels, 512 // s, 640 // s, generator=g) for s in STRIDES]
    xy = torch.rand(2, 30, 2, generator=g) * 150
    wh = torch.rand(2, 30, 2, generator=g) ** 2 * 480 + 2
    big = torch.tensor([[10.0, 10, 490, 500]])  # sqrt(area) > 448: level 5
    boxes = [torch.cat([torch.cat([xy[i], xy[i] + wh[i]], 1), big]) for i in range(2)]
    return feats, boxes


def build(pooler_type, channels=4, sampling_ratio=2, output_size=7, mapper="detectron2", strides=STRIDES):
    cfg = tiny_cfg(overrides=[
        "MODEL.ROI_BOX_HEAD.POOLER_LEVEL_MAPPER", mapper,
        "MODEL.ROI_BOX_HEAD.POOLER_CANONICAL_BOX_SIZE", 224,
    ])
    shapes = [ShapeSpec(channels=channels, stride=s) for s in strides]
    return build_roi_pooler(cfg, shapes, output_size, pooler_type, sampling_ratio)


def test_roialign_equals_torchvision_multiscale_roialign():
    feats, boxes = features_and_boxes()
    tv = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    expected = tv({str(i): f for i, f in enumerate(feats)}, boxes, [(512, 640)] * 2)
    ours = build("ROIAlign", mapper="torchvision")(feats, boxes)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


@pytest.mark.parametrize("pooler_type", ["ROIAlignV2", "ROIPool", "DeformRoIPool", "ModulatedDeformRoIPool"])
def test_each_pooler_type_pools_each_roi_at_its_level(pooler_type):
    feats, boxes = features_and_boxes()
    pooler = build(pooler_type, sampling_ratio=0)
    out = pooler(feats, boxes)
    assert out.shape == (62, 4, 7, 7)
    levels = assign_boxes_to_levels(boxes, 2, 5)
    assert len(set(levels.tolist())) == 4  # the boxes reach every level
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    expected = torch.empty_like(out)
    for lvl, (f, s) in enumerate(zip(feats, STRIDES)):
        idx = levels == lvl
        if pooler_type == "ROIPool":
            expected[idx] = roi_pool(f, rois[idx], 7, 1.0 / s)
        else:
            # Zero-initialised deformable poolers start as aligned RoIAlign (mdpool: times its 0.5 mask).
            expected[idx] = roi_align(f, rois[idx], 7, 1.0 / s, 0, aligned=True)
    if pooler_type == "ModulatedDeformRoIPool":
        expected = expected * 0.5
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooler_type", ["DeformRoIPool", "ModulatedDeformRoIPool"])
def test_deformable_poolers_have_an_offset_branch_per_level_always_in_the_graph(pooler_type):
    pooler = build(pooler_type, channels=2)
    branches = [p.offset_fc for p in pooler.level_poolers]
    assert len({id(b) for b in branches}) == 4
    assert all(p.output_channels == 2 for p in pooler.level_poolers)
    # Every RoI on level 2 (small boxes): the other levels' branches still receive a (zero) gradient, so
    # DistributedDataParallel sees all parameters used.
    feats = [torch.randn(1, 2, 64 // s, 64 // s) for s in STRIDES]
    out = pooler(feats, [torch.tensor([[4.0, 4, 20, 20], [10, 10, 30, 24]])])
    out.sum().backward()
    for b in branches:
        assert all(p.grad is not None for p in b.parameters())
    assert torch.any(branches[0][-1].weight.grad != 0)
    assert all(torch.all(p.grad == 0) for b in branches[1:] for p in b.parameters())


def test_single_level_dc5():
    pooler = build("ROIAlignV2", strides=(16,))
    f = torch.randn(1, 4, 10, 12)
    boxes = [torch.tensor([[0.0, 0, 50, 60], [100, 20, 190, 150]])]
    rois = torch.cat([torch.zeros(2, 1), boxes[0]], 1)
    torch.testing.assert_close(pooler([f], boxes), roi_align(f, rois, 7, 1 / 16, 2, aligned=True))


def test_empty_boxes():
    feats, _ = features_and_boxes()
    out = build("ROIAlignV2")(feats, [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert out.shape == (0, 4, 7, 7)


def test_build_errors():
    with pytest.raises(ValueError) as e:
        build("ROIAlignV3")
    msg = str(e.value)
    assert "POOLER_TYPE='ROIAlignV3'" in msg
    for name in ("ROIAlign", "ROIAlignV2", "ROIPool", "DeformRoIPool", "ModulatedDeformRoIPool"):
        assert name in msg
    cfg = tiny_cfg()
    shapes = [ShapeSpec(channels=8, stride=8), ShapeSpec(channels=16, stride=16)]
    with pytest.raises(ValueError, match=r"same channel count.*\[8, 16\]"):
        build_roi_pooler(cfg, shapes, 7, "ModulatedDeformRoIPool", 0)
    with pytest.raises(ValueError, match="consecutive"):
        build("ROIAlignV2", strides=(4, 16))
    with pytest.raises(ValueError, match="power-of-two"):
        build("ROIAlignV2", strides=(6, 12))
    with pytest.raises(ValueError, match="POOLER_LEVEL_MAPPER"):
        build("ROIAlignV2", mapper="other")


def test_registry_lists_the_builtin_poolers():
    assert {"ROIAlign", "ROIAlignV2", "ROIPool", "DeformRoIPool", "ModulatedDeformRoIPool"} <= {
        n for n, _ in POOLER_REGISTRY
    }
