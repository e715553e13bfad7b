"""det_dcn reproduces torchvision's fasterrcnn_resnet50_fpn: same weights (converted), same numbers.

torchvision's model is built without downloads (weights=None), its BatchNorms frozen exactly as its pretrained
variant does, and every parameter and norm statistic randomised (seeded) with data-dependent scales, so the
features are O(1), the RPN scores are spread out and real detections survive the 0.05 score threshold. The weights
go through det_dcn.checkpoint.convert into det_dcn's model built from configs/torchvision/faster_rcnn_R_50_FPN.yaml.

Stages are compared on identical inputs (same input tensor for the backbone, same features for the RPN, same
features and proposals for the RoI heads), then end to end from the raw image. A 256x320 image resized to
320x400 (padded 320x416, so P6 has torchvision's rounded stride 416 // 7 = 59 along x) keeps it fast.
"""

import os

import pytest
import torch
from torch import nn

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import fasterrcnn_resnet50_fpn  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozenBatchNorm2d  # noqa: E402

from det_dcn.checkpoint.convert import convert_torchvision_faster_rcnn  # noqa: E402
from det_dcn.config import get_cfg  # noqa: E402
from det_dcn.modeling import build_model  # noqa: E402
from det_dcn.modeling.image_list import ImageList  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "torchvision", "faster_rcnn_R_50_FPN.yaml")
MIN_SIZE, MAX_SIZE = 320, 1333
LEVELS = {"0": "p2", "1": "p3", "2": "p4", "3": "p5", "pool": "p6"}

# Output std each head layer is scaled to (before its bias): spread RPN scores, confident-enough classes.
HEAD_TARGET_STD = {
    "rpn.head.conv.0.0": 1.0, "rpn.head.cls_logits": 2.0, "rpn.head.bbox_pred": 0.2,
    "roi_heads.box_head.fc6": 1.0, "roi_heads.box_head.fc7": 1.0,
    "roi_heads.box_predictor.cls_score": 3.0, "roi_heads.box_predictor.bbox_pred": 0.2,
}


def make_image(seed: int = 0, height: int = 256, width: int = 320) -> torch.Tensor:
    """A uint8 RGB [3, H, W] image with smooth gradients and a few flat rectangles (structure for the RPN)."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    img = torch.stack([80 + 100 * xs * ys, 120 + 60 * torch.sin(6 * xs) * torch.cos(4 * ys), 60 + 90 * ys + 0 * xs])
    for _ in range(6):
        y0, x0 = int(torch.randint(0, height - 40, (1,), generator=g)), int(torch.randint(0, width - 40, (1,), generator=g))
        h, w = int(torch.randint(20, 120, (1,), generator=g)), int(torch.randint(20, 120, (1,), generator=g))
        img[:, y0:y0 + h, x0:x0 + w] = torch.rand(3, 1, 1, generator=g) * 255
    img += torch.randn(img.shape, generator=g) * 8
    return img.clamp(0, 255).to(torch.uint8)


def _freeze_batchnorms(module: nn.Module) -> None:
    """nn.BatchNorm2d -> torchvision FrozenBatchNorm2d with the same values (what its pretrained variant uses)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = TVFrozenBatchNorm2d(child.num_features, eps=child.eps)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, attr).copy_(getattr(child, attr).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorms(child)


@torch.no_grad()
def randomized_torchvision_model(image: torch.Tensor, seed: int = 0) -> nn.Module:
    """fasterrcnn_resnet50_fpn (no downloads) with seeded random weights and realistic activation scales."""
    torch.manual_seed(seed)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=MIN_SIZE, max_size=MAX_SIZE)
    model.eval()
    # Backbone: random BN affine parameters, then BN statistics measured on the (transformed) image itself, so the
    # frozen statistics are non-trivial but every layer sees O(1) activations. FPN gets random biases.
    for m in model.backbone.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.2)
            m.momentum = None  # running stats = plain average of what the calibration pass sees
            m.reset_running_stats()
    images, _ = model.transform([image.float() / 255])
    model.backbone.train()
    model.backbone(images.tensors)
    model.backbone.eval()
    _freeze_batchnorms(model.backbone)
    for m in model.backbone.body.modules():
        if isinstance(m, TVFrozenBatchNorm2d):  # not exactly the measured statistics any more
            m.running_mean.add_(torch.randn_like(m.running_mean) * 0.05 * m.running_var.sqrt())
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.9, 1.1))
    for name, p in model.backbone.fpn.named_parameters():
        if name.endswith("bias"):
            p.normal_(0.0, 0.1)

    # Heads: random weights, then (in one pass, via hooks) each layer's output is centred per channel by its bias
    # and scaled to the target std, so ReLUs are half active, classes differ between RoIs and scores spread out.
    # Only 100 proposals during this pass: plenty to estimate the statistics, and 10x cheaper in the box head.
    modules = dict(model.named_modules())
    handles = []

    def calibrate(name):
        layer = modules[name]
        layer.weight.normal_(0.0, 1.0)
        layer.bias.zero_()
        done = []

        def hook(_module, _inputs, output):
            if done:  # the RPN head is shared over levels: calibrated on its first (finest) level
                return output
            done.append(True)
            dims = [d for d in range(output.dim()) if d != 1]
            mean = output.mean(dim=dims, keepdim=True)
            scale = HEAD_TARGET_STD[name] / (output - mean).std().clamp_min(1e-12)
            layer.weight.mul_(scale)
            layer.bias.copy_(-mean.flatten() * scale)
            return (output - mean) * scale

        handles.append(layer.register_forward_hook(hook))

    for name in HEAD_TARGET_STD:
        calibrate(name)
    post_nms = dict(model.rpn._post_nms_top_n)
    model.rpn._post_nms_top_n["testing"] = 100
    model([image.float() / 255])
    model.rpn._post_nms_top_n.update(post_nms)
    for h in handles:
        h.remove()
    for name, std in HEAD_TARGET_STD.items():
        modules[name].bias.add_(torch.randn_like(modules[name].bias) * 0.1 * std)
    return model


@pytest.fixture(scope="module")
def models():
    image = make_image()
    tv = randomized_torchvision_model(image)
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", MIN_SIZE, "INPUT.MAX_SIZE_TEST", MAX_SIZE, "MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    state, unmatched = convert_torchvision_faster_rcnn(tv.state_dict())
    assert unmatched == []
    model.load_state_dict(state, strict=True)
    return tv, model, image


def test_preprocessing_matches(models):
    tv, model, image = models
    with torch.no_grad():
        tv_images, _ = tv.transform([image.float() / 255])
        ours = model.preprocess_image([{"image": image}])
    assert ours.image_sizes == [tuple(s) for s in tv_images.image_sizes] == [(320, 400)]
    assert ours.tensor.shape == tv_images.tensors.shape == (1, 3, 320, 416)
    torch.testing.assert_close(ours.tensor, tv_images.tensors, rtol=0, atol=2e-5)


@pytest.fixture(scope="module")
def stages(models):
    """Both models' stage outputs, each stage fed the SAME inputs (torchvision's)."""
    tv, model, image = models
    with torch.no_grad():
        tv_images, _ = tv.transform([image.float() / 255])
        tv_feats = tv.backbone(tv_images.tensors)
        our_feats = model.backbone(tv_images.tensors)
        images = ImageList(tv_images.tensors, [tuple(s) for s in tv_images.image_sizes])
        shared = {LEVELS[k]: v for k, v in tv_feats.items()}
        tv_props, _ = tv.rpn(tv_images, tv_feats)
        our_props, _ = model.proposal_generator(images, shared, None)
        tv_dets, _ = tv.roi_heads(tv_feats, tv_props, tv_images.image_sizes)
        our_dets, _ = model.roi_heads(images, shared, [{"proposal_boxes": tv_props[0]}])
    return dict(tv_feats=tv_feats, our_feats=our_feats, tv_props=tv_props[0],
                our_props=our_props[0]["proposal_boxes"], tv_dets=tv_dets[0], our_dets=our_dets[0])


def test_backbone_and_fpn_features_match(stages):
    for tv_name, name in LEVELS.items():
        a, b = stages["tv_feats"][tv_name], stages["our_feats"][name]
        assert a.shape == b.shape, name
        assert a.std() > 0.1, name  # not vacuous
        # Same ops on the same input: bitwise equal on the machine this was written on; allow float noise.
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6 * float(a.abs().max()))


def test_rpn_proposals_match(stages):
    a, b = stages["tv_props"], stages["our_props"]
    assert len(a) == 1000  # 320x416 gives enough anchors for the full post-NMS top-k
    assert float((a[:, 2:] - a[:, :2]).std()) > 5  # proposals of many sizes, i.e. not just anchors
    # Same boxes in the same order, including among proposals whose sigmoid scores tie in float32 (this seed has
    # such ties; MODEL.RPN.NMS_ON_SIGMOID makes det_dcn rank them as torchvision does).
    assert b.shape == a.shape
    torch.testing.assert_close(b, a, rtol=0, atol=1e-4)  # measured: bitwise equal


def _compare_detections(tv_det, our_det, min_count=5):
    assert len(tv_det["boxes"]) >= min_count, "too few detections to be a meaningful comparison"
    assert len(our_det["boxes"]) == len(tv_det["boxes"])
    # torchvision class c (1..90) is det_dcn class c - 1.
    torch.testing.assert_close(our_det["classes"], tv_det["labels"] - 1)
    torch.testing.assert_close(our_det["scores"], tv_det["scores"], rtol=0, atol=1e-6)  # measured: 1 ulp
    torch.testing.assert_close(our_det["boxes"], tv_det["boxes"], rtol=0, atol=1e-4)  # measured: bitwise equal


def test_roi_head_detections_match(stages):
    _compare_detections(stages["tv_dets"], stages["our_dets"])


def _match_unordered(tv_det, our_det, score_tol=1e-3, box_tol=0.05):
    """One-to-one match of detections by (class, box, score), ignoring order among near-equal scores.

    End to end, the two preprocessings differ by float rounding ((x / 255 - mean) / std vs (x - 255 mean) /
    (255 std)), which moves scores by ~1e-5 relative: enough to swap two detections whose scores differ by 1e-6,
    or to swap which of two near-equal detections is the 100th. Those at the top-100 cut may go unmatched.
    """
    assert len(tv_det["boxes"]) >= 5
    assert abs(len(our_det["boxes"]) - len(tv_det["boxes"])) <= 1
    cut = float(tv_det["scores"][-1]) + score_tol if len(tv_det["scores"]) == 100 else -1.0
    used = torch.zeros(len(tv_det["boxes"]), dtype=torch.bool)
    for box, score, cls in zip(our_det["boxes"], our_det["scores"], our_det["classes"]):
        ok = ((tv_det["labels"] - 1 == cls) & ((tv_det["scores"] - score).abs() < score_tol)
              & ((tv_det["boxes"] - box).abs().max(dim=1).values < box_tol) & ~used)
        if ok.any():
            used[ok.nonzero()[0, 0]] = True
        else:
            assert float(score) < cut, f"unmatched det_dcn detection {cls.item()} {score.item()} {box.tolist()}"
    assert bool(used[tv_det["scores"] >= cut].all()), "torchvision detections above the cut without a match"


def test_end_to_end_detections_match(models):
    tv, model, image = models
    with torch.no_grad():
        (tv_det,) = tv([image.float() / 255])
        (our_det,) = model([{"image": image}])
    _match_unordered(tv_det, our_det)
    assert len(tv_det["labels"].unique()) > 5  # many classes, not one dominant one
    # Mapped back to the 256x320 input, like torchvision's postprocess.
    assert float(our_det["boxes"][:, 2].max()) <= 320 + 1e-3 and float(our_det["boxes"][:, 3].max()) <= 256 + 1e-3
