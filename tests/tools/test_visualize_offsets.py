"""tools/visualize_offsets.py on tiny DCN + dpool models (DCNv1 / dpool and DCNv2 / mdpool)."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from load_tool import load_tool
from tiny_model import REPO, tiny_setup, write_tiny_model

TOOL = os.path.join(REPO, "tools", "visualize_offsets.py")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root, cfg, images = tiny_setup(tmp_path_factory, "offsets")
    return root, images, cfg


def _color_pixels(img: np.ndarray, bgr, tol: int = 30) -> int:
    return int((np.abs(img.astype(int) - np.array(bgr)).max(axis=2) <= tol).sum())


def test_offsets_figures_dcn_and_dpool(setup):
    root, images, cfg = setup
    out = root / "out"
    proc = subprocess.run(
        [sys.executable, TOOL, "--config-file", cfg, "--input", images[0], "--output", str(out), "--detections", "2",
         "--confidence-threshold", "0", "--panel-size", "300"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = ["overview", "detections", "dcn", "dcn_positions", "dpool_0", "dpool_1"]
    assert sorted(os.listdir(out)) == sorted(f"scene_a_{k}.png" for k in expected)
    figs = {k: cv2.imread(str(out / f"scene_a_{k}.png")) for k in expected}
    for key, fig in figs.items():
        assert fig is not None and fig.ndim == 3, key
        assert fig.shape[1] >= 300 and fig.std() > 20, key
    # Overview: three panels (detections | DCN | dpool) side by side.
    assert figs["overview"].shape[1] >= 3 * 300 > figs["overview"].shape[0]
    # The DCN figure shows yellow (top layer) and red (propagated) sampling points and a green unit marker.
    from det_dcn.vis import offset_figures as of

    assert _color_pixels(figs["dcn"], of.YELLOW) > 50
    assert _color_pixels(figs["dcn"], of.RED) > 200
    assert _color_pixels(figs["dcn"], of.GREEN) > 10
    # The dpool figure: red deformed-bin centres and yellow shift arrows.
    assert _color_pixels(figs["dpool_0"], of.RED) > 50
    assert _color_pixels(figs["dpool_0"], of.YELLOW) > 20
    assert "res5.1.conv2" in proc.stdout


def test_offsets_modulated_recorder_and_errors(setup, capsys):
    root, images, _ = setup
    cfg_path = write_tiny_model(str(root / "v2"), modulated=True, seed=1)
    tool = load_tool("visualize_offsets")

    # The recorder sees non-zero offsets and masks in (0, 1); the sampling points leave the regular grid.
    from det_dcn.config import get_cfg
    from det_dcn.engine import DefaultPredictor
    from det_dcn.vis.deform_hooks import DeformRecorder
    from det_dcn.vis.deform_sampling import dcn_sampling_points

    cfg = get_cfg()
    cfg.merge_from_file(cfg_path)
    predictor = DefaultPredictor(cfg)
    image = cv2.imread(images[1])
    with DeformRecorder(predictor.model) as rec:
        predictor(image)
    assert len(rec.dcn) == 6  # two BasicBlocks in each of res3, res4, res5
    top = rec.dcn["backbone.bottom_up.res5.1.conv2"]
    assert top.in_stride == 32 and top.offset.shape[0] == 18 and np.abs(top.offset).max() > 0.1
    assert top.mask is not None and 0 < top.mask.min() and top.mask.max() < 1
    assert rec.dcn["backbone.bottom_up.res3.0.conv2"].in_stride == 8
    centre = np.array([[32.5, 32.5]])
    assert np.abs(dcn_sampling_points(top, centre)[0] - dcn_sampling_points(top, centre, regular=True)[0]).max() > 1

    out = root / "out_v2"
    code = tool.main(["--config-file", cfg_path, "--input", images[1], "--output", str(out), "--position", "20", "50",
                      "--layer", "res4.1.conv2", "backbone.bottom_up.res5.1.conv2",
                      "--confidence-threshold", "0", "--panel-size", "240"])
    assert code == 0
    log = capsys.readouterr().out
    assert "res4.1.conv2" in log and "res5.1.conv2" in log
    names = sorted(os.listdir(out))
    assert "scene_b_dcn.png" in names and "scene_b_dpool_0.png" in names
    assert cv2.imread(str(out / "scene_b_dpool_0.png")).std() > 20

    # A wrong layer name is an error that lists the deformable layers.
    assert tool.main(["--config-file", cfg_path, "--input", images[1], "--output", str(out),
                      "--layer", "res9.conv"]) == 2
    err = capsys.readouterr().err
    assert "res9.conv" in err and "backbone.bottom_up.res5.1.conv2" in err
    # A corrupt image is reported by name.
    assert tool.main(["--config-file", cfg_path, "--input", images[2], "--output", str(out)]) == 2
    assert "corrupt.jpg" in capsys.readouterr().err


def test_pool_record_matches_detection_boxes(setup):
    """The dpool bins drawn come from the pooler run on exactly the detection's box."""
    tool = load_tool("visualize_offsets")
    from det_dcn.vis.deform_hooks import PoolRecord

    rois = np.array([[0, 1.0, 2.0, 30.0, 40.0], [0, 5.0, 5.0, 9.0, 9.0]])
    pr = PoolRecord("p", rois, np.zeros((2, 2, 7, 7)), None, 0.1, 0.25, (7, 7))
    found = tool.match_pool_record([pr], np.array([5.0, 5.0, 9.0, 9.2]))
    assert found is not None and found[1] == 1
    assert tool.match_pool_record([pr], np.array([50.0, 5.0, 90.0, 9.0])) is None
    assert tool.short_name("backbone.bottom_up.res5.1.conv2") == "res5.1.conv2"


def test_offsets_argument_and_model_errors(setup, tmp_path, capsys):
    root, images, cfg_path = setup
    tool = load_tool("visualize_offsets")
    for opt, value in [("--detections", "-1"), ("--levels", "0"), ("--panel-size", "50"),
                       ("--confidence-threshold", "2")]:
        assert tool.main(["--config-file", cfg_path, "--input", images[0], "--output", str(tmp_path), opt,
                          value]) == 2
        assert opt in capsys.readouterr().err
    # A model without deformable layers: nothing to draw, said plainly.
    code = tool.main(["--config-file", cfg_path, "--input", images[0], "--output", str(tmp_path / "o"),
                      "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, False, False, False]",
                      "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2", "MODEL.WEIGHTS", "", "--allow-random-weights"])
    assert code == 1
    assert "no deformable" in capsys.readouterr().err
