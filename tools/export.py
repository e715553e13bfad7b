#!/usr/bin/env python
r"""Export a det_dcn detector to a plain ONNX file (stock onnxruntime runs it) or a torch.export program.

    python tools/export.py --config-file configs/quickstart/faster_rcnn_shapes_mdconv_mdpool.yaml \
        --output model.onnx [--format onnx|torch_export] [--opset 19] MODEL.WEIGHTS output/model_final.pth
    python tools/export.py --config-file CFG --output model_int8.onnx --precision int8 --calibration-images 100 \
        MODEL.WEIGHTS output/model_final.pth

Weights come from MODEL.WEIGHTS, as in tools/train.py. The file takes one uint8 H x W x 3 image in INPUT.FORMAT
(any size) and returns boxes float32 [N, 4] in the image's pixels, scores float32 [N] and classes int64 [N], as
DefaultPredictor does; docs/deployment.md gives the contract and what is supported. --precision int8
quantizes the ONNX file with onnxruntime (static QDQ, calibrated on images of DATASETS.TRAIN; det_dcn.deploy.quantize
says which layers stay float); OnnxPredictor and tools/demo.py --onnx run it unchanged. Run the ONNX file with
det_dcn.deploy.OnnxPredictor (numpy + onnxruntime) or tools/demo.py --onnx FILE; reload a .pt2 with
det_dcn.deploy.load_program(FILE).module(). KEY VALUE pairs override the config.
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_dcn.config import get_cfg  # noqa: E402
from det_dcn.deploy.build import FORMATS, export_model  # noqa: E402
from det_dcn.deploy.export import DEFAULT_OPSET  # noqa: E402
from det_dcn.deploy.quantize import (CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES, PRECISIONS,  # noqa: E402
                                     export_int8)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="config YAML (may use _BASE_)")
    p.add_argument("--output", required=True, metavar="FILE", help="the file to write (.onnx or .pt2)")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="onnx (default) or torch_export (.pt2)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET}; >= 19 for deformable convolutions)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (default) or int8 (onnxruntime static quantization; --format onnx only)")
    p.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES, metavar="N",
                   help=f"int8: calibrate on N images of DATASETS.TRAIN, evenly spaced (default "
                        f"{DEFAULT_CALIBRATION_IMAGES})")
    p.add_argument("--calibration-method", default="minmax", choices=CALIBRATION_METHODS,
                   help="int8: onnxruntime's calibration method (default minmax)")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return p


def main(argv=None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.precision == "int8" and args.format != "onnx":
        parser.error(f"--precision int8 needs --format onnx (got --format {args.format})")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.precision == "int8":
        export_int8(cfg, args.output, args.calibration_images, args.opset, args.calibration_method)
    else:
        export_model(cfg, args.output, args.format, args.opset)
    print(f"Wrote {args.output} ({args.format}, {args.precision})")


if __name__ == "__main__":
    main()
