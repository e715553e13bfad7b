"""ResNet residual blocks (basic and bottleneck) and the stem, with optional deformable 3x3 and dilation."""

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from det_dcn.layers import ASPP, FrozenBatchNorm2d, get_norm

from .conv import Conv2d, make_conv3x3
from .weight_init import c2_msra_fill


class CNNBlockBase(nn.Module):
    """A block with known in/out channels and stride that can be frozen.

    ``drop_block`` (None, or e.g. a DropBlock2d the ResNet builder sets) is applied to a residual block's output.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.drop_block: Optional[nn.Module] = None

    def _finish(self, out: torch.Tensor) -> torch.Tensor:
        """ReLU of (residual + shortcut), then the optional DropBlock."""
        out = F.relu_(out)
        return out if self.drop_block is None else self.drop_block(out)

    def freeze(self) -> "CNNBlockBase":
        """Stop training this block: parameters get requires_grad=False and BatchNorms become FrozenBatchNorm2d
        (so their statistics stop updating too). Returns self."""
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: str) -> Optional[nn.Module]:
    """1x1 projection (with norm) when the residual branch changes channels or resolution, else identity."""
    if in_channels == out_channels and stride == 1:
        return None
    conv = Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                  norm=get_norm(norm, out_channels))
    c2_msra_fill(conv)
    return conv


class BasicBlock(CNNBlockBase):
    """Two 3x3 convs (ResNet-18/34): x -> conv1(stride) -> relu -> conv2 -> + shortcut(x) -> relu.

    Both 3x3 convs use ``dilation``. With ``deform`` the SECOND 3x3 (conv2) is deformable: it always runs at
    stride 1, so its offsets are predicted and applied on the same (output) grid whether or not the block
    downsamples, and it sees the block's intermediate features rather than the previous block's output, like the
    3x3 of a bottleneck. One deformable conv per block also keeps the cost in line with the bottleneck's.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "BN",
                 dilation: int = 1, deform: bool = False, deform_modulated: bool = False, deform_num_groups: int = 1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = make_conv3x3(in_channels, out_channels, stride=stride, dilation=dilation,
                                  norm=get_norm(norm, out_channels))
        self.conv2 = make_conv3x3(out_channels, out_channels, dilation=dilation, deformable=deform,
                                  modulated=deform_modulated, deform_groups=deform_num_groups,
                                  norm=get_norm(norm, out_channels))
        for conv in (self.conv1, self.conv2):
            c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C_in, H, W] -> [N, C_out, H / stride, W / stride]."""
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        # In place: nothing saved for backward is the conv/norm output itself (autograd would raise if it were).
        out += x if self.shortcut is None else self.shortcut(x)
        return self._finish(out)


class BottleneckBlock(CNNBlockBase):
    """1x1 reduce -> 3x3 (grouped, dilated, optionally deformable) -> 1x1 expand, plus shortcut, ReLU.

    ``stride_in_1x1`` puts the stride in conv1 (MSRA / caffe2 weights) instead of conv2 (torchvision weights).
    """

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int = 1,
                 num_groups: int = 1, norm: str = "BN", stride_in_1x1: bool = False, dilation: int = 1,
                 deform: bool = False, deform_modulated: bool = False, deform_num_groups: int = 1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
                            norm=get_norm(norm, bottleneck_channels))
        self.conv2 = make_conv3x3(bottleneck_channels, bottleneck_channels, stride=stride_3x3, dilation=dilation,
                                  groups=num_groups, deformable=deform, modulated=deform_modulated,
                                  deform_groups=deform_num_groups, norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for conv in (self.conv1, self.conv2, self.conv3):
            c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C_in, H, W] -> [N, C_out, H / stride, W / stride]."""
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return self._finish(out)


class BasicStem(CNNBlockBase):
    """7x7 stride-2 conv + norm + ReLU, then 3x3 stride-2 max-pool: [N, C, H, W] -> [N, out, H/4, W/4]."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN"):
        super().__init__(in_channels, out_channels, stride=4)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False,
                            norm=get_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class ASPPBlock(CNNBlockBase):
    """det_dcn.layers.ASPP as the last block of a stage: residual, identity at init, stride 1, channels kept.

    x: [N, C, H, W] -> [N, C, H, W]. State-dict keys ``aspp.*``; a checkpoint without them loads with only this
    block missing and gives the same outputs as before (the block starts as the identity).
    """

    def __init__(self, channels: int, rates, *, norm: str = "BN"):
        super().__init__(channels, channels, stride=1)
        self.aspp = ASPP(channels, channels, rates, norm=norm, residual=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aspp(x)
