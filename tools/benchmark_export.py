#!/usr/bin/env python
"""CPU latency of one detector image through det_dcn eager, det_dcn torch.compile, onnxruntime (the exported .onnx)
and torchvision eager, in one run, with ratios to torchvision eager.

plain: torchvision's fasterrcnn_resnet50_fpn and det_dcn's configs/torchvision/faster_rcnn_R_50_FPN.yaml with the
same (random, seeded) weights converted into it, as in tools/benchmark.py; all four see the same uint8 image
(800 x 1216 by default, already at the test size). dconv / dpool: det_dcn's COCO-Detection R50-FPN variants starting
from the plain COCO model's weights (tools/benchmark.py's start_as_plain), timed eager, compiled and in
onnxruntime; their ratios are to the same torchvision eager time (dpool with its config's POOLER_SAMPLING_RATIO 0,
adaptive, unless --dpool-sampling-ratio says otherwise). Exports trace with torch.export first (minutes).

    python tools/benchmark_export.py                       # plain, dconv, dpool at 800 x 1216, 3 timed runs each
    python tools/benchmark_export.py --variants plain --size 320 --iters 2
    python tools/benchmark_export.py --variants plain --threads 1 --no-compile --profile   # where onnxruntime's time goes
    python tools/benchmark_export.py --variants plain --threads 1 --no-compile --precisions fp32 int8 bf16

--precisions adds, per variant, "int8 onnxruntime" (the exported file quantized by det_dcn.deploy.quantize,
calibrated on --calibration-images random images: latency only, accuracy is tools/eval_precision.py's) and "bf16
eager" (DefaultPredictor's bf16: autocast, channels-last; skipped with the reason on a CPU without bfloat16).
"""

import argparse
import copy
import functools
import os
import sys
import tempfile
import time

import numpy as np
import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(TOOLS, ".."))
sys.path.insert(0, TOOLS)

from benchmark import VARIANTS as CONFIGS  # noqa: E402
from benchmark import TORCHVISION_CONFIG, build_torchvision_pair, build_variant, load_cfg, make_inputs  # noqa: E402

from det_dcn.deploy import OnnxPredictor  # noqa: E402
from det_dcn.deploy.export import export_onnx  # noqa: E402
from det_dcn.deploy.quantize import quantize_onnx  # noqa: E402
from det_dcn.engine.env_info import cpu_model  # noqa: E402
from det_dcn.engine.predictor import native_bf16, precision_context  # noqa: E402
from det_dcn.testing import time_interleaved  # noqa: E402

VARIANTS = ("plain", "dconv", "dpool")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=800, help="short side of the image (long side 1.52x)")
    p.add_argument("--iters", type=int, default=3, help="timed runs per path (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (compilation happens here)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: their defaults)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile path")
    p.add_argument("--profile", action="store_true",
                   help="also print onnxruntime's time per ONNX operator type for each exported model")
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "int8", "bf16"),
                   help="fp32: the paths above; int8: + int8 onnxruntime; bf16: + bf16 eager (default fp32 only)")
    p.add_argument("--calibration-images", type=int, default=4, help="int8: random calibration images")
    p.add_argument("--dpool-sampling-ratio", type=int, default=None,
                   help="POOLER_SAMPLING_RATIO of the dpool variant in all paths (default: its config's 0, adaptive)")
    return p.parse_args(argv)


def _ort_predictor(model, cfg, folder: str, name: str, threads: int, profile: bool) -> OnnxPredictor:
    path = os.path.join(folder, f"{name}.onnx")
    start = time.perf_counter()
    export_onnx(model, cfg, path)
    print(f"[{name}] exported to ONNX in {time.perf_counter() - start:.0f} s", flush=True)
    return OnnxPredictor(path, threads=threads, profile=profile)


def _int8_predictor(fp32: OnnxPredictor, folder: str, name: str, args) -> OnnxPredictor:
    """The int8 form of ``fp32``'s file, calibrated on random images of the benchmark's size (written as PNG)."""
    import cv2

    files = []
    for i, item in enumerate(make_inputs(args.size, args.calibration_images, seed=1)):
        files.append(os.path.join(folder, f"calibration_{i}.png"))
        cv2.imwrite(files[-1], np.ascontiguousarray(item["image"].permute(1, 2, 0).numpy()[:, :, ::-1]))
    path = os.path.join(folder, f"{name}_int8.onnx")
    start = time.perf_counter()
    quantize_onnx(fp32.path, path, files, "random images")
    print(f"[{name}] quantized to int8 in {time.perf_counter() - start:.0f} s", flush=True)
    return OnnxPredictor(path, threads=args.threads, profile=args.profile)


def _print_op_times(predictors: dict) -> None:
    for name, predictor in predictors.items():
        print(f"\n[{name}] onnxruntime time per operator type, per image (warm-up and timed runs)\n"
              f"| operator | nodes | ms | share |\n|---|--:|--:|--:|")
        for row in predictor.op_times():
            if row["share"] >= 0.001:
                print(f"| {row['op']} | {row['nodes']} | {row['ms']:.1f} | {100 * row['share']:.1f}% |")


def _eager_calls(model, image_chw: torch.Tensor, compile_: bool, bf16: bool):
    model.eval()
    inputs = [{"image": image_chw}]

    def eager():
        with torch.no_grad():
            model(inputs)

    calls = {"eager": eager}
    if bf16:
        bf16_model = copy.deepcopy(model).to(memory_format=torch.channels_last)  # as DefaultPredictor's bf16

        def bf16_eager():
            with torch.no_grad(), precision_context("bf16", "cpu"):
                bf16_model(inputs)

        calls["bf16 eager"] = bf16_eager
    if compile_:
        compiled = torch.compile(model)

        def comp():
            with torch.no_grad():
                compiled(inputs)

        calls["compile"] = comp
    return calls


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    image = make_inputs(args.size, 1)[0]["image"]  # [3, H, W] uint8, RGB
    image_hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    h, w = image.shape[-2:]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, image {h}x{w}, median of "
          f"{args.iters} after {args.warmup} warm-up; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    bf16 = "bf16" in args.precisions and native_bf16(torch.device("cpu"))
    print(f"CPU {cpu_model()}, torch kernels {torch.backends.cpu.get_cpu_capability()}, bfloat16 instructions: "
          f"{native_bf16(torch.device('cpu'))}" + ("" if bf16 or "bf16" not in args.precisions else
                                                    " (bf16 eager skipped: it would be emulated)"), flush=True)
    tv, ours = build_torchvision_pair(args.size, "cpu")
    tv.eval()
    tv_image = [image.float() / 255]

    def torchvision_eager():
        with torch.no_grad():
            tv(tv_image)

    calls = {"torchvision eager": torchvision_eager}
    predictors = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.variants:
            if name == "plain":
                model, cfg = ours, load_cfg(TORCHVISION_CONFIG, args.size, "cpu")
            else:
                opts = []
                if name == "dpool" and args.dpool_sampling_ratio is not None:
                    opts = ["MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", args.dpool_sampling_ratio]
                plain = build_variant("plain", args.size, "cpu")
                model = build_variant(name, args.size, "cpu", plain.state_dict(), opts)
                cfg = load_cfg(CONFIGS[name], args.size, "cpu", opts)
                if opts:
                    print(f"[{name}] POOLER_SAMPLING_RATIO {args.dpool_sampling_ratio} in all paths", flush=True)
            for kind, fn in _eager_calls(model, image, not args.no_compile, bf16).items():
                calls[f"{name} det_dcn {kind}"] = fn
            predictors[name] = _ort_predictor(model.eval(), cfg, folder, name, args.threads, args.profile)
            bgr = np.ascontiguousarray(image_hwc[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else image_hwc)
            calls[f"{name} onnxruntime"] = functools.partial(predictors[name], bgr)  # OnnxPredictor takes BGR
            if "int8" in args.precisions:
                predictors[f"{name} int8"] = _int8_predictor(predictors[name], folder, name, args)
                calls[f"{name} int8 onnxruntime"] = functools.partial(predictors[f"{name} int8"], bgr)
        print("timing...", flush=True)
        results = {k: m.median for k, m in time_interleaved(calls, args.iters, args.warmup).items()}
    base = results["torchvision eager"]
    print("\n| path | ms | / torchvision eager |\n|---|--:|--:|")
    for name, t in results.items():
        print(f"| {name} | {t * 1000:.0f} | {t / base:.2f}x |")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.profile:
        _print_op_times(predictors)
    return results


if __name__ == "__main__":
    run(parse_args())
