"""Receptive-field geometry against hand-computed values, the exact graph against the recurrence, gridding
coverage counts, and the effective RF staying inside the theoretical one."""

import random

import numpy as np
import pytest
import torch

from det_dcn.analysis import LayerGeometry, chain_receptive_field, coverage, dilated_stack, path_counts_1d
from det_dcn.analysis.effective_rf import effective_receptive_fields, mass_square
from det_dcn.analysis.geometry import Add, Conv, GlobalPool, Input, Upsample, chain_nodes
from det_dcn.analysis.gridding import parallel_path_counts, path_counts
from det_dcn.analysis.receptive_field import feature_rfs, gridding_stacks, measure, random_images
from det_dcn.modeling import build_backbone
from tests.quickstart_cfg import quickstart_cfg

L = LayerGeometry


@pytest.mark.parametrize("layers, size, stride", [
    ([L(3, 1, 1, 1)], 3, 1),
    ([L(3, 1, 1, 1), L(3, 1, 1, 1)], 5, 1),
    ([L(3, 2, 1, 1), L(3, 1, 1, 1)], 7, 2),           # 3 + (3 - 1) * 2
    ([L(3, 1, 2, 2)], 5, 1),                          # dilation 2: span 5
    (dilated_stack([2, 2, 2]), 13, 1),                # 1 + 3 * 4
    (dilated_stack([1, 2, 3]), 13, 1),                # 1 + 2 + 4 + 6
    ([L(7, 2, 1, 3), L(3, 2, 1, 1)], 11, 4),          # the ResNet stem: 7 + 2 * 2
    ([L(7, 2, 1, 3), L(3, 2, 1, 1)] + [L(3, 1, 1, 1)] * 4, 43, 4),  # + res2 of ResNet-18: 11 + 4 * 8
])
def test_chain_recurrence_hand_values(layers, size, stride):
    rf = chain_receptive_field(layers)
    assert (rf.size, rf.stride) == (size, stride)


def test_stem_centre_is_pixel_zero():
    # (7-1)/2 - 3 = 0 and ((3-1)/2 - 1) * 2 = 0: output position 0 is centred on input pixel 0.
    assert chain_receptive_field([L(7, 2, 1, 3), L(3, 2, 1, 1)]).center == 0.0


def test_graph_equals_recurrence_on_random_chains():
    rng = random.Random(0)
    for _ in range(30):
        layers = [L(rng.choice([1, 3, 5]), rng.choice([1, 1, 2]), rng.choice([1, 2, 3]), rng.randint(0, 3))
                  for _ in range(rng.randint(1, 5))]
        node = chain_nodes(Input(2000), layers)
        rf = chain_receptive_field(layers)
        i = node.size // 2
        lo, hi = node.interval(i)
        assert hi - lo + 1 == rf.size
        assert (lo + hi) / 2 == pytest.approx(rf.center + i * rf.stride)


def test_graph_padding_clips_at_the_border_and_merges():
    x = Input(10)
    conv = Conv(x, L(3, 1, 1, 1))
    assert conv.interval(0) == (0, 1)  # the left tap is padding
    up = Upsample(Conv(x, L(1, 2)), 10)
    assert up.interval(3) == (2, 2)  # nearest: position 3 -> coarse 1 -> input 2
    assert Add(conv, up).interval(3) == (2, 4)
    assert GlobalPool(conv).interval(5) == (0, 9)


def test_gridding_coverage_counts():
    assert path_counts_1d(dilated_stack([1, 1])).tolist() == [1, 2, 3, 2, 1]
    assert path_counts_1d(dilated_stack([2])).tolist() == [1, 0, 1, 0, 1]
    cov = coverage(dilated_stack([2, 2, 2]))
    assert (cov.size, cov.covered) == (13, 49)  # only even offsets: 7 x 7 of 13 x 13
    assert coverage(dilated_stack([1, 2, 3])).covered == 169  # HDC: every pixel
    assert coverage(dilated_stack([3, 3])).covered == 25  # offsets -6, -3, 0, 3, 6
    assert coverage(dilated_stack([1, 2, 2])).covered == 121
    counts = path_counts(dilated_stack([1, 1]))
    assert counts.sum() == 81 and counts[2, 2] == 9  # 9 x 9 paths in all, 3 x 3 through the centre


def test_parallel_branches_fill_the_holes():
    prefix = dilated_stack([2])
    counts = parallel_path_counts(prefix, [[L(1)], dilated_stack([1])])
    assert counts.shape == (7, 7) and np.count_nonzero(counts) == 49
    # the 1x1 branch alone keeps the holes
    assert np.count_nonzero(parallel_path_counts(prefix, [[L(1)]])) == 9


def _cfg(*opts):
    return quickstart_cfg("faster_rcnn_shapes", *opts)


def test_quickstart_backbone_hand_values():
    torch.manual_seed(0)
    rows = {r.name: r for r in feature_rfs(build_backbone(_cfg()), 256)}
    # res2 43 (above); res3: + 2*4 (stride-2 conv) + 2*8 * 3 = 99; res4 = 99 + 2*8 + 2*16*3 = 211;
    # res5 = 211 + 2*16 + 2*32*3 = 435
    assert [rows[n].theoretical for n in ("res2", "res3", "res4", "res5")] == [43, 99, 211, 435]
    assert [rows[n].stride for n in ("res2", "p2", "p6")] == [4, 4, 64]
    # p5 = res5 + the 3x3 output conv at stride 32; p6 = max-pool k1 of p5
    assert rows["p5"].theoretical == rows["p6"].theoretical == 435 + 64
    dc5 = {r.name: r for r in feature_rfs(build_backbone(_cfg("MODEL.BACKBONE.NAME", "build_resnet_backbone",
                                                              "MODEL.RESNETS.OUT_FEATURES", "['res5']",
                                                              "MODEL.RESNETS.RES5_DILATION", "2")), 256)}
    # DC5: res5's first conv at stride 16 with dilation 2 (+4*16), three more at 4*16 each: 211 + 4 * 64
    assert dc5["res5"].stride == 16 and dc5["res5"].theoretical == 211 + 4 * 64


def test_aspp_res5_gridding_and_whole_image_field():
    cfg = _cfg("MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.RESNETS.OUT_FEATURES", "['res5']",
               "MODEL.RESNETS.RES5_DILATION", "2", "MODEL.RESNETS.RES5_ASPP_RATES", "[3, 6, 9]")
    backbone = build_backbone(cfg)
    (title, counts), = gridding_stacks("aspp", backbone).items()
    assert "(2,2,2,2)" in title and counts.shape == (35, 35)  # 1 + 4 * 4 + 2 * 9
    res5 = {r.name: r for r in feature_rfs(backbone, 128)}["res5"]
    assert res5.box == (0, 0, 127, 127)  # image pooling: the whole input


def test_effective_rf_lies_inside_the_theoretical_rf():
    torch.manual_seed(0)
    backbone = build_backbone(_cfg())
    rows, erfs = measure(backbone, random_images(1, 96), ["res2", "res3", "p3"])
    for row in rows:
        x0, y0, x1, y1 = row.box
        erf = erfs[row.name]
        inside = erf[y0: y1 + 1, x0: x1 + 1].sum()
        assert erf.sum() == pytest.approx(1.0) and inside == pytest.approx(1.0)
        assert 1 <= row.erf90 <= row.theoretical
    assert backbone.training  # restored


def test_mass_square():
    delta = np.zeros((9, 9))
    delta[4, 4] = 1
    assert mass_square(delta) == 1
    assert mass_square(np.ones((9, 9)), 1.0) == 9
    with pytest.raises(ValueError, match="fraction"):
        mass_square(delta, 0)


def test_effective_rf_rejects_unknown_feature():
    backbone = build_backbone(_cfg())
    with pytest.raises(ValueError, match="res9"):
        effective_receptive_fields(backbone, random_images(1, 64), ["res9"])


def test_group_norm_statistics_held_constant_while_measuring():
    """Same values as nn.GroupNorm, no gradient through the statistics, and the module's own forward restored."""
    from det_dcn.analysis.effective_rf import _group_norm_constant_stats, _local_normalisation

    torch.manual_seed(0)
    gn = torch.nn.GroupNorm(4, 8).double()
    gn.weight.data.normal_()
    gn.bias.data.normal_()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(_group_norm_constant_stats(gn, x), gn(x), atol=1e-12)
    with _local_normalisation(torch.nn.Sequential(gn)):
        y = gn(x)
    (g,) = torch.autograd.grad(y[0, 0, 2, 3], x)
    assert g[0, 0].count_nonzero() == 1 and g[1].count_nonzero() == 0  # only the one input pixel
    assert "forward" not in vars(gn)
    (g,) = torch.autograd.grad(gn(x)[0, 0, 2, 3], x)
    assert g[0, :2].count_nonzero() > 1  # GroupNorm's own forward: the statistics carry the whole group
