"""tools/benchmark.py runs end to end at a tiny size and reports ratios (a smoke test, not a timing)."""

import os
import sys

import pytest

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(REPO, "tools"))
import benchmark  # noqa: E402


@pytest.mark.slow  # builds five R50 models and trains each one step: ~80 s on the shared 2-core CPU
def test_benchmark_smoke(capsys):
    args = benchmark.parse_args(["--device", "cpu", "--size", "64", "--iters", "1", "--warmup", "0",
                                 "--variants", "plain", "mdconv", "mdpool"])
    results = benchmark.run(args)
    out = capsys.readouterr().out
    assert "ratio det_dcn/torchvision" in out and "mdpool" in out
    for mode in ("inference", "train"):
        assert results[f"torchvision/{mode}"]["ratio"] > 0
        assert results[f"variant/plain/{mode}"]["ratio"] == 1.0
        assert results[f"variant/mdconv/{mode}"]["time"] > 0


def test_bad_arguments():
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--iters", "0"])


def test_variants_start_as_the_plain_model_so_they_are_timed_on_the_same_workload():
    import torch

    torch.set_num_threads(1)
    inputs = [{"image": x["image"]} for x in benchmark.make_inputs(96, 1)]
    plain = benchmark.build_variant("plain", 96, "cpu").eval()
    with torch.no_grad():
        expected = plain(inputs)[0]
        assert len(expected["boxes"]) > 0
        for name in ("dconv", "mdconv_mdpool"):
            got = benchmark.build_variant(name, 96, "cpu", plain.state_dict()).eval()(inputs)[0]
            torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=1e-4, atol=1e-3)
            torch.testing.assert_close(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5)
            assert torch.equal(got["classes"], expected["classes"])
