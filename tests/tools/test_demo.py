"""tools/demo.py on a tiny deformable model: pictures and JSON per image, corrupt files skipped, video input."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from load_tool import load_tool
from tiny_model import REPO, tiny_setup

DEMO = os.path.join(REPO, "tools", "demo.py")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root, cfg, images = tiny_setup(tmp_path_factory, "demo")
    video = str(root / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (80, 64))
    frame = cv2.imread(images[0])
    for i in range(4):
        writer.write(np.roll(frame, 4 * i, axis=1))
    writer.release()
    return root, cfg, images, video


def test_demo_writes_pictures_and_json(setup):
    root, cfg, images, video = setup
    out = root / "out"
    proc = subprocess.run(
        [sys.executable, DEMO, "--config-file", cfg, "--input", str(root / "images"), str(root / "images" / "*.png"),
         "--output", str(out), "--confidence-threshold", "0", "--video-input", video, "MODEL.DEVICE", "cpu"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    # The corrupt file is reported by name and skipped; the others are processed.
    assert "corrupt.jpg" in log and "2 of 3 image(s) processed" in log, log
    assert not any(n.startswith("corrupt") for n in os.listdir(out))
    assert not any(n.startswith(".") for n in os.listdir(out)), "temporary files left behind"

    from det_dcn.data import MetadataCatalog

    names = list(MetadataCatalog.get("shapes_val").thing_classes)
    for path, pic in [(images[0], "scene_a.jpg"), (images[1], "scene_b.png")]:
        src = cv2.imread(path)
        h, w = src.shape[:2]
        with open(out / (os.path.splitext(pic)[0] + ".json")) as f:
            rec = json.load(f)
        assert {"file_name", "height", "width", "box_mode", "boxes", "scores", "classes", "class_names"} <= set(rec)
        assert (rec["height"], rec["width"]) == (h, w) and rec["picture"] == pic
        k = len(rec["boxes"])
        assert k > 0 and len(rec["scores"]) == len(rec["classes"]) == len(rec["class_names"]) == k
        boxes = np.array(rec["boxes"])
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
        assert np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
        assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])
        assert rec["scores"] == sorted(rec["scores"], reverse=True)
        assert rec["class_names"] == [names[c] for c in rec["classes"]]

        picture = cv2.imread(str(out / pic))
        factor = rec["picture_scale"]
        assert factor == 4  # 64-72 px inputs are upscaled so that labels stay readable
        assert picture.shape == (h * factor, w * factor, 3)
        assert picture.std() > 10
        upscaled = cv2.resize(src, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)
        changed = np.abs(picture.astype(int) - upscaled.astype(int)).max(axis=2) > 60
        assert changed.mean() > 0.01, "no boxes drawn"

    with open(out / "clip.json") as f:
        vid = json.load(f)
    assert len(vid["frames"]) == 4 and all(len(fr["boxes"]) > 0 for fr in vid["frames"])
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (64, 80, 3)


def test_demo_fails_when_nothing_readable(setup, capsys):
    root, cfg, images, _ = setup
    demo = load_tool("demo")
    code = demo.main(["--config-file", cfg, "--input", images[2], str(root / "nope.jpg"), "--output",
                      str(root / "out_bad")])
    log = capsys.readouterr()
    assert code == 1
    assert "corrupt.jpg" in log.out + log.err and "nope.jpg" in log.out + log.err
    assert "0 of 1 image(s) processed" in log.out


def test_demo_rejects_bad_arguments(setup, capsys):
    root, cfg, images, _ = setup
    demo = load_tool("demo")
    assert demo.main(["--config-file", cfg, "--input", images[0], "--output", str(root / "o"),
                      "--confidence-threshold", "1.5"]) == 2
    assert "--confidence-threshold" in capsys.readouterr().err
    assert demo.main(["--config-file", cfg, "--output", str(root / "o")]) == 2
    assert demo.main(["--config-file", cfg, "--input", images[0], "--output", str(root / "o"),
                      "MODEL.NO_SUCH_KEY", "1"]) == 2
    assert "NO_SUCH_KEY" in capsys.readouterr().err


def test_overrides_after_input_are_never_inputs(setup, capsys, monkeypatch):
    root, cfg, images, _ = setup
    demo = load_tool("demo")
    weights = os.path.join(os.path.dirname(cfg), "tiny.pth")
    # KEY VALUE after --input, then more flags: the key and the checkpoint are overrides, not input files.
    out = root / "out_order"
    assert demo.main(["--config-file", cfg, "--input", images[0], "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu",
                      "--output", str(out), "--confidence-threshold", "0"]) == 0
    log = capsys.readouterr()
    assert "1 of 1 image(s) processed" in log.out and "skipping" not in log.out + log.err
    # Overrides before the flags work too.
    assert demo.main(["--config-file", cfg, "MODEL.DEVICE", "cpu", "--input", images[0], "--output", str(out)]) == 0
    assert "1 of 1 image(s) processed" in capsys.readouterr().out


def test_no_weights_and_bad_output_fail_before_loading_the_model(setup, capsys, monkeypatch):
    root, cfg, images, _ = setup
    demo = load_tool("demo")
    import det_dcn.engine

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded")

    with monkeypatch.context() as m:
        m.setattr(det_dcn.engine, "DefaultPredictor", no_model)
        assert demo.main(["--config-file", cfg, "--input", images[0], "--output", str(root / "o"),
                          "MODEL.WEIGHTS", ""]) == 2
        err = capsys.readouterr().err
        assert "MODEL.WEIGHTS is empty" in err and "--allow-random-weights" in err
        a_file = root / "a_file.txt"
        a_file.write_text("x")
        for output, expected in [(a_file, "is a file, not a folder"), (a_file / "sub", "cannot be created: '")]:
            assert demo.main(["--config-file", cfg, "--input", images[0], "--output", str(output)]) == 2
            err = capsys.readouterr().err
            assert str(output) in err and expected in err and "a_file.txt" in err
        m.setattr(os, "access", lambda path, mode: False)
        assert demo.main(["--config-file", cfg, "--input", images[0], "--output", str(root / "ro" / "x")]) == 2
        assert "is not writable" in capsys.readouterr().err
    assert not (root / "ro").exists()
    # Asked explicitly, an untrained model runs (with a warning).
    assert demo.main(["--config-file", cfg, "--input", images[0], "--output", str(root / "o_rand"),
                      "--allow-random-weights", "MODEL.WEIGHTS", ""]) == 0
    assert "randomly initialised" in capsys.readouterr().err


def test_unique_stems():
    demo = load_tool("demo")
    assert demo.unique_stems(["a/x.jpg", "b/x.png", "c/y.jpg", "d/x.bmp"]) == ["x", "x_2", "y", "x_3"]
