"""tools/convert_weights.py and det_dcn.checkpoint.convert: key mapping, predictor re-ordering, reports, errors,
atomic output."""

import os
import subprocess
import sys

import pytest
import torch

from det_dcn.checkpoint.convert import (
    COCO_2017_CATEGORY_IDS, convert_torchvision, convert_torchvision_faster_rcnn, convert_torchvision_resnet,
    move_background_last,
)

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(REPO, "tools"))
import convert_weights  # noqa: E402


def _tiny_detector_state(new_format=True):
    """A torchvision-detector-shaped state dict with tiny tensors: 3 classes + background."""
    conv = ".0.0" if new_format else ""
    fpn = ".0" if new_format else ""
    return {
        "backbone.body.conv1.weight": torch.randn(4, 3, 7, 7),
        "backbone.body.bn1.running_mean": torch.randn(4),
        "backbone.body.bn1.num_batches_tracked": torch.tensor(3),
        "backbone.body.layer1.0.conv2.weight": torch.randn(4, 4, 3, 3),
        "backbone.body.layer1.0.bn3.bias": torch.randn(4),
        "backbone.body.layer2.1.downsample.0.weight": torch.randn(8, 4, 1, 1),
        "backbone.body.layer4.0.downsample.1.running_var": torch.rand(8),
        f"backbone.fpn.inner_blocks.0{fpn}.weight": torch.randn(2, 4, 1, 1),
        f"backbone.fpn.layer_blocks.3{fpn}.bias": torch.randn(2),
        f"rpn.head.conv{conv}.weight": torch.randn(2, 2, 3, 3),
        "rpn.head.cls_logits.bias": torch.randn(3),
        "rpn.head.bbox_pred.weight": torch.randn(12, 2, 1, 1),
        "roi_heads.box_head.fc6.weight": torch.randn(5, 8),
        "roi_heads.box_head.fc7.bias": torch.randn(5),
        "roi_heads.box_predictor.cls_score.weight": torch.arange(4.0)[:, None].repeat(1, 5),
        "roi_heads.box_predictor.cls_score.bias": torch.arange(4.0),
        "roi_heads.box_predictor.bbox_pred.weight": torch.arange(16.0)[:, None].repeat(1, 5),
        "roi_heads.box_predictor.bbox_pred.bias": torch.arange(16.0),
        "some.other.key": torch.zeros(1),
    }


@pytest.mark.parametrize("new_format", [True, False])
def test_detector_key_mapping(new_format):
    state = _tiny_detector_state(new_format)
    out, unmatched = convert_torchvision_faster_rcnn(state)
    assert unmatched == ["some.other.key"]
    expected = {
        "backbone.bottom_up.stem.conv1.weight", "backbone.bottom_up.stem.conv1.norm.running_mean",
        "backbone.bottom_up.res2.0.conv2.weight", "backbone.bottom_up.res2.0.conv3.norm.bias",
        "backbone.bottom_up.res3.1.shortcut.weight", "backbone.bottom_up.res5.0.shortcut.norm.running_var",
        "backbone.fpn_lateral2.weight", "backbone.fpn_output5.bias",
        "proposal_generator.rpn_head.conv.weight", "proposal_generator.rpn_head.objectness_logits.bias",
        "proposal_generator.rpn_head.anchor_deltas.weight", "roi_heads.box_head.fc1.weight",
        "roi_heads.box_head.fc2.bias", "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias", "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
    }
    assert set(out) == expected
    # Background (torchvision row 0) moves last; its 4 regression rows are dropped.
    assert out["roi_heads.box_predictor.cls_score.bias"].tolist() == [1.0, 2.0, 3.0, 0.0]
    assert out["roi_heads.box_predictor.cls_score.weight"][:, 0].tolist() == [1.0, 2.0, 3.0, 0.0]
    assert out["roi_heads.box_predictor.bbox_pred.bias"].tolist() == list(range(4, 16))
    assert out["roi_heads.box_predictor.bbox_pred.weight"].shape == (12, 5)
    assert torch.equal(out["backbone.bottom_up.res2.0.conv2.weight"], state["backbone.body.layer1.0.conv2.weight"])


def test_move_background_last():
    assert move_background_last(torch.tensor([9.0, 1.0, 2.0])).tolist() == [1.0, 2.0, 9.0]


def test_resnet_mapping_and_kind_detection():
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    out, unmatched = convert_torchvision_resnet(state, prefix="p.")
    assert unmatched == ["fc.bias", "fc.weight"]
    assert "p.res5.1.conv2.norm.weight" in out and "p.res3.0.shortcut.norm.running_mean" in out
    assert convert_torchvision(state)[2] == "resnet"
    assert convert_torchvision(_tiny_detector_state())[2] == "faster_rcnn"
    with pytest.raises(ValueError, match="Not a torchvision ResNet or Faster R-CNN"):
        convert_torchvision({"encoder.weight": torch.zeros(1)})


def _write_config(tmp_path):
    path = tmp_path / "r18.yaml"
    base = os.path.abspath(os.path.join(REPO, "configs", "Base-RCNN-FPN.yaml"))
    path.write_text(f"_BASE_: '{base}'\nMODEL:\n  RESNETS:\n    DEPTH: 18\n    RES2_OUT_CHANNELS: 64\n")
    return str(path)


def test_cli_imagenet_resnet(tmp_path, capsys):
    import torchvision

    src, dst = tmp_path / "resnet18.pth", tmp_path / "out" / "r18_det_dcn.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), src)
    os.makedirs(dst.parent)
    assert convert_weights.main(["torchvision", str(src), str(dst), "--config", _write_config(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torchvision resnet" in out and "unmatched: fc.weight" in out
    assert "0 shape-mismatched" in out and "0 unexpected" in out
    assert "missing: backbone.bottom_up" not in out  # every backbone tensor is provided
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt["__converted_from__"] == "torchvision resnet"
    assert "backbone.bottom_up.res5.1.conv2.weight" in ckpt["model"]
    assert os.listdir(dst.parent) == ["r18_det_dcn.pth"]  # no temporary file left behind

    from det_dcn.checkpoint import DetectionCheckpointer
    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(_write_config(tmp_path))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(dst))
    torch.testing.assert_close(model.backbone.bottom_up.res4[1].conv1.weight,
                               ckpt["model"]["backbone.bottom_up.res4.1.conv1.weight"])


def test_cli_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.pth"
    assert convert_weights.main(["torchvision", str(missing), str(tmp_path / "o.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    assert convert_weights.main(["torchvision", str(garbage), str(tmp_path / "o.pth")]) == 2
    assert "garbage.pth" in capsys.readouterr().err

    not_state = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_state)
    assert convert_weights.main(["torchvision", str(not_state), str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "list.pth" in err and "not a state dict" in err

    unknown = tmp_path / "unknown.pth"
    torch.save({"encoder.weight": torch.zeros(1)}, unknown)
    assert convert_weights.main(["torchvision", str(unknown), str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "unknown.pth" in err and "Not a torchvision" in err

    good = tmp_path / "good.pth"
    torch.save(_tiny_detector_state(), good)
    assert convert_weights.main(["torchvision", str(good), str(tmp_path / "no_dir" / "o.pth")]) == 2
    assert "no_dir" in capsys.readouterr().err


def test_failed_write_leaves_existing_output_untouched(tmp_path, monkeypatch):
    good, dst = tmp_path / "good.pth", tmp_path / "out.pth"
    torch.save(_tiny_detector_state(), good)
    dst.write_bytes(b"previous")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(convert_weights.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        convert_weights.main(["torchvision", str(good), str(dst)])
    assert dst.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["good.pth", "out.pth"]


def test_cli_runs_as_a_script(tmp_path):
    good, dst = tmp_path / "good.pth", tmp_path / "out.pth"
    torch.save(_tiny_detector_state(), good)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "convert_weights.py"), "torchvision",
                           str(good), str(dst)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torchvision faster_rcnn" in proc.stdout and "unmatched: some.other.key" in proc.stdout


def _coco_predictor_state(dim=3):
    """Detector state with torchvision's 91-class COCO predictor; row k (class k) holds values k / 4k + j."""
    state = _tiny_detector_state()
    state["roi_heads.box_predictor.cls_score.weight"] = torch.arange(91.0)[:, None] + torch.zeros(1, dim)
    state["roi_heads.box_predictor.cls_score.bias"] = torch.arange(91.0) + 0.5
    state["roi_heads.box_predictor.bbox_pred.weight"] = torch.arange(364.0)[:, None] + torch.zeros(1, dim)
    state["roi_heads.box_predictor.bbox_pred.bias"] = torch.arange(364.0) + 0.5
    return state


def test_coco_2017_category_ids_match_the_dataset_catalog():
    from det_dcn.data.builtin import COCO_CATEGORIES

    assert COCO_2017_CATEGORY_IDS == [cid for cid, _ in COCO_CATEGORIES]
    assert len(COCO_2017_CATEGORY_IDS) == 80


def test_coco80_keeps_the_used_category_rows():
    state = _coco_predictor_state()
    full, _ = convert_torchvision_faster_rcnn(state)
    assert full["roi_heads.box_predictor.cls_score.weight"].shape == (91, 3)
    assert full["roi_heads.box_predictor.bbox_pred.weight"].shape == (360, 3)

    out, unmatched = convert_torchvision_faster_rcnn(state, coco80=True)
    assert unmatched == ["some.other.key"]
    cls_w, cls_b = out["roi_heads.box_predictor.cls_score.weight"], out["roi_heads.box_predictor.cls_score.bias"]
    box_w, box_b = out["roi_heads.box_predictor.bbox_pred.weight"], out["roi_heads.box_predictor.bbox_pred.bias"]
    assert cls_w.shape == (81, 3) and cls_b.shape == (81,) and box_w.shape == (320, 3) and box_b.shape == (320,)
    tv = {k: v for k, v in state.items() if k.startswith("roi_heads.box_predictor.")}
    for c, cid in enumerate(COCO_2017_CATEGORY_IDS):  # det_dcn class c <- torchvision label (category id) cid
        assert torch.equal(cls_w[c], tv["roi_heads.box_predictor.cls_score.weight"][cid])
        assert torch.equal(cls_b[c], tv["roi_heads.box_predictor.cls_score.bias"][cid])
        assert torch.equal(box_w[4 * c:4 * c + 4], tv["roi_heads.box_predictor.bbox_pred.weight"][4 * cid:4 * cid + 4])
        assert torch.equal(box_b[4 * c:4 * c + 4], tv["roi_heads.box_predictor.bbox_pred.bias"][4 * cid:4 * cid + 4])
    # Background last; unused ids (e.g. 12, 26) are gone.
    assert cls_b[80].item() == 0.5 and cls_w[80, 0].item() == 0.0
    assert 12.5 not in cls_b.tolist() and 26.5 not in cls_b.tolist()
    # The rest of the state dict is converted as without the option; the input is not modified.
    assert torch.equal(out["backbone.fpn_lateral2.weight"], full["backbone.fpn_lateral2.weight"])
    assert state["roi_heads.box_predictor.cls_score.weight"].shape == (91, 3)


def test_coco80_rejects_other_heads():
    with pytest.raises(ValueError, match="has 4 classes.*expected 91"):
        convert_torchvision_faster_rcnn(_tiny_detector_state(), coco80=True)
    import torchvision

    with pytest.raises(ValueError, match="coco80 applies to a Faster R-CNN"):
        convert_torchvision(torchvision.models.resnet18(weights=None).state_dict(), coco80=True)
    state = _coco_predictor_state()
    del state["roi_heads.box_predictor.bbox_pred.bias"]
    with pytest.raises(ValueError, match="lacks.*bbox_pred.bias"):
        convert_torchvision_faster_rcnn(state, coco80=True)


def test_cli_coco80_rejects_a_non_coco_head(tmp_path, capsys):
    src = tmp_path / "tiny.pth"
    torch.save(_tiny_detector_state(), src)
    assert convert_weights.main(["torchvision", str(src), str(tmp_path / "o.pth"), "--coco-80"]) == 2
    err = capsys.readouterr().err
    assert "tiny.pth" in err and "expected 91" in err
    assert not (tmp_path / "o.pth").exists()


def test_cli_coco80_torchvision_detector_loads_into_80_class_model(tmp_path, capsys):
    """A real (randomly initialised) torchvision fasterrcnn_resnet50_fpn converted with --coco-80 fits the
    configs/torchvision model with NUM_CLASSES 80 exactly (no forward: only the build and the load)."""
    import torchvision

    from det_dcn.checkpoint import DetectionCheckpointer
    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model

    tv_state = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    src, dst = tmp_path / "tv_frcnn.pth", tmp_path / "det_dcn_frcnn80.pth"
    torch.save(tv_state, src)
    config = os.path.join(REPO, "configs", "torchvision", "faster_rcnn_R_50_FPN.yaml")
    assert convert_weights.main(["torchvision", str(src), str(dst), "--coco-80", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "COCO 2017 80 classes" in out and "0 keys without a det_dcn counterpart" in out
    assert "with MODEL.ROI_HEADS.NUM_CLASSES 80: 0 missing, 0 unexpected, 0 shape-mismatched keys" in out

    cfg = get_cfg()
    cfg.merge_from_file(config)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 80
    model = build_model(cfg)
    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt["model"]) == set(model.state_dict())
    model.load_state_dict(ckpt["model"], strict=True)  # no missing / unexpected / shape-mismatched key
    DetectionCheckpointer(model).load(str(dst))
    predictor = model.roi_heads.box_predictor
    cid = COCO_2017_CATEGORY_IDS[-1]  # 90 = "toothbrush", det_dcn class 79
    torch.testing.assert_close(predictor.cls_score.weight[79],
                               tv_state["roi_heads.box_predictor.cls_score.weight"][cid])
    torch.testing.assert_close(predictor.cls_score.bias[80], tv_state["roi_heads.box_predictor.cls_score.bias"][0])
    torch.testing.assert_close(predictor.bbox_pred.bias[316:320],
                               tv_state["roi_heads.box_predictor.bbox_pred.bias"][4 * cid:4 * cid + 4])
