"""Exported detectors give DefaultPredictor's detections: onnxruntime (CPU) on the .onnx file, and the reloaded
torch.export program (.pt2), on image sizes and aspect ratios other than the export's, and on a flat image that
has no detections.

Exporting takes minutes on a 2-core CPU (torch.export's symbolic shapes), so the default run exports one variant
(mdconv_mdpool: DCNv2 in the backbone, modulated deformable RoI pooling on the FPN levels); the other quickstart
variants run with ``pytest -m slow``. Each variant is exported once (module-scoped cache) for both checks.
"""

import os
import subprocess
import sys

import numpy as np
import onnx
import onnx.utils
import onnxruntime
import pytest
import torch

from det_dcn.deploy import OnnxPredictor
from det_dcn.deploy.predictor import op_times_from_trace
from det_dcn.deploy.export import export_onnx, export_program, load_program, save_program
from det_dcn.engine.predictor import DefaultPredictor

from deploy_helpers import (BOUNDARY_SIZE, IMAGE_SIZES, REPO, VARIANT_SEEDS, VARIANTS, count_matched, flat_image,
                            make_image, random_detector, reference_size, sweep_pairs, variant_cfg)

DEFAULT_VARIANTS = ("mdconv_mdpool",)
PARAMS = [pytest.param(n, marks=() if n in DEFAULT_VARIANTS else pytest.mark.slow) for n in VARIANTS]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (DefaultPredictor, .pt2 path, .onnx path), each variant exported once."""
    cache = {}

    def get(name):
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            cfg = variant_cfg(name)
            weights = str(folder / "weights.pth")
            torch.save({"model": random_detector(cfg, VARIANT_SEEDS.get(name, 0)).state_dict()}, weights)
            cfg.MODEL.WEIGHTS = weights
            predictor = DefaultPredictor(cfg)
            program = export_program(predictor.model, cfg)
            pt2, onnx_path = str(folder / "model.pt2"), str(folder / "model.onnx")
            save_program(program, pt2)
            export_onnx(predictor.model, cfg, onnx_path, program=program)
            cache[name] = (predictor, pt2, onnx_path)
        return cache[name]

    return get


def _check_same_detections(predictor, run):
    """``run(bgr image) -> dict`` finds >= 99% of DefaultPredictor's detections (class, IoU >= 0.99, score within
    1e-3) on every test image, all of them on BOUNDARY_SIZE (a resize to another size than eager's would move
    boxes there), and nothing on a flat image (NMS keeps no box: no size may be assumed >= 2; BatchNorm models only)."""
    total = matched = 0
    for i, (h, w) in enumerate(IMAGE_SIZES + [BOUNDARY_SIZE]):
        image = make_image(h, w, seed=i)
        expected = {k: v.numpy() for k, v in predictor(image).items()}
        got = run(image)
        assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
        assert got["classes"].dtype == np.int64 and got["boxes"].shape == (len(got["scores"]), 4)
        total += len(expected["scores"])
        matched += count_matched(expected, got)
        if (h, w) == BOUNDARY_SIZE:
            assert len(expected["scores"]) > 0, "the boundary image must give detections to compare"
            assert count_matched(expected, got) == len(expected["scores"]) == len(got["scores"]), (h, w)
    assert total >= 5, "the random model must give real detections, or the comparison is empty"
    assert matched >= 0.99 * total, f"{matched} of {total} detections matched"
    if predictor.cfg.MODEL.RESNETS.NORM != "GN":  # see deploy_helpers.VARIANTS
        flat = flat_image(150, 230)
        assert len(predictor(flat)["scores"]) == 0
        assert len(run(flat)["scores"]) == 0


@pytest.mark.parametrize("name", PARAMS)
def test_onnxruntime_gives_default_predictor_detections(exported, name):
    predictor, _, onnx_path = exported(name)
    model = onnx.load(onnx_path)
    ops = {n.op_type for n in model.graph.node}
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"} and not model.functions
    assert "NonMaxSuppression" in ops
    if "dconv" in name or "mdconv" in name or name in ("multigrid", "gn"):
        assert "DeformConv" in ops
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["det_dcn.input_format"] == predictor.cfg.INPUT.FORMAT
    assert meta["det_dcn.min_size_test"] == str(predictor.cfg.INPUT.MIN_SIZE_TEST)
    _check_same_detections(predictor, OnnxPredictor(onnx_path))


def test_onnx_detector_resizes_to_eager_size_on_thousands_of_sizes(exported):
    """The exported detector's own size sub-graph (what feeds the image's Resize), run alone in onnxruntime on
    every sweep size (BOUNDARY_SIZE's kind included), gives eager's double-precision size."""
    predictor, _, onnx_path = exported(DEFAULT_VARIANTS[0])
    cfg = predictor.cfg
    model = onnx.load(onnx_path)
    resize = next(n for n in model.graph.node if n.op_type == "Resize")  # the first: the image's (bilinear)
    assert any(a.name == "mode" and a.s == b"linear" for a in resize.attribute)
    part = onnx.utils.Extractor(model).extract_model([model.graph.input[0].name], [resize.input[3]])
    session = onnxruntime.InferenceSession(part.SerializeToString(), providers=["CPUExecutionProvider"])
    args = (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.RESIZE_STYLE)
    wrong = []
    for h, w in sweep_pairs():
        got = tuple(session.run(None, {"image": np.zeros((h, w, 3), np.uint8)})[0][-2:].tolist())
        if got != reference_size(h, w, *args):
            wrong.append((h, w, got))
    assert not wrong, f"{len(wrong)} of {len(sweep_pairs())} sizes differ from eager's, first {wrong[:3]}"


def _pt2_runner(predictor, pt2):
    module = load_program(pt2).module()
    flip = predictor.cfg.INPUT.FORMAT == "RGB"

    def run(bgr):
        image = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1] if flip else bgr))
        with torch.no_grad():
            return {k: v.numpy() for k, v in zip(("boxes", "scores", "classes"), module(image))}

    return run


@pytest.mark.parametrize("name", PARAMS)
def test_torch_export_program_reloads_with_same_detections(exported, name):
    predictor, pt2, _ = exported(name)
    _check_same_detections(predictor, _pt2_runner(predictor, pt2))


def test_onnx_predictor_runs_without_torch(exported):
    """OnnxPredictor imports and runs with numpy + onnxruntime only."""
    _, _, onnx_path = exported(DEFAULT_VARIANTS[0])
    code = (
        "import sys, numpy as np\n"
        "from det_dcn.deploy import OnnxPredictor\n"
        f"out = OnnxPredictor({onnx_path!r})(np.zeros((90, 120, 3), np.uint8))\n"
        "assert set(out) == {'boxes', 'scores', 'classes'}, out\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


def test_onnx_predictor_profile_per_operator_type(exported):
    """op_times adds up onnxruntime's per-node kernel times by ONNX operator type, per call of the predictor."""
    _, _, onnx_path = exported(DEFAULT_VARIANTS[0])
    predictor = OnnxPredictor(onnx_path, threads=1, profile=True)
    image = make_image(120, 90, 0)
    for _ in range(2):
        predictor(image)
    rows = predictor.op_times()
    ops = {r["op"]: r for r in rows}
    assert {"Conv", "DeformConv", "NonMaxSuppression"} <= set(ops)
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    convs = sum(n.op_type == "Conv" for n in onnx.load(onnx_path).graph.node)
    assert 0 < ops["Conv"]["nodes"] <= convs  # onnxruntime may fuse nodes, never adds Conv nodes
    with pytest.raises(RuntimeError, match="profile=True"):
        OnnxPredictor(onnx_path).op_times()


def test_profile_trace_aggregation():
    events = [{"cat": "Session", "name": "model_run", "dur": 900}] * 2 + [
        {"cat": "Node", "name": "conv1_kernel_time", "dur": 300, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv2_kernel_time", "dur": 500, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv1_kernel_time", "dur": 400, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "relu_kernel_time", "dur": 200, "args": {"op_name": "Relu"}},
        {"cat": "Node", "name": "relu_fence_before", "dur": 5, "args": {"op_name": "Relu"}},
    ]
    rows = op_times_from_trace(events)
    assert rows == [{"op": "Conv", "ms": 0.6, "share": 1200 / 1400, "nodes": 2},
                    {"op": "Relu", "ms": 0.1, "share": 200 / 1400, "nodes": 1}]
    with pytest.raises(ValueError, match="never run"):
        op_times_from_trace(events[2:])
