"""The fused Triton path of deform_roi_pool against the plain PyTorch reference: index arithmetic through Triton's
CPU interpreter (no GPU needed), and on CUDA when there is one."""

import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")

HERE = os.path.dirname(os.path.abspath(__file__))


def test_triton_kernels_match_reference_in_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.path.join(HERE, "..", "..") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "triton_interpret_check.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.cuda
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_cuda_fused_matches_cpu_reference(sampling_ratio):
    from det_dcn.layers import deform_roi_pool
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 20, 24, dtype=torch.float64, generator=g)
    ctr = torch.rand(40, 2, generator=g, dtype=torch.float64) * 200 - 10
    wh = torch.rand(40, 2, generator=g, dtype=torch.float64) * 120
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=g).double(), ctr - wh / 2, ctr + wh / 2], 1)
    offset = torch.randn(40, 2, 7, 7, dtype=torch.float64, generator=g)
    outs, grads = [], []
    for device in ("cpu", "cuda"):
        xd = x.to(device).requires_grad_()
        od = offset.to(device).requires_grad_()
        out = deform_roi_pool(xd, rois.to(device), od, 7, 0.125, sampling_ratio)
        outs.append(out.cpu())
        grads.append([t.cpu() for t in torch.autograd.grad(out.pow(2).sum(), (xd, od))])
    torch.testing.assert_close(outs[1], outs[0])
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b)
