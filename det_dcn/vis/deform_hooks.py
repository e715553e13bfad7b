"""Forward hooks that record what the deformable layers of a model predicted for one image.

``DeformRecorder(model)`` is a context manager: while active, every forward of
- a ``DeformConv2dPack`` / ``ModulatedDeformConv2dPack`` records its input size and its offsets (and masks), as a
  :class:`det_dcn.vis.deform_sampling.DCNRecord`;
- a ``DeformRoIPoolPack`` / ``ModulatedDeformRoIPoolPack`` records its RoIs, offsets (and masks) as a
  :class:`PoolRecord`;
- ``model.backbone`` records the size of the (resized, padded) image tensor, from which each layer's stride in
  image pixels follows.
Offsets and masks come from the layer's own ``predict_offset`` (called again on the layer's input in a pre-hook),
so the recorder never repeats how a layer splits its offset branch.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from det_dcn.layers import DeformConv2dPack, DeformRoIPoolPack, ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack

from .deform_sampling import DCNRecord


@dataclass
class PoolRecord:
    """One call of a deformable RoI pooler.

    rois: [R, 5] (batch index, x1, y1, x2, y2) in the resized image's pixels.
    offset: [R, 2, PH, PW] normalised offsets (channel 0: x, channel 1: y).
    mask: [R, PH, PW] in [0, 1] (modulated pooling) or None.
    gamma, spatial_scale, output_size: the pooler's settings.
    """

    name: str
    rois: np.ndarray
    offset: np.ndarray
    mask: Optional[np.ndarray]
    gamma: float
    spatial_scale: float
    output_size: Tuple[int, int]


def _stride(image_h: int, feature_h: int) -> float:
    """Image pixels per feature cell: the power of two nearest image_h / feature_h (inputs not padded to a multiple
    of the stride give ceil-rounded feature sizes, so the plain ratio is slightly off)."""
    return float(2 ** int(round(np.log2(image_h / feature_h))))


def _pair(v) -> Tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def deformable_conv_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(name, module) of every deformable conv Pack module (one with a ``conv_offset``), in forward order of
    registration (which, for the ResNet, is bottom to top)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (DeformConv2dPack, ModulatedDeformConv2dPack))]


def deformable_pool_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(name, module) of every deformable RoI pooler Pack module (one with an ``offset_fc``)."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (DeformRoIPoolPack, ModulatedDeformRoIPoolPack))]


class DeformRecorder:
    """Records offsets of deformable layers during forwards of ``model`` (see the module docstring).

    Attributes after a forward (the last call wins for convs; pool calls accumulate until ``clear_pool()``):
        image_size: (H, W) of the tensor the backbone received.
        dcn: {name: DCNRecord} for image 0 of the batch.
        pool: [PoolRecord] for every pooler call.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.image_size: Optional[Tuple[int, int]] = None
        self.dcn: Dict[str, DCNRecord] = {}
        self.pool: List[PoolRecord] = []
        self._handles = []

    def clear_pool(self) -> None:
        self.pool = []

    def __enter__(self) -> "DeformRecorder":
        backbone = getattr(self.model, "backbone", None)
        if backbone is None:
            raise ValueError(f"DeformRecorder needs a model with a .backbone, got {type(self.model).__name__}")
        self._handles.append(backbone.register_forward_pre_hook(self._backbone_hook))
        for name, m in deformable_conv_modules(self.model):
            self._handles.append(m.register_forward_pre_hook(self._make_conv_hook(name)))
        for name, m in deformable_pool_modules(self.model):
            self._handles.append(m.register_forward_pre_hook(self._make_pool_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- hooks ---------------------------------------------------------------------------------------------
    def _backbone_hook(self, module, args):
        self.image_size = tuple(int(v) for v in args[0].shape[-2:])

    def _make_conv_hook(self, name):
        def hook(pack, args):
            x = args[0]
            if self.image_size is None:
                raise RuntimeError(f"DeformRecorder: no image size recorded before {name}: call model.backbone first")
            with torch.no_grad():
                offset, mask = pack.predict_offset(x[:1])  # image 0
            conv_offset = pack.conv_offset
            self.dcn[name] = DCNRecord(
                name=name,
                kernel_size=_pair(conv_offset.kernel_size),
                stride=_pair(conv_offset.stride),
                padding=_pair(conv_offset.padding),
                dilation=_pair(conv_offset.dilation),
                in_stride=_stride(self.image_size[0], int(x.shape[-2])),
                offset=offset[0].detach().float().cpu().numpy(),
                mask=None if mask is None else mask[0].detach().float().cpu().numpy(),
                in_size=(int(x.shape[-2]), int(x.shape[-1])),
            )
        return hook

    def _make_pool_hook(self, name):
        def hook(pack, args):
            features, rois = args[0], args[1]
            with torch.no_grad():
                offset, mask = pack.predict_offset(features, rois)
            r = rois.shape[0]
            ph, pw = _pair(pack.output_size)
            self.pool.append(PoolRecord(
                name, rois.detach().float().cpu().numpy(), offset.detach().float().cpu().numpy(),
                None if mask is None else mask.detach().float().cpu().reshape(r, ph, pw).numpy(),
                float(pack.gamma), float(pack.spatial_scale), (ph, pw)))
        return hook
