#!/usr/bin/env python
r"""Box AP of one detector in several precisions on a dataset: fp32 eager, bf16 eager, and exported ONNX files.

    python tools/eval_precision.py --config-file configs/quickstart/faster_rcnn_shapes.yaml \
        --onnx model.onnx model_int8.onnx --bf16 MODEL.WEIGHTS output/quickstart/model_final.pth

Rows: "fp32 eager" (DefaultPredictor), "bf16 eager" (--bf16: DefaultPredictor(precision="bf16"), refused on a CPU
without bfloat16 instructions) and one per --onnx file (OnnxPredictor, named by the file and its metadata's
precision), each with AP, AP50, AP75 and the AP difference to fp32 eager, on --dataset (default the config's first
DATASETS.TEST). KEY VALUE pairs override the config. With --onnx files the eager rows run what the files run
(``exported_config``: soft-NMS becomes NMS, with a warning), so the differences are those of precision alone.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_dcn.config import get_cfg  # noqa: E402
from det_dcn.config.overrides import parse_args_with_overrides  # noqa: E402
from det_dcn.deploy import OnnxPredictor  # noqa: E402
from det_dcn.deploy.build import exported_config  # noqa: E402
from det_dcn.deploy.evaluate import evaluate_predictors  # noqa: E402
from det_dcn.engine.predictor import DefaultPredictor  # noqa: E402
from det_dcn.utils.logger import setup_logger  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="config YAML (may use _BASE_)")
    p.add_argument("--onnx", nargs="*", default=[], metavar="FILE", help="exported .onnx files (fp32 or int8)")
    p.add_argument("--bf16", action="store_true", help="also DefaultPredictor(precision='bf16')")
    p.add_argument("--dataset", default=None, help="registered dataset (default: the config's first DATASETS.TEST)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: one per core)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides, anywhere on the line")
    return p


def main(argv=None) -> dict:
    args = parse_args_with_overrides(get_parser(), argv)  # a config key ends --onnx / --rates lists
    setup_logger(name="det_dcn")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if dataset is None:
        raise SystemExit("no dataset: give --dataset or set DATASETS.TEST")
    if args.onnx:
        cfg = exported_config(cfg)
    predictors = {"fp32 eager": DefaultPredictor(cfg)}
    if args.bf16:
        predictors["bf16 eager"] = DefaultPredictor(cfg, precision="bf16")
    for path in args.onnx:
        onnx_predictor = OnnxPredictor(path, threads=args.threads)
        predictors[f"{os.path.basename(path)} ({onnx_predictor.precision} onnxruntime)"] = onnx_predictor
    results = evaluate_predictors(cfg, predictors, dataset)
    base = results["fp32 eager"]["AP"]
    print(f"\nbox AP on {dataset}\n| path | AP | AP50 | AP75 | AP - fp32 eager |\n|---|--:|--:|--:|--:|")
    for name, r in results.items():
        print(f"| {name} | {r['AP']:.2f} | {r['AP50']:.2f} | {r['AP75']:.2f} | {r['AP'] - base:+.2f} |")
    return results


if __name__ == "__main__":
    main()
