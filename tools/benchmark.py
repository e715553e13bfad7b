#!/usr/bin/env python
"""Time det_dcn's Faster R-CNN against torchvision's, and the DCN / dpool variants against the plain model.

Part 1 (det_dcn vs torchvision): torchvision's fasterrcnn_resnet50_fpn (built without downloads, with the
FrozenBatchNorm backbone and 3 trainable stages of its pretrained variant) and det_dcn's model from
configs/torchvision/faster_rcnn_R_50_FPN.yaml with torchvision's weights converted into it. Both see the same
image and, in training, the same boxes; the image is already at the test size, so the resize is a no-op.
Part 2 (variants): det_dcn's COCO-Detection R50-FPN configs (plain, dconv, mdconv, dpool, mdpool, mdconv+mdpool)
starting from the plain model's weights (so every variant computes the plain model's outputs and is timed on the
same workload); each variant's time is reported as a ratio to the plain model's.

Inference = model.eval() forward under no_grad; training iteration = forward, backward and an SGD step.
Times are medians over --iters interleaved runs after --warmup runs, all in the same process, so the ratios are
comparable across machines (det_dcn.testing.time_interleaved: torch.utils.benchmark's clock, which synchronises
CUDA, and its Measurements). CUDA peak memory is reported too. Inputs have the aspect ratio of COCO's test-size
images (800 x 1216) and each config's own test-time size ratio (INPUT.MAX_SIZE_TEST / MIN_SIZE_TEST).

    python tools/benchmark.py                        # CPU: 320 px, 2 timed iterations (a few minutes on 2 cores)
    python tools/benchmark.py --full --iters 10      # 800 px (COCO test size), batch 2
    python tools/benchmark.py --device cuda --full --iters 20
    python tools/benchmark.py --parts variants --variants plain dconv
"""

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from det_dcn.checkpoint.convert import convert_torchvision_faster_rcnn  # noqa: E402
from det_dcn.config import get_cfg  # noqa: E402
from det_dcn.modeling import build_model  # noqa: E402
from det_dcn.testing import calibrate_frozen_bn, start_as_plain_model, time_interleaved  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TORCHVISION_CONFIG = "torchvision/faster_rcnn_R_50_FPN.yaml"
COCO_WIDTH_PER_HEIGHT = 1216 / 800  # a typical COCO image at the 800 px test size: 800 x 1216
VARIANTS = {
    "plain": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "dconv": "COCO-Detection/faster_rcnn_R_50_FPN_dconv_c3-c5_1x.yaml",
    "mdconv": "COCO-Detection/faster_rcnn_R_50_FPN_mdconv_c3-c5_1x.yaml",
    "dpool": "COCO-Detection/faster_rcnn_R_50_FPN_dpool_1x.yaml",
    "mdpool": "COCO-Detection/faster_rcnn_R_50_FPN_mdpool_1x.yaml",
    "mdconv_mdpool": "COCO-Detection/faster_rcnn_R_50_FPN_mdconv_c3-c5_mdpool_1x.yaml",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:i]")
    p.add_argument("--size", type=int, default=None, help="short side of the input (default 320, 800 with --full)")
    p.add_argument("--batch", type=int, default=None, help="images per iteration (default 1, 2 with --full)")
    p.add_argument("--full", action="store_true", help="COCO-sized inputs: 800 x 1216, batch 2")
    p.add_argument("--iters", type=int, default=2, help="timed iterations per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    p.add_argument("--parts", nargs="+", default=["torchvision", "variants"], choices=["torchvision", "variants"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--modes", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.size = args.size or (800 if args.full else 320)
    args.batch = args.batch or (2 if args.full else 1)
    if args.iters < 1 or args.warmup < 0:
        p.error(f"--iters must be >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}")
    return args


# ------------------------------------------------------------------------------------------------------ inputs
def make_inputs(size: int, batch: int, seed: int = 0) -> List[dict]:
    """``batch`` uint8 RGB images of size x round(COCO_WIDTH_PER_HEIGHT size) with 5 boxes each (classes in
    [0, 80))."""
    g = torch.Generator().manual_seed(seed)
    h, w = size, int(round(size * COCO_WIDTH_PER_HEIGHT))
    inputs = []
    for _ in range(batch):
        image = (torch.rand(3, h, w, generator=g) * 255).to(torch.uint8)
        xy = torch.rand(5, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = (torch.rand(5, 2, generator=g) * 0.25 + 0.05) * torch.tensor([w, h])
        boxes = torch.cat([xy, xy + wh], dim=1)
        classes = torch.randint(0, 80, (5,), generator=g)
        inputs.append({"image": image, "boxes": boxes, "classes": classes})
    return inputs


# ------------------------------------------------------------------------------------------------------ timing
def _steps(model, eval_args: tuple, train_args: tuple):
    """(inference fn, training-iteration fn): ``model(*eval_args)`` in eval mode under no_grad; ``model(*train_args)``
    in train mode -> dict of losses, backward of their sum, an SGD step."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)

    def infer():
        model.eval()
        with torch.no_grad():
            model(*eval_args)

    def train():
        model.train()
        losses = model(*train_args)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    return infer, train


def det_dcn_steps(model, inputs: List[dict], device: str):
    """(inference fn, training-iteration fn) for a det_dcn model."""
    eval_inputs = [{"image": x["image"].to(device)} for x in inputs]
    train_inputs = [{k: v.to(device) for k, v in x.items()} for x in inputs]
    return _steps(model, (eval_inputs,), (train_inputs,))


def torchvision_steps(model, inputs: List[dict], device: str):
    """The same for torchvision's detector: float images in [0, 1], labels shifted by one (0 is background)."""
    images = [(x["image"].float() / 255).to(device) for x in inputs]
    targets = [{"boxes": x["boxes"].to(device), "labels": (x["classes"] + 1).to(device)} for x in inputs]
    return _steps(model, (images,), (images, targets))


# ------------------------------------------------------------------------------------------------------ models
def load_cfg(config: str, size: int, device: str, opts: Sequence = ()):
    """The config ``configs/<config>`` at test size ``size`` (its max size scaled by the config's own ratio), then
    the KEY VALUE pairs ``opts``."""
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", config))
    max_size = int(size * cfg.INPUT.MAX_SIZE_TEST / cfg.INPUT.MIN_SIZE_TEST)
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", size, "INPUT.MAX_SIZE_TEST", max_size, "MODEL.DEVICE", device,
                         *opts])
    return cfg


def build_torchvision_pair(size: int, device: str):
    """torchvision's detector (pretrained-style: FrozenBN, 3 trainable stages) and det_dcn's with its weights."""
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    cfg = load_cfg(TORCHVISION_CONFIG, size, device)
    # What fasterrcnn_resnet50_fpn(weights=...) builds, minus the download, at the config's test size.
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    tv = FasterRCNN(backbone, num_classes=91, min_size=cfg.INPUT.MIN_SIZE_TEST, max_size=cfg.INPUT.MAX_SIZE_TEST)
    ours = build_model(cfg)
    state, unmatched = convert_torchvision_faster_rcnn(tv.state_dict())
    if unmatched:
        raise RuntimeError(f"torchvision keys without a det_dcn counterpart: {unmatched}")
    ours.load_state_dict(state)
    return tv.to(device), ours.to(device)


def build_variant(name: str, size: int, device: str, plain_state: Optional[dict] = None, opts: Sequence = ()):
    """The variant's model (config overrides ``opts``); given the plain model's state dict, it starts as the plain
    model (det_dcn.testing.start_as_plain_model), so every variant is timed on the same workload."""
    torch.manual_seed(0)
    model = build_model(load_cfg(VARIANTS[name], size, device, opts))
    if plain_state is not None:
        start_as_plain_model(model, plain_state)
    return model


# ------------------------------------------------------------------------------------------------------ main
def _fmt(m) -> str:
    """A Measurement as 'median ms [CUDA peak MiB]'."""
    mem = f" {m.metadata['cuda_peak_mib']:8.0f} MiB" if m.metadata else ""
    return f"{m.median * 1000:9.1f} ms{mem}"


def _time(fns: dict, args) -> dict:
    cuda = torch.device(args.device) if args.device.startswith("cuda") else None
    return time_interleaved(fns, args.iters, args.warmup, cuda_device=cuda)


def run(args) -> Dict[str, Dict[str, float]]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    inputs = make_inputs(args.size, args.batch)
    h, w = inputs[0]["image"].shape[-2:]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.startswith('cuda') else 'cpu'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch} x {h}x{w}, "
          f"median of {args.iters} after {args.warmup} warm-up")
    results: Dict[str, Dict[str, float]] = {}

    if "torchvision" in args.parts:
        tv, ours = build_torchvision_pair(args.size, device)
        steps = {"torchvision": torchvision_steps(tv, inputs, device), "det_dcn": det_dcn_steps(ours, inputs, device)}
        print("\n== det_dcn vs torchvision fasterrcnn_resnet50_fpn (same weights, same input) ==")
        for mode in args.modes:
            idx = 0 if mode == "inference" else 1
            r = _time({k: v[idx] for k, v in steps.items()}, args)
            t_tv, t_us = r["torchvision"].median, r["det_dcn"].median
            results[f"torchvision/{mode}"] = {"torchvision": t_tv, "det_dcn": t_us, "ratio": t_us / t_tv}
            print(f"{mode:10s} torchvision {_fmt(r['torchvision'])} | det_dcn {_fmt(r['det_dcn'])} | "
                  f"ratio det_dcn/torchvision {t_us / t_tv:5.2f}")
        del tv, ours, steps

    if "variants" in args.parts:
        names = ["plain"] + [v for v in args.variants if v != "plain"]
        print("\n== det_dcn variants (R50-FPN), time relative to the plain model ==")
        plain = build_variant("plain", args.size, device)
        # realistic activations (see calibrate_frozen_bn): a random R50 with identity FrozenBN scores every box ~1
        calibrate_frozen_bn(plain, [{"image": x["image"]} for x in inputs])
        models = {name: build_variant(name, args.size, device, plain.state_dict()) if name != "plain" else plain
                  for name in names}
        steps = {name: det_dcn_steps(model, inputs, device) for name, model in models.items()}
        lines = {name: f"{name:14s}" for name in names}
        for mode in args.modes:
            idx = 0 if mode == "inference" else 1
            r = _time({k: v[idx] for k, v in steps.items()}, args)
            for name in names:
                t = r[name].median
                ratio = t / r["plain"].median
                results[f"variant/{name}/{mode}"] = {"time": t, "ratio": ratio}
                lines[name] += f" | {mode} {_fmt(r[name])} x{ratio:4.2f}"
        print("\n".join(lines.values()))
        del models, steps
    return results


def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
