"""The command line of det_dcn's tools (detectron2's flags) and the per-run setup every process does first."""

import argparse
import logging
import os
import sys
from typing import Optional

import torch

from det_dcn.utils import comm
from det_dcn.utils.logger import setup_logger

from .env_info import collect_env_info
from .seeding import generate_seed, seed_all_rng
from det_dcn.utils.atomic_io import atomic_write_text


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's training flags: --config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url, then ``KEY VALUE`` config overrides."""
    parser = argparse.ArgumentParser(
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
                        help="config overrides as KEY VALUE pairs, e.g. SOLVER.MAX_ITER 1000")
    return parser


def resolve_seed(cfg) -> int:
    """SEED >= 0 as is; SEED < 0: a seed drawn on rank 0 and shared, written into ``cfg`` so config.yaml can
    repeat the run (per-rank generators are then seeded with ``SEED + rank`` as with a fixed seed)."""
    seed = int(cfg.SEED)
    if seed < 0:
        seed = int(comm.all_gather(generate_seed())[0])
        was_frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.SEED = seed
        if was_frozen:
            cfg.freeze()
        logging.getLogger("det_dcn").info(f"SEED < 0: using the generated seed {seed} (saved in config.yaml)")
    return seed


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
            logger.info(f"Contents of config file {config_file}:\n{f.read()}")

    seed = resolve_seed(cfg)
    seed_all_rng(seed + rank)
    logger.info(f"Seeded Python, NumPy and torch with SEED + rank = {seed + rank}")

    if comm.is_main_process():
        path = os.path.join(output_dir, "config.yaml")
        atomic_write_text(path, cfg.dump(), fsync=True)
        logger.info(f"Full config saved to {path}")
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
