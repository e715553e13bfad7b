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


def _sampling(offset: torch.Tensor, mask: Optional[torch.Tensor], input_hw: Tuple[int, int],
              kernel_size: Tuple[int, int], stride: Tuple[int, int], padding: Tuple[int, int],
              dilation: Tuple[int, int]):
    """Which rows of :func:`_table` each deformed sample sums, and with which weights (no channel dimension, so
    cheap next to the columns).

    Returns:
        index (LongTensor[B, 4]): the 4 bilinear corners of every bag, B = N * H_out * W_out * kh * kw * dg, bags
            ordered (n, y, x, kernel point, deformable group).
        weight (Tensor[B, 4]): bilinear weights times the mask, differentiable with respect to ``offset`` and
            ``mask``.
    """
    height, width = input_hw
    n = offset.shape[0]
    kh, kw = kernel_size
    k = kh * kw
    dg = offset.shape[1] // (2 * k)
    ho, wo = offset.shape[2], offset.shape[3]
    dt, device = offset.dtype, offset.device
    # sampling grid [N, Ho, Wo, K, dg] for y and x
    off = offset.view(n, dg, k, 2, ho, wo).permute(0, 4, 5, 2, 1, 3)  # [N, Ho, Wo, K, dg, 2]
    base_y = (torch.arange(ho, dtype=dt, device=device) * stride[0] - padding[0]).view(1, ho, 1, 1, 1)
    base_x = (torch.arange(wo, dtype=dt, device=device) * stride[1] - padding[1]).view(1, 1, wo, 1, 1)
    ker_y = (torch.arange(kh, dtype=dt, device=device) * dilation[0]).repeat_interleave(kw).view(1, 1, 1, k, 1)
    ker_x = (torch.arange(kw, dtype=dt, device=device) * dilation[1]).repeat(kh).view(1, 1, 1, k, 1)
    ys = base_y + ker_y + off[..., 0]
    xs = base_x + ker_x + off[..., 1]
    yi, wy = _corners(ys, height)  # [N, Ho, Wo, K, dg, 2]
    xi, wx = _corners(xs, width)
    img = torch.arange(n, device=device).view(n, 1, 1, 1, 1, 1)
    pixel = (img * height + yi).unsqueeze(-1) * width + xi.unsqueeze(-2)  # [N, Ho, Wo, K, dg, 2, 2]
    group = torch.arange(dg, device=device).view(1, 1, 1, 1, dg, 1, 1)
    index = pixel * dg + group  # row of the [N*H*W*dg, C_in/dg] table
    w = wy.unsqueeze(-1) * wx.unsqueeze(-2)
    if mask is not None:
        w = w * mask.view(n, dg, k, ho, wo).permute(0, 3, 4, 2, 1)[..., None, None]
    return index.view(-1, 4), w.reshape(-1, 4)


def _table(x: torch.Tensor, dg: int) -> torch.Tensor:
    """[N, C_in, H, W] -> the [N * H * W * dg, C_in / dg] channels-last table the bags gather from."""
    n, cin, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(n * height * width * dg, cin // dg)


def _deformed_bags(x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor], kernel_size: Tuple[int, int],
                   stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int]) -> torch.Tensor:
    """The deformed im2col as bags: Tensor[B, C_in / dg] (see :func:`_sampling`), which ``view(N * H_out * W_out,
    kh * kw, C_in)`` makes the columns (channel index = g * (C_in / dg) + c, the input's order). Differentiable
    with respect to ``x``, ``offset`` and ``mask``."""
    index, w = _sampling(offset, mask, x.shape[2:], kernel_size, stride, padding, dilation)
    dg = offset.shape[1] // (2 * kernel_size[0] * kernel_size[1])
    return F.embedding_bag(index, _table(x, dg), mode="sum", per_sample_weights=w)


def _grouped(cols: torch.Tensor, groups: int) -> torch.Tensor:
    """cols [M, K, C_in] as G matmul operands [G, M, K * C_in / G]."""
    m, k, cin = cols.shape
    return cols.view(m, k, groups, cin // groups).permute(2, 0, 1, 3).reshape(groups, m, k * cin // groups)


def _grouped_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """weight [C_out, C_in / G, kh, kw] as G matmul operands [G, K * C_in / G, C_out / G] (rows match
    :func:`_grouped`'s columns)."""
    cout, cin_g = weight.shape[:2]
    return weight.view(groups, cout // groups, cin_g, -1).permute(0, 3, 2, 1).reshape(groups, -1, cout // groups)


def deform_conv2d_torch_forward(x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor],
                                weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Tuple[int, int],
                                padding: Tuple[int, int], dilation: Tuple[int, int]):
    """:func:`deform_conv2d_torch`'s output and the deformed columns it multiplied (as bags, Tensor[N * H_out *
    W_out * kh * kw * dg, C_in / dg]), which the registered op keeps for the weight gradient."""
    n = x.shape[0]
    cout, cin_g, kh, kw = weight.shape
    ho, wo = offset.shape[2], offset.shape[3]
    bags = _deformed_bags(x, offset, mask, (kh, kw), stride, padding, dilation)
    m, k, cin = n * ho * wo, kh * kw, x.shape[1]
    cols = bags.view(m, k, cin)
    if cin == cin_g:
        out = cols.view(m, k * cin) @ weight.view(cout, cin, k).transpose(1, 2).reshape(cout, k * cin).t()
    else:
        groups = cin // cin_g
        out = torch.bmm(_grouped(cols, groups), _grouped_weight(weight, groups)).permute(1, 0, 2).reshape(m, cout)
    if bias is not None:
        out = out + bias
    return out.view(n, ho, wo, cout).permute(0, 3, 1, 2).contiguous(), bags


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
    return deform_conv2d_torch_forward(x, offset, mask, weight, bias, stride, padding, dilation)[0]


def deform_conv2d_torch_backward(grad: torch.Tensor, x: torch.Tensor, offset: torch.Tensor,
                                 mask: Optional[torch.Tensor], weight: torch.Tensor, bias: Optional[torch.Tensor],
                                 stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int],
                                 needs: Tuple[bool, bool, bool, bool, bool], bags: Optional[torch.Tensor] = None):
    """Gradients of :func:`deform_conv2d_torch`: the matmul's gradients written out, then ``embedding_bag``'s own
    backward kernels (the ones autograd runs, so the numbers are autograd's) for the input and the bag weights,
    and autograd through the cheap sampling (rebuilt: no channel dimension) for the offsets and the mask.

    Args:
        grad (Tensor[N, C_out, H_out, W_out]); the others as :func:`deform_conv2d_torch`.
        needs: which of (x, offset, mask, weight, bias) need a gradient.
        bags (Tensor[B, C_in / dg] or None): the forward's columns (:func:`deform_conv2d_torch_forward`); rebuilt
            when None and the weight needs a gradient.

    Returns:
        (grad_x, grad_offset, grad_mask, grad_weight, grad_bias), None where not needed.
    """
    need_x, need_offset, need_mask, need_weight, need_bias = needs
    need_mask = need_mask and mask is not None
    need_bias = need_bias and bias is not None
    n, cin, height, width = x.shape
    cout, cin_g, kh, kw = weight.shape
    k = kh * kw
    dg = offset.shape[1] // (2 * k)
    m = n * offset.shape[2] * offset.shape[3]
    g = grad.permute(0, 2, 3, 1).reshape(-1, cout)  # [M, C_out]
    leaves = [t.detach().requires_grad_(w) if t is not None else None for t, w in ((offset, need_offset),
                                                                                  (mask, need_mask))]
    with torch.set_grad_enabled(need_offset or need_mask):
        index, w = _sampling(*leaves, (height, width), (kh, kw), stride, padding, dilation)
    table = _table(x, dg)
    if need_weight and bags is None:
        bags = F.embedding_bag(index, table, mode="sum", per_sample_weights=w.detach())
    grad_weight = grad_cols = None
    need_cols = need_x or need_offset or need_mask
    if cin == cin_g:
        w2 = weight.view(cout, cin, k).transpose(1, 2).reshape(cout, k * cin)
        if need_weight:
            grad_weight = (g.t() @ bags.view(m, k * cin)).view(cout, k, cin).transpose(1, 2)
        if need_cols:
            grad_cols = g @ w2
    else:
        groups = cin // cin_g
        g_g = g.view(m, groups, cout // groups).permute(1, 0, 2)  # [G, M, C_out / G]
        if need_weight:
            cols_g = _grouped(bags.view(m, k, cin), groups)
            grad_weight = torch.bmm(cols_g.transpose(1, 2), g_g).view(groups, k, cin_g, -1).permute(0, 3, 2, 1)
        if need_cols:
            w_g = _grouped_weight(weight, groups)
            grad_cols = torch.bmm(g_g, w_g.transpose(1, 2)).view(groups, m, k, cin_g).permute(1, 2, 0, 3)
    grad_x = grad_offset = grad_mask = None
    if need_cols:
        grad_bags = grad_cols.reshape(-1, cin // dg)  # [B, C_in / dg]
        flat = index.view(-1)
        num_bags = grad_bags.shape[0]
        sizes = torch.full((num_bags,), 4, dtype=torch.long, device=flat.device)
        offset2bag = torch.arange(num_bags, device=flat.device).repeat_interleave(4)
        if need_x:
            rows = torch.ops.aten._embedding_bag_dense_backward(grad_bags, flat, offset2bag, sizes, sizes.new_zeros(0),
                                                                table.shape[0], False, 0, w.detach().view(-1), -1)
            grad_x = rows.view(n, height, width, cin).permute(0, 3, 1, 2).contiguous()
        if need_offset or need_mask:
            grad_w = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                grad_bags, table, flat, torch.arange(0, 4 * num_bags, 4, device=flat.device), offset2bag, 0, -1)
            wanted = [t for t in leaves if t is not None and t.requires_grad]
            got = iter(torch.autograd.grad(w, wanted, grad_w.view(w.shape)))
            grad_offset = next(got) if need_offset else None
            grad_mask = next(got) if need_mask else None
    if grad_weight is not None:
        grad_weight = grad_weight.reshape(weight.shape).contiguous()
    grad_bias = g.sum(0) if need_bias else None
    return grad_x, grad_offset, grad_mask, grad_weight, grad_bias
