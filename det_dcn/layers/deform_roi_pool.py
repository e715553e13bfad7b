"""Deformable RoI pooling (Dai et al., "Deformable Convolutional Networks", 2017) with mmcv's exact semantics."""

import os
import warnings
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ._checks import check_feature_map, check_offset, check_rois, pair
from ._precision import compute_dtype, no_autocast
from .deform_roi_pool_torch import deform_roi_pool_torch

# "auto" (fused Triton kernels on CUDA when Triton is installed, plain PyTorch elsewhere) or "torch" (always the
# plain reference implementation).
_IMPL_ENV = "DET_DCN_DEFORM_ROI_POOL_IMPL"
_fused_failed = False  # set after the fused path failed once (e.g. a Triton that cannot compile for this GPU)


def _fused_impl(input: torch.Tensor):
    """The fused implementation for ``input``'s device, or None to use the plain PyTorch one."""
    if _fused_failed or input.device.type != "cuda" or os.environ.get(_IMPL_ENV, "auto") == "torch":
        return None
    try:
        from .deform_roi_pool_triton import deform_roi_pool_triton
    except ImportError:  # no Triton: the plain path is still correct, only slower and larger
        return None
    return deform_roi_pool_triton


def _run(input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma):
    global _fused_failed
    args = (input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma)
    fused = _fused_impl(input)
    if fused is not None:
        try:
            return fused(*args)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - a compiler/driver problem must not stop training
            _fused_failed = True
            warnings.warn(f"deform_roi_pool: the fused Triton path failed ({type(e).__name__}: {e}); using the "
                          f"plain PyTorch path from now on (set {_IMPL_ENV}=torch to silence this)")
    return deform_roi_pool_torch(*args)


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
    in float32; the result has ``input``'s dtype. On CUDA, fused Triton kernels run when Triton is installed
    (environment variable ``DET_DCN_DEFORM_ROI_POOL_IMPL=torch`` forces the plain PyTorch path, used on CPU).

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
    """
    op = "deform_roi_pool"
    output_size = pair(output_size, "output_size", op)
    check_feature_map(op, input)
    check_rois(op, input, rois)
    check_offset(op, input, offset, rois.shape[0], output_size)
    if not isinstance(sampling_ratio, int) or sampling_ratio < 0:
        raise ValueError(f"{op}: sampling_ratio must be an int >= 0 (0 = adaptive), got {sampling_ratio!r}")
    dtype = compute_dtype(input.dtype)
    with no_autocast(input.device.type):
        x, r = input.to(dtype), rois.to(dtype)
        o = None if offset is None else offset.to(dtype)
        out = _run(x, r, o, output_size, float(spatial_scale), sampling_ratio, float(gamma))
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
