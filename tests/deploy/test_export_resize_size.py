"""The exported graphs compute the test-time resize size exactly as eager does (float64, not float32).

The size rule (det_dcn.modeling.meta_arch.preprocess.resized_size, every INPUT.RESIZE_STYLE) is exported alone, the
way the detector's export traces it (torch.export with dynamic H and W, then ONNX), and run in onnxruntime and as
the reloaded .pt2 program over thousands of (H, W) pairs; the reference is deploy_helpers.reference_size, a plain
Python-float (IEEE double) transcription of torchvision's / detectron2's rules written independently of det_dcn.
test_export_detections checks the full exported detector's size sub-graph on the same pairs.
"""

import io
import math

import numpy as np
import onnxruntime
import pytest
import torch

from det_dcn.deploy.export import _dynamic_shapes, program_to_onnx
from det_dcn.modeling.meta_arch.preprocess import RESIZE_STYLES, resized_size

from deploy_helpers import reference_size, sweep_pairs

QUICKSTART, COCO = (160, 256), (800, 1333)
LIMITS = [QUICKSTART, COCO, (256, 417)]
COMBOS = [(style, short, max_size) for style in RESIZE_STYLES for short, max_size in LIMITS]


class SizeRule(torch.nn.Module):
    """image [H, W] -> int64 [len(COMBOS), 2]: the resized (h, w) of every (style, min size, max size)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape
        sizes = [resized_size(h, w, short, max_size, style) for style, short, max_size in COMBOS]
        return torch.stack([torch.full((), s, dtype=torch.int64) for size in sizes for s in size]).view(-1, 2)


@pytest.fixture(scope="module")
def exported_rule():
    """(the reloaded .pt2 module, onnxruntime session) of SizeRule."""
    example = (torch.zeros(160, 213, dtype=torch.uint8),)
    program = torch.export.export(SizeRule(), example, dynamic_shapes=_dynamic_shapes())  # the detector's H, W
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    onnx_bytes = program_to_onnx(program, example).SerializeToString()
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return torch.export.load(buffer).module(), session


def test_reference_disagrees_with_float32_on_the_boundary_sizes():
    """The sweep covers sizes where a float32 size computation gives another size than eager's float64."""
    def float32_floor(h, w, short, max_size):
        f = np.float32
        scale = min(f(short) / f(min(h, w)), f(max_size) / f(max(h, w)))
        return math.floor(f(h) * scale), math.floor(f(w) * scale)

    assert reference_size(417, 256, *QUICKSTART, "torchvision") == (255, 157)
    assert float32_floor(417, 256, *QUICKSTART) == (256, 157)
    differ = [(h, w) for h, w in sweep_pairs() for limits in (QUICKSTART, COCO)
              if float32_floor(h, w, *limits) != reference_size(h, w, *limits, "torchvision")]
    assert len(differ) > 100


def test_eager_size_rule_is_the_double_rule():
    for h, w in sweep_pairs():
        for style, short, max_size in COMBOS:
            assert resized_size(h, w, short, max_size, style) == reference_size(h, w, short, max_size, style), (
                h, w, style, short, max_size)


def test_onnx_and_pt2_size_rule_equal_eager_on_thousands_of_sizes(exported_rule):
    pt2, session = exported_rule
    expected = {(h, w): [reference_size(h, w, short, m, style) for style, short, m in COMBOS] for h, w in sweep_pairs()}
    wrong_onnx, wrong_pt2 = [], []
    for (h, w), want in expected.items():
        image = np.zeros((h, w), np.uint8)
        got = session.run(None, {session.get_inputs()[0].name: image})[0].tolist()
        if got != [list(s) for s in want]:
            wrong_onnx.append((h, w, got, want))
    for (h, w), want in list(expected.items())[::7] + [((417, 256), expected[(417, 256)])]:
        got = pt2(torch.zeros(h, w, dtype=torch.uint8)).tolist()
        if got != [list(s) for s in want]:
            wrong_pt2.append((h, w, got, want))
    assert not wrong_onnx, f"{len(wrong_onnx)} of {len(expected)} sizes differ in onnxruntime, first {wrong_onnx[:3]}"
    assert not wrong_pt2, f"{len(wrong_pt2)} sizes differ in the .pt2 program, first {wrong_pt2[:3]}"
