"""Deformable RoI pooling (Dai et al., "Deformable Convolutional Networks", 2017) with mmcv's exact semantics."""

from typing import Optional, Tuple, Union

import torch
from torch import nn

from ._checks import check_feature_map, check_offset, check_rois, pair
from ._ops import deform_roi_pool_op
from ._precision import compute_dtype


def deform_roi_pool(input: torch.Tensor, rois: torch.Tensor, offset: Optional[torch.Tensor] = None,
                    output_size: Union[int, Tuple[int, int]] = 7, spatial_scale: float = 1.0,
                    sampling_ratio: int = 0, gamma: float = 0.1) -> torch.Tensor:
    """Deformable RoI pooling: RoI Align whose bins are shifted by learned, RoI-size-normalised offsets.

    A RoI spans ``[x1 * spatial_scale - 0.5, x2 * spatial_scale - 0.5]`` (same along y; no minimum size) and is
    split into PH x PW bins. Bin (i, j) is shifted by ``gamma * roi_width * offset[r, 0, i, j]`` along x and
    ``gamma * roi_height * offset[r, 1, i, j]`` along y, then averages a grid of bilinear samples:
    ``sampling_ratio`` x ``sampling_ratio``, or ``ceil(roi_h / PH)`` x ``ceil(roi_w / PW)`` when it is 0 (a
    zero-size RoI has no samples and gives 0). A sample outside ``[-1, H] x [-1, W]`` counts as 0; inside that band
    it is clamped onto the border, as in ``torchvision.ops.roi_align``. Without offsets the result equals
    ``roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned=True)``.

    Gradients flow to ``input`` and ``offset`` (not to ``rois``). Float16/bfloat16 inputs and autocast are computed
    in float32; the result has ``input``'s dtype. The operator is ``torch.ops.det_dcn.deform_roi_pool``: on CUDA
    fused Triton kernels run when Triton is installed, elsewhere plain PyTorch (``DET_DCN_DEFORM_ROI_POOL_IMPL``,
    see ``det_dcn/layers/_dispatch.py``). ``torch.compile`` and ``torch.export`` trace it as one node.

    Args:
        input (Tensor[N, C, H, W]): feature map.
        rois (Tensor[R, 5]): (batch_index, x1, y1, x2, y2) in image coordinates.
        offset (Tensor[R, 2, PH, PW], optional): normalised bin offsets, channel 0 along x, channel 1 along y.
        output_size (int or (int, int)): (PH, PW).
        spatial_scale (float): feature-map size / image size, e.g. 1/16.
        sampling_ratio (int): samples per bin along each axis; 0 = adaptive.
        gamma (float): scale of the offsets.

    Returns:
        Tensor[R, C, PH, PW]

    Examples::
        >>> x = torch.randn(2, 256, 50, 76)
        >>> rois = torch.tensor([[0, 10.0, 20.0, 200.0, 180.0]])
        >>> offset = torch.zeros(1, 2, 7, 7, requires_grad=True)
        >>> deform_roi_pool(x, rois, offset, 7, spatial_scale=1 / 16).shape
        torch.Size([1, 256, 7, 7])
    """
    op = "deform_roi_pool"
    output_size = pair(output_size, "output_size", op)
    check_feature_map(op, input)
    check_rois(op, input, rois)
    check_offset(op, input, offset, rois.shape[0], output_size)
    if not isinstance(sampling_ratio, int) or sampling_ratio < 0:
        raise ValueError(f"{op}: sampling_ratio must be an int >= 0 (0 = adaptive), got {sampling_ratio!r}")
    dtype = compute_dtype(input.dtype)
    o = None if offset is None else offset.to(dtype)
    out = deform_roi_pool_op(input.to(dtype), rois.to(dtype), o, output_size, float(spatial_scale), sampling_ratio,
                             float(gamma))
    return out.to(input.dtype)


class DeformRoIPool(nn.Module):
    """Module form of :func:`deform_roi_pool`; ``forward(input, rois, offset=None)``, shapes as there."""

    def __init__(self, output_size: Union[int, Tuple[int, int]], spatial_scale: float = 1.0,
                 sampling_ratio: int = 0, gamma: float = 0.1):
        super().__init__()
        self.output_size = pair(output_size, "output_size", type(self).__name__)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.gamma = float(gamma)

    def forward(self, input: torch.Tensor, rois: torch.Tensor, offset: Optional[torch.Tensor] = None) -> torch.Tensor:
        return deform_roi_pool(input, rois, offset, self.output_size, self.spatial_scale, self.sampling_ratio,
                               self.gamma)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, gamma={self.gamma}")
