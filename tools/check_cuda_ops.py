#!/usr/bin/env python
"""GPU check of det_dcn.layers: CUDA against CPU (outputs and gradients, float32 and float64) for every op, float16
autocast on CUDA, a float64 gradcheck of the fused deform_roi_pool kernels, then the benchmark table.

Needs only torch, torchvision (and Triton for the fused path) and det_dcn.layers; takes well under 3 minutes.
Exits non-zero on any mismatch or error:

    python tools/check_cuda_ops.py [--skip-bench] [--bench-repeats 10]
"""

import argparse
import os
import sys
import time
import traceback

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from det_dcn.layers import _dispatch  # noqa: E402
from det_dcn.layers import (DeformConv2d, DeformConv2dPack, DeformRoIPoolPack, ModulatedDeformConv2d,  # noqa: E402
                            ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack, ROIAlign, ROIPool,
                            deform_roi_pool)
from det_dcn.layers.deform_conv_torch import deform_conv2d_torch  # noqa: E402
from det_dcn.layers.deform_roi_pool_torch import deform_roi_pool_torch  # noqa: E402

FAILURES = []
DEV = "cuda"  # the device under test; --self-test-on-cpu sets "cpu" to exercise this script without a GPU
TOL = {torch.float64: dict(rtol=1e-7, atol=1e-9), torch.float32: dict(rtol=2e-4, atol=2e-4)}


def report(name, ok, detail=""):
    print(f"[{'ok' if ok else 'FAIL'}] {name}{(': ' + detail) if detail else ''}", flush=True)
    if not ok:
        FAILURES.append(name)


def compare(name, cpu, cuda, tol):
    """Compares lists of tensors (CPU reference vs CUDA result)."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(cpu, cuda)):
        if a is None or b is None:
            if (a is None) != (b is None):
                return report(name, False, f"tensor {i}: one side has no gradient")
            continue
        b = b.detach().cpu()
        a = a.detach()
        if a.shape != b.shape or not torch.isfinite(b).all():
            return report(name, False, f"tensor {i}: shape {tuple(b.shape)} vs {tuple(a.shape)} or non-finite")
        scale = a.abs().max().item() if a.numel() else 0.0
        try:
            torch.testing.assert_close(b, a, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, scale))
        except AssertionError as e:
            return report(name, False, f"tensor {i}: " + str(e).splitlines()[-1] + " ...")
        if a.numel():
            worst = max(worst, (a - b).abs().max().item())
    report(name, True, f"max abs diff {worst:.2e}")


def run_both(fn, make_inputs, dtype):
    """fn(*inputs) on CPU and CUDA; returns ([out, grads...] CPU, same CUDA). Inputs needing grad get grads."""
    results = []
    for device in ("cpu", DEV):
        inputs = make_inputs(device, dtype)
        out = fn(*inputs)
        leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
        params = [p for p in getattr(fn, "parameters", lambda: [])()]
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)
        grads = torch.autograd.grad(out, leaves + params, g, allow_unused=True) if out.numel() else []
        results.append([out] + list(grads))
    return results


def roi_inputs(num_rois=64, channels=24, hw=(30, 44), with_offset=True, sampling_seed=0, inverted=True):
    def make(device, dtype):
        g = torch.Generator().manual_seed(sampling_seed)
        x = torch.randn(2, channels, *hw, generator=g, dtype=dtype)
        ctr = torch.rand(num_rois, 2, generator=g, dtype=dtype) * torch.tensor([hw[1] * 8.0, hw[0] * 8.0],
                                                                                dtype=dtype) * 1.2 - 20
        wh = torch.rand(num_rois, 2, generator=g, dtype=dtype) * 160
        rois = torch.cat([torch.randint(0, 2, (num_rois, 1), generator=g).to(dtype), ctr - wh / 2, ctr + wh / 2], 1)
        if num_rois >= 2:
            rois[0, 3:5] = rois[0, 1:3]  # zero-size RoI
            if inverted:
                rois[1, [1, 3]] = rois[1, [3, 1]]  # negative width (deform_roi_pool allows it, ROIAlign refuses)
        offset = torch.randn(num_rois, 2, 7, 7, generator=g, dtype=dtype) * 0.5
        x, rois, offset = x.to(device).requires_grad_(), rois.to(device), offset.to(device).requires_grad_()
        return (x, rois, offset) if with_offset else (x, rois)
    return make


def conv_inputs(channels=8, hw=(13, 17), offset_channels=None, mask_channels=None, out_hw=None):
    out_hw = out_hw or hw

    def make(device, dtype):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, channels, *hw, generator=g, dtype=dtype).to(device).requires_grad_()
        out = [x]
        if offset_channels:
            out.append((torch.randn(2, offset_channels, *out_hw, generator=g, dtype=dtype) * 2).to(device)
                       .requires_grad_())
        if mask_channels:
            out.append(torch.rand(2, mask_channels, *out_hw, generator=g, dtype=dtype).to(device).requires_grad_())
        return tuple(out)
    return make


class Seeded(torch.nn.Module):
    """Wraps a module factory: the same (non-zero) parameters on every device and dtype."""

    def __init__(self, factory, device, dtype):
        super().__init__()
        torch.manual_seed(0)
        self.m = factory()
        for p in self.m.parameters():
            torch.nn.init.normal_(p, std=0.05)
        self.m.to(device, dtype)

    def forward(self, *args):
        return self.m(*args)


def check_module(name, factory, make_inputs, dtypes=(torch.float32, torch.float64)):
    for dtype in dtypes:
        try:
            res = []
            for device in ("cpu", DEV):
                m = Seeded(factory, device, dtype)
                inputs = make_inputs(device, dtype)
                out = m(*inputs)
                g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)
                leaves = [t for t in inputs if t.requires_grad] + list(m.parameters())
                res.append([out] + list(torch.autograd.grad(out, leaves, g)))
            compare(f"{name} {str(dtype)[6:]}", res[0], res[1], TOL[dtype])
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            report(f"{name} {str(dtype)[6:]}", False, "exception")


def check_function(name, fn, make_inputs, dtypes=(torch.float32, torch.float64)):
    for dtype in dtypes:
        try:
            cpu, cuda = run_both(fn, make_inputs, dtype)
            compare(f"{name} {str(dtype)[6:]}", cpu, cuda, TOL[dtype])
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            report(f"{name} {str(dtype)[6:]}", False, "exception")


def check_autocast(name, fn, make_inputs, module_factory=None):
    """fp16 autocast on CUDA against float32 on CUDA: runs, finite, close, backward finite."""
    try:
        inputs = make_inputs(DEV, torch.float32)
        f = Seeded(module_factory, DEV, torch.float32) if module_factory else fn
        ref = f(*inputs).float()
        with torch.autocast(DEV, dtype=torch.float16 if DEV == "cuda" else torch.bfloat16):
            out = f(*inputs)
        leaves = [t for t in inputs if t.requires_grad]
        grads = torch.autograd.grad(out.float().sum(), leaves)
        err = (out.float() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-3)
        ok = torch.isfinite(out).all().item() and all(torch.isfinite(g).all().item() for g in grads) and err < 2e-2
        kind = "fp16" if DEV == "cuda" else "bf16"
        report(f"{name} {kind} autocast", ok, f"dtype {out.dtype}, max rel err {err:.1e}")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        report(f"{name} fp16 autocast", False, "exception")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--bench-repeats", type=int, default=10)
    p.add_argument("--cpu-bench", action="store_true", help="also benchmark on CPU (slower)")
    p.add_argument("--self-test-on-cpu", action="store_true",
                   help="development aid without a GPU: run every check with CPU as the 'device under test'")
    args = p.parse_args(argv)
    global DEV
    if args.self_test_on_cpu:
        DEV = "cpu"
    elif not torch.cuda.is_available():
        print("check_cuda_ops: no CUDA device available", file=sys.stderr)
        return 2
    import torchvision
    t0 = time.time()
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed (plain PyTorch path on CUDA)"
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, triton {triton_version}, "
          f"{torch.cuda.get_device_name() if DEV == 'cuda' else 'CPU self-test'}", flush=True)

    for s in (0, 2):
        check_function(f"deform_roi_pool s={s} offset",
                       lambda x, r, o, s=s: deform_roi_pool(x, r, o, 7, 0.125, s, 0.1), roi_inputs())
        check_function(f"deform_roi_pool s={s} no offset",
                       lambda x, r, s=s: deform_roi_pool(x, r, None, 7, 0.125, s), roi_inputs(with_offset=False))
        check_function(f"deform_roi_pool[plain torch on cuda] s={s}",
                       lambda x, r, o, s=s: deform_roi_pool_torch(x, r, o, (7, 7), 0.125, s, 0.1), roi_inputs())
    check_function("deform_roi_pool 130 channels, 3x5 bins",
                   lambda x, r, o: deform_roi_pool(x, r, o[:, :, :3, :5].contiguous(), (3, 5), 0.125, 0, 0.2),
                   roi_inputs(channels=130))
    check_function("deform_roi_pool empty rois",
                   lambda x, r, o: deform_roi_pool(x, r, o, 7, 0.125), roi_inputs(num_rois=0))
    check_module("DeformRoIPoolPack", lambda: DeformRoIPoolPack(7, 24, 32, 0.125), roi_inputs(with_offset=False))
    check_module("ModulatedDeformRoIPoolPack", lambda: ModulatedDeformRoIPoolPack(7, 24, 32, 0.125, 2),
                 roi_inputs(with_offset=False))
    check_module("ROIAlign", lambda: ROIAlign(7, 0.125, 0, True), roi_inputs(with_offset=False, inverted=False))
    check_module("ROIPool", lambda: ROIPool(7, 0.125), roi_inputs(with_offset=False))
    check_module("DeformConv2d g=2 dg=2 dil=2", lambda: DeformConv2d(8, 6, 3, 1, 2, 2, 2, 2),
                 conv_inputs(offset_channels=36))
    check_module("ModulatedDeformConv2d stride 2", lambda: ModulatedDeformConv2d(8, 6, 3, 2, 1, 1, 1, 2, True),
                 conv_inputs(hw=(26, 34), offset_channels=36, mask_channels=18, out_hw=(13, 17)))
    check_module("DeformConv2dPack", lambda: DeformConv2dPack(8, 8, 3, padding=1), conv_inputs())
    check_module("ModulatedDeformConv2dPack", lambda: ModulatedDeformConv2dPack(8, 8, 3, padding=2, dilation=2,
                                                                               deform_groups=2, bias=True),
                 conv_inputs())
    weight_conv = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(2)) * 0.1
    check_function("deform_conv2d[plain torch on cuda] g=2 dg=2",
                   lambda x, o, mk: deform_conv2d_torch(x, o, mk, weight_conv.to(x), None, (1, 1), (2, 2), (2, 2)),
                   conv_inputs(offset_channels=36, mask_channels=18))
    try:  # exact gradients of the fused kernels on the GPU itself
        g = torch.Generator().manual_seed(3)
        x = torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=g).to(DEV).requires_grad_()
        rois = torch.tensor([[0, 1, 1, 20, 15], [1, -5, 3, 10, 30], [0, 2.3, 4.1, 9.7, 8.2]],
                            dtype=torch.float64).to(DEV)
        off = (torch.randn(3, 2, 2, 3, dtype=torch.float64, generator=g) * 0.5).to(DEV).requires_grad_()
        for s in (0, 2):
            ok = torch.autograd.gradcheck(lambda a, o, s=s: deform_roi_pool(a, rois, o, (2, 3), 0.25, s, 0.3),
                                          (x, off), raise_exception=False)
            report(f"deform_roi_pool {DEV} float64 gradcheck s={s}", ok)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        report("deform_roi_pool cuda gradcheck", False, "exception")

    check_autocast("deform_roi_pool", lambda x, r, o: deform_roi_pool(x, r, o, 7, 0.125, 0), roi_inputs())
    check_autocast("ModulatedDeformRoIPoolPack", None, roi_inputs(with_offset=False),
                   lambda: ModulatedDeformRoIPoolPack(7, 24, 32, 0.125))
    check_autocast("ROIAlign", None, roi_inputs(with_offset=False, inverted=False), lambda: ROIAlign(7, 0.125, 0))
    check_autocast("ModulatedDeformConv2dPack", None, conv_inputs(),
                   lambda: ModulatedDeformConv2dPack(8, 8, 3, padding=1, deform_groups=2))
    check_autocast("DeformConv2dPack", None, conv_inputs(), lambda: DeformConv2dPack(8, 8, 3, padding=1))
    if DEV == "cuda":
        report("fused deform_roi_pool path in use (no fallback)", _dispatch.fallback_reason("deform_roi_pool") is None
               and _dispatch.implementation("deform_roi_pool", "cuda") == "triton", "triton " + triton_version)
    print(f"checks took {time.time() - t0:.0f} s; {len(FAILURES)} failure(s)", flush=True)

    if not args.skip_bench and DEV == "cuda":
        import benchmark_ops
        bench_args = ["--device", "all" if args.cpu_bench else "cuda", "--repeats", str(args.bench_repeats)]
        if args.cpu_bench:
            bench_args += ["--skip-conv"]
        try:
            benchmark_ops.main(bench_args)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            report("benchmark", False, "exception")
    if FAILURES:
        print("FAILED: " + "; ".join(FAILURES), file=sys.stderr)
        return 1
    print(f"all {DEV} checks passed ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
