"""RPN: the head-output layout lines up with the anchors, proposal selection, targets and loss normalisation."""

import math

import pytest
import torch
from torch import nn

from det_dcn.modeling.box_coder import Box2BoxTransform
from det_dcn.modeling.image_list import ImageList
from det_dcn.modeling.matcher import Matcher
from det_dcn.modeling.proposal_generator import RPN, DefaultAnchorGenerator
from det_dcn.modeling.proposal_generator.proposals import find_top_rpn_proposals


class FixedHead(nn.Module):
    """Returns preset logits [N, A, H, W] and deltas [N, A*4, H, W] for a single level."""

    def __init__(self, logits, deltas):
        super().__init__()
        self.logits, self.deltas = logits, deltas

    def forward(self, features):
        return [self.logits], [self.deltas]


def make_rpn(head, sizes=((16, 32),), ratios=((1.0,),), stride=8, **kw):
    args = dict(
        in_features=["f"], head=head,
        anchor_generator=DefaultAnchorGenerator([list(s) for s in sizes], [list(r) for r in ratios], [stride]),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform((1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=16, positive_fraction=0.5, pre_nms_topk=(100, 100), post_nms_topk=(50, 50),
        nms_thresh=0.7,
    )
    args.update(kw)
    return RPN(**args)


def test_head_outputs_line_up_with_anchors():
    # A = 2 anchors per location on a 4 x 5 map; one (anchor, row, col) gets a high logit and a shift in x.
    n, a, h, w = 1, 2, 4, 5
    logits = torch.full((n, a, h, w), -5.0)
    deltas = torch.zeros(n, a * 4, h, w)
    logits[0, 1, 2, 3] = 5.0
    deltas[0, 1 * 4 + 0, 2, 3] = 0.25  # dx of anchor 1 at (2, 3): + a quarter of its width
    rpn = make_rpn(FixedHead(logits, deltas), nms_thresh=1.0).eval()
    images = ImageList(torch.zeros(1, 3, 32, 40), [(1000, 1000)])  # no clipping
    proposals, losses = rpn(images, {"f": torch.zeros(n, 1, h, w)})
    assert losses == {}
    anchors = rpn.anchor_generator([torch.zeros(1, 1, h, w)])[0]
    expected = anchors[(2 * w + 3) * a + 1].clone()  # location-major, then anchor
    expected[[0, 2]] += 0.25 * 32  # anchor 1 has size 32
    top = proposals[0]["proposal_boxes"][0]
    torch.testing.assert_close(top, expected)
    assert proposals[0]["objectness_logits"][0] == 5.0
    # Every other proposal is an unmoved anchor (nms_thresh 1.0 keeps all, up to post_nms_topk).
    assert len(proposals[0]["proposal_boxes"]) == h * w * a


def test_find_top_proposals_topk_clip_small_and_nms():
    boxes_l0 = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10.5], [20, 20, 30, 30], [-5, -5, 5, 5], [5, 5, 5, 9]]])
    logits_l0 = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    boxes_l1 = torch.tensor([[[0.0, 0, 10, 10], [50, 50, 90, 90]]])
    logits_l1 = torch.tensor([[1.5, 2.5]])
    out = find_top_rpn_proposals(
        [boxes_l0, boxes_l1], [logits_l0, logits_l1], [(60, 60)], nms_thresh=0.5, pre_nms_topk=4,
        post_nms_topk=10, min_box_size=0.0, score_thresh=0.0, training=False,
    )[0]
    # level 0 top-4 drops the zero-width box (logit 0) anyway; box 1 is suppressed by box 0 (same level);
    # level 1's copy of box 0 survives (NMS is per level); [50, 50, 90, 90] is clipped to the 60 x 60 image.
    expected = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 5, 5]])
    torch.testing.assert_close(out["proposal_boxes"], expected)
    torch.testing.assert_close(out["objectness_logits"], torch.tensor([4.0, 2.5, 2.0, 1.5, 1.0]))

    thresh = find_top_rpn_proposals(
        [boxes_l0], [logits_l0], [(60, 60)], 0.5, 4, 2, min_box_size=6.0, score_thresh=0.0, training=False
    )[0]
    # min size 6 drops the clipped 5 x 5 box; post-NMS top-k 2
    torch.testing.assert_close(thresh["proposal_boxes"], expected[[0, 2]])
    sig = find_top_rpn_proposals(
        [boxes_l0], [logits_l0], [(60, 60)], 0.5, 4, 10, 0.0, score_thresh=torch.sigmoid(torch.tensor(2.0)).item(),
        training=False,
    )[0]
    assert sig["objectness_logits"].tolist() == [4.0, 2.0]


def test_non_finite_predictions():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, float("nan"), 5]]])
    logits = torch.tensor([[1.0, 2.0]])
    out = find_top_rpn_proposals([boxes], [logits], [(20, 20)], 0.7, 10, 10, 0.0, 0.0, training=False)[0]
    assert len(out["proposal_boxes"]) == 1
    with pytest.raises(FloatingPointError, match="diverged"):
        find_top_rpn_proposals([boxes], [logits], [(20, 20)], 0.7, 10, 10, 0.0, 0.0, training=True)


def test_loss_normalised_by_images_times_batch_size():
    # Zero logits: every sampled anchor costs log(2). 2 images x 16 sampled anchors -> loss_rpn_cls = log 2.
    n, a, h, w = 2, 2, 8, 8
    rpn = make_rpn(FixedHead(torch.zeros(n, a, h, w, requires_grad=True), torch.zeros(n, a * 4, h, w)))
    rpn.train()
    images = ImageList(torch.zeros(n, 3, 64, 64), [(64, 64)] * n)
    gt = [torch.tensor([[9.0, 7, 41, 43]]), torch.zeros(0, 4)]  # image 2: no ground truth, all negatives
    torch.manual_seed(0)
    proposals, losses = rpn(images, {"f": torch.zeros(n, 1, h, w)}, gt)
    torch.testing.assert_close(losses["loss_rpn_cls"], torch.tensor(math.log(2.0)))
    assert losses["loss_rpn_loc"] > 0
    assert all(not p["proposal_boxes"].requires_grad for p in proposals)
    assert all(len(p["proposal_boxes"]) <= 50 for p in proposals)

    # With only 8 anchors per image (< 16 to sample, no ground truth: all negatives) the normaliser stays 2 * 16:
    # the loss is 8*2/32 * log 2.
    rpn_small = make_rpn(FixedHead(torch.zeros(n, 2, 2, 2), torch.zeros(n, 8, 2, 2)))
    rpn_small.train()
    _, losses = rpn_small(ImageList(torch.zeros(n, 3, 16, 16), [(16, 16)] * n), {"f": torch.zeros(n, 1, 2, 2)},
                          [torch.zeros(0, 4), torch.zeros(0, 4)])
    torch.testing.assert_close(losses["loss_rpn_cls"], torch.tensor(16 / 32 * math.log(2.0)))


def test_labels_sampling_and_boundary():
    rpn = make_rpn(None, batch_size_per_image=1000)
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 9, 10], [30, 30, 40, 40], [-20, 0, -10, 10], [45, 45, 55, 55]])
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    labels, matched = rpn.label_and_sample_anchors(anchors, [(50, 50)], gt)
    assert labels[0].tolist() == [1, 1, 0, 0, 0]
    torch.testing.assert_close(matched[0, 0], gt[0][0])
    rpn.anchor_boundary_thresh = 0
    labels, _ = rpn.label_and_sample_anchors(anchors, [(50, 50)], gt)
    assert labels[0].tolist() == [1, 1, 0, -1, -1]  # anchors crossing the border are ignored


def test_training_needs_gt():
    rpn = make_rpn(FixedHead(torch.zeros(1, 2, 2, 2), torch.zeros(1, 8, 2, 2))).train()
    with pytest.raises(ValueError, match="gt_boxes"):
        rpn(ImageList(torch.zeros(1, 3, 16, 16), [(16, 16)]), {"f": torch.zeros(1, 1, 2, 2)})


def test_proposal_selection_equals_torchvision_with_sigmoid_nms():
    """With NMS ranked by sigmoid (MODEL.RPN.NMS_ON_SIGMOID), proposal selection equals torchvision's
    RegionProposalNetwork.filter_proposals, also among logits that saturate the sigmoid to 1.0."""
    from torchvision.models.detection.rpn import RegionProposalNetwork

    g = torch.Generator().manual_seed(0)
    counts = [600, 150]
    xy = torch.rand(2, sum(counts), 2, generator=g) * 200
    boxes = torch.cat([xy, xy + torch.rand(2, sum(counts), 2, generator=g) * 80 + 1e-4], dim=2)
    logits = torch.randn(2, sum(counts), generator=g) * 4
    logits[:, ::3] += 25.0  # a third saturate: sigmoid == 1.0 exactly in float32
    tv = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, dict(training=300, testing=300),
                               dict(training=100, testing=100), nms_thresh=0.7).eval()
    tv_boxes, _ = tv.filter_proposals(boxes, logits, [(180, 220), (220, 180)], counts)
    ours = find_top_rpn_proposals(
        list(boxes.split(counts, dim=1)), list(logits.split(counts, dim=1)), [(180, 220), (220, 180)],
        nms_thresh=0.7, pre_nms_topk=300, post_nms_topk=100, min_box_size=1e-3, score_thresh=0.0, training=False,
        nms_on_sigmoid=True,
    )
    for a, b in zip(ours, tv_boxes):
        assert len(b) == 100
        torch.testing.assert_close(a["proposal_boxes"], b, rtol=0, atol=0)
