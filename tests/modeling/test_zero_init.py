"""Zero-initialised deformable parts: a deformable model given the plain model's weights starts as the plain model.

- DeformRoIPool (dpool): offsets start at 0 and deform_roi_pool without offsets is aligned RoIAlign, so the detector
  with ROIAlignV2-model weights gives the ROIAlignV2 model's detections exactly.
- ModulatedDeformRoIPool (mdpool): its mask starts at sigmoid(0) = 0.5, so the pooled features are exactly 0.5x the
  plain ones (checked on the pooler), and with the box head's fc1 weights doubled the detections are the plain ones.
- DCNv1 in res3-res5: the whole detector's detections (tests/modeling/backbone/test_backbone_dcn.py checks the
  backbone features for v1 and v2; v2 starts with mask 0.5, i.e. as the plain model with halved 3x3 weights).
"""

import pytest
import torch

from det_dcn.modeling import build_model

from heads_test_utils import REPO, calibrate_frozen_bn, single_thread, synthetic_batch, tiny_cfg  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

OVERRIDES = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 160]


@pytest.fixture(scope="module")
def plain():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(f"{REPO}/configs/Base-RCNN-FPN.yaml", OVERRIDES))
    calibrate_frozen_bn(model, synthetic_batch(2))
    return model.eval()


def variant(plain_model, overrides, allowed_missing):
    torch.manual_seed(1)
    model = build_model(tiny_cfg(f"{REPO}/configs/Base-RCNN-FPN.yaml", OVERRIDES + overrides)).eval()
    result = model.load_state_dict(plain_model.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(allowed_missing in k for k in result.missing_keys), result.missing_keys
    return model


def detections(model, batch):
    with torch.no_grad():
        return model([{"image": x["image"]} for x in batch])


def assert_same_detections(a, b):
    for x, y in zip(a, b):
        assert len(x["boxes"]) > 0
        torch.testing.assert_close(x["boxes"], y["boxes"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(x["scores"], y["scores"], rtol=1e-4, atol=1e-5)
        assert torch.equal(x["classes"], y["classes"])


@pytest.mark.parametrize("overrides,missing", [
    (["MODEL.ROI_BOX_HEAD.POOLER_TYPE", "DeformRoIPool"], ".offset_fc."),
    (["MODEL.RESNETS.DEFORM_ON_PER_STAGE", [False, True, True, True]], ".conv_offset."),
], ids=["dpool", "dconv"])
def test_deformable_model_with_plain_weights_equals_plain_model(plain, overrides, missing):
    batch = synthetic_batch(2, seed=3)
    model = variant(plain, overrides, missing)
    assert_same_detections(detections(model, batch), detections(plain, batch))


def test_mdpool_pools_half_the_plain_features_and_matches_with_fc1_doubled(plain):
    batch = synthetic_batch(2, seed=3)
    model = variant(plain, ["MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ModulatedDeformRoIPool"], "_fc.")
    images = plain.preprocess_image([{"image": x["image"]} for x in batch])
    with torch.no_grad():
        feats = plain.backbone(images.tensor)
        proposals, _ = plain.proposal_generator(images, feats)
        level_feats = [feats[f] for f in plain.roi_heads.box_in_features]
        boxes = [p["proposal_boxes"] for p in proposals]
        torch.testing.assert_close(
            model.roi_heads.box_pooler(level_feats, boxes), 0.5 * plain.roi_heads.box_pooler(level_feats, boxes)
        )
        model.roi_heads.box_head.fc1.weight.mul_(2.0)
    assert_same_detections(detections(model, batch), detections(plain, batch))
