"""det_dcn.checkpoint.widen: a trained model's weights widened into a wider model compute the same outputs (an MLP
in float64, the quickstart detector plain -> wide_head end to end), the new units are alive (they get gradients),
and what cannot be widened function-preservingly is refused with the key named."""

import pytest
import torch
from torch import nn

from det_dcn.checkpoint import DetectionCheckpointer, read_checkpoint, widen_checkpoint, widen_state_dict
from det_dcn.modeling import build_model

from quickstart_cfg import quickstart_cfg


def _mlp(hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 3)).double()


def test_widened_mlp_computes_the_same_and_its_new_units_learn():
    torch.manual_seed(0)
    narrow, wide = _mlp(5), _mlp(9)
    wide_init = {k: v.clone() for k, v in wide.state_dict().items()}
    wide.load_state_dict(widen_state_dict(narrow.state_dict(), wide))
    x = torch.randn(64, 6, dtype=torch.float64)
    torch.testing.assert_close(wide(x), narrow(x), rtol=0, atol=1e-12)
    w1, w2, w3 = wide[0].weight, wide[2].weight, wide[4].weight
    assert torch.equal(w1[5:], wide_init["0.weight"][5:]) and w1[5:].abs().sum() > 0  # new rows: the wide init
    assert torch.equal(w1[:5], narrow[0].weight) and torch.equal(wide[0].bias[:5], narrow[0].bias)
    assert torch.equal(w2[:5, :5], narrow[2].weight) and not w2[:5, 5:].any() and not w3[:, 5:].any()
    wide(x).square().sum().backward()
    assert w2.grad[:5, 5:].abs().sum() > 0 and w3.grad[:, 5:].abs().sum() > 0  # the zero weights will move


def test_refuses_shrinking_and_non_linear_growth():
    with pytest.raises(ValueError, match=r"'0.weight' from \(9, 6\) to \(5, 6\).*at least as large"):
        widen_state_dict(_mlp(9).state_dict(), _mlp(5))
    with pytest.raises(ValueError, match=r"'0.weight'.*only nn.Linear"):
        widen_state_dict(nn.Sequential(nn.Conv2d(3, 4, 1)).state_dict(), nn.Sequential(nn.Conv2d(3, 8, 1)))


def test_widened_quickstart_detector_gives_the_plain_detections(tmp_path):
    """plain quickstart (FC_DIM 1024) -> wide_head (FC_DIM 1613) through a checkpoint file, loaded by the
    DetectionCheckpointer: every tensor fits, and the detections on a random image are the plain model's."""
    plain_cfg = quickstart_cfg("faster_rcnn_shapes", "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    wide_cfg = quickstart_cfg("faster_rcnn_shapes_wide_head", "MODEL.DEVICE", "cpu",
                              "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    torch.manual_seed(1)
    plain = build_model(plain_cfg).eval()
    weights = tmp_path / "plain.pth"
    torch.save({"model": plain.state_dict(), "iteration": 7}, weights)
    out = tmp_path / "widened.pth"
    torch.manual_seed(3)
    widen_checkpoint(str(weights), build_model(wide_cfg), str(out))
    assert read_checkpoint(str(out))["model"]["roi_heads.box_head.fc2.weight"].shape == (1613, 1613)

    wide = build_model(wide_cfg).eval()
    report = DetectionCheckpointer(wide)._load_model(read_checkpoint(str(out))["model"], str(out))
    assert not report.mismatched_keys and not report.missing_keys and not report.unexpected_keys
    image = {"image": torch.randint(0, 256, (3, 160, 176), dtype=torch.uint8).float(), "height": 160, "width": 176}
    with torch.no_grad():
        a, b = plain([image])[0], wide([image])[0]
    assert len(a["boxes"]) > 0 and len(a["boxes"]) == len(b["boxes"])
    torch.testing.assert_close(b["boxes"], a["boxes"], rtol=0, atol=1e-3)
    torch.testing.assert_close(b["scores"], a["scores"], rtol=0, atol=1e-5)
    assert torch.equal(b["classes"], a["classes"])


def test_widen_checkpoint_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        widen_checkpoint(str(bad), _mlp(9), str(tmp_path / "out.pth"))
    assert not (tmp_path / "out.pth").exists()
