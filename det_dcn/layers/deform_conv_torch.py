"""Deformable convolution in plain PyTorch: the CPU path (torchvision's CPU kernel is serial and its backward slow).

The deformed im2col is one ``F.embedding_bag`` over the channels-last input: every (output position, kernel
point, deformable group) is a bag of its 4 bilinear corners, weighted by the bilinear weights times the mask. The
columns then meet the weight in one matmul (a batched one for groups > 1). Autograd gives exact gradients for the
input, the offsets and the mask (through the differentiable bag weights), the weight and the bias. Sampling follows
``torchvision.ops.deform_conv2d``: each corner outside the input counts as 0 (zero padding, no clamping).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _corners(pos: torch.Tensor, size: int):
    """Bilinear corners along one axis.

    Args:
        pos (Tensor[...]): sample coordinates.
        size (int): extent of the input along this axis.

    Returns:
        idx (LongTensor[..., 2]): low / high pixel, clamped into [0, size - 1] (their weight is 0 when outside).
        weight (Tensor[..., 2]): 1 - frac / frac, zeroed for corners outside [0, size - 1].
    """
    low = pos.detach().floor()
    frac = pos - low
    low = low.long()
    idx = torch.stack((low, low + 1), -1)
    valid = ((idx >= 0) & (idx < size)).to(pos.dtype)
    weight = torch.stack((1.0 - frac, frac), -1) * valid
    return idx.clamp(0, size - 1), weight


def deform_conv2d_torch(x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor], weight: torch.Tensor,
                        bias: Optional[torch.Tensor], stride: Tuple[int, int], padding: Tuple[int, int],
                        dilation: Tuple[int, int]) -> torch.Tensor:
    """Same contract as ``torchvision.ops.deform_conv2d`` (arguments already validated, float32/float64).

    Args:
        x (Tensor[N, C_in, H, W]): input.
        offset (Tensor[N, 2 * dg * kh * kw, H_out, W_out]): (dy, dx) per deformable group and kernel point.
        mask (Tensor[N, dg * kh * kw, H_out, W_out] or None): modulation.
        weight (Tensor[C_out, C_in / groups, kh, kw]), bias (Tensor[C_out] or None).

    Returns:
        Tensor[N, C_out, H_out, W_out]
    """
    n, cin, height, width = x.shape
    cout, cin_g, kh, kw = weight.shape
    groups = cin // cin_g
    k = kh * kw
    dg = offset.shape[1] // (2 * k)
    ho, wo = offset.shape[2], offset.shape[3]
    dt = x.dtype
    # sampling grid [N, Ho, Wo, K, dg] for y and x
    off = offset.view(n, dg, k, 2, ho, wo).permute(0, 4, 5, 2, 1, 3)  # [N, Ho, Wo, K, dg, 2]
    base_y = (torch.arange(ho, dtype=dt, device=x.device) * stride[0] - padding[0]).view(1, ho, 1, 1, 1)
    base_x = (torch.arange(wo, dtype=dt, device=x.device) * stride[1] - padding[1]).view(1, 1, wo, 1, 1)
    ker_y = (torch.arange(kh, dtype=dt, device=x.device) * dilation[0]).repeat_interleave(kw).view(1, 1, 1, k, 1)
    ker_x = (torch.arange(kw, dtype=dt, device=x.device) * dilation[1]).repeat(kh).view(1, 1, 1, k, 1)
    ys = base_y + ker_y + off[..., 0]
    xs = base_x + ker_x + off[..., 1]
    yi, wy = _corners(ys, height)  # [N, Ho, Wo, K, dg, 2]
    xi, wx = _corners(xs, width)
    img = torch.arange(n, device=x.device).view(n, 1, 1, 1, 1, 1)
    pixel = (img * height + yi).unsqueeze(-1) * width + xi.unsqueeze(-2)  # [N, Ho, Wo, K, dg, 2, 2]
    group = torch.arange(dg, device=x.device).view(1, 1, 1, 1, dg, 1, 1)
    index = pixel * dg + group  # row of the [N*H*W*dg, C_in/dg] table
    w = wy.unsqueeze(-1) * wx.unsqueeze(-2)
    if mask is not None:
        w = w * mask.view(n, dg, k, ho, wo).permute(0, 3, 4, 2, 1)[..., None, None]
    table = x.permute(0, 2, 3, 1).reshape(n * height * width * dg, cin // dg)
    cols = F.embedding_bag(index.view(-1, 4), table, mode="sum", per_sample_weights=w.reshape(-1, 4))
    m = n * ho * wo
    cols = cols.view(m, k, cin)  # channel index = g * (C_in / dg) + c, the input's order
    if groups == 1:
        out = cols.view(m, k * cin) @ weight.view(cout, cin, k).transpose(1, 2).reshape(cout, k * cin).t()
    else:
        cols = cols.view(m, k, groups, cin_g).permute(2, 0, 1, 3).reshape(groups, m, k * cin_g)
        wg = weight.view(groups, cout // groups, cin_g, k).permute(0, 3, 2, 1).reshape(groups, k * cin_g, -1)
        out = torch.bmm(cols, wg).permute(1, 0, 2).reshape(m, cout)
    if bias is not None:
        out = out + bias
    return out.view(n, ho, wo, cout).permute(0, 3, 1, 2).contiguous()
