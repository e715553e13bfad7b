"""detectron2, Caffe2 (detectron2-c2) and mmdetection converters: state dicts written with each peer's exact key
names (from their published code), at small sizes, must be consumed key by key and land on the det_dcn parameter
of the same role; the CLI reports what it drops; foreign pickles never run code."""

import os
import pickle
import re
import sys

import numpy as np
import pytest
import torch
import yaml

from det_dcn.checkpoint import DetectionCheckpointer
from det_dcn.checkpoint.convert import convert_detectron2, convert_detectron2_c2, convert_mmdet
from det_dcn.checkpoint.convert_common import ConversionError, foreign_weights_message, load_checkpoint_file
from det_dcn.config import get_cfg
from det_dcn.modeling import build_model

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools"))
import convert_weights  # noqa: E402

D2_CONFIGS = os.path.join(REPO, "tests", "config", "detectron2_configs")
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
NARROW = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.STEM_OUT_CHANNELS", 8, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
          "MODEL.RESNETS.WIDTH_PER_GROUP", 4, "MODEL.FPN.OUT_CHANNELS", 8, "MODEL.ROI_BOX_HEAD.FC_DIM", 16,
          "MODEL.ROI_BOX_HEAD.DEFORM_POOL_FC_DIM", 8, "MODEL.ROI_HEADS.NUM_CLASSES", 3]


def _cfg(path, overrides=()):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(NARROW + list(overrides))
    return cfg


def _fill(pairs, model_state, seed=0):
    """{peer key: tensor shaped like the det_dcn parameter it should land on} and {det_dcn key: the same tensor}."""
    g = torch.Generator().manual_seed(seed)
    peer, expected = {}, {}
    for peer_key, det_key in pairs:
        value = torch.rand(model_state[det_key].shape, generator=g) + 0.5
        peer[peer_key] = value
        expected[det_key] = value
    return peer, expected


def _assert_lands(converted, expected, model_state):
    assert set(converted) == set(expected)
    for k, v in expected.items():
        assert torch.equal(converted[k], v), k
    assert set(converted) <= set(model_state)


# ------------------------------------------------------------------------------------------------------------------
# detectron2: its module names (detectron2/modeling/backbone/resnet.py, fpn.py, rpn.py, box_head.py, fast_rcnn.py)
# ------------------------------------------------------------------------------------------------------------------

def _detectron2_pairs(model_state):
    """detectron2 names of a Faster R-CNN = det_dcn's, except DeformBottleneckBlock's offset conv "conv2_offset"."""
    for k in model_state:
        yield k.replace(".conv2.conv_offset.", ".conv2_offset."), k


def test_detectron2_model_zoo_pkl_with_dcn_and_mask_head(tmp_path, capsys):
    config = os.path.join(D2_CONFIGS, "Misc", "mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml")
    model = build_model(_cfg(config, ["MODEL.MASK_ON", False]))
    model_state = model.state_dict()
    peer, expected = _fill(_detectron2_pairs(model_state), model_state)
    assert any(".conv2_offset." in k for k in peer)
    dropped = {"roi_heads.mask_head.mask_fcn1.weight": torch.zeros(8, 8, 3, 3),
               "roi_heads.mask_head.deconv.weight": torch.zeros(8, 8, 2, 2),
               "roi_heads.mask_head.predictor.weight": torch.zeros(3, 8, 1, 1),
               "pixel_mean": torch.zeros(3, 1, 1)}
    # The model zoo's format: a pickle of {"model": {name: numpy array}, "__author__": ...}.
    blob = {"model": {k: v.numpy() for k, v in {**peer, **dropped}.items()}, "__author__": "Detectron2 Model Zoo"}
    src, dst = tmp_path / "model_final.pkl", tmp_path / "d2.pth"
    with open(src, "wb") as f:
        pickle.dump(blob, f, protocol=2)

    converted, unmatched = convert_detectron2(load_checkpoint_file(str(src))["model"])
    _assert_lands(converted, expected, model_state)
    assert unmatched == sorted(dropped)

    narrow = _narrow_config(tmp_path, config, ["MODEL.MASK_ON", False])
    assert convert_weights.main(["detectron2", str(src), str(dst), "--config", narrow]) == 0
    out = capsys.readouterr().out
    assert "4 keys without a det_dcn counterpart" in out and "unmatched: roi_heads.mask_head.deconv.weight" in out
    assert "0 missing, 0 unexpected, 0 shape-mismatched keys" in out
    DetectionCheckpointer(model).load(str(dst))
    torch.testing.assert_close(model.backbone.bottom_up.res4[2].conv2.conv_offset.weight,
                               peer["backbone.bottom_up.res4.2.conv2_offset.weight"])


def test_detectron2_cascade_rcnn_checkpoint(tmp_path):
    """detectron2's Cascade R-CNN (its Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml, mask head off): the stages' box heads
    and predictors (roi_heads.box_head.<k>.*, roi_heads.box_predictor.<k>.*) land on CascadeROIHeads' stages."""
    config = os.path.join(D2_CONFIGS, "Misc", "cascade_mask_rcnn_R_50_FPN_1x.yaml")
    model = build_model(_cfg(config, ["MODEL.MASK_ON", False]))
    model_state = model.state_dict()
    peer, expected = _fill(_detectron2_pairs(model_state), model_state)
    assert {"roi_heads.box_head.2.fc2.weight", "roi_heads.box_predictor.1.bbox_pred.bias"} <= set(peer)
    dropped = {"roi_heads.mask_head.mask_fcn1.weight": torch.zeros(8, 8, 3, 3)}
    src = tmp_path / "cascade.pkl"
    with open(src, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in {**peer, **dropped}.items()}}, f, protocol=2)
    converted, unmatched = convert_detectron2(load_checkpoint_file(str(src))["model"])
    _assert_lands(converted, expected, model_state)
    assert unmatched == sorted(dropped)
    model.load_state_dict(converted)
    torch.testing.assert_close(model.roi_heads.box_predictor[2].bbox_pred.weight,
                               peer["roi_heads.box_predictor.2.bbox_pred.weight"])


def _narrow_config(tmp_path, base, extra=()):
    """A config file: ``base`` narrowed by NARROW (+ ``extra``), for the CLI's --config."""
    tree = {"_BASE_": base}
    pairs = NARROW + list(extra)
    for key, value in zip(pairs[::2], pairs[1::2]):
        node = tree
        *path, leaf = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_detectron2_refuses_a_caffe2_backbone():
    with pytest.raises(ValueError, match="detectron2-c2"):
        convert_detectron2({"conv1_w": torch.zeros(1), "res2_0_branch2a_w": torch.zeros(1)})


# detectron2's DC5 layout (Base-RCNN-DilatedC5.yaml): build_resnet_backbone, so the ResNet is the backbone itself
# (backbone.stem.conv1.weight, backbone.res2.0.conv1.norm.weight; no "bottom_up"), RPN on res5, StandardROIHeads with
# FastRCNNConvFCHead fc1 / fc2. C4 (Base-RCNN-C4.yaml): res5 moves into Res5ROIHeads as roi_heads.res5.*.
_D2_DC5_BLOCK = re.compile(r"^backbone\.res([2-5])\.(\d+)\.(conv1|conv2|conv3|shortcut|conv2\.conv_offset)\."
                           r"(weight|bias|norm\.weight|norm\.bias|norm\.running_mean|norm\.running_var)$")
_D2_DC5_HEADS = {"proposal_generator.rpn_head.": ("conv", "objectness_logits", "anchor_deltas"),
                 "roi_heads.box_head.": ("fc1", "fc2"), "roi_heads.box_predictor.": ("cls_score", "bbox_pred")}


def _detectron2_dc5_key(det_key):
    """det_dcn DC5 key -> the key detectron2's DC5 GeneralizedRCNN gives that parameter (KeyError: none)."""
    m = _D2_DC5_BLOCK.match(det_key)
    if m:
        stage, block, part, leaf = m.groups()
        part = "conv2_offset" if part == "conv2.conv_offset" else part  # DeformBottleneckBlock.conv2_offset
        return f"backbone.res{stage}.{block}.{part}.{leaf}"
    stem = "backbone.stem.conv1."
    if det_key in [stem + "weight"] + [stem + "norm." + x for x in ("weight", "bias", "running_mean", "running_var")]:
        return det_key
    for prefix, modules in _D2_DC5_HEADS.items():
        if det_key in [f"{prefix}{m}.{x}" for m in modules for x in ("weight", "bias")]:
            return det_key
    raise KeyError(f"no detectron2 DC5 key for det_dcn's '{det_key}'")


DC5_SMALL = ["MODEL.RPN.PRE_NMS_TOPK_TEST", 300, "MODEL.RPN.POST_NMS_TOPK_TEST", 50, "INPUT.MIN_SIZE_TEST", 96,
             "INPUT.MAX_SIZE_TEST", 128, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
DC5_VARIANTS = {"dc5": [], "dc5_dconv": ["MODEL.RESNETS.DEFORM_ON_PER_STAGE", [False, True, True, True]]}


def _random_dc5(overrides, seed):
    """det_dcn's COCO DC5 detector, narrowed, random weights (norms and offsets too, so that no tensor is inert)."""
    config = os.path.join(REPO, "configs", "COCO-Detection", "faster_rcnn_R_50_DC5_1x.yaml")
    cfg = _cfg(config, DC5_SMALL + overrides)
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if "norm." in name or "conv_offset" in name:
                value.copy_(torch.rand_like(value) * (0.1 if "conv_offset" in name else 1.0) + 0.5 * ("norm." in name))
    return cfg, config, model


def _detections(model, image):
    with torch.no_grad():
        out = model([{"image": image}])[0]
    return {k: out[k] for k in ("boxes", "scores", "classes")}


@pytest.mark.parametrize("variant", sorted(DC5_VARIANTS))
def test_detectron2_dc5_model_zoo_pkl_converts_with_the_same_detections(tmp_path, capsys, variant):
    cfg, config, model = _random_dc5(DC5_VARIANTS[variant], seed=0)
    model_state = model.state_dict()
    peer = {_detectron2_dc5_key(k): v.numpy() for k, v in model_state.items()}
    assert {"backbone.stem.conv1.weight", "backbone.stem.conv1.norm.weight", "backbone.res2.0.conv1.weight",
            "backbone.res5.2.conv3.norm.running_var", "roi_heads.box_head.fc2.bias"} <= set(peer)
    assert not any("bottom_up" in k for k in peer)
    assert any(".conv2_offset." in k for k in peer) == (variant == "dc5_dconv")
    blob = {"model": {**peer, "pixel_mean": np.zeros((3, 1, 1), np.float32)}, "__author__": "Detectron2 Model Zoo",
            "matching_heuristics": True}
    src, dst = tmp_path / "model_final.pkl", tmp_path / "d2.pth"
    with open(src, "wb") as f:
        pickle.dump(blob, f, protocol=2)

    narrow = _narrow_config(tmp_path, config, DC5_SMALL + DC5_VARIANTS[variant])
    assert convert_weights.main(["detectron2", str(src), str(dst), "--config", narrow]) == 0
    out = capsys.readouterr().out
    assert "1 keys without a det_dcn counterpart" in out and "unmatched: pixel_mean" in out
    assert "0 missing, 0 unexpected, 0 shape-mismatched keys" in out

    _, _, fresh = _random_dc5(DC5_VARIANTS[variant], seed=1)
    image = torch.randint(0, 256, (3, 90, 120), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    expected = _detections(model, image)
    assert not torch.equal(_detections(fresh, image)["boxes"], expected["boxes"])  # another model: other boxes
    DetectionCheckpointer(fresh).load(str(dst))
    got = _detections(fresh, image)
    assert len(expected["scores"]) > 0
    for k in expected:
        assert torch.equal(got[k], expected[k]), k


def test_detectron2_c4_model_is_refused_by_name(tmp_path, capsys):
    c4 = {"backbone.stem.conv1.weight": np.zeros((8, 3, 7, 7), np.float32),
          "backbone.res4.5.conv3.weight": np.zeros((64, 16, 1, 1), np.float32),
          "proposal_generator.rpn_head.conv.weight": np.zeros((64, 64, 3, 3), np.float32),
          "roi_heads.res5.0.conv1.weight": np.zeros((32, 64, 1, 1), np.float32),
          "roi_heads.box_predictor.cls_score.weight": np.zeros((4, 128), np.float32)}
    src = tmp_path / "model_final_c4.pkl"
    with open(src, "wb") as f:
        pickle.dump({"model": c4, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    assert convert_weights.main(["detectron2", str(src), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err
    assert str(src) in err and "C4" in err and "Res5ROIHeads" in err and "roi_heads.res5.0.conv1.weight" in err
    assert "detectron2-c2" not in err and not (tmp_path / "out.pth").exists()


def test_caffe2_hint_only_without_detector_keys():
    """A DC5 detector's backbone keys look like a bare ResNet's; only proposal_generator.* / roi_heads.* tell."""
    backbone = {"backbone.stem.conv1.weight": torch.zeros(1), "backbone.res2.0.conv1.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="no 'proposal_generator.\\*' or 'roi_heads.\\*' keys.*detectron2-c2"):
        convert_detectron2(backbone)
    converted, unmatched = convert_detectron2({**backbone, "roi_heads.box_head.fc1.weight": torch.zeros(1)})
    assert set(converted) == {*backbone, "roi_heads.box_head.fc1.weight"} and unmatched == []
    with pytest.raises(ValueError, match="without a ResNet backbone") as e:
        convert_detectron2({"roi_heads.box_head.fc1.weight": torch.zeros(1)})
    assert "detectron2-c2" not in str(e.value)


# ------------------------------------------------------------------------------------------------------------------
# Caffe2 ImageNet backbones (detectron2/checkpoint/c2_model_loading.py naming: resX_Y_branch2a_w, res_conv1_bn_s)
# ------------------------------------------------------------------------------------------------------------------

def _c2_pairs(depth):
    yield "conv1_w", "stem.conv1.weight"
    yield "res_conv1_bn_s", "stem.conv1.norm.weight"
    yield "res_conv1_bn_b", "stem.conv1.norm.bias"
    for stage, n in zip(range(2, 6), BLOCKS[depth]):
        for b in range(n):
            branches = [("2a", "conv1"), ("2b", "conv2"), ("2c", "conv3")] + ([("1", "shortcut")] if b == 0 else [])
            for c2, det in branches:
                yield f"res{stage}_{b}_branch{c2}_w", f"res{stage}.{b}.{det}.weight"
                yield f"res{stage}_{b}_branch{c2}_bn_s", f"res{stage}.{b}.{det}.norm.weight"
                yield f"res{stage}_{b}_branch{c2}_bn_b", f"res{stage}.{b}.{det}.norm.bias"


@pytest.mark.parametrize("config,depth", [("faster_rcnn_R_50_FPN_1x.yaml", 50),
                                          ("faster_rcnn_X_101_32x8d_FPN_3x.yaml", 101)])
def test_detectron2_c2_imagenet_backbone(tmp_path, config, depth):
    cfg = _cfg(os.path.join(D2_CONFIGS, "COCO-Detection", config))
    model_state = build_model(cfg).state_dict()
    prefix = "backbone.bottom_up."
    peer, expected = _fill(((c2, prefix + det) for c2, det in _c2_pairs(depth)), model_state)
    if depth == 101:  # ResNeXt: grouped 3x3 weights [C, C / 32, 3, 3]
        assert peer["res3_0_branch2b_w"].shape[1] * 32 == peer["res3_0_branch2b_w"].shape[0]
    extra = {"fc1000_w": np.zeros((10, 4), np.float32), "fc1000_b": np.zeros(10, np.float32),
             "conv1_b": np.zeros(8, np.float32), "res2_0_branch2a_w_momentum": np.zeros(1, np.float32)}
    src = tmp_path / "R.pkl"
    with open(src, "wb") as f:  # MSRA's files: a plain dict of numpy arrays
        pickle.dump({**{k: v.numpy() for k, v in peer.items()}, **extra}, f, protocol=2)
    converted, unmatched = convert_detectron2_c2(load_checkpoint_file(str(src)))
    assert unmatched == sorted(extra)
    stats = {k for k in converted if k.endswith(("running_mean", "running_var"))}
    assert len(stats) == 2 * sum(1 for k in expected if k.endswith("norm.weight"))
    for k in stats:  # FrozenBN statistics added as detectron2 adds them: mean 0, var 1
        assert torch.equal(converted[k], torch.full_like(converted[k], 1.0 if k.endswith("var") else 0.0))
    _assert_lands({k: v for k, v in converted.items() if k not in stats}, expected, model_state)
    backbone_keys = {k for k in model_state if k.startswith(prefix)}
    assert set(converted) == backbone_keys  # every backbone tensor, nothing else


# ------------------------------------------------------------------------------------------------------------------
# mmdetection: ResNet / FPN (ConvModule ".conv") / RPNHead / Shared2FCBBoxHead / SingleRoIExtractor with mmcv's
# DeformRoIPoolPack / ModulatedDeformRoIPoolPack (offset_fc, mask_fc) and DCN's conv2.conv_offset
# ------------------------------------------------------------------------------------------------------------------

def _mmdet_pairs(depth, dcn_stages, pool):
    yield "backbone.conv1.weight", "backbone.bottom_up.stem.conv1.weight"
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        yield f"backbone.bn1.{leaf}", f"backbone.bottom_up.stem.conv1.norm.{leaf}"
    for layer, n in zip(range(1, 5), BLOCKS[depth]):
        det_stage = f"backbone.bottom_up.res{layer + 1}"
        for b in range(n):
            mm = f"backbone.layer{layer}.{b}"
            parts = [("1", "conv1"), ("2", "conv2"), ("3", "conv3")]
            for i, det in parts:
                yield f"{mm}.conv{i}.weight", f"{det_stage}.{b}.{det}.weight"
                for leaf in ("weight", "bias", "running_mean", "running_var"):
                    yield f"{mm}.bn{i}.{leaf}", f"{det_stage}.{b}.{det}.norm.{leaf}"
            if b == 0:
                yield f"{mm}.downsample.0.weight", f"{det_stage}.0.shortcut.weight"
                for leaf in ("weight", "bias", "running_mean", "running_var"):
                    yield f"{mm}.downsample.1.{leaf}", f"{det_stage}.0.shortcut.norm.{leaf}"
            if dcn_stages[layer - 1]:
                for leaf in ("weight", "bias"):
                    yield f"{mm}.conv2.conv_offset.{leaf}", f"{det_stage}.{b}.conv2.conv_offset.{leaf}"
    for i in range(4):
        for leaf in ("weight", "bias"):
            yield f"neck.lateral_convs.{i}.conv.{leaf}", f"backbone.fpn_lateral{i + 2}.{leaf}"
            yield f"neck.fpn_convs.{i}.conv.{leaf}", f"backbone.fpn_output{i + 2}.{leaf}"
    for leaf in ("weight", "bias"):
        yield f"rpn_head.rpn_conv.{leaf}", f"proposal_generator.rpn_head.conv.{leaf}"
        yield f"rpn_head.rpn_cls.{leaf}", f"proposal_generator.rpn_head.objectness_logits.{leaf}"
        yield f"rpn_head.rpn_reg.{leaf}", f"proposal_generator.rpn_head.anchor_deltas.{leaf}"
        yield f"roi_head.bbox_head.shared_fcs.0.{leaf}", f"roi_heads.box_head.fc1.{leaf}"
        yield f"roi_head.bbox_head.shared_fcs.1.{leaf}", f"roi_heads.box_head.fc2.{leaf}"
        yield f"roi_head.bbox_head.fc_cls.{leaf}", f"roi_heads.box_predictor.cls_score.{leaf}"
        yield f"roi_head.bbox_head.fc_reg.{leaf}", f"roi_heads.box_predictor.bbox_pred.{leaf}"
        for level in range(4) if pool else ():
            branches = [("offset_fc", (0, 2, 4))] + ([("mask_fc", (0, 2))] if pool == "mdpool" else [])
            for branch, layers in branches:
                for j in layers:
                    yield (f"roi_head.bbox_roi_extractor.roi_layers.{level}.{branch}.{j}.{leaf}",
                           f"roi_heads.box_pooler.level_poolers.{level}.{branch}.{j}.{leaf}")


MMDET_CASES = [  # (det_dcn config, depth, DCN per stage, deformable pooling)
    ("mmdet/faster_rcnn_R_50_FPN_1x.yaml", 50, (False,) * 4, None),
    ("mmdet/faster_rcnn_R_101_FPN_1x.yaml", 101, (False,) * 4, None),
    ("mmdet/faster_rcnn_R_50_FPN_dconv_c3-c5_1x.yaml", 50, (False, True, True, True), None),
    ("mmdet/faster_rcnn_R_50_FPN_mdconv_c3-c5_1x.yaml", 50, (False, True, True, True), None),
    ("mmdet/faster_rcnn_R_50_FPN_dpool_1x.yaml", 50, (False,) * 4, "dpool"),
    ("mmdet/faster_rcnn_R_50_FPN_mdpool_1x.yaml", 50, (False,) * 4, "mdpool"),
]


@pytest.mark.parametrize("config,depth,dcn,pool", MMDET_CASES, ids=[c[0] for c in MMDET_CASES])
def test_mmdet_checkpoint(tmp_path, config, depth, dcn, pool):
    model = build_model(_cfg(os.path.join(REPO, "configs", config)))
    model_state = model.state_dict()
    pairs = list(_mmdet_pairs(depth, dcn, pool))
    peer, expected = _fill(pairs, model_state)
    assert set(expected) == set(model_state), "the mmdetection key list must cover the whole det_dcn model"
    peer["backbone.bn1.num_batches_tracked"] = torch.tensor(5)
    peer["roi_head.mask_head.conv_logits.weight"] = torch.zeros(3, 8, 1, 1)
    src = tmp_path / "mmdet.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0", "CLASSES": ("a", "b", "c")}, "state_dict": peer}, src)
    from convert_weights import convert_file

    converted, unmatched, kind, _ = convert_file("mmdet", str(src))
    assert unmatched == ["roi_head.mask_head.conv_logits.weight"] and kind == "mmdetection Faster R-CNN"
    _assert_lands(converted, expected, model_state)
    model.load_state_dict(converted, strict=True)


def test_mmdet_refuses_background_first_heads():
    state = {"backbone.layer1.0.conv1.weight": torch.zeros(1), "rpn_head.rpn_conv.weight": torch.zeros(1),
             "roi_head.bbox_head.fc_cls.weight": torch.zeros(4, 2),
             "roi_head.bbox_head.fc_reg.weight": torch.zeros(16, 2)}
    with pytest.raises(ValueError, match="fc_reg has 16 rows for 4 fc_cls classes; expected 4 \\* 3"):
        convert_mmdet(state)
    with pytest.raises(ValueError, match="Not an mmdetection"):
        convert_mmdet({"conv1.weight": torch.zeros(1)})


# ------------------------------------------------------------------------------------------------------------------
# Files from elsewhere never run code; foreign MODEL.WEIGHTS get the conversion command
# ------------------------------------------------------------------------------------------------------------------

class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_restricted_unpickler_runs_no_code(tmp_path):
    marker = tmp_path / "created_by_pickle"
    src = tmp_path / "evil.pkl"
    with open(src, "wb") as f:
        pickle.dump({"model": {"a": np.zeros(2)}, "x": _Evil(str(marker))}, f)
    with pytest.raises(ConversionError, match="evil.pkl.*needs .*open.*restricted unpickler"):
        load_checkpoint_file(str(src))
    assert not marker.exists()


def test_detectron2_weights_address_gives_the_conversion_command(tmp_path):
    msg = foreign_weights_message("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl" in msg
    assert "python tools/convert_weights.py detectron2-c2 R-50.pkl R-50_det_dcn.pth" in msg
    msg = foreign_weights_message("detectron2://COCO-Detection/faster_rcnn_R_50_FPN_1x/137257794/model_final_b275ba.pkl")
    assert "convert_weights.py detectron2 model_final_b275ba.pkl" in msg
    assert foreign_weights_message("output/model_final.pth") is None

    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="detectron2 model-zoo address.*convert_weights.py detectron2-c2"):
        DetectionCheckpointer(model).load("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    local = tmp_path / "R-50.pkl"
    local.write_bytes(b"")
    with pytest.raises(ValueError, match="is a pickle.*convert_weights.py detectron2"):
        DetectionCheckpointer(model).load(str(local))
