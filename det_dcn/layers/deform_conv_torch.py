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


def _deformed_columns(x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor], kernel_size: Tuple[int, int],
                      stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int]) -> torch.Tensor:
    """The deformed im2col: Tensor[N * H_out * W_out, kh * kw, C_in] (channels in the input's order), differentiable
    with respect to ``x``, ``offset`` and ``mask``."""
    n, cin, height, width = x.shape
    kh, kw = kernel_size
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
    return cols.view(n * ho * wo, k, cin)  # channel index = g * (C_in / dg) + c, the input's order


def _grouped(cols: torch.Tensor, weight: torch.Tensor):
    """cols [M, K, C_in] and weight [C_out, C_in / G, kh, kw] as G matmul operands: [G, M, K * C_in / G] and
    [G, K * C_in / G, C_out / G]."""
    m, k, cin = cols.shape
    cout, cin_g = weight.shape[:2]
    groups = cin // cin_g
    cols = cols.view(m, k, groups, cin_g).permute(2, 0, 1, 3).reshape(groups, m, k * cin_g)
    w = weight.view(groups, cout // groups, cin_g, k).permute(0, 3, 2, 1).reshape(groups, k * cin_g, -1)
    return cols, w


def deform_conv2d_torch(x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor], weight: torch.Tensor,
                        bias: Optional[torch.Tensor], stride: Tuple[int, int], padding: Tuple[int, int],
                        dilation: Tuple[int, int]) -> torch.Tensor:
    """Same contract as ``torchvision.ops.deform_conv2d`` (arguments already validated, float32/float64).
    Differentiable with autograd (the reference); the registered op's backward is
    :func:`deform_conv2d_torch_backward`.

    Args:
        x (Tensor[N, C_in, H, W]): input.
        offset (Tensor[N, 2 * dg * kh * kw, H_out, W_out]): (dy, dx) per deformable group and kernel point.
        mask (Tensor[N, dg * kh * kw, H_out, W_out] or None): modulation.
        weight (Tensor[C_out, C_in / groups, kh, kw]), bias (Tensor[C_out] or None).

    Returns:
        Tensor[N, C_out, H_out, W_out]
    """
    n = x.shape[0]
    cout, cin_g, kh, kw = weight.shape
    ho, wo = offset.shape[2], offset.shape[3]
    cols = _deformed_columns(x, offset, mask, (kh, kw), stride, padding, dilation)
    m, k, cin = cols.shape
    if cin == cin_g:
        out = cols.view(m, k * cin) @ weight.view(cout, cin, k).transpose(1, 2).reshape(cout, k * cin).t()
    else:
        cols_g, w_g = _grouped(cols, weight)
        out = torch.bmm(cols_g, w_g).permute(1, 0, 2).reshape(m, cout)
    if bias is not None:
        out = out + bias
    return out.view(n, ho, wo, cout).permute(0, 3, 1, 2).contiguous()


def deform_conv2d_torch_backward(grad: torch.Tensor, x: torch.Tensor, offset: torch.Tensor,
                                 mask: Optional[torch.Tensor], weight: torch.Tensor, bias: Optional[torch.Tensor],
                                 stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int],
                                 needs: Tuple[bool, bool, bool, bool, bool]):
    """Gradients of :func:`deform_conv2d_torch`. The deformed columns are rebuilt with autograd (the forward does
    not keep them), the matmul's gradients are written out, and autograd carries the columns' gradient back.

    Args:
        grad (Tensor[N, C_out, H_out, W_out]); the others as :func:`deform_conv2d_torch`.
        needs: which of (x, offset, mask, weight, bias) need a gradient.

    Returns:
        (grad_x, grad_offset, grad_mask, grad_weight, grad_bias), None where not needed.
    """
    need_x, need_offset, need_mask, need_weight, need_bias = needs
    need_mask = need_mask and mask is not None
    need_bias = need_bias and bias is not None
    cout, cin_g, kh, kw = weight.shape
    g = grad.permute(0, 2, 3, 1).reshape(-1, cout)  # [M, C_out]
    leaves = [t.detach().requires_grad_(w) if t is not None else None
              for t, w in ((x, need_x), (offset, need_offset), (mask, need_mask))]
    with torch.set_grad_enabled(need_x or need_offset or need_mask):
        cols = _deformed_columns(*leaves, (kh, kw), stride, padding, dilation)
    m, k, cin = cols.shape
    grad_weight = grad_cols = None
    if cin == cin_g:
        w2 = weight.view(cout, cin, k).transpose(1, 2).reshape(cout, k * cin)
        if need_weight:
            grad_weight = (g.t() @ cols.detach().view(m, k * cin)).view(cout, k, cin).transpose(1, 2)
        if cols.requires_grad:
            grad_cols = (g @ w2).view(m, k, cin)
    else:
        groups = cin // cin_g
        cols_g, w_g = _grouped(cols.detach(), weight)
        g_g = g.view(m, groups, cout // groups).permute(1, 0, 2)  # [G, M, C_out / G]
        if need_weight:
            grad_weight = torch.bmm(cols_g.transpose(1, 2), g_g).view(groups, k, cin_g, -1).permute(0, 3, 2, 1)
        if cols.requires_grad:
            grad_cols = torch.bmm(g_g, w_g.transpose(1, 2)).view(groups, m, k, cin_g).permute(1, 2, 0, 3)
            grad_cols = grad_cols.reshape(m, k, cin)
    grads = [None, None, None]
    if grad_cols is not None:
        wanted = [i for i, t in enumerate(leaves) if t is not None and t.requires_grad]
        for i, gr in zip(wanted, torch.autograd.grad(cols, [leaves[i] for i in wanted], grad_cols)):
            grads[i] = gr
    if grad_weight is not None:
        grad_weight = grad_weight.reshape(weight.shape).contiguous()
    grad_bias = g.sum(0) if need_bias else None
    return (*grads, grad_weight, grad_bias)
