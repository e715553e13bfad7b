"""INPUT.RESIZE_STYLE: detectron2's resize (PIL bilinear on uint8) and mmdetection's (OpenCV bilinear on uint8),
checked against PIL and OpenCV themselves; det_dcn's torchvision style is tested in test_rcnn.py."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from det_dcn.data.transforms import ResizeShortestEdge
from det_dcn.modeling.meta_arch.preprocess import resize_pixels


def _image(h=120, w=150, seed=0):
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 1.5)  # natural-ish: noise alone would exaggerate rounding differences


@pytest.mark.parametrize("min_size,max_size", [(80, 200), (200, 300), (120, 133)], ids=["shrink", "enlarge", "cap"])
def test_detectron2_style_matches_pil(min_size, max_size):
    img = _image()
    out = resize_pixels(torch.from_numpy(img).permute(2, 0, 1), min_size, max_size, "detectron2")
    assert out.dtype == torch.uint8
    h, w = out.shape[-2:]
    pil = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR)).astype(int)
    diff = np.abs(out.permute(1, 2, 0).numpy().astype(int) - pil)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("min_size,max_size", [(80, 200), (200, 300)], ids=["shrink", "enlarge"])
def test_mmdet_style_matches_opencv(min_size, max_size):
    img = _image()
    out = resize_pixels(torch.from_numpy(img).permute(2, 0, 1), min_size, max_size, "mmdet")
    h, w = out.shape[-2:]
    ref = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).astype(int)
    diff = np.abs(out.permute(1, 2, 0).numpy().astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.3, (diff.max(), (diff > 0).mean())


def test_sizes_follow_detectron2_and_mmcv_rounding():
    img = torch.zeros(3, 480, 640, dtype=torch.uint8)
    assert resize_pixels(img, 800, 1333, "detectron2").shape[-2:] == (800, 1067)  # 853.33 -> 1067 (rounded)
    assert resize_pixels(torch.zeros(3, 300, 1000, dtype=torch.uint8), 800, 1333, "mmdet").shape[-2:] == (400, 1333)
    float_img = torch.rand(3, 50, 60) * 255  # float images are resized in float (no rounding)
    out = resize_pixels(float_img, 100, 1000, "detectron2")
    assert out.dtype == torch.float32 and out.shape[-2:] == (100, 120)
    with pytest.raises(ValueError, match="RESIZE_STYLE='torchvision'"):
        resize_pixels(img, 800, 1333, "torchvision")


def test_training_resize_uses_pil_for_detectron2_style():
    img = _image()
    rng = np.random.default_rng(0)
    t = ResizeShortestEdge((80,), 200, interp="pil").get_transform(img, rng)
    ref = np.asarray(Image.fromarray(img).resize((t.new_w, t.new_h), Image.BILINEAR))
    assert np.array_equal(t.apply_image(img), ref)
    t = ResizeShortestEdge((80,), 200, interp="cv2").get_transform(img, rng)
    assert np.array_equal(t.apply_image(img), cv2.resize(img, (t.new_w, t.new_h), interpolation=cv2.INTER_LINEAR))


def test_model_resizes_pixels_before_normalising():
    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
                         "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.OUT_FEATURES", ["res4"],
                         "MODEL.ROI_HEADS.NAME", "StandardROIHeads", "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead",
                         "MODEL.ROI_BOX_HEAD.NUM_FC", 1, "MODEL.ROI_BOX_HEAD.FC_DIM", 8,
                         "INPUT.MIN_SIZE_TEST", 80, "INPUT.MAX_SIZE_TEST", 200])
    model = build_model(cfg).eval()  # detectron2's defaults: a bare ResNet, detectron2's resize
    assert model.resize_style == "detectron2"
    img = torch.from_numpy(_image()).permute(2, 0, 1)
    images = model.preprocess_image([{"image": img}])
    expected = (resize_pixels(img, 80, 200, "detectron2").float() - model.pixel_mean) / model.pixel_std
    assert images.image_sizes[0] == (80, 100)
    torch.testing.assert_close(images.tensor[0, :, :80, :100], expected)


@pytest.mark.parametrize("style", ["detectron2", "mmdet", "torchvision"])
def test_resized_size_is_the_size_the_model_sees(style):
    from det_dcn.modeling.meta_arch.preprocess import resize_image, resized_size

    for h, w in [(480, 640), (333, 500), (161, 167), (1000, 300)]:
        img = torch.zeros(3, h, w, dtype=torch.uint8)
        out = resize_image(img.float(), 160, 256) if style == "torchvision" else resize_pixels(img, 160, 256, style)
        assert tuple(out.shape[-2:]) == resized_size(h, w, 160, 256, style), (h, w)
