"""Small configs for fast backbone tests (narrow channels, tiny inputs)."""

import torch

from det_dcn.config import get_cfg


def small_cfg(depth: int = 18, **resnets):
    """A narrow ResNet config: 16-channel stem, 16- (basic) or 32-channel (bottleneck) res2, all features out."""
    cfg = get_cfg()
    r = cfg.MODEL.RESNETS
    r.DEPTH = depth
    r.STEM_OUT_CHANNELS = 16
    r.RES2_OUT_CHANNELS = 16 if depth in (18, 34) else 32
    r.WIDTH_PER_GROUP = 8
    r.OUT_FEATURES = ["stem", "res2", "res3", "res4", "res5"]
    r.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    for key, value in resnets.items():
        r[key] = value
    return cfg


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and norm statistic non-trivial values, so equalities are not vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if "num_batches_tracked" in name or "conv_offset" in name:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith("norm.weight"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif t.dim() <= 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    return model
