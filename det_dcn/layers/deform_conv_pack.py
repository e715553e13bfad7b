"""Deformable convolutions that predict their own offsets (and masks) with a zero-initialised ``conv_offset``.

A fresh Pack module therefore behaves like a plain convolution (the modulated one at 0.5x, sigmoid(0) = 0.5).
``conv_offset`` has the layer's kernel, stride, padding and dilation, as in mmcv, so mmdetection checkpoints load.
"""

from typing import Optional, Tuple

import torch
from torch import nn

from .deform_conv import DeformConv2d, ModulatedDeformConv2d


class DeformConv2dPack(DeformConv2d):
    """:class:`DeformConv2d` with ``conv_offset`` = Conv2d(C_in, 2 * deform_groups * kh * kw).

    Shape:
        x (Tensor[N, C_in, H, W]) -> Tensor[N, C_out, H_out, W_out]
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(self.in_channels, 2 * self.deform_groups * kh * kw, self.kernel_size,
                                     stride=self.stride, padding=self.padding, dilation=self.dilation, bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def predict_offset(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """x [N, C_in, H, W] -> (offset [N, 2*G*kh*kw, H_out, W_out], None): what ``forward`` deforms with."""
        self._check_input(x)
        return self.conv_offset(x), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x, self.predict_offset(x)[0])


class ModulatedDeformConv2dPack(ModulatedDeformConv2d):
    """:class:`ModulatedDeformConv2d` with ``conv_offset`` = Conv2d(C_in, 3 * deform_groups * kh * kw).

    Its output is split with ``chunk(3)`` into o1, o2 and mask logits; ``offset = cat(o1, o2)``,
    ``mask = sigmoid(logits)`` (mmcv's and detectron2's layout).

    Shape:
        x (Tensor[N, C_in, H, W]) -> Tensor[N, C_out, H_out, W_out]
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(self.in_channels, 3 * self.deform_groups * kh * kw, self.kernel_size,
                                     stride=self.stride, padding=self.padding, dilation=self.dilation, bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def predict_offset(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x [N, C_in, H, W] -> (offset [N, 2*G*kh*kw, H_out, W_out], mask [N, G*kh*kw, H_out, W_out] in (0, 1))."""
        self._check_input(x)
        o1, o2, logits = torch.chunk(self.conv_offset(x), 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x, *self.predict_offset(x))
