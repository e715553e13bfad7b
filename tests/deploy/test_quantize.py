"""int8 ONNX export (det_dcn.deploy.quantize): onnxruntime's static QDQ quantization of an exported detector.

The detector tests (slow: the export takes 1-2 minutes on a 2-core CPU) use the quickstart mdconv_mdpool variant
with random weights that detect (deploy_helpers): DCNv2 in res3-res5 and modulated deformable RoI pooling, so the
layers that must stay float32 are all there; it is quantized on 16 synthetic images unlike the test images. The
default tests quantize a small hand-built graph with the detector's input contract (seconds).
"""

import json
import os

import cv2
import numpy as np
import onnx
import pytest
import torch

from det_dcn.data import DatasetCatalog
from det_dcn.deploy import OnnxPredictor
from det_dcn.deploy.export import export_onnx
from det_dcn.deploy.metadata import CALIBRATION_KEY, METADATA_PREFIX, PRECISION_KEY
from det_dcn.deploy.predictor import model_input
from det_dcn.deploy.quantize import (FLOAT_LAYERS, ImageCalibrationReader, calibration_files, layers_to_quantize,
                                     quantize_onnx)

from deploy_helpers import IMAGE_SIZES, REPO, count_matched, flat_image, make_image, random_detector, variant_cfg

# Share of the fp32 file's detections the int8 file finds (same class, IoU >= 0.5, any score) on IMAGE_SIZES:
# measured 0.90-0.98 on random-weight quickstart models; a trained model's scores are less tied, see the README's AP.
MIN_SHARE = 0.85


def _write_small_graph(path: str) -> None:
    """uint8 [H, W, 3] image -> Cast, Transpose -> 3x3 Conv (a backbone layer: quantized) -> Relu -> 1x1 Conv (RPN
    objectness: stays float) -> output [1, 2, H, W], with det_dcn's metadata (input_format BGR)."""
    h = onnx.helper
    rng = np.random.default_rng(0)
    weights = [onnx.numpy_helper.from_array(rng.normal(0, 0.05, (8, 3, 3, 3)).astype(np.float32),
                                            "backbone.stem.conv1.weight"),
               onnx.numpy_helper.from_array(rng.normal(0, 0.3, (2, 8, 1, 1)).astype(np.float32),
                                            "proposal_generator.rpn_head.objectness_logits.weight"),
               onnx.numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    nodes = [h.make_node("Cast", ["image"], ["f"], to=onnx.TensorProto.FLOAT),
             h.make_node("Transpose", ["f"], ["chw"], perm=[2, 0, 1]),
             h.make_node("Unsqueeze", ["chw", "axis0"], ["x"]),
             h.make_node("Conv", ["x", "backbone.stem.conv1.weight"], ["c1"], pads=[1, 1, 1, 1], name="stem"),
             h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "proposal_generator.rpn_head.objectness_logits.weight"], ["scores"],
                         name="objectness")]
    graph = h.make_graph(nodes, "small", [h.make_tensor_value_info("image", onnx.TensorProto.UINT8, ["H", "W", 3])],
                         [h.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, None)], initializer=weights)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 19)])
    h.set_model_props(model, {f"{METADATA_PREFIX}input_format": "BGR", f"{METADATA_PREFIX}contract": "test"})
    onnx.save(model, path)


@pytest.fixture
def small(tmp_path):
    """(fp32 .onnx of _write_small_graph, 6 calibration image files)"""
    path = str(tmp_path / "small.onnx")
    _write_small_graph(path)
    images = []
    for i in range(6):
        images.append(str(tmp_path / f"calib_{i}.png"))
        cv2.imwrite(images[-1], make_image(30 + i, 40, seed=500 + i))
    return path, images


def test_small_graph_int8_quantizes_the_backbone_conv_only(small, tmp_path):
    fp32, images = small
    int8 = str(tmp_path / "small_int8.onnx")
    quantize_onnx(fp32, int8, images, "synthetic")
    model = onnx.load(int8)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    producers = _producers(model.graph)
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    assert producers[convs["stem"].input[1]].op_type == "DequantizeLinear"
    assert convs["objectness"].input[1] == "proposal_generator.rpn_head.objectness_logits.weight"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[PRECISION_KEY] == "int8" and meta[f"{METADATA_PREFIX}contract"] == "test"
    assert json.loads(meta[CALIBRATION_KEY]) == {"count": 6, "dataset": "synthetic", "method": "minmax",
                                                 "quantized_layers": 1, "format": "QDQ U8S8 per-channel"}
    # int8 agrees with fp32 to a few quantisation steps of the output's range
    image = make_image(33, 41, seed=7)
    a, b = OnnxPredictor(fp32)(image)["scores"], OnnxPredictor(int8)(image)["scores"]
    assert a.shape == b.shape and np.abs(a - b).max() <= 0.05 * (a.max() - a.min())
    assert sorted(os.listdir(tmp_path)) == sorted(["small.onnx", "small_int8.onnx"] + [os.path.basename(f)
                                                                                      for f in images])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(fp32 .onnx, int8 .onnx, calibration image files) of the mdconv_mdpool quickstart variant."""
    folder = tmp_path_factory.mktemp("int8")
    cfg = variant_cfg("mdconv_mdpool")
    fp32, int8 = str(folder / "model.onnx"), str(folder / "model_int8.onnx")
    export_onnx(random_detector(cfg), cfg, fp32)
    calibration = []
    for i in range(16):
        calibration.append(str(folder / f"calib_{i}.png"))
        cv2.imwrite(calibration[-1], make_image(150 + 5 * i, 220 - 4 * i, seed=1000 + i))
    quantize_onnx(fp32, int8, calibration, "synthetic_calibration")
    return fp32, int8, calibration


def _producers(graph):
    return {out: node for node in graph.node for out in node.output}


@pytest.mark.slow
def test_int8_file_has_standard_ops_and_keeps_the_float_layers(files):
    fp32, int8, _ = files
    model = onnx.load(int8)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"} and not model.functions
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "DeformConv", "RoiAlign", "NonMaxSuppression"} <= ops
    producers = _producers(model.graph)

    def quantized(node):  # a quantized layer reads its weight through a DequantizeLinear
        source = producers.get(node.input[1])
        return source is not None and source.op_type == "DequantizeLinear"

    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul", "DeformConv")]
    weight_of = {n.name: (producers[n.input[1]].input[0] if quantized(n) else n.input[1]) for n in layers}
    done = [n for n in layers if quantized(n)]
    assert len(done) >= 20  # backbone, FPN, RPN conv and box head FCs
    for n in layers:
        keep_float = n.op_type == "DeformConv" or any(layer in weight_of[n.name] for layer in FLOAT_LAYERS)
        assert quantized(n) != keep_float, f"{n.op_type} {n.name} (weight {weight_of[n.name]})"


@pytest.mark.slow
def test_int8_metadata_records_precision_and_calibration(files):
    fp32, int8, calibration = files
    before = {p.key: p.value for p in onnx.load(fp32).metadata_props}
    after = {p.key: p.value for p in onnx.load(int8).metadata_props}
    assert after[PRECISION_KEY] == "int8" and PRECISION_KEY not in before
    record = json.loads(after[CALIBRATION_KEY])
    assert record["count"] == len(calibration) and record["dataset"] == "synthetic_calibration"
    assert record["method"] == "minmax" and record["quantized_layers"] >= 20
    assert {k: v for k, v in after.items() if k not in (PRECISION_KEY, CALIBRATION_KEY)} == before
    assert OnnxPredictor(int8).precision == "int8" and OnnxPredictor(fp32).precision == "fp32"


@pytest.mark.slow
def test_int8_keeps_most_of_fp32_detections(files):
    fp32, int8, _ = files
    a, b = OnnxPredictor(fp32), OnnxPredictor(int8)
    total = matched = 0
    for i, (h, w) in enumerate(IMAGE_SIZES):
        image = make_image(h, w, seed=i)
        expected, got = a(image), b(image)
        assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
        assert got["classes"].dtype == np.int64 and got["boxes"].shape == (len(got["scores"]), 4)
        total += len(expected["scores"])
        matched += count_matched(expected, got, iou=0.5, score_tol=1.0)
    assert total >= 50, "the random model must give real detections, or the comparison is empty"
    assert matched >= MIN_SHARE * total, f"int8 found {matched} of fp32's {total} detections"
    assert len(b(flat_image(150, 230))["scores"]) == 0


def test_failed_quantization_leaves_no_file(small, tmp_path, monkeypatch):
    from onnxruntime import quantization

    fp32, calibration = small
    output = tmp_path / "out" / "out.onnx"
    output.parent.mkdir()
    output.write_bytes(b"previous")

    def fail(*args, **kwargs):
        raise RuntimeError("calibration failed")

    monkeypatch.setattr(quantization, "quantize_static", fail)
    with pytest.raises(RuntimeError, match="calibration failed"):
        quantize_onnx(fp32, str(output), calibration, "synthetic")
    assert output.read_bytes() == b"previous" and os.listdir(output.parent) == ["out.onnx"]


def test_quantize_refuses_int8_and_foreign_files(small, tmp_path):
    fp32, calibration = small
    int8 = str(tmp_path / "int8.onnx")
    quantize_onnx(fp32, int8, calibration, "synthetic")
    with pytest.raises(ValueError, match="already int8"):
        quantize_onnx(int8, str(tmp_path / "x.onnx"), calibration, "synthetic")
    foreign = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="foreign.onnx.*no det_dcn metadata"):
        quantize_onnx(str(tmp_path / "foreign.onnx"), str(tmp_path / "y.onnx"), calibration, "synthetic")
    with pytest.raises(ValueError, match="minmax"):
        quantize_onnx(int8, str(tmp_path / "z.onnx"), calibration, "synthetic", method="kl")
    assert not {"x.onnx", "y.onnx", "z.onnx"} & set(os.listdir(tmp_path))


def test_calibration_reader_feeds_what_onnx_predictor_feeds(tmp_path):
    images = [make_image(40 + i, 50, seed=i) for i in range(3)]
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], image)
    for fmt in ("BGR", "RGB"):
        reader = ImageCalibrationReader(paths, "image", fmt)
        fed = [reader.get_next() for _ in range(3)]
        assert reader.get_next() is None
        for image, batch in zip(images, fed):
            np.testing.assert_array_equal(batch["image"], model_input(image, fmt))
        np.testing.assert_array_equal(fed[0]["image"][..., 0], images[0][..., 0 if fmt == "BGR" else 2])
        reader.rewind()
        np.testing.assert_array_equal(reader.get_next()["image"], fed[0]["image"])


def test_calibration_files_are_evenly_spaced_over_the_train_set():
    name = "_test_quantize_calibration_set"
    DatasetCatalog.register(name, lambda: [{"file_name": f"img{i}.png", "image_id": i, "height": 10, "width": 10,
                                            "annotations": []} for i in range(10)])
    try:
        cfg = variant_cfg("plain", ["DATASETS.TRAIN", (name,)])
        assert calibration_files(cfg, 4) == ["img0.png", "img3.png", "img6.png", "img9.png"]
        assert calibration_files(cfg, 50) == [f"img{i}.png" for i in range(10)]
        with pytest.raises(ValueError, match="--calibration-images must be >= 1, got 0"):
            calibration_files(cfg, 0)
        cfg.DATASETS.TRAIN = ()
        with pytest.raises(ValueError, match="DATASETS.TRAIN"):
            calibration_files(cfg, 4)
    finally:
        DatasetCatalog.remove(name)


def test_layers_to_quantize_selects_by_weight_name():
    weights = {"w": "backbone.res2.conv1.weight", "o": "backbone.res3.conv2.conv_offset.weight",
               "c": "roi_heads.box_predictor.cls_score.weight", "f": "roi_heads.box_head.fc1.weight"}
    init = [onnx.helper.make_tensor(v, onnx.TensorProto.FLOAT, [1], [1.0]) for v in weights.values()]
    nodes = [onnx.helper.make_node("Conv", ["x", weights["w"]], ["a"], name="conv"),
             onnx.helper.make_node("Conv", ["a", weights["o"]], ["b"], name="offset"),
             onnx.helper.make_node("Gemm", ["b", weights["f"]], ["c"], name="fc1"),
             onnx.helper.make_node("Gemm", ["c", weights["c"]], ["d"], name="cls"),
             onnx.helper.make_node("MatMul", ["d", "e"], ["f"], name="activation_matmul")]  # no weight
    graph = onnx.helper.make_graph(nodes, "g", [], [], initializer=init)
    assert layers_to_quantize(onnx.helper.make_model(graph)) == ["conv", "fc1"]


def test_export_tool_refuses_int8_torch_export(capsys):
    import sys

    sys.path.insert(0, os.path.join(REPO, "tools"))
    import export as export_tool

    with pytest.raises(SystemExit):
        export_tool.main(["--config-file", "x.yaml", "--output", "m.pt2", "--format", "torch_export",
                          "--precision", "int8"])
    assert "--precision int8 needs --format onnx" in capsys.readouterr().err


@pytest.mark.slow
def test_export_tool_int8_then_demo(tmp_path):
    """tools/export.py --precision int8 on a (generated) shapes_train subset, then tools/demo.py --onnx on it."""
    import subprocess
    import sys

    cfg = variant_cfg("plain")
    weights = str(tmp_path / "w.pth")
    torch.save({"model": random_detector(cfg).state_dict()}, weights)
    output = str(tmp_path / "int8.onnx")
    env = dict(os.environ, DET_DCN_DATASETS=str(tmp_path / "datasets"))
    config = os.path.join(REPO, "configs", "quickstart", "faster_rcnn_shapes.yaml")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), "--config-file", config, "--output",
                    output, "--precision", "int8", "--calibration-images", "8", "MODEL.WEIGHTS", weights,
                    "MODEL.RESNETS.NORM", "BN", "MODEL.FPN.NORM", ""], check=True, env=env, timeout=1200)
    meta = OnnxPredictor(output).metadata
    assert meta[PRECISION_KEY] == "int8" and json.loads(meta[CALIBRATION_KEY])["dataset"] == "shapes_train"
    assert json.loads(meta[CALIBRATION_KEY])["count"] == 8
    image = str(tmp_path / "in.png")
    cv2.imwrite(image, make_image(170, 190, seed=3))
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "demo.py"), "--config-file", config, "--onnx",
                    output, "--input", image, "--output", str(tmp_path / "vis")], check=True, env=env, timeout=600)
    assert os.listdir(tmp_path / "vis")
    assert METADATA_PREFIX + "contract" in meta
