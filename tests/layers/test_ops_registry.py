"""The registered operators (det_dcn::) and the one dispatch place: torch's own operator checks (schema, fake
kernel, autograd registration, tracing), validated implementation switches, the compiler-only Triton fallback."""

import logging

import pytest
import torch
from torchvision.ops import roi_align

from det_dcn.layers import (ROIAlign, ModulatedDeformConv2dPack, _dispatch, _ops, deform_conv2d, deform_roi_pool,
                            set_implementation)

ROIS = torch.tensor([[0, 1.0, 1.0, 12.0, 14.0], [1, 3.5, 0.0, 9.0, 15.0], [0, 9.0, 2.0, 3.0, 8.0]])


@pytest.fixture(autouse=True)
def _restore_switches():
    yield
    for op in ("deform_roi_pool", "deform_conv2d", "roi_align"):
        set_implementation(op, None)
    _dispatch._compiler_failed.clear()


@pytest.mark.parametrize("with_offset", [True, False])
def test_opcheck_deform_roi_pool(with_offset):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 9, generator=g, requires_grad=True)
    offset = (torch.randn(3, 2, 2, 3, generator=g) * 0.5).requires_grad_() if with_offset else None
    torch.library.opcheck(torch.ops.det_dcn.deform_roi_pool.default, (x, ROIS, offset, [2, 3], 0.5, 0, 0.1))


@pytest.mark.parametrize("modulated", [True, False])
def test_opcheck_deform_conv2d(modulated):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 7, generator=g, requires_grad=True)
    offset = torch.randn(2, 36, 6, 7, generator=g).requires_grad_()
    mask = torch.rand(2, 18, 6, 7, generator=g).requires_grad_() if modulated else None
    weight = torch.randn(6, 2, 3, 3, generator=g).requires_grad_()
    bias = torch.randn(6, generator=g).requires_grad_()
    torch.library.opcheck(torch.ops.det_dcn.deform_conv2d.default,
                          (x, offset, mask, weight, bias, [1, 1], [1, 1], [1, 1]))


@pytest.mark.parametrize("op,env", [("deform_roi_pool", "DET_DCN_DEFORM_ROI_POOL_IMPL"),
                                    ("deform_conv2d", "DET_DCN_DEFORM_CONV_IMPL"),
                                    ("roi_align", "DET_DCN_ROI_ALIGN_IMPL")])
def test_unknown_implementation_is_an_error(monkeypatch, op, env):
    monkeypatch.setenv(env, "cuda")
    with pytest.raises(ValueError, match=rf"{env}='cuda' is not a valid implementation of {op}; expected one of "
                                         r"\['auto', 'torch', "):
        _dispatch.implementation(op, "cpu")
    with pytest.raises(ValueError, match=r"set_implementation\('deform_conv2d'\)='fast'.*expected one of"):
        set_implementation("deform_conv2d", "fast")
    with pytest.raises(ValueError, match=r"unknown op 'conv'"):
        set_implementation("conv", "torch")


def test_unknown_env_value_fails_the_layer_call(monkeypatch):
    monkeypatch.setenv("DET_DCN_DEFORM_CONV_IMPL", "tv")
    with pytest.raises(ValueError, match=r"DET_DCN_DEFORM_CONV_IMPL='tv'.*\['auto', 'torch', 'torchvision'\]"):
        ModulatedDeformConv2dPack(4, 4, 3, padding=1)(torch.randn(1, 4, 5, 5))


def test_auto_choices_per_device(monkeypatch):
    assert _dispatch.implementation("deform_conv2d", "cpu") == "torch"
    assert _dispatch.implementation("deform_conv2d", "cuda") == "torchvision"
    assert _dispatch.implementation("roi_align", "cpu") == "torch"
    assert _dispatch.implementation("deform_roi_pool", "cpu") == "torch"
    monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
    assert _dispatch.implementation("deform_roi_pool", "cuda") == "triton"
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    assert _dispatch.implementation("deform_roi_pool", "cuda") == "torch"
    set_implementation("deform_roi_pool", "triton")
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        _dispatch.implementation("deform_roi_pool", "cuda")


def test_switches_give_the_same_numbers():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64, requires_grad=True)
    offset = torch.randn(2, 36, 16, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for impl in ("torch", "torchvision"):
        set_implementation("deform_conv2d", impl)
        out = deform_conv2d(x, offset, weight, None, 1, 1, 1)
        results.append([out] + list(torch.autograd.grad(out.pow(2).sum(), (x, offset, weight))))
        set_implementation("roi_align", impl)
        pooled = ROIAlign(3, 0.5, 2)(x, ROIS[:2].double())
        results[-1] += [pooled] + list(torch.autograd.grad(pooled.sum(), x))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(results[0][-2], roi_align(x, ROIS[:2].double(), 3, 0.5, 2, aligned=True))


def test_fallback_only_on_compiler_errors(caplog):
    triton_errors = pytest.importorskip("triton.runtime.errors")

    def compiler_fails(*args):
        raise triton_errors.OutOfResources(300000, 232448, "shared memory")

    def kernel_bug(*args):
        raise IndexError("a bug in the kernel's own logic")

    with pytest.raises(IndexError):  # not the compiler's error: never silenced
        _ops._run_fused("deform_roi_pool", kernel_bug, lambda *a: "plain")
    assert _dispatch.fallback_reason("deform_roi_pool") is None
    set_implementation("deform_roi_pool", "triton")
    with pytest.raises(triton_errors.OutOfResources):  # asked for Triton explicitly: no fallback either
        _ops._run_fused("deform_roi_pool", compiler_fails, lambda *a: "plain")
    set_implementation("deform_roi_pool", None)
    with caplog.at_level(logging.WARNING, logger="det_dcn.layers._dispatch"):
        assert _ops._run_fused("deform_roi_pool", compiler_fails, lambda *a: "plain") == "plain"
        assert _ops._run_fused("deform_roi_pool", compiler_fails, lambda *a: "plain") == "plain"
    assert len([r for r in caplog.records if "Triton could not compile" in r.getMessage()]) == 1
    assert "OutOfResources" in _dispatch.fallback_reason("deform_roi_pool")
    assert _dispatch.implementation("deform_roi_pool", "cuda") == "torch"


def test_outputs_are_not_views_so_in_place_residuals_work():
    # 1x1 outputs: .contiguous() of the permuted result is a no-op that would return a view
    x = torch.randn(1, 4, 1, 1, requires_grad=True)
    dcn = ModulatedDeformConv2dPack(4, 4, 3, padding=1)
    out = dcn(x)
    out += x  # a ResNet block's residual
    out.sum().backward()
    pooled = deform_roi_pool(x, ROIS[:1], None, 1, 1.0, 2)
    pooled += 1
    pooled.sum().backward()
