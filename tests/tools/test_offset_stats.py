"""det_dcn.analysis.offset_stats and tools/offset_stats.py: offset lengths of deformable layers over images."""

import numpy as np
import pytest
import torch

from det_dcn.analysis.offset_stats import (collect_offset_stats, conv_offset_lengths, conv_samples_outside,
                                           format_offset_table, pool_shift_in_bins)
from det_dcn.vis.deform_sampling import DCNRecord

from det_dcn.layers import ModulatedDeformConv2dPack

from load_tool import load_tool
from tiny_model import write_tiny_model


def test_lengths_and_shifts():
    offset = np.zeros((2 * 2 * 9, 3, 4), np.float32)  # 2 deform groups, 3x3 kernel, (dy, dx) interleaved
    offset[0::2], offset[1::2] = 3.0, 4.0
    lengths = conv_offset_lengths(offset)
    assert lengths.shape == (2 * 9 * 3 * 4,) and np.allclose(lengths, 5.0)
    pool = np.zeros((5, 2, 7, 7), np.float32)
    pool[:, 0] = 0.5  # along x: gamma * 0.5 * roi_w = 0.05 roi_w = 0.35 bins of roi_w / 7
    assert np.allclose(pool_shift_in_bins(pool, 0.1), 0.35)


def test_samples_outside_the_input_map():
    """3x3, stride 1, padding 1 on a 5x5 map: without offsets the border outputs' outer kernel points are the zero
    padding (2 rows x 5 x 3 + 2 columns x 5 x 3 - 4 corners = 56 of 225); shifted by 10 rows every point is off."""
    offset = np.zeros((18, 5, 5), np.float32)
    rec = DCNRecord("l", (3, 3), (1, 1), (1, 1), (1, 1), 8.0, offset, in_size=(5, 5))
    assert conv_samples_outside(rec).sum() == 56 and conv_samples_outside(rec).size == 225
    offset[0::2] = 10.0  # dy
    assert conv_samples_outside(rec).all()
    assert conv_samples_outside(rec, with_offsets=False).sum() == 56  # the regular grid's share is the same
    # half a pixel left: the right padding column (x = 5 -> 4.5) comes inside, the left one (x = -1.5) stays out:
    # rows 30 + left column 15 - their 2 shared points
    offset[0::2], offset[1::2] = 0.0, -0.5
    assert conv_samples_outside(rec).sum() == 43
    # dilation 2, stride 2, padding 2 -> 3x3 output: rows at y = -2 and y = 6 (2 of 9 (oy, ky) x 9) and likewise
    # columns, 4 shared
    rec = DCNRecord("l", (3, 3), (2, 2), (2, 2), (2, 2), 8.0, np.zeros((18, 3, 3), np.float32), in_size=(5, 5))
    assert conv_samples_outside(rec).sum() == 18 + 18 - 4


def _set_constant_offsets(model, dy: float, dx: float, pool_x: float):
    """Every DCN kernel point moves by (dy, dx) input pixels, every pooler bin by pool_x (normalised) along x;
    modulation logits 0 (masks 0.5)."""
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "conv_offset"):
                m.conv_offset.weight.zero_()
                bias = torch.zeros_like(m.conv_offset.bias)
                channels = m.conv_offset.out_channels  # offsets (dy, dx interleaved), then any mask logits
                points = channels * 2 // 3 if isinstance(m, ModulatedDeformConv2dPack) else channels
                bias[0:points:2], bias[1:points:2] = dy, dx
                m.conv_offset.bias.copy_(bias)
            if hasattr(m, "offset_fc"):
                last = m.offset_fc[-1]
                last.weight.zero_()
                bias = torch.zeros_like(last.bias).view(2, -1)
                bias[0] = pool_x
                last.bias.copy_(bias.view(-1))
            if hasattr(m, "mask_fc"):
                m.mask_fc[2].weight.zero_()
                m.mask_fc[2].bias.zero_()


@pytest.mark.parametrize("modulated", [False, True])
def test_collect_on_known_offsets(tmp_path, modulated):
    from det_dcn.config import get_cfg
    from det_dcn.engine import DefaultPredictor

    cfg = get_cfg()
    cfg.merge_from_file(write_tiny_model(str(tmp_path), modulated=modulated))
    predictor = DefaultPredictor(cfg)
    _set_constant_offsets(predictor.model, 1.2, 1.6, 0.5)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(3)]
    stats = collect_offset_stats(predictor, images)
    convs = [s for s in stats if s.kind == "conv"]
    pools = [s for s in stats if s.kind == "pool"]
    assert [s.name.split(".")[-3] for s in convs] == ["res3", "res3", "res4", "res4", "res5", "res5"]
    # one row per FPN level's pooler that got proposals (at 64 px most go to the finest level)
    assert 1 <= len(pools) <= 4 and all("level_poolers" in s.name for s in pools)
    for s in convs:
        assert s.mean == pytest.approx(2.0, abs=1e-5) and s.p90 == pytest.approx(2.0, abs=1e-5)
        assert s.moved == 1.0 and s.step == 1.0 and 0.0 < s.outside < 1.0 and 0.0 < s.outside_plain < 1.0
        stride = {"res3": 8, "res4": 16, "res5": 32}[s.name.split(".")[-3]]
        # R-18 basic blocks: the deformable conv2 follows conv1, which does a stage's striding
        assert s.image_px_mean == pytest.approx(2.0 * stride, rel=1e-5)
        assert s.count % 9 == 0 and s.count > 0
        assert (s.mask_mean == pytest.approx(0.5)) if modulated else s.mask_mean is None
    for s in pools:
        assert s.mean == pytest.approx(0.1 * 0.5 * 7, rel=1e-5) and s.moved == 0.0 and s.count % 49 == 0
        assert s.outside is None and s.outside_plain is None
        assert (s.mask_mean == pytest.approx(0.5)) if modulated else s.mask_mean is None
    table = format_offset_table(stats)
    assert table.count("\n") == len(stats) + 1 and "2.000 input px" in table and "0.350 bins" in table
    with pytest.raises(ValueError, match="no images"):
        collect_offset_stats(predictor, [])


def test_tool_prints_the_table_and_rejects_bad_input(tmp_path, capsys):
    tool = load_tool("offset_stats")
    cfg_path = write_tiny_model(str(tmp_path), modulated=True)
    assert tool.main(["--config-file", cfg_path, "--num-images", "2"]) == 0
    out = capsys.readouterr().out
    assert "on 2 images of shapes_val" in out and "res5.1.conv2 | conv" in out and "| pool |" in out
    assert tool.main(["--config-file", cfg_path, "--num-images", "0"]) == 2
    assert "--num-images must be >= 1, got 0" in capsys.readouterr().err
    assert tool.main(["--config-file", cfg_path, "--dataset", "no_such_set"]) == 2
    assert "no_such_set" in capsys.readouterr().err
    plain = ["--config-file", cfg_path, "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, False, False, False]",
             "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2", "MODEL.WEIGHTS", "", "--allow-random-weights"]
    assert tool.main(plain + ["--num-images", "1"]) == 1
    assert "no deformable conv" in capsys.readouterr().err
