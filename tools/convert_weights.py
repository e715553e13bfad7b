#!/usr/bin/env python
"""Convert another framework's checkpoint into one det_dcn loads.

    python tools/convert_weights.py SOURCE IN OUT.pth [--config CFG.yaml] [--coco-80]

SOURCE / IN:
  torchvision    a torchvision fasterrcnn_resnet50_fpn state dict (e.g. fasterrcnn_resnet50_fpn_coco-258fb6c6.pth,
                 for configs/torchvision/faster_rcnn_R_50_FPN.yaml) or an ImageNet ResNet (e.g. resnet50-0676ba61.pth)
  detectron2     a detectron2 Faster R-CNN, FPN or DC5 (dconv FPN too): model-zoo .pkl (e.g. model_final_b275ba.pkl) or
                 .pth; its mask / keypoint heads are dropped and reported; C4 models (roi_heads.res5.*) are refused;
                 use it with the same detectron2 config file
  detectron2-c2  a Caffe2-format ImageNet backbone detectron2 configs start from (ImageNetPretrained/MSRA/R-50.pkl,
                 R-101.pkl, FAIR/X-101-32x8d.pkl): BGR input, PIXEL_MEAN [103.53, 116.28, 123.675], PIXEL_STD [1, 1, 1],
                 STRIDE_IN_1X1 True (detectron2's defaults; X-101-32x8d: its config's values)
  mmdet          an mmdetection 2.x / 3.x Faster R-CNN (R50 / R101-FPN, dcn / dcnv2 backbones, dpool / mdpool):
                 use configs/mmdet/

Pickles (.pkl) are read with a restricted unpickler (numpy arrays and plain containers only), torch files with
torch.load(weights_only=True): nothing in IN runs code. OUT gets {"model": state_dict} and is written atomically.
Every input key without a det_dcn counterpart is reported. With --config, the result is also loaded into the
model that config builds, and missing / unexpected / shape-mismatched keys are reported.

--coco-80 (torchvision only) keeps, of torchvision's 91-class COCO head (background + category ids 1..90), only
the 80 category ids that COCO 2017 annotates, in increasing id order, as det_dcn's COCO loader numbers them:
evaluate with MODEL.ROI_HEADS.NUM_CLASSES 80 (--config then checks against that class count too).
"""

import argparse
import os
import sys
from typing import Dict, List, Optional

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_dcn.checkpoint.convert import CONVERTERS, convert_torchvision  # noqa: E402
from det_dcn.checkpoint.convert_common import (  # noqa: E402
    ConversionError, load_checkpoint_file, state_dict_of,
)
from det_dcn.utils.atomic_io import atomic_torch_save  # noqa: E402

SOURCES = ["torchvision"] + sorted(CONVERTERS)


def check_against_config(state: Dict[str, torch.Tensor], config: str, num_classes: Optional[int] = None) -> List[str]:
    """Lines reporting how ``state`` fits the model ``config`` builds (missing / unexpected / shape mismatch).

    ``num_classes`` overrides the config's MODEL.ROI_HEADS.NUM_CLASSES (as the user would on the command line).
    """
    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(config)
    cfg.MODEL.DEVICE = "cpu"
    if num_classes is not None:
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
        config = f"{config} with MODEL.ROI_HEADS.NUM_CLASSES {num_classes}"
    model_state = build_model(cfg).state_dict()
    missing = sorted(k for k in model_state if k not in state)
    unexpected = sorted(k for k in state if k not in model_state)
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                        for k, v in model_state.items() if k in state and state[k].shape != v.shape)
    lines = [f"against {config}: {len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(mismatched)} shape-mismatched keys"]
    lines += [f"  missing: {k}" for k in missing] + [f"  unexpected: {k}" for k in unexpected]
    lines += [f"  shape mismatch: {k}" for k in mismatched]
    return lines


def convert_file(source: str, path: str, coco_80: bool = False):
    """(converted state dict, unmatched keys, description, number of input tensors) for ``path``."""
    if coco_80 and source != "torchvision":
        raise ConversionError(f"--coco-80 applies to torchvision checkpoints, not to '{source}'")
    state = state_dict_of(load_checkpoint_file(path), path)
    try:
        if source == "torchvision":
            converted, unmatched, kind = convert_torchvision(state, coco80=coco_80)
            kind = f"torchvision {kind}" + (" (COCO 2017 80 classes)" if coco_80 else "")
        else:
            fn, kind = CONVERTERS[source]
            converted, unmatched = fn(state)
    except ValueError as e:
        raise ConversionError(f"Input checkpoint '{path}': {e}") from e
    used = sum(1 for k in state if not k.endswith("num_batches_tracked")) - len(unmatched)
    return converted, unmatched, kind, used


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=SOURCES, help="the framework that wrote the checkpoint")
    parser.add_argument("input", help="checkpoint to convert (.pth / .pkl)")
    parser.add_argument("output", help="det_dcn checkpoint to write")
    parser.add_argument("--config", help="also check the result against the model this config builds")
    parser.add_argument("--coco-80", action="store_true",
                        help="torchvision: keep only the 80 COCO 2017 category ids of a 91-class COCO head "
                             "(use with MODEL.ROI_HEADS.NUM_CLASSES 80)")
    args = parser.parse_args(argv)
    try:
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise ConversionError(f"Output folder '{folder}' (for '{args.output}') does not exist")
        converted, unmatched, kind, used = convert_file(args.source, args.input, args.coco_80)
        report = [f"{args.input}: {kind}, {len(converted)} tensors converted, "
                  f"{len(unmatched)} keys without a det_dcn counterpart"]
        if len(converted) > used:
            report.append(f"  {len(converted) - used} tensors added: FrozenBN statistics (mean 0, var 1) of norms "
                          f"the file stores as scale and shift only")
        report += [f"  unmatched: {k}" for k in unmatched]
        if args.config:
            report += check_against_config(converted, args.config, num_classes=80 if args.coco_80 else None)
        atomic_torch_save({"model": converted, "__converted_from__": kind}, args.output)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(report))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
