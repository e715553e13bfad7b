"""Compares the Triton deform_roi_pool kernels (run by Triton's CPU interpreter) with the plain PyTorch path.

Run as a script with TRITON_INTERPRET=1 (test_deform_roi_pool_triton.py does); exits non-zero on a mismatch.
"""

import os
import sys

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
from det_dcn.layers import deform_roi_pool, set_implementation  # noqa: E402
from det_dcn.layers.deform_roi_pool_torch import deform_roi_pool_torch  # noqa: E402
from det_dcn.layers.deform_roi_pool_triton import deform_roi_pool_triton  # noqa: E402


def case(dtype, channels, output_size, sampling_ratio, with_offset, num_rois, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, 7, 9, dtype=dtype, generator=g, requires_grad=True)
    ctr = torch.rand(num_rois, 2, generator=g, dtype=dtype) * torch.tensor([25.0, 20.0], dtype=dtype) - 3
    wh = torch.rand(num_rois, 2, generator=g, dtype=dtype) * 14
    rois = torch.cat([torch.randint(0, 2, (num_rois, 1), generator=g).to(dtype), ctr - wh / 2, ctr + wh / 2], 1)
    if num_rois >= 3:
        rois[0, [1, 3]] = rois[0, [3, 1]]  # negative width
        rois[1, 3:5] = rois[1, 1:3]  # zero size
    offset = None
    if with_offset:
        offset = (torch.randn(num_rois, 2, *output_size, dtype=dtype, generator=g) * 1.5).requires_grad_()
    args = (rois, offset, output_size, 0.5, sampling_ratio, 0.3)
    a, b = deform_roi_pool_triton(x, *args), deform_roi_pool_torch(x, *args)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, b, **tol)
    if num_rois == 0:
        return
    grad = torch.randn(a.shape, dtype=dtype, generator=g)
    inputs = (x,) if offset is None else (x, offset)
    ref = torch.autograd.grad(b, inputs, grad)
    for ga, gb in zip(torch.autograd.grad(a, inputs, grad), ref):
        torch.testing.assert_close(ga, gb, **tol)
    if offset is not None:  # offset gradient alone (the kernel skips the input-gradient atomics)
        torch.testing.assert_close(torch.autograd.grad(deform_roi_pool_triton(x.detach(), *args), offset, grad)[0],
                                   ref[1], **tol)


def main():
    cases = [
        (torch.float64, 5, (3, 2), 0, True, 6, 0),
        (torch.float64, 3, (2, 3), 2, True, 5, 1),
        (torch.float64, 4, (3, 3), 0, False, 4, 2),
        (torch.float32, 70, (3, 3), 0, True, 3, 3),  # 630 outputs per RoI: two programs per RoI
        (torch.float32, 3, (3, 2), 1, True, 0, 4),  # no RoIs
    ]
    for c in cases:
        case(*c)
        print("ok", c[:6], flush=True)
    # the registered op (det_dcn::deform_roi_pool, its backward op and autograd registration) on the Triton path
    set_implementation("deform_roi_pool", "triton")
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64, generator=g, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 2.0, 11.0, 9.0], [1, -3.0, 0.5, 6.0, 16.0]], dtype=torch.float64)
    offset = torch.randn(2, 2, 3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    out = deform_roi_pool(x, rois, offset, (3, 2), 0.5, 0, 0.3)
    grads = torch.autograd.grad(out.pow(2).sum(), (x, offset))
    ref = deform_roi_pool_torch(x, rois, offset, (3, 2), 0.5, 0, 0.3)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    for a, b in zip(grads, torch.autograd.grad(ref.pow(2).sum(), (x, offset))):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    print("ok registered op on the Triton path", flush=True)


if __name__ == "__main__":
    sys.exit(main())
