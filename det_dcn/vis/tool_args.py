"""What the picture tools (tools/demo.py, tools/visualize_offsets.py) share on their command line: the config
from ``--config-file`` and ``KEY VALUE`` overrides (parse with det_dcn.config.overrides.parse_args_with_overrides,
so they may come before or after the flags), and the refusal to run an untrained model unless
``--allow-random-weights`` asks for it."""

import argparse
from det_dcn.config import get_cfg


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--allow-random-weights`` and the ``KEY VALUE`` overrides (``opts``, accepted before or after the flags)."""
    parser.add_argument("--allow-random-weights", action="store_true",
                        help="run even when MODEL.WEIGHTS is empty (a randomly initialised model: for testing only)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. MODEL.WEIGHTS output/quickstart/model_final.pth MODEL.DEVICE cpu")
    return parser


def load_tool_cfg(args: argparse.Namespace, score_thresh: float):
    """Frozen config from ``args.config_file`` and ``args.opts`` with MODEL.ROI_HEADS.SCORE_THRESH_TEST =
    ``score_thresh``. ValueError (naming the key or file) for a bad config, and for empty MODEL.WEIGHTS unless
    ``args.allow_random_weights``."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if not cfg.MODEL.WEIGHTS and not args.allow_random_weights:
        raise ValueError("MODEL.WEIGHTS is empty, so the model would be randomly initialised; give the trained "
                         "model as an override (e.g. MODEL.WEIGHTS output/quickstart/model_final.pth), or pass "
                         "--allow-random-weights to run an untrained model on purpose")
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_thresh
    cfg.freeze()
    return cfg
