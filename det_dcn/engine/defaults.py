"""The command line of det_dcn's tools (detectron2's flags) and the per-run setup every process does first."""

import argparse
import os
import sys
from typing import Optional

import torch

from det_dcn.config.overrides import split_overrides
from det_dcn.utils import comm
from det_dcn.utils.logger import setup_logger

from det_dcn.utils.atomic_io import atomic_write_text
from det_dcn.utils.seeding import seed_from_cfg

from .env_info import collect_env_info


class _FlagsAnywhereParser(argparse.ArgumentParser):
    """``KEY VALUE`` overrides may stand before, between or after the flags (``... SOLVER.MAX_ITER 10 --resume``),
    told apart as the other tools do (det_dcn.config.overrides); an unknown ``--flag`` is an error naming it."""

    def parse_args(self, args=None, namespace=None):
        flags, overrides = split_overrides(self, list(sys.argv[1:] if args is None else args))
        unknown = [t for t in overrides if t.startswith("--")]
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)} (flags: see --help)")
        ns = super().parse_args(flags, namespace)
        ns.opts = overrides
        return ns


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's training flags: --config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url, and ``KEY VALUE`` config overrides (flags may come before or after them)."""
    parser = _FlagsAnywhereParser(
        epilog=epilog
        or (
            "Examples:\n"
            "  one machine:   tools/train.py --config-file cfg.yaml --num-gpus 8\n"
            "  resume:        tools/train.py --config-file cfg.yaml --num-gpus 8 --resume\n"
            "  change keys:   tools/train.py --config-file cfg.yaml SOLVER.BASE_LR 0.01 OUTPUT_DIR out/\n"
            "  two machines:  (machine 0) tools/train.py --config-file cfg.yaml --num-gpus 8 --num-machines 2 "
            "--machine-rank 0 --dist-url tcp://IP0:PORT\n"
            "                 (machine 1) the same with --machine-rank 1\n"
            "  evaluate:      tools/train.py --config-file cfg.yaml --eval-only MODEL.WEIGHTS model_final.pth\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT_DIR/last_checkpoint (model, optimizer, LR schedule, iteration, data order); "
        "without it, MODEL.WEIGHTS only initialises the model",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS on DATASETS.TEST")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine: one per GPU (CPU processes with gloo when there is no GPU)")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (0 .. num_machines-1)")
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="rendezvous of the processes: 'auto' (a free localhost port, one machine) or tcp://IP_OF_MACHINE0:PORT",
    )
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. SOLVER.MAX_ITER 1000 (flags may follow)")
    return parser


def default_setup(cfg, args) -> None:
    """What every process does before training or evaluation:

    - create OUTPUT_DIR (rank 0) and set up logging (every line names the rank; rank 0 also logs to log.txt);
    - log the environment, the command line and the config file;
    - resolve SEED (< 0: draw one, log it and store it in ``cfg``) and seed Python / NumPy / torch with SEED + rank;
    - save the resolved config to OUTPUT_DIR/config.yaml (rank 0, written atomically);
    - set cuDNN benchmark mode from CUDNN_BENCHMARK.
    """
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if not output_dir:
        raise ValueError("OUTPUT_DIR is empty; set it in the config or as an override (OUTPUT_DIR path)")
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    logger = setup_logger(output_dir, distributed_rank=rank, name="det_dcn")

    logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    logger.info("Environment info:\n" + collect_env_info())
    logger.info(f"Command line: {' '.join(sys.argv)}")
    logger.info(f"Arguments: {args}")
    config_file = getattr(args, "config_file", "")
    if config_file:
        with open(config_file, "r", encoding="utf-8") as f:
            logger.debug(f"Contents of config file {config_file}:\n{f.read()}")  # log.txt only; all keys below

    seed = seed_from_cfg(cfg)
    logger.info(f"Seeded Python, NumPy and torch with SEED + rank = {seed + rank}")

    if comm.is_main_process():
        path = os.path.join(output_dir, "config.yaml")
        atomic_write_text(path, cfg.dump(), fsync=True)
        logger.info(f"Full config saved to {path}")
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
