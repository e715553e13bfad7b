"""CascadeROIHeads: detectron2's names and rules, one stage = the standard head, the refinement chain and the mean of
the stages' probabilities, each stage's IoU threshold, the gradient scale, and a training step of the whole model."""

import copy

import pytest
import torch

from det_dcn.modeling import build_model
from det_dcn.modeling.backbone import ShapeSpec
from det_dcn.modeling.image_list import ImageList
from det_dcn.modeling.roi_heads import build_roi_heads
from det_dcn.modeling.roi_heads.cascade_rcnn import CascadeROIHeads, _ScaleGradient

from heads_test_utils import REPO, single_thread, synthetic_batch, tiny_cfg  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

CASCADE = ["MODEL.ROI_HEADS.NAME", "CascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True]
SHAPES = {"s8": ShapeSpec(channels=4, stride=8)}


def heads(overrides=()):
    torch.manual_seed(0)
    cfg = tiny_cfg(overrides=["MODEL.ROI_HEADS.IN_FEATURES", ["s8"], "MODEL.ROI_BOX_HEAD.NUM_FC", 2,
                              "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
                              *overrides])
    return build_roi_heads(cfg, SHAPES)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (60, 50)])
    feats = {"s8": torch.randn(2, 4, 8, 8, generator=g)}
    proposals = [{"proposal_boxes": torch.tensor([[0.0, 0, 30, 30], [10, 10, 50, 40], [2, 3, 20, 25]])},
                 {"proposal_boxes": torch.tensor([[5.0, 5, 20, 20], [30, 10, 45, 50]])}]
    gt = ([torch.tensor([[0.0, 0, 32, 32]]), torch.tensor([[6.0, 4, 22, 21]])],
          [torch.tensor([1]), torch.tensor([2])])
    return images, feats, proposals, gt


def test_detectron2_names_and_stage_settings():
    h = heads(CASCADE)
    assert isinstance(h, CascadeROIHeads) and h.num_stages == 3
    keys = set(h.state_dict())
    assert {"box_head.0.fc1.weight", "box_head.2.fc2.weight", "box_predictor.1.cls_score.weight",
            "box_predictor.2.bbox_pred.weight"} <= keys
    assert h.box_predictor[2].bbox_pred.weight.shape[0] == 4  # class-agnostic
    assert [p.box2box_transform.weights for p in h.box_predictor] == [
        (10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0)]
    # each stage labels at its own IoU: a box at IoU 0.65 with the ground truth is foreground at 0.5 and 0.6,
    # background at 0.7
    gt, box = torch.tensor([[0.0, 0, 100, 100]]), torch.tensor([[0.0, 0, 100, 65]])
    labels = [h.match_proposals(box, gt, torch.tensor([1]), m)["gt_classes"].item() for m in h.stage_matchers]
    assert labels == [1, 1, h.num_classes]


def _as_standard(cascade_overrides=()):
    """A one-stage cascade and a StandardROIHeads with the same weights and regression weights."""
    one = heads([*CASCADE, "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", [0.5],
                 "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS", [[10.0, 10.0, 5.0, 5.0]], *cascade_overrides])
    standard = heads(["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True])
    state = {k.replace("box_head.0.", "box_head.").replace("box_predictor.0.", "box_predictor."): v
             for k, v in one.state_dict().items()}
    standard.load_state_dict(state)
    return one, standard


def test_one_stage_is_the_standard_head():
    one, standard = _as_standard()
    images, feats, proposals, (gt_boxes, gt_classes) = _inputs()
    one.eval(), standard.eval()
    with torch.no_grad():
        ours, _ = one(images, feats, proposals)
        theirs, _ = standard(images, feats, proposals)
    for a, b in zip(ours, theirs):
        assert len(a["boxes"]) > 0
        for key in ("boxes", "scores", "classes"):
            torch.testing.assert_close(a[key], b[key])
    one.train(), standard.train()
    torch.manual_seed(3)
    _, ours = one(images, feats, proposals, gt_boxes, gt_classes)
    torch.manual_seed(3)
    _, theirs = standard(images, feats, proposals, gt_boxes, gt_classes)
    assert set(ours) == {"loss_cls_stage0", "loss_box_reg_stage0"}
    torch.testing.assert_close(ours["loss_cls_stage0"], theirs["loss_cls"])
    torch.testing.assert_close(ours["loss_box_reg_stage0"], theirs["loss_box_reg"])


def test_inference_refines_in_turn_and_averages_the_stages_probabilities():
    """Stages 1 and 2 copy stage 0's box head; their regressors output zero (boxes pass through unchanged) and
    stage 2's classifier is uniform: the result must be stage 0's boxes, scored (2 p + 1 / (K + 1)) / 3."""
    one, _ = _as_standard()
    three = heads(CASCADE)
    for k in range(3):
        three.box_head[k].load_state_dict(one.box_head[0].state_dict())
        three.box_predictor[k].load_state_dict(one.box_predictor[0].state_dict())
    with torch.no_grad():
        for k in (1, 2):
            three.box_predictor[k].bbox_pred.weight.zero_()
            three.box_predictor[k].bbox_pred.bias.zero_()
        three.box_predictor[2].cls_score.weight.zero_()
        three.box_predictor[2].cls_score.bias.zero_()
    images, feats, proposals, _ = _inputs()
    one.eval(), three.eval()
    with torch.no_grad():
        expected, _ = one(images, feats, proposals)
        got, _ = three(images, feats, proposals)
    uniform = 1.0 / (three.num_classes + 1)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g["boxes"], e["boxes"])
        torch.testing.assert_close(g["classes"], e["classes"])
        torch.testing.assert_close(g["scores"], (2 * e["scores"] + uniform) / 3)


def test_training_losses_per_stage_and_refined_rois():
    h = heads(CASCADE)
    images, feats, proposals, (gt_boxes, gt_classes) = _inputs()
    h.train()
    feats = {k: v.requires_grad_() for k, v in feats.items()}
    labelled, losses = h(images, feats, proposals, gt_boxes, gt_classes)
    assert set(losses) == {f"loss_{n}_stage{k}" for n in ("cls", "box_reg") for k in range(3)}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert feats["s8"].grad is not None and torch.isfinite(feats["s8"].grad).all()
    for k in range(3):
        assert h.box_head[k].fc1.weight.grad is not None
    # the last stage's RoIs are refined boxes inside each image (clipped), not the proposals
    for s, (height, width) in zip(labelled, images.image_sizes):
        b = s["proposal_boxes"]
        assert (b[:, 0::2] <= width).all() and (b[:, 1::2] <= height).all() and (b >= 0).all()
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()


def test_scale_gradient():
    x = torch.randn(5, requires_grad=True)
    y = _ScaleGradient.apply(x, 1.0 / 3)
    torch.testing.assert_close(y, x)
    (y * torch.arange(5.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(5.0) / 3)


def test_errors_name_the_keys():
    with pytest.raises(ValueError, match="CLS_AGNOSTIC_BBOX_REG True"):
        heads(["MODEL.ROI_HEADS.NAME", "CascadeROIHeads"])
    with pytest.raises(ValueError, match="one value per stage"):
        heads([*CASCADE, "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", [0.5, 0.6]])
    with pytest.raises(ValueError, match=r"IOU_THRESHOLDS \[0.5\] must be \[0.4\]"):
        heads([*CASCADE, "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", [0.4, 0.6, 0.7]])
    one = heads(["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", False])
    with pytest.raises(ValueError, match="stage 0's box predictor regresses per class"):
        CascadeROIHeads(box_heads=[one.box_head], box_predictors=[one.box_predictor],
                        proposal_matchers=[one.proposal_matcher], box_in_features=["s8"], box_pooler=one.box_pooler,
                        num_classes=3, batch_size_per_image=16, positive_fraction=0.25)


@pytest.mark.parametrize("config", ["Base-RCNN-FPN.yaml", "COCO-Detection/faster_rcnn_R_50_FPN_mdconv_c3-c5_mdpool_1x.yaml"])
def test_whole_model_trains_and_detects(config):
    """Plain, and with DCNv2 in the backbone and modulated deformable RoI pooling shared by the stages."""
    cfg = tiny_cfg(f"{REPO}/configs/{config}", CASCADE + ["MODEL.RESNETS.DEPTH", 18, "MODEL.BACKBONE.FREEZE_AT", 0])
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = synthetic_batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    first = None
    for _ in range(3):
        losses = model(copy.deepcopy(batch))
        total = sum(losses.values())
        first = first if first is not None else float(total.detach())
        opt.zero_grad()
        total.backward()
        opt.step()
    assert "loss_box_reg_stage2" in losses and float(total.detach()) < first
    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"]}])[0]
    assert out["boxes"].shape[1] == 4 and len(out["scores"]) == len(out["classes"])
