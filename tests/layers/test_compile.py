"""torch.compile (CPU, inductor) traces through the deformable ops: no graph break, eager's outputs and gradients.

Tolerances: compiled float32 results within rtol 1e-4 / atol 1e-5 of eager (inductor fuses and reorders the
surrounding float32 arithmetic: the offset convs, fcs and activations; the det_dcn ops themselves run the same
kernels). Detector tests (tiny R-18-FPN, 64 px) are marked slow: they compile a whole backbone.
"""

import copy
import os

import pytest
import torch
from torch import nn

from det_dcn.layers import (DeformConv2dPack, DeformRoIPoolPack, ModulatedDeformConv2dPack,
                            ModulatedDeformRoIPoolPack, ROIAlign, deform_roi_pool)

TOL = dict(rtol=1e-4, atol=1e-5)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-zero offset / mask branches (fresh ones are zero), so the deformable paths really deform."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "conv_offset"):
                m.conv_offset.weight.normal_(0.0, 0.05)
                m.conv_offset.bias.normal_(0.0, 0.5)
            if hasattr(m, "offset_fc"):
                m.offset_fc[-1].weight.normal_(0.0, 0.02)
                m.offset_fc[-1].bias.normal_(0.0, 0.5)
            if hasattr(m, "mask_fc"):
                m.mask_fc[2].bias.normal_(0.0, 1.0)
    return model


class AllLayers(nn.Module):
    """DCNv1 -> DCNv2 -> every RoI pooler on the result (dpool, mdpool, RoIAlign V2 / V1, functional op)."""

    def __init__(self):
        super().__init__()
        self.dcn = DeformConv2dPack(4, 6, 3, padding=1, deform_groups=2)
        self.mdcn = ModulatedDeformConv2dPack(6, 4, 3, padding=2, dilation=2, bias=True)
        self.dpool = DeformRoIPoolPack(3, 4, 8, spatial_scale=0.5, sampling_ratio=2)
        self.mdpool = ModulatedDeformRoIPoolPack(3, 4, 8, spatial_scale=0.5)
        self.align = ROIAlign(3, 0.5, 0, aligned=True)
        self.align_v1 = ROIAlign(3, 0.5, 2, aligned=False)

    def forward(self, x, rois, offset):
        y = self.mdcn(torch.relu(self.dcn(x)))
        return (y, self.dpool(y, rois), self.mdpool(y, rois), self.align(y, rois), self.align_v1(y, rois),
                deform_roi_pool(y, rois, offset, 3, 0.5, 0, 0.2))


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 12, 14, generator=g, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 20.0, 22.0], [1, 3.5, 0.0, 14.0, 27.0], [1, 2.0, 5.0, 9.0, 8.0]])
    offset = (torch.randn(3, 2, 3, 3, generator=g) * 0.5).requires_grad_()
    return x, rois, offset


def _outputs_and_grads(model, x, rois, offset):
    outs = model(x, rois, offset)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
    return outs, torch.autograd.grad(loss, [x, offset] + list(model.parameters()))


def test_deformable_layers_have_no_graph_break():
    x, rois, offset = _inputs()
    explanation = torch._dynamo.explain(_perturb(AllLayers()))(x, rois, offset)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_deformable_layers_compiled_equal_eager():
    model = _perturb(AllLayers())
    x, rois, offset = _inputs()
    eager_out, eager_grads = _outputs_and_grads(model, x, rois, offset)
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    out, grads = _outputs_and_grads(compiled, x, rois, offset)
    for a, b in zip(out, eager_out):
        torch.testing.assert_close(a, b, **TOL)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, **TOL)
    # the RoI value checks run inside the compiled graph (an asynchronous assert, no host sync, no graph break)
    with pytest.raises(RuntimeError, match=r"rois holds a batch index outside \[0, 2\)"):
        compiled(x, torch.tensor([[2, 1.0, 1.0, 20.0, 22.0]] * 3), offset)


# ------------------------------------------------------------------------------------------- detector (slow)
def _tiny_detector(deform_backbone: bool, pooler: str):
    from det_dcn.config import get_cfg
    from det_dcn.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "tests", "engine", "tiny_faster_rcnn.yaml"))
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, deform_backbone, deform_backbone, deform_backbone]
    cfg.MODEL.RESNETS.DEFORM_MODULATED = True
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = pooler
    cfg.MODEL.ROI_BOX_HEAD.DEFORM_POOL_FC_DIM = 32
    torch.manual_seed(0)
    return _perturb(build_model(cfg))


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randint(0, 256, (3, 64, 80), generator=g, dtype=torch.uint8),
             "boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 10.0, 70.0, 30.0]]),
             "classes": torch.tensor([1, 3])},
            {"image": torch.randint(0, 256, (3, 56, 64), generator=g, dtype=torch.uint8),
             "boxes": torch.tensor([[10.0, 12.0, 50.0, 44.0]]), "classes": torch.tensor([2])}]


@pytest.mark.slow
def test_detector_eval_compiled_equals_eager():
    model = _tiny_detector(True, "ModulatedDeformRoIPool").eval()
    images = _images()
    with torch.no_grad():
        eager = model(images)
        compiled = torch.compile(model, backend="inductor")(images)
    for a, b in zip(compiled, eager):
        assert a["boxes"].shape[0] > 0
        for key in ("boxes", "scores", "classes"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_training_compiled_backbone_and_box_head_give_eager_gradients():
    """Backbone with DCNv2 in res3-res5 and the box pooler + head with mdpool compiled; the rest (RPN, sampling:
    data-dependent) eager. Same losses and the same gradient for every parameter."""
    eager = _tiny_detector(True, "ModulatedDeformRoIPool").train()
    compiled = copy.deepcopy(eager)
    explanation = torch._dynamo.explain(compiled.backbone)(torch.randn(2, 3, 64, 80))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled.backbone = torch.compile(compiled.backbone, backend="inductor")
    compiled.roi_heads.box_head = torch.compile(compiled.roi_heads.box_head, backend="inductor")
    for level in range(len(compiled.roi_heads.box_pooler.level_poolers)):
        pooler = compiled.roi_heads.box_pooler.level_poolers[level]
        compiled.roi_heads.box_pooler.level_poolers[level] = torch.compile(pooler, backend="inductor",
                                                                            fullgraph=True)
    results = []
    for model in (eager, compiled):
        torch.manual_seed(5)  # same proposal sampling in both runs
        losses = model(_images())
        total = sum(losses.values())
        params = [p for p in eager.parameters()] if model is eager else [p for p in compiled.parameters()]
        results.append((losses, torch.autograd.grad(total, params, allow_unused=True)))
    (eager_losses, eager_grads), (losses, grads) = results
    for key in eager_losses:
        torch.testing.assert_close(losses[key], eager_losses[key], **TOL)
    assert len(grads) == len(eager_grads)
    for a, b in zip(grads, eager_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
