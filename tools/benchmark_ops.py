#!/usr/bin/env python
"""Forward+backward time and peak memory of det_dcn's deformable ops against their plain counterparts.

deform_roi_pool (with offsets that need gradients) is compared with torchvision's roi_align on the same feature map
and RoIs; DeformConv2d / ModulatedDeformConv2dPack with conv2d of the same shape (ResNet-50 res3/res4/res5 3x3
convs for an 800x1216 input at batch 2). Every ratio is measured in the same run, so it is comparable across
machines. CPU runs use one thread by default (--threads). CPU peak memory is the rise of the process' peak RSS
(each measurement runs in a forked child); CUDA peak memory is torch.cuda.max_memory_allocated above the inputs.

    python tools/benchmark_ops.py                    # CPU, and CUDA when present
    python tools/benchmark_ops.py --device cuda --repeats 20
    python tools/benchmark_ops.py --quick            # small shapes, a smoke test
    python tools/benchmark_ops.py --registry         # registered ops vs the same code under plain autograd
    python tools/benchmark_ops.py --registry --inference   # ... and both forward only under torch.no_grad()
    python tools/benchmark_ops.py --kept             # ops keeping their intermediates vs rebuilding them, CPU
"""

import argparse
import math
import os
import resource
import sys

import torch
from torchvision.ops import roi_align

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from det_dcn.layers import DeformConv2d, ModulatedDeformConv2dPack, ROIAlign, _ops, deform_roi_pool  # noqa: E402
from det_dcn.layers.deform_conv_torch import deform_conv2d_torch  # noqa: E402
from det_dcn.layers.deform_roi_pool_torch import deform_roi_pool_torch  # noqa: E402
from det_dcn.testing import time_interleaved  # noqa: E402

IMAGE_HW = (800, 1216)
CONV_SHAPES = [("res3", 128, (100, 152)), ("res4", 256, (50, 76)), ("res5", 512, (25, 38))]


def make_rois(num, n_images, image_hw, min_size, max_size, generator):
    """[num, 5] boxes with log-uniform side lengths in [min_size, max_size] pixels, centres inside the image."""
    log_size = torch.empty(num, 2).uniform_(math.log(min_size), math.log(max_size), generator=generator)
    size = log_size.exp()
    ctr = torch.rand(num, 2, generator=generator) * torch.tensor([image_hw[1], image_hw[0]], dtype=torch.float32)
    idx = torch.randint(0, n_images, (num, 1), generator=generator).float()
    return torch.cat([idx, ctr - size / 2, ctr + size / 2], dim=1)


# ----------------------------------------------------------------------------------------------------------- cases
def roi_cases(args, device):
    """(name, baseline name, setup) for the RoI ops; setup(device) -> (baseline fn, op fn), each fwd+bwd.

    On CUDA the plain PyTorch path (the CPU implementation) is measured too, next to the fused default."""
    cases = []
    impls = ["auto", "torch"] if device == "cuda" else ["auto"]
    for sampling, impl in [(s, i) for i in impls for s in args.sampling]:
        def setup(device, sampling=sampling, impl=impl):
            g = torch.Generator().manual_seed(0)
            scale = args.feature_hw[0] / IMAGE_HW[0]
            x = torch.randn(args.images, args.channels, *args.feature_hw, generator=g).to(device)
            rois = make_rois(args.rois, args.images, IMAGE_HW, args.roi_min, args.roi_max, g).to(device)
            offset = (torch.randn(args.rois, 2, 7, 7, generator=g) * 0.1).to(device)
            x.requires_grad_()
            offset.requires_grad_()
            grad = torch.randn(args.rois, args.channels, 7, 7, generator=g).to(device)

            def base():
                roi_align(x, rois, 7, scale, sampling, aligned=True).backward(grad)

            def deform():
                deform_roi_pool(x, rois, offset, 7, scale, sampling, 0.1).backward(grad)

            def plain():
                deform_roi_pool_torch(x, rois, offset, (7, 7), scale, sampling, 0.1).backward(grad)
            return base, (deform if impl == "auto" else plain)
        name = f"deform_roi_pool s={sampling}" + ("" if impl == "auto" else " [plain torch]")
        cases.append((name, "roi_align", setup))
    return cases


def conv_cases(args):
    cases = []
    for name, channels, hw in (CONV_SHAPES[:1] if args.quick else CONV_SHAPES):
        if args.quick:
            hw = (hw[0] // 4, hw[1] // 4)

        def setup(device, channels=channels, hw=hw, op="dcn"):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(args.images, channels, *hw, generator=g).to(device).requires_grad_()
            conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device)
            dcn = DeformConv2d(channels, channels, 3, padding=1).to(device)
            mdcn = ModulatedDeformConv2dPack(channels, channels, 3, padding=1).to(device)
            offset = (torch.randn(args.images, 18, *hw, generator=g) * 0.5).to(device).requires_grad_()
            grad = torch.randn(args.images, channels, *hw, generator=g).to(device)
            fns = {"conv": lambda: conv(x).backward(grad), "dcn": lambda: dcn(x, offset).backward(grad),
                   "mdcn_pack": lambda: mdcn(x).backward(grad)}
            return fns["conv"], fns[op]
        cases.append((f"DeformConv2d {name} {channels}ch {hw[0]}x{hw[1]}", "conv2d", setup))
        cases.append((f"ModDeformConv2dPack {name}", "conv2d",
                      lambda device, s=setup: s(device, op="mdcn_pack")))
    return cases


def registry_cases(args):
    """The registered ops (det_dcn::, with their backward ops and the RoI checks) against the same plain PyTorch
    code differentiated by autograd, which is how the layers ran before they were operators; then both forward
    only under torch.no_grad() (inference: the ops must keep nothing for a backward there)."""
    def run(fn, grad, train):
        if train:
            fn().backward(grad)
        else:
            with torch.no_grad():
                fn()

    def roi_setup(device, sampling, what, train=True):
        g = torch.Generator().manual_seed(0)
        scale = args.feature_hw[0] / IMAGE_HW[0]
        x = torch.randn(args.images, args.channels, *args.feature_hw, generator=g).to(device).requires_grad_()
        rois = make_rois(args.rois, args.images, IMAGE_HW, args.roi_min, args.roi_max, g).to(device)
        offset = (torch.randn(args.rois, 2, 7, 7, generator=g) * 0.1).to(device)
        offset = None if what == "roi_align" else offset.requires_grad_()
        grad = torch.randn(args.rois, args.channels, 7, 7, generator=g).to(device)
        align = ROIAlign(7, scale, sampling, aligned=True)

        def plain():
            return deform_roi_pool_torch(x, rois, offset, (7, 7), scale, sampling,
                                         0.1 if offset is not None else 0.0)

        def op():
            return align(x, rois) if offset is None else deform_roi_pool(x, rois, offset, 7, scale, sampling, 0.1)
        return lambda: run(plain, grad, train), lambda: run(op, grad, train)

    def conv_setup(device, channels, hw, train=True):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.images, channels, *hw, generator=g).to(device).requires_grad_()
        dcn = DeformConv2d(channels, channels, 3, padding=1).to(device)
        offset = (torch.randn(args.images, 18, *hw, generator=g) * 0.5).to(device).requires_grad_()
        grad = torch.randn(args.images, channels, *hw, generator=g).to(device)

        def plain():
            return deform_conv2d_torch(x, offset, None, dcn.weight, None, (1, 1), (1, 1), (1, 1))
        return lambda: run(plain, grad, train), lambda: run(lambda: dcn(x, offset), grad, train)

    cases = [(f"deform_roi_pool s={s} [op]", "autograd", lambda d, s=s: roi_setup(d, s, "pool"))
             for s in args.sampling]
    cases += [(f"ROIAlign s={s} [op]", "autograd", lambda d, s=s: roi_setup(d, s, "roi_align")) for s in args.sampling]
    convs = [(name, channels, (hw[0] // 4, hw[1] // 4) if args.quick else hw)
             for name, channels, hw in (CONV_SHAPES[:1] if args.quick else CONV_SHAPES)]
    for name, channels, hw in convs:
        cases.append((f"DeformConv2d {name} [op]", "autograd", lambda d, c=channels, hw=hw: conv_setup(d, c, hw)))
    if args.inference:
        cases += [(f"deform_roi_pool s={s} [op, no_grad]", "no_grad", lambda d, s=s: roi_setup(d, s, "pool", False))
                  for s in args.sampling]
        cases += [(f"DeformConv2d {name} [op, no_grad]", "no_grad",
                   lambda d, c=channels, hw=hw: conv_setup(d, c, hw, False)) for name, channels, hw in convs]
    return cases


def kept_cases(args):
    """[(name, {label: fwd+bwd fn})], CPU: each registered op keeping its intermediates for the backward (the
    gather plan, the columns: how the layers call it when training), the same op rebuilding them in its backward
    (as before they were kept; still deform_roi_pool's path under torch.compile), and the plain code under
    autograd. Timed interleaved in one process, so the load of a shared machine hits all three alike."""
    g = torch.Generator().manual_seed(0)
    scale = args.feature_hw[0] / IMAGE_HW[0]
    x = torch.randn(args.images, args.channels, *args.feature_hw, generator=g).requires_grad_()
    rois = make_rois(args.rois, args.images, IMAGE_HW, args.roi_min, args.roi_max, g)
    offset = (torch.randn(args.rois, 2, 7, 7, generator=g) * 0.1).requires_grad_()
    grad = torch.randn(args.rois, args.channels, 7, 7, generator=g)
    cases = []
    for sampling in args.sampling:
        for name, off in (("deform_roi_pool", offset), ("ROIAlign aligned", None)):
            pool = (x, rois, off, (7, 7), scale, sampling, 0.0 if off is None else 0.1)
            fns = {how: (lambda keep=keep, pool=pool: _ops._deform_roi_pool(*pool, keep)[0].backward(grad))
                   for how, keep in (("kept", True), ("rebuilt", False))}
            fns["autograd"] = lambda pool=pool: deform_roi_pool_torch(*pool).backward(grad)
            cases.append((f"{name} s={sampling}", fns))
    for name, channels, hw in (CONV_SHAPES[:1] if args.quick else CONV_SHAPES):
        hw = (hw[0] // 4, hw[1] // 4) if args.quick else hw
        xc = torch.randn(args.images, channels, *hw, generator=g).requires_grad_()
        weight = DeformConv2d(channels, channels, 3, padding=1).weight
        conv = (xc, (torch.randn(args.images, 18, *hw, generator=g) * 0.5).requires_grad_(), None, weight, None,
                (1, 1), (1, 1), (1, 1))
        gc = torch.randn(args.images, channels, *hw, generator=g)
        fns = {how: (lambda keep=keep, conv=conv, gc=gc: _ops._deform_conv2d(*conv, keep)[0].backward(gc))
               for how, keep in (("kept", True), ("rebuilt", False))}
        fns["autograd"] = lambda conv=conv, gc=gc: deform_conv2d_torch(*conv).backward(gc)
        cases.append((f"DeformConv2d {name}", fns))
    return cases


def run_kept(args):
    warmup = args.warmup if args.warmup is not None else 1
    repeats = args.repeats if args.repeats is not None else 5
    print(f"CPU fwd+bwd (ms), median of {repeats} interleaved rounds, ratios of the medians and (best) of the "
          f"fastest rounds (a shared machine only adds time); shapes as the other tables; "
          f"{torch.get_num_threads()} CPU threads")
    print("| op                       |  kept | rebuilt | autograd | kept / rebuilt (best) | kept / autograd (best) |")
    print("|--------------------------|------:|--------:|---------:|----------------------:|-----------------------:|")
    for name, fns in kept_cases(args):
        got = time_interleaved(fns, repeats, warmup)
        t = {k: m.median * 1e3 for k, m in got.items()}
        best = {k: min(m.raw_times) for k, m in got.items()}
        print(f"| {name:24s} | {t['kept']:5.0f} | {t['rebuilt']:7.0f} | {t['autograd']:8.0f} "
              f"| {t['kept'] / t['rebuilt']:6.2f}x ({best['kept'] / best['rebuilt']:.2f}x)       "
              f"| {t['kept'] / t['autograd']:6.2f}x ({best['kept'] / best['autograd']:.2f}x)        |", flush=True)


# ------------------------------------------------------------------------------------------------------- measuring
def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _measure_cpu_once(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    try:  # reset the peak-RSS watermark (Linux >= 4.0), so the peak is this op's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _rss_kb("VmRSS:")
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = time_interleaved({"op": fn}, repeats)["op"].median
    peak = _rss_kb("VmHWM:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return seconds, max(peak - before, 0) * 1024


def measure_cpu(setup, which, warmup, repeats):
    """Runs one op in a forked child (clean allocator state) -> (seconds, peak bytes)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read)
            fns = setup("cpu")
            t, mem = _measure_cpu_once(fns[which], warmup, repeats)
            os.write(write, f"{t} {mem}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    data = os.read(read, 100).decode()
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise RuntimeError(f"benchmark child failed (status {status})")
    t, mem = data.split()
    return float(t), float(mem)


def measure_cuda(setup, which, warmup, repeats):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    fns = setup("cuda")
    fn = fns[which]
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    seconds = time_interleaved({"op": fn}, repeats)["op"].median
    peak = torch.cuda.max_memory_allocated() - base
    del fns, fn
    return seconds, float(peak)


def run(args, device):
    """Measures every case on ``device``; returns table rows."""
    measure = measure_cpu if device == "cpu" else measure_cuda
    warmup = args.warmup if args.warmup is not None else (1 if device == "cpu" else 3)
    repeats = args.repeats if args.repeats is not None else (2 if device == "cpu" else 10)
    if args.registry:
        cases = registry_cases(args)
    else:
        cases = roi_cases(args, device) + ([] if args.skip_conv else conv_cases(args))
    rows = []
    for name, base_name, setup in cases:
        # the CPU convolutions take seconds each: one timed run keeps the default CPU run under ~2 minutes
        reps = 1 if (device == "cpu" and "Conv" in name and args.repeats is None) else repeats
        tb, mb = measure(setup, 0, warmup, reps)
        to, mo = measure(setup, 1, warmup, reps)
        rows.append((device, name, base_name, to, tb, mo, mb))
        if args.verbose:
            print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row):
    device, name, base, to, tb, mo, mb = row
    mem_ratio = f"{mo / mb:6.2f}x" if mb > 0 else "   n/a"
    return (f"| {device:4s} | {name:38s} | {base:9s} | {to * 1e3:9.1f} | {tb * 1e3:9.1f} | {to / tb:5.2f}x "
            f"| {mo / 2**20:8.1f} | {mb / 2**20:8.1f} | {mem_ratio} |")


def print_table(rows, args):
    print(f"fwd+bwd (no_grad rows: forward only), median of repeats; RoIs: {args.rois} boxes, sides log-uniform in [{args.roi_min:g}, "
          f"{args.roi_max:g}] px on an {IMAGE_HW[0]}x{IMAGE_HW[1]} image, feature map {args.images}x{args.channels}x"
          f"{args.feature_hw[0]}x{args.feature_hw[1]}, 7x7 bins; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print("| dev  | op                                     | baseline  |   op (ms) | base (ms) | time  "
          "| op (MiB) | base(MiB)| memory  |")
    print("|------|----------------------------------------|-----------|-----------|-----------|-------"
          "|----------|----------|---------|")
    for row in rows:
        print(format_row(row))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="all = CPU, plus CUDA when available")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per op (default: 2 on CPU (1 for the convs), 10 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 1 on CPU, 3 on CUDA)")
    p.add_argument("--rois", type=int, default=1024)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--feature-hw", type=int, nargs=2, default=[100, 152], help="P3 of an 800x1216 input")
    p.add_argument("--roi-min", type=float, default=32.0, help="smallest RoI side (image pixels)")
    p.add_argument("--roi-max", type=float, default=256.0, help="largest RoI side (image pixels)")
    p.add_argument("--sampling", type=int, nargs="+", default=[0, 2])
    p.add_argument("--skip-conv", action="store_true", help="only the RoI ops")
    p.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    p.add_argument("--registry", action="store_true",
                   help="instead: the registered ops against the same code run through autograd (op overhead)")
    p.add_argument("--kept", action="store_true",
                   help="instead: CPU, each op keeping its intermediates for the backward vs rebuilding them vs "
                        "autograd, interleaved in one process")
    p.add_argument("--inference", action="store_true",
                   help="with --registry: also forward only under torch.no_grad(), the op against the plain code")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: torchvision's CPU RoI kernels are single-threaded, and one "
                        "thread keeps the ratios stable on a shared machine; 0 = torch's default)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each row as it is measured")
    args = p.parse_args(argv)
    if args.quick:
        args.rois, args.channels, args.feature_hw = 64, 32, [25, 38]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.kept:
        return run_kept(args)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            raise SystemExit("--device cuda: no CUDA device available")
        devices.remove("cuda")
    rows = []
    for device in devices:  # CPU first: its children are forked before CUDA is initialised
        rows += run(args, device)
    print_table(rows, args)
    return rows


if __name__ == "__main__":
    main()
