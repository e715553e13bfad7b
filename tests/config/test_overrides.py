"""KEY VALUE overrides told apart from flags and their values (det_dcn.config.overrides)."""

import argparse

import pytest

from det_dcn.config.overrides import is_override_key, parse_args_with_overrides


def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--input", nargs="+", default=[])
    p.add_argument("--output")
    p.add_argument("--flag", action="store_true")
    p.add_argument("opts", nargs="*")
    return p


def test_is_override_key():
    for token in ("MODEL.WEIGHTS", "SOLVER.NO_SUCH", "DATASETS.TRAIN", "SEED"):
        assert is_override_key(token), token
    for token in ("model.weights", "a.png", "IMG_01.JPG", "DSC.JPG", "README", "--input", "MODEL.", "", "MODEL..X"):
        assert not is_override_key(token), token


@pytest.mark.parametrize("argv", [
    ["--input", "a.png", "b.png", "MODEL.WEIGHTS", "w.pth", "SEED", "1", "--output", "OUT", "--flag"],
    ["MODEL.WEIGHTS", "w.pth", "--input", "a.png", "b.png", "SEED", "1", "--flag", "--output", "OUT"],
    ["--flag", "--output", "OUT", "--input", "a.png", "b.png", "MODEL.WEIGHTS", "w.pth", "SEED", "1"],
    ["--input", "a.png", "b.png", "--output", "OUT", "MODEL.WEIGHTS", "w.pth", "--flag", "SEED", "1"],
])
def test_overrides_anywhere(argv):
    args = parse_args_with_overrides(_parser(), argv)
    assert args.input == ["a.png", "b.png"] and args.output == "OUT" and args.flag
    assert args.opts == ["MODEL.WEIGHTS", "w.pth", "SEED", "1"]


def test_later_override_wins_and_values_of_flags_stay():
    args = parse_args_with_overrides(_parser(), ["SEED", "1", "--output", "SEED", "--input", "x.png", "SEED", "2"])
    assert args.output == "SEED" and args.input == ["x.png"] and args.opts == ["SEED", "1", "SEED", "2"]
    args = parse_args_with_overrides(_parser(), ["--out=o", "--inp", "a.png", "MODEL.DEVICE", "cpu", "stray"])
    assert args.output == "o" and args.input == ["a.png"] and args.opts == ["MODEL.DEVICE", "cpu", "stray"]


def test_key_right_after_list_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        parse_args_with_overrides(_parser(), ["--input", "MODEL.WEIGHTS", "w.pth"])
    assert "--input: expected at least one argument" in capsys.readouterr().err
