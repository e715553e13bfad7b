"""det_dcn as a plugin host: a pooler and a backbone registered from outside the package, selected by config alone."""

import pytest
import torch
from torch import nn
from torchvision.ops import roi_align

from det_dcn.modeling import BACKBONE_REGISTRY, POOLER_REGISTRY, build_model

from heads_test_utils import TinyBackbone, synthetic_batch, single_thread, tiny_cfg  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


class CornerPool(nn.Module):
    """A made-up pooler: aligned RoIAlign scaled by a learnable gain."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x, rois):
        return roi_align(x, rois, self.output_size, self.spatial_scale, 2, aligned=True) * self.gain


@POOLER_REGISTRY.register(name="TestPluginCornerPool")
def build_corner_pool(cfg, output_size, spatial_scale, sampling_ratio, in_channels):
    return CornerPool(output_size, spatial_scale)


@BACKBONE_REGISTRY.register()
def build_test_plugin_backbone(cfg, input_shape):
    return TinyBackbone(channels=8, in_channels=input_shape.channels)


def test_plugin_pooler_and_backbone_selected_by_config():
    cfg = tiny_cfg(overrides=[
        "MODEL.BACKBONE.NAME", "build_test_plugin_backbone",
        "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "TestPluginCornerPool",
        "MODEL.RPN.IN_FEATURES", ["s8", "s16"], "MODEL.ANCHOR_GENERATOR.SIZES", [[16], [32]],
        "MODEL.ROI_HEADS.IN_FEATURES", ["s8", "s16"], "MODEL.ROI_BOX_HEAD.NUM_FC", 2,
    ])
    model = build_model(cfg)
    assert isinstance(model.backbone, TinyBackbone)
    assert all(isinstance(p, CornerPool) for p in model.roi_heads.box_pooler.level_poolers)
    assert [p.spatial_scale for p in model.roi_heads.box_pooler.level_poolers] == [1 / 8, 1 / 16]
    losses = model(synthetic_batch(2))
    sum(losses.values()).backward()
    assert all(p.gain.grad is not None for p in model.roi_heads.box_pooler.level_poolers)
    model.eval()
    with torch.no_grad():
        assert len(model([{"image": synthetic_batch(1)[0]["image"]}])) == 1
