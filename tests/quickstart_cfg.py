"""quickstart_cfg: a quickstart config (configs/quickstart/<name>.yaml) with KEY VALUE overrides, for tests."""

import os

from det_dcn.config import get_cfg

QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart")


def quickstart_cfg(name: str = "faster_rcnn_shapes", *opts):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(QUICKSTART, f"{name}.yaml"))
    cfg.merge_from_list(list(opts))
    return cfg
