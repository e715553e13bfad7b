"""A _BASE_ cycle is one error naming the files of the cycle, not a RecursionError."""

import pytest

from det_dcn.config import ConfigError, get_cfg


def test_base_cycle_names_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: sub/b.yaml\nSEED: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("_BASE_: ../a.yaml\n")
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))
    msg = str(e.value)
    assert msg.startswith("_BASE_ cycle: ") and "\n" not in msg
    assert msg.count("a.yaml") == 2 and "sub/b.yaml" in msg
    (tmp_path / "self.yaml").write_text("_BASE_: self.yaml\n")
    with pytest.raises(ConfigError, match=r"_BASE_ cycle: .*self.yaml -> .*self.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "self.yaml"))


def test_shared_base_is_not_a_cycle(tmp_path):
    (tmp_path / "base.yaml").write_text("SEED: 3\n")
    (tmp_path / "mid.yaml").write_text("_BASE_: base.yaml\n")
    (tmp_path / "top.yaml").write_text("_BASE_: mid.yaml\nSEED: 4\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "top.yaml"))
    assert cfg.SEED == 4
