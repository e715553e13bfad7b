#!/usr/bin/env python
r"""Is one model better than another on a small test set, or only luckier with its images? (paired bootstrap)

    python tools/compare_results.py --config-file configs/custom/faster_rcnn_raccoon.yaml \
        --a output/a/inference/raccoon_val/coco_instances_results.json \
        --b output/b/inference/raccoon_val/coco_instances_results.json [--names A B] [--num-samples 2000] [KEY VALUE ...]

Each model's detections are COCO results files, as the COCO evaluator writes them (TEST.EVALUATOR coco), of the first
dataset in DATASETS.TEST (or ``--dataset``), scored on all of its images. Several files for one model are joined:
the folds of a cross-validation (DATASETS.CUSTOM_VOC's ``fold``), each fold's validation images detected by the model
that did not train on them, scored together on the whole folder (``--dataset <name>``); an image in two of them is
an error. Without ``--b``: model A's AP, AP50 and AP75 with their intervals (the same resamples). Prints COCO AP, AP50 and AP75 of each, B - A, the
central interval of B - A over ``--num-samples`` resamples of the images that both are scored on (the paired
bootstrap: det_dcn/evaluation/bootstrap.py), and how often B came out ahead. An interval that contains 0 means the
test set cannot tell the two apart.
"""

import argparse
import json
import sys

from det_dcn.config import ConfigError, get_cfg
from det_dcn.config.overrides import parse_args_with_overrides
from det_dcn.data.build import register_custom_from_cfg
from det_dcn.evaluation import COCOEvaluator
from det_dcn.evaluation.bootstrap import (bootstrap_intervals, check_bootstrap_cfg, coco_scores,
                                         format_intervals, paired_differences)
from det_dcn.evaluation.coco_tables import Detections
from det_dcn.evaluation.fast_cocoeval import match_boxes


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="config YAML naming the test dataset")
    p.add_argument("--a", nargs="+", required=True, metavar="JSON", help="model A's COCO results file(s)")
    p.add_argument("--b", nargs="+", metavar="JSON", help="model B's COCO results file(s); without: model A's AP "
                                                          "and its interval alone")
    p.add_argument("--names", nargs="+", default=[], metavar="NAME",
                   help="names of A and B for the table (default A B; one name with --a alone)")
    p.add_argument("--dataset", metavar="NAME", help="the dataset (default: the first of DATASETS.TEST)")
    p.add_argument("--num-samples", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    p.add_argument("--confidence", type=float, default=0.95, metavar="P", help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples (default 0)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. DATASETS.CUSTOM_VOC ...")
    return p


def read_results(path: str) -> Detections:
    """A COCO results file, or ValueError naming the file and what is wrong with it."""
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read a COCO results file: {e}") from e
    if not isinstance(results, list):
        raise ValueError(f"{path}: a COCO results file is a JSON list of detections, got {type(results).__name__}")
    try:
        return Detections.from_results(results)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a list of {{'image_id', 'category_id', 'bbox', 'score'}} records: {e!r}") from e


def read_joined(paths) -> Detections:
    """The detections of several results files (disjoint images), or ValueError naming the two files that share
    an image."""
    parts, seen = [], {}
    for path in paths:
        dets = read_results(path)
        for image_id in set(dets.image_id.tolist()):
            if image_id in seen:
                raise ValueError(f"image {image_id!r} has detections in {seen[image_id]} and in {path}; the files "
                                 f"of one model must cover disjoint images (the folds' validation sets)")
            seen[image_id] = path
        parts.append(dets)
    return Detections.concat(parts)


def format_table(names, diffs: dict, confidence: float) -> str:
    a, b = names
    lines = [f"| metric | {a} | {b} | {b} - {a} | {confidence:.0%} interval of {b} - {a} | {b} ahead in |",
             "|:-|--:|--:|--:|:-:|--:|"]
    for metric, d in diffs.items():
        lines.append(f"| {metric} | {d['a']:.1f} | {d['b']:.1f} | {d['diff']:+.1f} | {d['low']:+.1f} to "
                     f"{d['high']:+.1f} | {d['b_better']:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args_with_overrides(get_parser(), argv)
    if len(args.names) > 2:
        print(f"tools/compare_results.py: --names takes one or two names, got {args.names}", file=sys.stderr)
        return 2
    args.names = list(args.names) + ["A", "B"][len(args.names):]
    try:
        check_bootstrap_cfg(args.num_samples, args.confidence)
        cfg = get_cfg()
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
        register_custom_from_cfg(cfg)
        if not args.dataset and not cfg.DATASETS.TEST:
            raise ConfigError("DATASETS.TEST is empty; name the dataset with --dataset")
        dataset = args.dataset or cfg.DATASETS.TEST[0]
        _, gt = COCOEvaluator(dataset, distributed=False).ground_truth()
        dets_a = read_joined(args.a)
        if args.b:
            diffs = paired_differences(gt, dets_a, read_joined(args.b), args.num_samples, args.confidence, args.seed)
        else:
            point = coco_scores(match_boxes(gt, dets_a))()
            intervals = bootstrap_intervals(gt, dets_a, args.num_samples, args.confidence, args.seed)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as e:
        print(f"tools/compare_results.py: {e}", file=sys.stderr)
        return 2
    if args.b:
        print(f"{dataset}: {len(gt.img_ids)} images, {args.num_samples} paired bootstrap resamples (seed {args.seed})")
        print(format_table(args.names, diffs, args.confidence))
    else:
        print(f"{dataset}, {args.names[0]}: " + format_intervals(point, intervals, len(gt.img_ids), args.num_samples,
                                                                 args.confidence))
    return 0


if __name__ == "__main__":
    sys.exit(main())
