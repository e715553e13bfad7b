"""Every layer on CUDA against the CPU reference: outputs and gradients (inputs and parameters) under float32 and
float64, float16 autocast and bfloat16 autocast; float64 gradcheck of the fused kernels on the GPU; the fused Triton
path really in use. Run with ``pytest -m cuda`` (skipped without CUDA). ``DET_DCN_TEST_DEVICE=cpu`` runs the same
tests with the CPU as the device under test (checks the tests themselves on a machine without a GPU).

Tolerances (max |cuda - cpu| <= atol * max(1, max |cpu|) + rtol * |cpu|, elementwise):
- float64: rtol 1e-7, atol 1e-9; float32: rtol 2e-4, atol 2e-4 (atomics and a different summation order).
- autocast against the CPU float32 result, as the relative error of norms |a - b| / |b| per tensor: outputs 3e-2,
  gradients 4e-2 (float16) and 0.12 (bfloat16). The deformable ops compute in float32 inside (they alone give 0);
  the difference comes from the convolutions and fcs around them (offset and mask branches) running in the low
  precision, and a moved offset can move a sample across the feature map's border band, so one element can change
  by much more (a max-error metric reached 0.24): measured on CPU autocast, the largest norm errors were 1.3e-2
  (outputs), 1.2e-2 (float16 gradients) and 6.8e-2 (bfloat16 gradients, fc weights of the offset branches).
"""

import os

import pytest
import torch

from det_dcn.layers import (DeformConv2d, DeformConv2dPack, DeformRoIPoolPack, ModulatedDeformConv2d,
                            ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack, ROIAlign, ROIPool, _dispatch,
                            deform_roi_pool, set_implementation)

DEVICE = os.environ.get("DET_DCN_TEST_DEVICE", "cuda")
if DEVICE == "cuda":
    pytestmark = pytest.mark.cuda
EXACT_TOL = {torch.float64: dict(rtol=1e-7, atol=1e-9), torch.float32: dict(rtol=2e-4, atol=2e-4)}
AUTOCAST_TOL = {torch.float16: (3e-2, 4e-2), torch.bfloat16: (3e-2, 1.2e-1)}  # (output, gradients)


def roi_inputs(num_rois=64, channels=24, hw=(30, 44), with_offset=True, inverted=True):
    """(x [2, C, H, W], rois [R, 5], offset [R, 2, 7, 7]) factory: random boxes, a zero-size one and (unless
    ``inverted`` is False, which ROIAlign refuses) one with x2 < x1."""
    def make(device, dtype):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, channels, *hw, generator=g, dtype=dtype)
        scale = torch.tensor([hw[1] * 8.0, hw[0] * 8.0], dtype=dtype)
        ctr = torch.rand(num_rois, 2, generator=g, dtype=dtype) * scale * 1.2 - 20
        wh = torch.rand(num_rois, 2, generator=g, dtype=dtype) * 160
        rois = torch.cat([torch.randint(0, 2, (num_rois, 1), generator=g).to(dtype), ctr - wh / 2, ctr + wh / 2], 1)
        if num_rois >= 2:
            rois[0, 3:5] = rois[0, 1:3]
            if inverted:
                rois[1, [1, 3]] = rois[1, [3, 1]]
        offset = torch.randn(num_rois, 2, 7, 7, generator=g, dtype=dtype) * 0.5
        x, rois, offset = x.to(device).requires_grad_(), rois.to(device), offset.to(device).requires_grad_()
        return (x, rois, offset) if with_offset else (x, rois)
    return make


def conv_inputs(channels=8, hw=(13, 17), offset_channels=None, mask_channels=None, out_hw=None):
    """(x, offset?, mask?) factory for the deformable convs."""
    out_hw = out_hw or hw

    def make(device, dtype):
        g = torch.Generator().manual_seed(0)
        out = [torch.randn(2, channels, *hw, generator=g, dtype=dtype)]
        if offset_channels:
            out.append(torch.randn(2, offset_channels, *out_hw, generator=g, dtype=dtype) * 2)
        if mask_channels:
            out.append(torch.rand(2, mask_channels, *out_hw, generator=g, dtype=dtype))
        return tuple(t.to(device).requires_grad_() for t in out)
    return make


def seeded(factory):
    """The module with the same non-zero parameters every time it is built."""
    def build(device, dtype):
        torch.manual_seed(0)
        m = factory()
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.05)
        return m.to(device, dtype)
    return build


def function(fn):
    """A plain function as a parameterless "module" factory."""
    return lambda device, dtype: fn


CASES = {  # name -> (module factory, inputs factory)
    "deform_roi_pool s=0": (function(lambda x, r, o: deform_roi_pool(x, r, o, 7, 0.125, 0, 0.1)), roi_inputs()),
    "deform_roi_pool s=2": (function(lambda x, r, o: deform_roi_pool(x, r, o, 7, 0.125, 2, 0.1)), roi_inputs()),
    "deform_roi_pool no offset": (function(lambda x, r: deform_roi_pool(x, r, None, 7, 0.125)),
                                  roi_inputs(with_offset=False)),
    "deform_roi_pool 130 channels 3x5 bins": (
        function(lambda x, r, o: deform_roi_pool(x, r, o[:, :, :3, :5], (3, 5), 0.125, 0, 0.2)),
        roi_inputs(channels=130)),
    "deform_roi_pool no rois": (function(lambda x, r, o: deform_roi_pool(x, r, o, 7, 0.125)),
                                roi_inputs(num_rois=0)),
    "DeformRoIPoolPack": (seeded(lambda: DeformRoIPoolPack(7, 24, 32, 0.125)), roi_inputs(with_offset=False)),
    "ModulatedDeformRoIPoolPack": (seeded(lambda: ModulatedDeformRoIPoolPack(7, 24, 32, 0.125, 2)),
                                   roi_inputs(with_offset=False)),
    "ROIAlign": (seeded(lambda: ROIAlign(7, 0.125, 0, True)), roi_inputs(with_offset=False, inverted=False)),
    "ROIAlign unaligned": (seeded(lambda: ROIAlign(7, 0.125, 2, False)), roi_inputs(with_offset=False)),
    "ROIPool": (seeded(lambda: ROIPool(7, 0.125)), roi_inputs(with_offset=False)),
    "DeformConv2d g=2 dg=2 dil=2": (seeded(lambda: DeformConv2d(8, 6, 3, 1, 2, 2, 2, 2)),
                                    conv_inputs(offset_channels=36)),
    "ModulatedDeformConv2d stride 2": (seeded(lambda: ModulatedDeformConv2d(8, 6, 3, 2, 1, 1, 1, 2, True)),
                                       conv_inputs(hw=(26, 34), offset_channels=36, mask_channels=18,
                                                   out_hw=(13, 17))),
    "DeformConv2dPack": (seeded(lambda: DeformConv2dPack(8, 8, 3, padding=1)), conv_inputs()),
    "ModulatedDeformConv2dPack": (seeded(lambda: ModulatedDeformConv2dPack(8, 8, 3, padding=2, dilation=2,
                                                                           deform_groups=2, bias=True)),
                                  conv_inputs()),
}
# The same layers through det_dcn's plain PyTorch implementation on the device (what runs without Triton).
PLAIN = {"deform_roi_pool s=0": "deform_roi_pool", "ModulatedDeformRoIPoolPack": "deform_roi_pool",
         "DeformConv2d g=2 dg=2 dil=2": "deform_conv2d", "ModulatedDeformConv2dPack": "deform_conv2d"}


def run(name, device, dtype, autocast=None):
    """[output, gradient of every input needing one, of every parameter] for the case on ``device``."""
    build, make_inputs = CASES[name]
    m = build(device, dtype)
    inputs = make_inputs(device, dtype)
    if autocast is None:
        out = m(*inputs)
    else:
        with torch.autocast(device, dtype=autocast):
            out = m(*inputs)
    params = list(m.parameters()) if isinstance(m, torch.nn.Module) else []
    leaves = [t for t in inputs if t.requires_grad] + params
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float32).to(device)
    grads = torch.autograd.grad(out.float(), leaves, g, allow_unused=True) if out.numel() else []
    return [out] + [t if t is not None else torch.zeros_like(leaf) for t, leaf in zip(grads, leaves)]


def assert_close_scaled(got, expected, rtol, atol):
    for i, (a, b) in enumerate(zip(got, expected)):
        a, b = a.detach().cpu().to(b.dtype), b.detach()
        assert a.shape == b.shape and torch.isfinite(a).all(), f"tensor {i}: {tuple(a.shape)} or non-finite"
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol * scale, msg=lambda m: f"tensor {i}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name", list(CASES))
def test_device_equals_cpu(name, dtype):
    assert_close_scaled(run(name, DEVICE, dtype), run(name, "cpu", dtype), **EXACT_TOL[dtype])


@pytest.mark.parametrize("name", list(PLAIN))
def test_plain_torch_path_on_device_equals_cpu(name):
    set_implementation(PLAIN[name], "torch")
    try:
        got = run(name, DEVICE, torch.float32)
    finally:
        set_implementation(PLAIN[name], None)
    assert_close_scaled(got, run(name, "cpu", torch.float32), **EXACT_TOL[torch.float32])


@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", [n for n in CASES if "no rois" not in n])
def test_autocast_on_device_close_to_cpu_float32(name, amp_dtype):
    got = run(name, DEVICE, torch.float32, autocast=amp_dtype)
    expected = run(name, "cpu", torch.float32)
    out_tol, grad_tol = AUTOCAST_TOL[amp_dtype]
    for i, (a, b) in enumerate(zip(got, expected)):
        a, b = a.detach().float().cpu(), b.detach()
        assert torch.isfinite(a).all(), f"tensor {i} not finite"
        err = ((a - b).norm() / b.norm().clamp(min=1e-6)).item()
        assert err <= (out_tol if i == 0 else grad_tol), f"tensor {i}: relative error of norms {err:.2e}"


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_fused_deform_roi_pool_gradcheck_float64(sampling_ratio):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=g).to(DEVICE).requires_grad_()
    rois = torch.tensor([[0, 1, 1, 20, 15], [1, -5, 3, 10, 30], [0, 2.3, 4.1, 9.7, 8.2]], dtype=torch.float64)
    off = (torch.randn(3, 2, 2, 3, dtype=torch.float64, generator=g) * 0.5).to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, o: deform_roi_pool(a, rois.to(DEVICE), o, (2, 3), 0.25, sampling_ratio, 0.3), (x, off))


@pytest.mark.skipif(DEVICE != "cuda", reason="the fused path is chosen on CUDA only")
def test_fused_path_in_use_without_fallback():
    pytest.importorskip("triton")
    run("deform_roi_pool s=0", DEVICE, torch.float32)
    assert _dispatch.implementation("deform_roi_pool", "cuda") == "triton"
    assert _dispatch.fallback_reason("deform_roi_pool") is None
