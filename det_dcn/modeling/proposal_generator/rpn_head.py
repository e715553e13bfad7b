"""The RPN head: a shared 3x3 conv, then per-anchor objectness logits and box deltas on every level."""

from typing import List, Sequence, Tuple

from torch import Tensor, nn
from torch.nn import functional as F

from ...utils.registry import Registry

RPN_HEAD_REGISTRY = Registry("RPN_HEAD")
RPN_HEAD_REGISTRY.__doc__ = "RPN heads: fn(cfg, input_shape: List[ShapeSpec], num_anchors: int) -> nn.Module."


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """3x3 conv(s) + ReLU, then a 1x1 conv to A objectness logits and a 1x1 conv to A*4 deltas.

    The same weights run on every level, which is why all levels need the same channel count and the same number of
    anchors per location.

    Attributes (checkpoint names): ``conv`` (one Conv2d, or a Sequential of Conv2d/ReLU when CONV_DIMS has several
    entries), ``objectness_logits``, ``anchor_deltas``.
    """

    def __init__(self, in_channels: int, num_anchors: int, box_dim: int = 4, conv_dims: Sequence[int] = (-1,)):
        super().__init__()
        conv_dims = [in_channels if d == -1 else int(d) for d in conv_dims]
        if not conv_dims or any(d <= 0 for d in conv_dims):
            raise ValueError(f"MODEL.RPN.CONV_DIMS must hold positive sizes or -1, got {list(conv_dims)}")
        if len(conv_dims) == 1:
            self.conv = nn.Conv2d(in_channels, conv_dims[0], 3, padding=1)
            self._relu_after_conv = True
        else:
            layers: List[nn.Module] = []
            prev = in_channels
            for d in conv_dims:
                layers += [nn.Conv2d(prev, d, 3, padding=1), nn.ReLU(inplace=True)]
                prev = d
            self.conv = nn.Sequential(*layers)
            self._relu_after_conv = False
        self.objectness_logits = nn.Conv2d(conv_dims[-1], num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(conv_dims[-1], num_anchors * box_dim, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape, num_anchors: int) -> "StandardRPNHead":
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(
                f"StandardRPNHead shares its weights over MODEL.RPN.IN_FEATURES, which therefore need the same "
                f"channel count; got channels {[s.channels for s in input_shape]}"
            )
        return cls(channels.pop(), num_anchors, conv_dims=cfg.MODEL.RPN.CONV_DIMS)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per level ``[N, C, H, W]`` -> (per level logits ``[N, A, H, W]``, per level deltas ``[N, A*4, H, W]``)."""
        logits, deltas = [], []
        for x in features:
            t = self.conv(x)
            if self._relu_after_conv:
                t = F.relu_(t)  # in place: the conv output is a temporary
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


def build_rpn_head(cfg, input_shape, num_anchors: int) -> nn.Module:
    name = cfg.MODEL.RPN.HEAD_NAME
    obj = RPN_HEAD_REGISTRY.get_configured("MODEL.RPN.HEAD_NAME", name)
    if hasattr(obj, "from_config"):
        return obj.from_config(cfg, input_shape, num_anchors)
    return obj(cfg, input_shape, num_anchors)
