"""FastRCNNOutputLayers: background-last classes, losses, and the inference filter chain."""

import math

import pytest
import torch
from torch.nn import functional as F

from det_dcn.modeling.box_coder import Box2BoxTransform
from det_dcn.modeling.roi_heads import FastRCNNOutputLayers


def predictor(**kw):
    args = dict(input_size=8, num_classes=2, box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)))
    args.update(kw)
    return FastRCNNOutputLayers(**args)


def test_shapes_background_last_and_init():
    p = predictor()
    scores, deltas = p(torch.randn(5, 8))
    assert scores.shape == (5, 3) and deltas.shape == (5, 8)
    assert predictor(cls_agnostic_bbox_reg=True)(torch.randn(5, 8))[1].shape == (5, 4)
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        predictor(num_classes=0)
    with pytest.raises(ValueError, match="BBOX_REG_LOSS_TYPE"):
        predictor(box_reg_loss_type="l2")


def test_losses():
    p = predictor()
    proposals = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20], [5, 5, 15, 15], [0, 0, 4, 4]])
    gt_boxes = torch.tensor([[1.0, 0, 11, 10], [0, 0, 20, 20], [0, 0, 1, 1], [0, 0, 1, 1]])
    gt_classes = torch.tensor([1, 0, 2, 2])  # two foreground RoIs (classes 1 and 0), two background (class 2 = K)
    scores = torch.randn(4, 3)
    deltas = torch.zeros(4, 8)
    deltas[1, 0:4] = torch.tensor([0.5, -0.5, 0.0, 0.25])  # RoI 1's own class (0): |.| sums to 1.25
    deltas[0, 0:4] = 100.0  # class 0 of RoI 0 is not its class: ignored
    deltas[2] = 100.0  # background RoI: no regression loss
    losses = p.losses((scores, deltas), proposals, gt_classes, gt_boxes)
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(scores, gt_classes))
    # RoI 0 class 1: target dx = 10 * 1 / 10 = 1; all other target deltas 0. L1 sum = 1 + 1.25, over 4 RoIs.
    torch.testing.assert_close(losses["loss_box_reg"], torch.tensor((1.0 + 1.25) / 4))

    agnostic = predictor(cls_agnostic_bbox_reg=True, smooth_l1_beta=1.0)
    d = torch.zeros(4, 4)
    d[1] = torch.tensor([0.5, -0.5, 0.0, 0.25])
    out = agnostic.losses((scores, d), proposals, gt_classes, gt_boxes)
    smooth = 2 * 0.5 * 0.25 + 0.5 * 0.0625  # smooth-L1 with beta 1 of RoI 1
    torch.testing.assert_close(out["loss_box_reg"], torch.tensor((0.5 + smooth) / 4))

    empty = p.losses((torch.zeros(0, 3), torch.zeros(0, 8)), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64),
                     torch.zeros(0, 4))
    assert empty["loss_cls"] == 0 and empty["loss_box_reg"] == 0


def logits_for(probs):
    return torch.log(torch.tensor(probs))


def test_inference_threshold_nms_topk_and_classes():
    p = predictor(test_score_thresh=0.05, test_nms_thresh=0.5, test_topk_per_image=100)
    proposals = [torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [50, 50, 52, 52]])]
    # per RoI: P(class 0), P(class 1), P(background)
    scores = logits_for([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.01, 0.02, 0.97], [0.5, 0.04, 0.46]])
    deltas = torch.zeros(4, 8)
    deltas[2, 4] = 10.0  # RoI 2, class 1: moved right by one width (but scores under threshold anyway)
    (det,) = p.inference((scores, deltas), proposals, [(45, 60)])
    # class 0: RoIs 0 (0.7) and 1 (0.6) overlap (IoU 9/11) -> RoI 1 suppressed; RoI 3 (0.5) kept, clipped.
    # class 1: RoI 0 (0.2) and RoI 1 (0.3): RoI 0 suppressed by RoI 1 within class 1; RoI 3 0.04 < 0.05.
    torch.testing.assert_close(det["scores"], torch.tensor([0.7, 0.5, 0.3]))
    assert det["classes"].tolist() == [0, 0, 1]
    torch.testing.assert_close(det["boxes"], torch.tensor([[0.0, 0, 10, 10], [50, 45, 52, 45], [1, 0, 11, 10]]))

    # min box size (torchvision's 1e-2 rule, here 1.0) removes the clipped, zero-height RoI 3
    p.test_min_box_size = 1.0
    (det,) = p.inference((scores, deltas), proposals, [(45, 60)])
    assert det["scores"].tolist() == pytest.approx([0.7, 0.3])
    p.test_topk_per_image = 1
    (det,) = p.inference((scores, deltas), proposals, [(45, 60)])
    assert det["scores"].tolist() == pytest.approx([0.7])


def test_inference_uses_each_class_own_box_and_agnostic_box():
    proposals = [torch.tensor([[10.0, 10, 20, 20]])]
    scores = logits_for([[0.5, 0.4, 0.1]])
    deltas = torch.zeros(1, 8)
    deltas[0, 4] = 10.0  # class 1's box moves one width right (weight 10)
    (det,) = predictor().inference((scores, deltas), proposals, [(100, 100)])
    torch.testing.assert_close(det["boxes"], torch.tensor([[10.0, 10, 20, 20], [20, 10, 30, 20]]))
    (det,) = predictor(cls_agnostic_bbox_reg=True).inference((scores, deltas[:, 4:]), proposals, [(100, 100)])
    torch.testing.assert_close(det["boxes"], torch.tensor([[20.0, 10, 30, 20]] * 2))
    assert det["classes"].tolist() == [0, 1]


def test_inference_several_images_and_non_finite():
    p = predictor()
    proposals = [torch.tensor([[0.0, 0, 10, 10]]), torch.zeros(0, 4), torch.tensor([[0.0, 0, 10, 10]] * 2)]
    scores = logits_for([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05]])
    deltas = torch.zeros(3, 8)
    deltas[2, 0] = float("nan")
    dets = p.inference((scores, deltas), proposals, [(20, 20)] * 3)
    assert [len(d["scores"]) for d in dets] == [1, 0, 1]
    assert all(torch.isfinite(d["boxes"]).all() for d in dets)
    assert math.isclose(dets[2]["scores"][0].item(), 0.9, rel_tol=1e-6)


def test_inference_box_voting_by_hand():
    """TEST.BBOX_VOTE: NMS as before, then each kept box the score-weighted mean of the candidates of its class (above
    the score threshold, before NMS) that overlap it by >= VOTE_TH; scores and classes unchanged."""
    rois = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 11], [0, 0, 10, 14], [0, 0, 10, 10.5], [30, 30, 40, 40]])
    # IoU with RoI 0: RoI 1 10/11 = 0.91, RoI 2 10/14 = 0.71, RoI 3 10/10.5 = 0.95
    scores = logits_for([[0.6, 0.1, 0.3], [0.3, 0.01, 0.69], [0.5, 0.01, 0.49], [0.02, 0.9, 0.08],
                         [0.8, 0.01, 0.19]])
    deltas = torch.zeros(5, 8)
    (plain,) = predictor(test_nms_thresh=0.5).inference((scores, deltas), [rois], [(50, 50)])
    (det,) = predictor(test_nms_thresh=0.5, test_vote_iou_thresh=0.8).inference((scores, deltas), [rois], [(50, 50)])
    # NMS keeps RoI 3 for class 1 (0.9; RoI 0's 0.1 suppressed), RoIs 4 and 0 for class 0 (0.8, 0.6; RoIs 1 and 2
    # suppressed by RoI 0)
    torch.testing.assert_close(det["scores"], plain["scores"])
    assert det["classes"].tolist() == plain["classes"].tolist() == [1, 0, 0]
    torch.testing.assert_close(plain["boxes"], rois[[3, 4, 0]])
    expected = torch.stack([
        (0.9 * rois[3] + 0.1 * rois[0]) / 1.0,  # class 1: RoI 0's class-1 box votes (IoU 0.95)
        rois[4],  # alone
        (0.6 * rois[0] + 0.3 * rois[1]) / 0.9,  # class 0: RoI 1 votes; RoI 2 (IoU 0.71) and RoI 3 (0.02) do not
    ])
    torch.testing.assert_close(det["boxes"], expected)
    with pytest.raises(ValueError, match="TEST.BBOX_VOTE.VOTE_TH"):
        predictor(test_vote_iou_thresh=0.0)


def test_box_voting_config_keys():
    from det_dcn.config import get_cfg

    cfg = get_cfg()
    assert FastRCNNOutputLayers.from_config(cfg, 8).test_vote_iou_thresh is None
    cfg.merge_from_list(["TEST.BBOX_VOTE.ENABLED", "True", "TEST.BBOX_VOTE.VOTE_TH", "0.7"])
    assert FastRCNNOutputLayers.from_config(cfg, 8).test_vote_iou_thresh == 0.7


def test_inference_soft_nms_keeps_overlaps_with_decayed_scores():
    """TEST.SOFT_NMS: the candidates NMS would suppress stay, scored by soft_nms; box voting still applies after."""
    from det_dcn.modeling.nms import soft_nms

    rois = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 11], [30, 30, 40, 40]])
    scores = logits_for([[0.8, 0.1, 0.1], [0.7, 0.1, 0.2], [0.01, 0.9, 0.09]])
    deltas = torch.zeros(3, 8)
    (plain,) = predictor(test_nms_thresh=0.5).inference((scores, deltas), [rois], [(50, 50)])
    (soft,) = predictor(test_nms_thresh=0.5, test_soft_nms=("gaussian", 0.5)).inference((scores, deltas), [rois],
                                                                                          [(50, 50)])
    assert len(plain["scores"]) == 3 and len(soft["scores"]) == 5  # RoI 1's boxes (IoU 0.91 with RoI 0) stay
    probs = torch.softmax(scores, -1)[:, :2]
    roi_idx, cls_idx = (probs > 0.05).nonzero(as_tuple=True)
    keep, expected = soft_nms(rois[roi_idx], probs[roi_idx, cls_idx], cls_idx, "gaussian", 0.5, 0.5)
    torch.testing.assert_close(soft["scores"], expected)
    torch.testing.assert_close(soft["boxes"], rois[roi_idx[keep]])
    assert soft["classes"].tolist() == cls_idx[keep].tolist()
    (voted,) = predictor(test_nms_thresh=0.5, test_soft_nms=("gaussian", 0.5), test_vote_iou_thresh=0.8).inference(
        (scores, deltas), [rois], [(50, 50)])
    torch.testing.assert_close(voted["scores"], soft["scores"])
    assert not torch.equal(voted["boxes"], soft["boxes"])


def test_soft_nms_config_keys():
    from det_dcn.config import get_cfg

    cfg = get_cfg()
    assert FastRCNNOutputLayers.from_config(cfg, 8).test_soft_nms is None
    cfg.merge_from_list(["TEST.SOFT_NMS.ENABLED", "True", "TEST.SOFT_NMS.METHOD", "gaussian", "TEST.SOFT_NMS.SIGMA",
                         "0.3"])
    assert FastRCNNOutputLayers.from_config(cfg, 8).test_soft_nms == ("gaussian", 0.3)
    with pytest.raises(ValueError, match="TEST.SOFT_NMS.METHOD.*'hard'"):
        predictor(test_soft_nms=("hard", 0.5))
    with pytest.raises(ValueError, match="TEST.SOFT_NMS.SIGMA"):
        predictor(test_soft_nms=("gaussian", 0.0))
