#!/usr/bin/env python
"""Receptive fields of a config's backbone, and the gridding effect of stacked dilated convs.

    python tools/receptive_field.py --config-file configs/quickstart/faster_rcnn_shapes.yaml \\
        --config-file configs/quickstart/faster_rcnn_shapes_dc5.yaml \\
        --config-file configs/quickstart/faster_rcnn_shapes_dc5_multigrid.yaml --output docs/receptive_fields.png
    python tools/receptive_field.py --config-file CFG MODEL.WEIGHTS output/quickstart/model_final.pth \\
        --input datasets/shapes/val --num-images 8

Per feature (res2-res5, p2-p6): the theoretical receptive field (exact, from kernel / stride / dilation / padding),
the stride, and the effective receptive field (the gradient of a unit at the feature map's centre, back-propagated to
the input; random weights, or MODEL.WEIGHTS). Prints one Markdown table per config and draws the effective RFs side
by side (--output). The gridding picture (--gridding-output) shows which input pixels reach one output through
stacked dilated 3x3 convs, for --rates and for each config's res5 stack. KEY VALUE overrides apply to every config.
"""

import argparse
import os
import sys
from typing import List

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", action="append", required=True, metavar="CFG",
                   help="config to analyse; repeat to compare several (one row each in the picture)")
    p.add_argument("--label", action="append", default=None, help="label per config (default: file name)")
    p.add_argument("--size", type=int, default=256, help="side of the square input (default 256)")
    p.add_argument("--num-images", type=int, default=4, help="inputs averaged for the effective RF (default 4)")
    p.add_argument("--input", default=None,
                   help="image file, folder or glob to measure on (default: standard-normal noise inputs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and noise inputs")
    p.add_argument("--output", default=None, help="PNG of the effective receptive fields")
    p.add_argument("--gridding-output", default=None, help="PNG of the gridding path-count maps")
    p.add_argument("--rates", nargs="*", default=["2,2,2", "1,2,3"],
                   help="dilation stacks for the gridding picture, comma-separated (default: 2,2,2 1,2,3)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides (all configs), anywhere on the line")
    return p


def parse_rates(text: str) -> List[int]:
    try:
        rates = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        rates = []
    if not rates or any(r < 1 for r in rates):
        raise ValueError(f"--rates: '{text}' is not a comma-separated list of positive integers (e.g. 1,2,3)")
    return rates


def load_images(args, cfg):
    from det_dcn.analysis.receptive_field import normalise_images, random_images
    from det_dcn.data import read_image
    from det_dcn.vis.image_inputs import expand_inputs

    if args.input is None:
        return random_images(args.num_images, args.size, len(cfg.MODEL.PIXEL_MEAN), seed=args.seed)
    paths, unreadable = expand_inputs([args.input])
    if not paths:
        raise ValueError(f"--input '{args.input}' matches no image file ({unreadable})")
    images = [read_image(p, cfg.INPUT.FORMAT) for p in sorted(paths)[: args.num_images]]
    return normalise_images(images, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, args.size)


def main(argv=None) -> int:
    from det_dcn.config.overrides import parse_args_with_overrides

    args = parse_args_with_overrides(get_parser(), argv)  # a config key ends the --rates list
    import torch

    from det_dcn.analysis import figures, gridding
    from det_dcn.analysis.geometry import dilated_stack
    from det_dcn.analysis.receptive_field import format_table, gridding_stacks, measure, theoretical_text
    from det_dcn.checkpoint import DetectionCheckpointer
    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model
    from det_dcn.utils.atomic_io import atomic_imwrite

    labels = args.label or [os.path.splitext(os.path.basename(c))[0] for c in args.config_file]
    if len(labels) != len(args.config_file):
        print(f"receptive_field: {len(labels)} --label for {len(args.config_file)} --config-file", file=sys.stderr)
        return 2
    try:
        grids = {f"rates ({r})": gridding.path_counts(dilated_stack(parse_rates(r))) for r in args.rates}
    except ValueError as e:
        print(f"receptive_field: {e}", file=sys.stderr)
        return 2

    rows_for_picture = {}
    for config_file, label in zip(args.config_file, labels):
        cfg = get_cfg()
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(args.opts))
        cfg.MODEL.DEVICE = "cpu"
        torch.manual_seed(args.seed)
        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        images = load_images(args, cfg)
        rows, erfs = measure(model.backbone, images)
        weights = cfg.MODEL.WEIGHTS or "random weights"
        print(format_table(f"{label} ({config_file}, {weights})", rows, args.size) + "\n", flush=True)
        rows_for_picture[f"{label} ({weights})"] = [
            figures.erf_panel(erfs[r.name], f"{r.name} (stride {r.stride:g})", r.box,
                              legend=[f"theoretical {theoretical_text(r)} px", f"effective (90%) {r.erf90} px"])
            for r in rows]
        grids.update(gridding_stacks(label, model.backbone))

    print("| dilated 3x3 stack | receptive field (positions) | positions reached | coverage |\n|:--|--:|--:|--:|")
    panels = []
    for name, counts in grids.items():
        cov = gridding.counts_coverage(counts)
        print(f"| {name} | {cov.size} | {cov.covered} of {cov.total} | {cov.fraction:.1%} |")
        panels.append(figures.gridding_panel(counts, name))

    if args.output:
        title = (f"Effective receptive fields (|gradient| of the centre unit, sqrt scale) on {args.size}x{args.size} "
                 f"inputs; green: theoretical RF")
        atomic_imwrite(args.output, figures.erf_grid(rows_for_picture, title))
        print(f"Wrote {args.output}")
    if args.gridding_output:
        from det_dcn.vis.visualizer import add_title_and_legend, hstack_panels

        title = "Input positions reaching one output through stacked dilated 3x3 convs (black: never reached)"
        atomic_imwrite(args.gridding_output, add_title_and_legend(hstack_panels(panels), title))
        print(f"Wrote {args.gridding_output}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    sys.exit(main())
