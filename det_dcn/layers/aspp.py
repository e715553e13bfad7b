"""Atrous Spatial Pyramid Pooling (DeepLab v3, Chen et al. 2017), as a plugin for any feature map.

Branches in parallel over x: a 1x1 conv, one 3x3 conv per dilation rate, and (optionally) image-level pooling
(global average -> 1x1 conv -> broadcast back). Their outputs are concatenated and projected by a 1x1 conv. The rates
see context at several scales at once and, as a parallel (not stacked) arrangement, avoid the "gridding" holes that
stacking convs with one common rate leaves.

``residual=True`` (input and output channels equal) adds the projection to x, with the projection's last layer
zero-initialised: a fresh ASPP is then the identity, so it can be put on a trained model (e.g. after res5) without
changing its outputs at step 0.
"""

from typing import List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .norm import get_norm


class _ConvNormReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, norm: str):
        norm_layer = get_norm(norm, out_channels)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                         dilation=dilation, bias=norm_layer is None)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        layers = [conv] + ([norm_layer] if norm_layer is not None else []) + [nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ASPP(nn.Module):
    """x: [N, in_channels, H, W] -> [N, out_channels, H, W].

    Args:
        in_channels / out_channels: channels of x and of the result (equal when ``residual``).
        rates: dilation rates of the 3x3 branches, e.g. (6, 12, 18) at stride 16 in DeepLab v3; each >= 1.
        branch_channels: channels of each branch (default: out_channels).
        norm: norm after each branch conv and the projection ("BN", "GN", "FrozenBN", "" ...; see get_norm).
            The image-pooling branch has no norm (its map is 1x1, where a BatchNorm over a batch of one fails).
        image_pooling: add the image-level branch.
        dropout: dropout after the projection (training only).
        residual: return relu(x + projection), the projection starting at zero (see the module docstring).

    Examples::

        >>> aspp = ASPP(256, 256, rates=(2, 4, 6), residual=True)
        >>> x = torch.rand(2, 256, 10, 16)
        >>> torch.equal(aspp.eval()(x), x)  # identity at init (x >= 0, as after a ReLU)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (6, 12, 18), *,
                 branch_channels: int = 0, norm: str = "BN", image_pooling: bool = True, dropout: float = 0.0,
                 residual: bool = False):
        super().__init__()
        rates = [int(r) for r in rates]
        if not rates or any(r < 1 for r in rates):
            raise ValueError(f"ASPP rates must be a non-empty list of integers >= 1, got {list(rates)}")
        if residual and in_channels != out_channels:
            raise ValueError(f"ASPP(residual=True) needs in_channels == out_channels, got {in_channels} and "
                             f"{out_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ASPP dropout must be in [0, 1), got {dropout}")
        branch_channels = branch_channels or out_channels
        self.rates = rates
        self.residual = residual
        self.branches = nn.ModuleList([_ConvNormReLU(in_channels, branch_channels, 1, 1, norm)] +
                                      [_ConvNormReLU(in_channels, branch_channels, 3, r, norm) for r in rates])
        self.image_pooling = _ConvNormReLU(in_channels, branch_channels, 1, 1, "") if image_pooling else None
        num_branches = len(self.branches) + (1 if image_pooling else 0)
        proj_norm = get_norm(norm, out_channels)
        proj_conv = nn.Conv2d(num_branches * branch_channels, out_channels, 1, bias=proj_norm is None)
        nn.init.kaiming_normal_(proj_conv.weight, mode="fan_out", nonlinearity="relu")
        if proj_conv.bias is not None:
            nn.init.zeros_(proj_conv.bias)
        if residual:  # start as the identity: zero the last *trainable* affine map of the projection
            trainable_norm = isinstance(getattr(proj_norm, "weight", None), nn.Parameter)
            last = proj_norm if trainable_norm else proj_conv  # a FrozenBN's weight could never leave zero
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)
        self.project = nn.Sequential(proj_conv, *([proj_norm] if proj_norm is not None else []))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def branch_convs(self) -> List[nn.Conv2d]:
        """The first conv of each spatial branch (1x1, then one per rate), for geometry tools."""
        return [branch[0] for branch in self.branches]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"ASPP takes [N, C, H, W] features; got a tensor of shape {tuple(x.shape)}")
        outs = [branch(x) for branch in self.branches]
        if self.image_pooling is not None:
            pooled = self.image_pooling(F.adaptive_avg_pool2d(x, 1))
            outs.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))
        y = self.dropout(self.project(torch.cat(outs, dim=1)))
        return F.relu(x + y) if self.residual else F.relu(y)
