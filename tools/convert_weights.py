#!/usr/bin/env python
"""Convert a torchvision checkpoint into one det_dcn loads.

    python tools/convert_weights.py torchvision IN.pth OUT.pth [--config CFG.yaml] [--coco-80]

IN.pth is a torchvision ``fasterrcnn_resnet50_fpn`` state dict (e.g. fasterrcnn_resnet50_fpn_coco-258fb6c6.pth,
for configs/torchvision/faster_rcnn_R_50_FPN.yaml) or a torchvision ImageNet ResNet state dict (e.g.
resnet50-0676ba61.pth, as MODEL.WEIGHTS of the COCO-Detection configs). OUT.pth gets {"model": state_dict} and is
written atomically (a temporary file in the same folder, then renamed), so an interrupted run never leaves a
truncated checkpoint. Keys without a det_dcn counterpart (e.g. the ImageNet classifier ``fc.*``) are reported.
With --config, the result is also loaded into the model that config builds, and missing / unexpected /
shape-mismatched keys are reported.

--coco-80 keeps, of torchvision's 91-class COCO head (background + category ids 1..90), only the 80 category
ids that COCO 2017 annotates, in increasing id order, as det_dcn's COCO loader numbers them: evaluate with
MODEL.ROI_HEADS.NUM_CLASSES 80 (--config then checks against that class count too). Without it the head has 90
classes (det_dcn class c = category id c + 1), whose class ids do not match the coco_2017_* datasets.
"""

import argparse
import os
import sys
import tempfile
from typing import Dict, List, Optional

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_dcn.checkpoint.convert import convert_torchvision  # noqa: E402


class ConversionError(ValueError):
    """Bad input file or output path; the message names the file."""


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read a state dict (or {"model"/"state_dict": state dict}) from ``path``; ConversionError naming it."""
    if not os.path.isfile(path):
        raise ConversionError(f"Input checkpoint '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises various types for corrupt / non-torch files
        raise ConversionError(f"Cannot read input checkpoint '{path}' as a torch file: {e}") from e
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"Input checkpoint '{path}' is not a state dict (a mapping of names to tensors); "
                              f"got {type(obj).__name__}")
    return obj


def atomic_save(obj, path: str) -> None:
    """torch.save to a temporary file next to ``path``, then rename over it."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConversionError(f"Output folder '{folder}' (for '{path}') does not exist")
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=["torchvision"], help="where the checkpoint comes from")
    parser.add_argument("input", help="torchvision state dict (.pth)")
    parser.add_argument("output", help="det_dcn checkpoint to write")
    parser.add_argument("--config", help="also check the result against the model this config builds")
    parser.add_argument("--coco-80", action="store_true",
                        help="keep only the 80 COCO 2017 category ids of a 91-class torchvision COCO head "
                             "(use with MODEL.ROI_HEADS.NUM_CLASSES 80)")
    args = parser.parse_args(argv)
    try:
        state = load_state_dict(args.input)
        try:
            converted, unmatched, kind = convert_torchvision(state, coco80=args.coco_80)
        except ValueError as e:
            raise ConversionError(f"Input checkpoint '{args.input}': {e}") from e
        if args.coco_80:
            kind += " (COCO 2017 80 classes)"
        report = [f"{args.input}: torchvision {kind}, {len(converted)} tensors converted, "
                  f"{len(unmatched)} keys without a det_dcn counterpart"]
        report += [f"  unmatched: {k}" for k in unmatched]
        if args.config:
            report += check_against_config(converted, args.config, num_classes=80 if args.coco_80 else None)
        atomic_save({"model": converted, "__converted_from__": f"torchvision {kind}"}, args.output)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(report))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
