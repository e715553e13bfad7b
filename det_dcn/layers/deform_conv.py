"""Deformable convolution v1 (Dai et al., 2017) and modulated v2 (Zhu et al., 2019): :func:`deform_conv2d` and the
modules around it.

The operator is ``torch.ops.det_dcn.deform_conv2d``: on CPU a plain PyTorch formulation (``deform_conv_torch.py``),
several times faster than torchvision's CPU kernel; elsewhere torchvision's kernel (``DET_DCN_DEFORM_CONV_IMPL``,
see ``_dispatch.py``). Same numbers either way.

Offsets are laid out as in mmcv, detectron2 and ``torchvision.ops.deform_conv2d``: for each deformable group g and
kernel point k (row-major over kh x kw), channel ``2 * (g * kh * kw + k)`` is the y shift and the next one the x
shift. Parameter names (``weight``, ``bias``) and initialisation follow mmcv.
"""

import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ._checks import check_feature_map, check_same_device_dtype, pair
from ._ops import deform_conv2d_op
from ._precision import autocast_dtype, compute_dtype

_IntPair = Union[int, Tuple[int, int]]


def _check_aux(op: str, name: str, x: torch.Tensor, t: torch.Tensor, channels: int,
               out_hw: Tuple[int, int]) -> None:
    expected = (x.shape[0], channels, out_hw[0], out_hw[1])
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{op}: {name} must have shape {list(expected)}, got {got}")
    check_same_device_dtype(op, x, t, name)


def _deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor], weight: torch.Tensor,
                   bias: Optional[torch.Tensor], stride: Tuple[int, int], padding: Tuple[int, int],
                   dilation: Tuple[int, int]) -> torch.Tensor:
    """The op on validated arguments. It computes in float32 (float64 stays float64) and returns autocast's dtype
    under autocast, ``x``'s otherwise, as a convolution would."""
    dtype = compute_dtype(x.dtype)
    out_dtype = autocast_dtype(x.device.type, x.dtype)
    out = deform_conv2d_op(x.to(dtype), offset.to(dtype), None if mask is None else mask.to(dtype),
                           weight.to(dtype), None if bias is None else bias.to(dtype), stride, padding, dilation)
    return out.to(out_dtype)


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: Optional[torch.Tensor] = None, stride: _IntPair = 1, padding: _IntPair = 0,
                  dilation: _IntPair = 1, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Deformable convolution (DCNv1), or modulated (DCNv2) with ``mask``; ``torchvision.ops.deform_conv2d``'s
    signature and numbers. Groups and deformable groups follow from the shapes.

    Args:
        input (Tensor[N, C_in, H, W]): input.
        offset (Tensor[N, 2 * dg * kh * kw, H_out, W_out]): (dy, dx) per deformable group and kernel point;
            dg (deformable groups) must divide C_in.
        weight (Tensor[C_out, C_in / groups, kh, kw]), bias (Tensor[C_out], optional).
        stride, padding, dilation (int or (int, int)): as ``conv2d``.
        mask (Tensor[N, dg * kh * kw, H_out, W_out], optional): modulation of every sample.

    Returns:
        Tensor[N, C_out, H_out, W_out], H_out = (H + 2 * pad_h - dil_h * (kh - 1) - 1) // stride_h + 1.

    Examples::
        >>> x = torch.randn(1, 8, 10, 10)
        >>> weight = torch.randn(16, 8, 3, 3)
        >>> offset = torch.zeros(1, 18, 10, 10, requires_grad=True)
        >>> deform_conv2d(x, offset, weight, padding=1).shape
        torch.Size([1, 16, 10, 10])
    """
    op = "deform_conv2d"
    check_feature_map(op, input)
    check_feature_map(op, weight, "weight")
    stride, dilation = pair(stride, "stride", op), pair(dilation, "dilation", op)
    padding = pair(padding, "padding", op, minimum=0)
    cout, cin_g, kh, kw = weight.shape
    if input.shape[1] % cin_g or cout % (input.shape[1] // cin_g):
        raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} does not fit input of shape "
                         f"{tuple(input.shape)}: expected C_in = groups * weight.shape[1] with groups dividing C_out")
    out_hw = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                   for size, k, s, p, d in zip(input.shape[2:], (kh, kw), stride, padding, dilation))
    check_feature_map(op, offset, "offset")
    dg = offset.shape[1] // (2 * kh * kw)
    if dg < 1 or offset.shape[1] != 2 * dg * kh * kw or input.shape[1] % dg:
        raise ValueError(f"{op}: offset must have 2 * dg * kh * kw channels with dg dividing C_in = "
                         f"{input.shape[1]}, got shape {tuple(offset.shape)}")
    _check_aux(op, "offset", input, offset, offset.shape[1], out_hw)
    if mask is not None:
        _check_aux(op, "mask", input, mask, dg * kh * kw, out_hw)
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"{op}: bias must have shape [{cout}], got {tuple(bias.shape)}")
    return _deform_conv2d(input, offset, mask, weight, bias, stride, padding, dilation)


class DeformConv2d(nn.Module):
    """Deformable convolution: every kernel point samples the input at its grid position plus a learned offset.

    Args:
        in_channels, out_channels (int): channel counts.
        kernel_size, stride, padding, dilation (int or (int, int)): as ``nn.Conv2d``.
        groups (int): convolution groups.
        deform_groups (int): channel groups that share one offset field; must divide ``in_channels``.
        bias (bool): learn a bias.

    Shape:
        x (Tensor[N, C_in, H, W]), offset (Tensor[N, 2 * deform_groups * kh * kw, H_out, W_out])
        -> Tensor[N, C_out, H_out, W_out], H_out = (H + 2 * pad_h - dil_h * (kh - 1) - 1) // stride_h + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _IntPair, stride: _IntPair = 1,
                 padding: _IntPair = 0, dilation: _IntPair = 1, groups: int = 1, deform_groups: int = 1,
                 bias: bool = False):
        super().__init__()
        name = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups),
                           ("deform_groups", deform_groups)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if in_channels % deform_groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) must be divisible by deform_groups "
                             f"({deform_groups})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        self.dilation = pair(dilation, "dilation", name)
        self.groups, self.deform_groups = groups, deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # mmcv's initialisation: uniform(+-1/sqrt(in_channels * kh * kw)), zero bias.
        stdv = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def output_hw(self, height: int, width: int) -> Tuple[int, int]:
        """Spatial size of the output for an input of ``height`` x ``width``."""
        out = []
        for size, k, s, p, d in zip((height, width), self.kernel_size, self.stride, self.padding, self.dilation):
            out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return out[0], out[1]

    def _check_input(self, x: torch.Tensor) -> Tuple[int, int]:
        name = type(self).__name__
        check_feature_map(name, x, "x")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{name}: x must have {self.in_channels} channels (in_channels), "
                             f"got shape {tuple(x.shape)}")
        out_hw = self.output_hw(x.shape[2], x.shape[3])
        if min(out_hw) < 1:
            raise ValueError(f"{name}: x of spatial size {tuple(x.shape[2:])} is too small for kernel "
                             f"{self.kernel_size}, padding {self.padding}, dilation {self.dilation}")
        return out_hw

    def _deform_conv(self, x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return _deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        out_hw = self._check_input(x)
        kh, kw = self.kernel_size
        _check_aux(type(self).__name__, "offset", x, offset, 2 * self.deform_groups * kh * kw, out_hw)
        return self._deform_conv(x, offset, None)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"deform_groups={self.deform_groups}, bias={self.bias is not None}")


class ModulatedDeformConv2d(DeformConv2d):
    """Modulated deformable convolution (DCNv2): each kernel point's sample is also scaled by a mask value.

    Arguments as :class:`DeformConv2d`.

    Shape:
        x (Tensor[N, C_in, H, W]), offset (Tensor[N, 2 * deform_groups * kh * kw, H_out, W_out]),
        mask (Tensor[N, deform_groups * kh * kw, H_out, W_out]) -> Tensor[N, C_out, H_out, W_out]
    """

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out_hw = self._check_input(x)
        kh, kw = self.kernel_size
        name = type(self).__name__
        _check_aux(name, "offset", x, offset, 2 * self.deform_groups * kh * kw, out_hw)
        _check_aux(name, "mask", x, mask, self.deform_groups * kh * kw, out_hw)
        return self._deform_conv(x, offset, mask)
