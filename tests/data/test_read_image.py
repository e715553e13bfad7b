"""read_image: formats, EXIF orientation, odd channel counts and broken files."""

import cv2
import numpy as np
import pytest

from det_dcn.data import BadDataError, read_image


def _bgr(h=12, w=20):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = 200  # blue
    img[:, :5] = (0, 0, 255)  # a red left stripe
    return img


def test_bgr_and_rgb(tmp_path):
    p = str(tmp_path / "a.png")
    cv2.imwrite(p, _bgr())
    bgr, rgb = read_image(p, "BGR"), read_image(p, "RGB")
    assert bgr.shape == (12, 20, 3) and bgr.dtype == np.uint8
    assert tuple(bgr[0, 0]) == (0, 0, 255) and tuple(rgb[0, 0]) == (255, 0, 0)
    assert rgb.flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        read_image(p, "YUV")


def test_grayscale_and_alpha(tmp_path):
    g = str(tmp_path / "g.png")
    cv2.imwrite(g, np.full((7, 9), 77, np.uint8))
    out = read_image(g)
    assert out.shape == (7, 9, 3) and (out == 77).all()
    a = str(tmp_path / "a.png")
    bgra = np.zeros((7, 9, 4), np.uint8)
    bgra[..., :3] = (10, 20, 30)
    bgra[..., 3] = 128
    cv2.imwrite(a, bgra)
    out = read_image(a)
    assert out.shape == (7, 9, 3) and tuple(out[0, 0]) == (10, 20, 30)


def test_exif_orientation_applied(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rgb = _bgr()[:, :, ::-1]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    p = str(tmp_path / "rot.jpg")
    Image.fromarray(np.ascontiguousarray(rgb)).save(p, exif=exif, quality=95)
    out = read_image(p)
    assert out.shape == (20, 12, 3)  # height and width swapped
    # After a clockwise turn the red left stripe is at the top.
    assert out[:4, :, 2].mean() > 200 and out[-4:, :, 2].mean() < 60


def test_broken_files_raise_naming_the_file(tmp_path):
    with pytest.raises(BadDataError, match="missing.png"):
        read_image(str(tmp_path / "missing.png"))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    with pytest.raises(BadDataError, match="junk.png"):
        read_image(str(junk))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(BadDataError, match="empty.jpg"):
        read_image(str(empty))
    full = str(tmp_path / "full.jpg")
    cv2.imwrite(full, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert read_image(full).shape == (64, 64, 3)
    data = open(full, "rb").read()
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BadDataError, match="Truncated JPEG.*trunc.jpg"):
        read_image(str(trunc))
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(data + b"\x00" * 16)  # some writers pad after the end marker: still fine
    assert read_image(str(padded)).shape == (64, 64, 3)
