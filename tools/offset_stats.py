#!/usr/bin/env python
r"""How far a trained model's deformable convs and deformable RoI poolers move their samples, over a dataset's images.

    python tools/offset_stats.py --config-file configs/quickstart/faster_rcnn_shapes_mdconv.yaml \
        MODEL.WEIGHTS output/zoo_final/mdconv/seed1/model_final.pth [--num-images 100] [--dataset shapes_val]

Prints a table, one row per deformable layer: the mean and 90th percentile of the offset lengths (convs: in pixels
of the layer's input feature map, the kernel grid's unit, and the mean in resized-image pixels; poolers: in bins),
the share of offsets at least one grid step long (the conv's dilation, or one bin) and the mean modulation mask.
See det_dcn/analysis/offset_stats.py for the definitions. Images: the first --num-images of --dataset (default the
config's first DATASETS.TEST).
"""

import argparse
import sys
from typing import Optional, Sequence

from tqdm import tqdm

from det_dcn.analysis.offset_stats import collect_offset_stats, format_offset_table
from det_dcn.config.overrides import parse_args_with_overrides
from det_dcn.data import DatasetCatalog, read_image
from det_dcn.vis.tool_args import add_common_args, load_tool_cfg


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--dataset", default=None, help="registered dataset name (default: the config's DATASETS.TEST[0])")
    p.add_argument("--num-images", type=int, default=100, help="images to measure (the dataset's first N)")
    return add_common_args(p)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args_with_overrides(get_parser(), argv)
    try:
        if args.num_images < 1:
            raise ValueError(f"--num-images must be >= 1, got {args.num_images}")
        cfg = load_tool_cfg(args, 0.05)
        name = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
        if name is None:
            raise ValueError(f"{args.config_file} has no DATASETS.TEST; give --dataset")
        records = DatasetCatalog.get(name)[: args.num_images]
    except (ValueError, KeyError) as e:
        print(f"[offset_stats] error: {e}", file=sys.stderr)
        return 2

    from det_dcn.engine import DefaultPredictor

    predictor = DefaultPredictor(cfg)
    images = (read_image(r["file_name"]) for r in tqdm(records, desc=f"offsets on {name}", unit="img"))
    try:
        stats = collect_offset_stats(predictor, images)
    except ValueError as e:
        print(f"[offset_stats] error: {e} ({args.config_file})", file=sys.stderr)
        return 1
    print(f"\nOffsets of {args.config_file} ({cfg.MODEL.WEIGHTS or 'random weights'}) on {len(records)} images of "
          f"{name}:\n")
    print(format_offset_table(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
