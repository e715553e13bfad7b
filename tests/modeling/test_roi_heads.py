"""StandardROIHeads: proposal matching and sampling with GT appended, target checks, train/eval outputs."""

import pytest
import torch

from det_dcn.modeling.backbone import ShapeSpec
from det_dcn.modeling.image_list import ImageList
from det_dcn.modeling.roi_heads import build_roi_heads

from heads_test_utils import tiny_cfg


def heads(overrides=()):
    cfg = tiny_cfg(overrides=["MODEL.ROI_HEADS.IN_FEATURES", ["s8"], "MODEL.ROI_BOX_HEAD.NUM_FC", 2,
                              "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4, *overrides])
    return build_roi_heads(cfg, {"s8": ShapeSpec(channels=4, stride=8)})


def test_gt_appended_and_background_last():
    h = heads(["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 100])
    gt_boxes = [torch.tensor([[0.0, 0, 20, 20], [30, 30, 60, 50]])]
    gt_classes = [torch.tensor([2, 0])]
    proposals = [torch.tensor([[0.0, 0, 20, 21], [40, 40, 60, 60], [70, 0, 80, 10]])]
    (s,) = h.label_and_sample_proposals(proposals, gt_boxes, gt_classes)
    assert len(s["proposal_boxes"]) == 5  # 3 proposals + 2 GT boxes, all sampled
    by_box = {tuple(b.tolist()): (int(c), g.tolist()) for b, c, g in zip(s["proposal_boxes"], s["gt_classes"],
                                                                        s["gt_boxes"])}
    assert by_box[(0.0, 0.0, 20.0, 21.0)] == (2, [0.0, 0.0, 20.0, 20.0])  # IoU 0.95 with GT 0
    assert by_box[(0.0, 0.0, 20.0, 20.0)][0] == 2 and by_box[(30.0, 30.0, 60.0, 50.0)][0] == 0  # the GT itself
    assert by_box[(40.0, 40.0, 60.0, 60.0)][0] == 3  # IoU 0.25 -> background = NUM_CLASSES
    assert by_box[(70.0, 0.0, 80.0, 10.0)][0] == 3

    no_append = heads(["MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", False])
    (s,) = no_append.label_and_sample_proposals(proposals, gt_boxes, gt_classes)
    assert len(s["proposal_boxes"]) == 3
    (s,) = no_append.label_and_sample_proposals([torch.zeros(0, 4)], gt_boxes, gt_classes)
    assert len(s["proposal_boxes"]) == 0 and len(s["gt_classes"]) == 0


def test_sampling_fraction_and_no_gt_image():
    torch.manual_seed(0)
    h = heads(["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16, "MODEL.ROI_HEADS.POSITIVE_FRACTION", 0.25])
    gt = torch.tensor([[10.0, 10, 50, 50]])
    jitter = torch.rand(40, 4) * 4
    positives = gt + jitter  # IoU > 0.5 with the GT
    negatives = torch.tensor([[60.0, 60, 70, 70]]) + jitter
    s = h.label_and_sample_proposals([torch.cat([positives, negatives]), negatives],
                                     [gt, torch.zeros(0, 4)], [torch.tensor([1]), torch.zeros(0, dtype=torch.int64)])
    assert len(s[0]["gt_classes"]) == 16 and int((s[0]["gt_classes"] == 1).sum()) == 4
    assert len(s[1]["gt_classes"]) == 16 and (s[1]["gt_classes"] == 3).all()


def test_forward_train_and_eval():
    h = heads()
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (60, 50)])
    feats = {"s8": torch.randn(2, 4, 8, 8)}
    proposals = [{"proposal_boxes": torch.tensor([[0.0, 0, 30, 30], [10, 10, 50, 40]])},
                 {"proposal_boxes": torch.tensor([[5.0, 5, 20, 20]])}]
    h.train()
    _, losses = h(images, feats, proposals, [torch.tensor([[0.0, 0, 32, 32]]), torch.zeros(0, 4)],
                  [torch.tensor([1]), torch.zeros(0, dtype=torch.int64)])
    assert set(losses) == {"loss_cls", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match=r"'classes' must lie in \[0, NUM_CLASSES=3\)"):
        h(images, feats, proposals, [torch.tensor([[0.0, 0, 32, 32]]), torch.zeros(0, 4)],
          [torch.tensor([3]), torch.zeros(0, dtype=torch.int64)])
    h.eval()
    h.box_predictor.test_score_thresh = 0.0
    results, losses = h(images, feats, proposals)
    assert losses == {}
    assert [len(r["boxes"]) for r in results] == [6, 3]  # every (RoI, class) pair survives: no overlap within a class
    assert (results[1]["boxes"][:, 2] <= 50).all()  # clipped to the second image's own size
