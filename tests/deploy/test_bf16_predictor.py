"""DefaultPredictor(cfg, precision="bf16"): bfloat16 autocast + channels-last on CPUs with bfloat16 instructions;
a clear error elsewhere. The model is the quickstart mdconv_mdpool variant with random weights that detect
(deploy_helpers): its DCNv2 and modulated deformable RoI pooling compute in float32 under autocast."""

import pytest
import torch

from det_dcn.engine import predictor as predictor_module
from det_dcn.engine.predictor import DefaultPredictor, native_bf16

from deploy_helpers import IMAGE_SIZES, count_matched, make_image, random_detector, variant_cfg

# bf16 against fp32 on IMAGE_SIZES: the share of fp32's detections found (same class, IoU >= 0.5) and, among them,
# the largest score difference. Measured: 0.98 / 0.97 of the detections of random mdconv_mdpool / plain models.
MIN_SHARE, SCORE_TOL = 0.9, 0.1


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = variant_cfg("mdconv_mdpool")
    weights = str(tmp_path_factory.mktemp("bf16") / "weights.pth")
    torch.save({"model": random_detector(cfg).state_dict()}, weights)
    cfg.MODEL.WEIGHTS = weights
    return cfg


@pytest.mark.skipif(not native_bf16(torch.device("cpu")),
                    reason="this CPU has no bfloat16 instructions (AVX512-BF16 / AMX): bf16 is refused here")
def test_bf16_predictor_agrees_with_fp32(cfg):
    fp32, bf16 = DefaultPredictor(cfg), DefaultPredictor(cfg, precision="bf16")
    total = matched = close = 0
    for i, (h, w) in enumerate(IMAGE_SIZES):
        image = make_image(h, w, seed=i)
        expected, got = fp32(image), bf16(image)
        assert got["boxes"].dtype == torch.float32 and got["scores"].dtype == torch.float32
        assert got["classes"].dtype == torch.int64
        total += len(expected["scores"])
        matched += count_matched(expected, got, iou=0.5, score_tol=1.0)
        close += count_matched(expected, got, iou=0.5, score_tol=SCORE_TOL)
    assert total >= 50, "the random model must give real detections, or the comparison is empty"
    assert matched >= MIN_SHARE * total, f"bf16 found {matched} of fp32's {total} detections"
    assert close == matched, f"{matched - close} matched detections differ in score by more than {SCORE_TOL}"


def test_bf16_refused_where_the_cpu_has_no_bf16(cfg, monkeypatch):
    monkeypatch.setattr(predictor_module, "native_bf16", lambda device: False)
    with pytest.raises(RuntimeError, match=r"CPU '.*' \(torch kernels .*\) has no bfloat16 instructions.*"
                                           r"precision='fp32'"):
        DefaultPredictor(cfg, precision="bf16")


def test_unknown_precision_is_refused(cfg):
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16'\), got 'fp16'"):
        DefaultPredictor(cfg, precision="fp16")


def test_native_bf16_reads_torch_cpu_checks(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert native_bf16(torch.device("cpu")) == torch.backends.mkldnn.is_available()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not native_bf16(torch.device("cpu"))
