#!/usr/bin/env python
"""Train a det_dcn detector, or evaluate a checkpoint; detectron2's tools/train_net.py command line.

    # one process (a GPU if there is one, else the CPU)
    python tools/train.py --config-file configs/quickstart/faster_rcnn_shapes.yaml
    # 8 GPUs on this machine; continue an interrupted run from OUTPUT_DIR/last_checkpoint
    python tools/train.py --config-file configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml --num-gpus 8 --resume
    # 2 CPU processes with gloo (no GPU needed)
    python tools/train.py --config-file CONFIG --num-gpus 2
    # evaluate a checkpoint on DATASETS.TEST
    python tools/train.py --config-file CONFIG --eval-only MODEL.WEIGHTS output/model_final.pth

Several machines: add --num-machines M --machine-rank R --dist-url tcp://IP_OF_MACHINE_0:PORT on each machine, or use
tools/dist_train.sh (torchrun) and tools/slurm_train.sh (SLURM). At the end the AP table is printed.
Exit status: 0 done; 75 stopped by SIGTERM / SIGUSR1 after saving a checkpoint (continue with --resume); 1 error.
"""

import logging
import sys

from det_dcn.checkpoint import DetectionCheckpointer
from det_dcn.config import ConfigError, get_cfg
from det_dcn.engine import DefaultTrainer, default_argument_parser, default_setup, launch, use_ema_weights
from det_dcn.engine.train_loop import is_disk_full

logger = logging.getLogger("det_dcn.tools.train")


def setup(args):
    """Config from --config-file and the KEY VALUE overrides, frozen; then default_setup (logs, seed, config.yaml)."""
    if not args.config_file:
        raise ValueError("--config-file is required (e.g. configs/quickstart/faster_rcnn_shapes.yaml)")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def evaluate_checkpoint(cfg, resume: bool):
    """--eval-only: MODEL.WEIGHTS (or, with --resume, OUTPUT_DIR/last_checkpoint) evaluated on DATASETS.TEST (and
    with test-time augmentation too when TEST.AUG.ENABLED); its averaged weights with MODEL_EMA (use_ema_weights).
    With TEST.PRECISE_BN.ENABLED its BatchNorm statistics are recomputed on DATASETS.TRAIN first, as at the end of
    training (the same batches: the same statistics for a model trained with it; the file is not changed)."""
    if len(cfg.DATASETS.TEST) == 0:
        raise ValueError("--eval-only needs at least one dataset in DATASETS.TEST")
    model = DefaultTrainer.build_model(cfg)
    checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
    if not cfg.MODEL.WEIGHTS and not (resume and checkpointer.has_checkpoint()):
        raise ValueError("--eval-only needs MODEL.WEIGHTS path/to/checkpoint.pth (or --resume with a "
                         f"last_checkpoint in OUTPUT_DIR '{cfg.OUTPUT_DIR}')")
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume, ema=use_ema_weights(cfg))
    if cfg.TEST.PRECISE_BN.ENABLED:
        DefaultTrainer.update_bn_stats(cfg, model)
    return DefaultTrainer.evaluate(cfg, model)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        results = evaluate_checkpoint(cfg, args.resume)
    else:
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
    return results  # DefaultTrainer.test logged the AP table


def process_backend(args) -> str:
    """gloo for MODEL.DEVICE cpu (CPU processes even on a GPU machine), else "auto" (NCCL when CUDA exists)."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    return "gloo" if cfg.MODEL.DEVICE == "cpu" else "auto"


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    if not args.config_file:
        raise SystemExit("tools/train.py: --config-file is required (e.g. configs/quickstart/faster_rcnn_shapes.yaml)")
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            backend=process_backend(args),
        )
    except ConfigError as e:
        sys.exit(f"tools/train.py: {e}")  # the message names the key, the value and what is expected: no traceback
    except OSError as e:
        if not is_disk_full(e):
            raise
        sys.exit(1)  # the trainer logged the one-line reason
