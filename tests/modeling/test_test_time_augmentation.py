"""Test-time augmentation: flipping boxes back, box voting by hand, the passes it runs, and that one unmirrored pass
at the model's own size reproduces the plain model exactly."""

import pytest
import torch
from torch import nn

from det_dcn.config import get_cfg
from det_dcn.config.compat import check_supported_parts
from det_dcn.modeling.nms import soft_nms, vote_boxes
from det_dcn.modeling.test_time_augmentation import GeneralizedRCNNWithTTA, hflip_boxes

from heads_test_utils import TinyBackbone, single_thread, tiny_cfg  # noqa: F401
from test_rcnn import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")


class BrightBoxDetector(nn.Module):
    """Test double with GeneralizedRCNN's inference contract: one detection, the box around the pixels above 128,
    found in the image resized to min_size_test (rounded to whole pixels there, so each size sees it a little
    differently), mapped back to the image's own pixels. Records the (min, max) size and whether the bright patch
    was on the left half of each image it saw."""

    def __init__(self, min_size_test=100, max_size_test=1000):
        super().__init__()
        self.min_size_test, self.max_size_test = min_size_test, max_size_test
        self.calls = []
        self.eval()

    def inference(self, batched_inputs):
        out = []
        for x in batched_inputs:
            img = x["image"]
            h, w = img.shape[-2:]
            scale = self.min_size_test / min(h, w)
            ys, xs = torch.nonzero(img[0] > 128, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            box = (box * scale).round() / scale
            self.calls.append((self.min_size_test, self.max_size_test, bool(xs.float().mean() < w / 2)))
            out.append({"boxes": box, "scores": torch.tensor([0.5 + scale / 10]), "classes": torch.tensor([0])})
        return out


def _image_with_patch(x1, y1, x2, y2, h=60, w=90):
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[:, y1:y2, x1:x2] = 255
    return img


def test_hflip_boxes_mirrors_and_is_its_own_inverse():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 90.0, 60.0]])
    flipped = hflip_boxes(boxes, 90)
    torch.testing.assert_close(flipped, torch.tensor([[60.0, 5.0, 80.0, 25.0], [0.0, 0.0, 90.0, 60.0]]))
    torch.testing.assert_close(hflip_boxes(flipped, 90), boxes)


def test_vote_boxes_by_hand():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # kept, class 0
                          [0.0, 0.0, 10.0, 11.0],    # IoU 0.91 with it, class 0: votes
                          [0.0, 0.0, 10.0, 20.0],    # IoU 0.5: below the threshold
                          [0.0, 0.0, 10.0, 10.5],    # IoU 0.95 but class 1: does not vote
                          [50.0, 50.0, 60.0, 60.0]])  # kept alone, class 0
    scores = torch.tensor([0.9, 0.3, 0.8, 0.7, 0.6])
    classes = torch.tensor([0, 0, 0, 1, 0])
    voted = vote_boxes(torch.tensor([0, 4]), boxes, scores, classes, iou_thresh=0.8)
    expected_first = (0.9 * boxes[0] + 0.3 * boxes[1]) / 1.2
    torch.testing.assert_close(voted, torch.stack([expected_first, boxes[4]]))
    assert vote_boxes(torch.tensor([], dtype=torch.int64), boxes, scores, classes, 0.8).shape == (0, 4)


def test_passes_sizes_flips_and_restores_the_model():
    model = BrightBoxDetector()
    tta = GeneralizedRCNNWithTTA(model, (30, 60, 90), 500, flip=True)
    image = _image_with_patch(10, 20, 40, 50)
    result = tta([{"image": image}])[0]
    assert model.calls == [(30, 500, True), (30, 500, False), (60, 500, True), (60, 500, False),
                           (90, 500, True), (90, 500, False)]
    assert (model.min_size_test, model.max_size_test) == (100, 1000)
    # every pass found the patch; mirrored ones were flipped back, so NMS leaves one box: the highest score's
    # (the largest size), at the patch
    assert result["boxes"].shape == (1, 4) and result["classes"].tolist() == [0]
    torch.testing.assert_close(result["boxes"][0], torch.tensor([10.0, 20.0, 40.0, 50.0]))
    assert result["scores"].item() == pytest.approx(0.5 + 90 / 60 / 10)


def test_output_size_follows_height_and_width():
    tta = GeneralizedRCNNWithTTA(BrightBoxDetector(), (60,), 500, flip=True)
    # the stand-in reports boxes in the given image's pixels; "width" is what a mirrored box is flipped in
    result = tta([{"image": _image_with_patch(10, 20, 40, 50), "height": 60, "width": 90}])[0]
    torch.testing.assert_close(result["boxes"][0], torch.tensor([10.0, 20.0, 40.0, 50.0]))


def test_size_restored_when_a_pass_fails():
    class Failing(BrightBoxDetector):
        def inference(self, batched_inputs):
            raise RuntimeError("boom")

    model = Failing()
    with pytest.raises(RuntimeError, match="boom"):
        GeneralizedRCNNWithTTA(model, (30,), 500)([{"image": _image_with_patch(1, 1, 5, 5)}])
    assert (model.min_size_test, model.max_size_test) == (100, 1000)


def test_vote_averages_the_passes_localisation():
    model = BrightBoxDetector()
    image = _image_with_patch(11, 21, 42, 49)
    nms = GeneralizedRCNNWithTTA(model, (25, 35, 45), 500, flip=False, merge="nms")([{"image": image}])[0]
    vote = GeneralizedRCNNWithTTA(model, (25, 35, 45), 500, flip=False, merge="vote",
                                  vote_iou_thresh=0.5)([{"image": image}])[0]
    per_pass = [GeneralizedRCNNWithTTA(model, (s,), 500, flip=False)([{"image": image}])[0] for s in (25, 35, 45)]
    boxes = torch.cat([p["boxes"] for p in per_pass])
    scores = torch.cat([p["scores"] for p in per_pass])
    torch.testing.assert_close(nms["boxes"][0], boxes[scores.argmax()])
    torch.testing.assert_close(vote["boxes"][0], (scores[:, None] * boxes).sum(0) / scores.sum())
    assert vote["scores"].item() == nms["scores"].item() == scores.max().item()


def test_soft_nms_merges_the_passes_when_configured():
    """With TEST.SOFT_NMS the passes are merged by soft-NMS as one pass would be: the other passes' boxes stay with
    decayed scores instead of being removed."""
    model = BrightBoxDetector()
    image = _image_with_patch(11, 21, 42, 49)
    soft = GeneralizedRCNNWithTTA(model, (25, 35, 45), 500, flip=False, soft_nms=("gaussian", 0.5))([{"image": image}])[0]
    nms = GeneralizedRCNNWithTTA(model, (25, 35, 45), 500, flip=False)([{"image": image}])[0]
    per_pass = [GeneralizedRCNNWithTTA(model, (s,), 500, flip=False)([{"image": image}])[0] for s in (25, 35, 45)]
    boxes = torch.cat([p["boxes"] for p in per_pass])
    scores = torch.cat([p["scores"] for p in per_pass])
    keep, kept_scores = soft_nms(boxes, scores, torch.zeros(3, dtype=torch.long), "gaussian", 0.5, 0.5)
    assert len(nms["boxes"]) == 1 and len(soft["boxes"]) == 3
    torch.testing.assert_close(soft["boxes"], boxes[keep])
    torch.testing.assert_close(soft["scores"], kept_scores)
    cfg = get_cfg()
    cfg.TEST.SOFT_NMS.ENABLED, cfg.TEST.SOFT_NMS.METHOD = True, "gaussian"
    tta = GeneralizedRCNNWithTTA.from_config(cfg, model)
    assert tta.soft_nms == ("gaussian", 0.5) and "soft-NMS (gaussian, sigma 0.5)" in tta.describe()


def test_one_pass_at_the_models_size_is_the_plain_model():
    model = tiny_model(["INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 100,
                        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]).eval()
    g = torch.Generator().manual_seed(1)
    inputs = [{"image": torch.randint(0, 256, (3, 50, 70), generator=g, dtype=torch.uint8)},
              {"image": torch.randint(0, 256, (3, 80, 60), generator=g, dtype=torch.uint8), "height": 40, "width": 30}]
    with torch.no_grad():
        plain = model(inputs)
        tta = GeneralizedRCNNWithTTA(model, (64,), 100, flip=False, nms_thresh=0.5, topk_per_image=100)(inputs)
    for p, t in zip(plain, tta):
        assert len(p["boxes"]) > 0
        for key in ("boxes", "scores", "classes"):
            torch.testing.assert_close(t[key], p[key])


def test_mirrored_pass_of_a_mirrored_image_is_the_plain_pass():
    model = tiny_model(["INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 100,
                        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]).eval()
    image = torch.randint(0, 256, (3, 48, 64), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    with torch.no_grad():
        plain = model([{"image": image}])[0]
        tta = GeneralizedRCNNWithTTA(model, (64,), 100, flip=True)
        # the wrapper's mirrored pass sees image.flip(-1): give it the mirrored image and it sees the original
        passes = tta._augmented_detections([{"image": image.flip(-1)}])[0]
    mirrored_back = passes[1]
    torch.testing.assert_close(hflip_boxes(mirrored_back["boxes"], 64), plain["boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(mirrored_back["scores"], plain["scores"])


def test_config_keys_and_errors():
    cfg = get_cfg()
    cfg.TEST.AUG.ENABLED = True
    check_supported_parts(cfg)  # no longer refused
    cfg.TEST.AUG.MIN_SIZES, cfg.TEST.AUG.MAX_SIZE, cfg.TEST.AUG.MERGE = (200, 300), 500, "vote"
    tta = GeneralizedRCNNWithTTA.from_config(cfg, BrightBoxDetector())
    assert (tta.min_sizes, tta.max_size, tta.flip, tta.merge, tta.vote_iou_thresh) == ([200, 300], 500, True, "vote", 0.7)
    assert "4 passes" in tta.describe() and "box voting" in tta.describe()
    with pytest.raises(ValueError, match="TEST.AUG.MERGE must be one of .*'mean'"):
        GeneralizedRCNNWithTTA(BrightBoxDetector(), (200,), 500, merge="mean")
    with pytest.raises(ValueError, match=r"TEST.AUG.MIN_SIZES .* got \(\)"):
        GeneralizedRCNNWithTTA(BrightBoxDetector(), (), 500)
    with pytest.raises(ValueError, match="TEST.AUG.VOTE_IOU_THRESH must lie in"):
        GeneralizedRCNNWithTTA(BrightBoxDetector(), (200,), 500, vote_iou_thresh=0.0)
    with pytest.raises(TypeError, match="wraps a GeneralizedRCNN-like model"):
        GeneralizedRCNNWithTTA(nn.Linear(2, 2), (200,), 500)
    model = BrightBoxDetector().train()
    with pytest.raises(RuntimeError, match="eval mode"):
        GeneralizedRCNNWithTTA(model, (200,), 500)([{"image": _image_with_patch(1, 1, 5, 5)}])
