"""tools/convert_weights.py and det_dcn.checkpoint.convert: key mapping, predictor re-ordering, reports, errors,
atomic output."""

import os
import subprocess
import sys

import pytest
import torch

from det_dcn.checkpoint.convert import (
    convert_torchvision, convert_torchvision_faster_rcnn, convert_torchvision_resnet, move_background_last,
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
