"""tools/receptive_field.py end to end on tiny inputs: tables, gridding counts and both pictures."""

import os

import cv2
import pytest

from tests.tools.load_tool import load_tool

rf_tool = load_tool("receptive_field")


def test_tables_and_pictures(tmp_path, capsys):
    out, grid = str(tmp_path / "rf.png"), str(tmp_path / "grid.png")
    rc = rf_tool.main(["--config-file", "configs/quickstart/faster_rcnn_shapes.yaml",
                       "--config-file", "configs/quickstart/faster_rcnn_shapes_dc5_multigrid.yaml",
                       "--size", "64", "--num-images", "1", "--output", out, "--gridding-output", grid,
                       "--rates", "2,2,2", "1,2,3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| res2 | 4 | 43 |" in text and "| p6 | 64 |" in text
    assert "| rates (2,2,2) | 13 | 49 of 169 | 29.0% |" in text
    assert "| rates (1,2,3) | 13 | 169 of 169 | 100.0% |" in text
    assert "res5 (2,2,4,4) | 25 | 169 of 625 |" in text  # multi-grid 2 x (1, 2): even rates, holes remain
    for path in (out, grid):
        assert os.path.isfile(path) and cv2.imread(path) is not None


def test_bad_rates_are_reported(capsys):
    assert rf_tool.main(["--config-file", "configs/quickstart/faster_rcnn_shapes.yaml", "--rates", "2,x"]) == 2
    assert "--rates: '2,x'" in capsys.readouterr().err


def test_parse_rates():
    assert rf_tool.parse_rates("1, 2,3") == [1, 2, 3]
    with pytest.raises(ValueError, match="positive"):
        rf_tool.parse_rates("0,1")


def test_a_config_key_ends_the_rates_list():
    from det_dcn.config.overrides import parse_args_with_overrides

    args = parse_args_with_overrides(rf_tool.get_parser(), ["--config-file", "c.yaml", "--rates", "2,2,2", "1,2,3",
                                                            "MODEL.RESNETS.DEPTH", "50", "--size", "64"])
    assert args.rates == ["2,2,2", "1,2,3"] and args.opts == ["MODEL.RESNETS.DEPTH", "50"] and args.size == 64
