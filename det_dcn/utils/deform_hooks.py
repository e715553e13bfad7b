"""Forward hooks that record what the deformable layers of a model predicted for one image.

``DeformRecorder(model)`` is a context manager: while active, every forward of
- a ``DeformConv2dPack`` / ``ModulatedDeformConv2dPack`` records its input size and its ``conv_offset`` output
  (split into offsets and sigmoid masks for the modulated one, as the layer itself does), as a
  :class:`det_dcn.utils.deform_sampling.DCNRecord`;
- a ``DeformRoIPoolPack`` / ``ModulatedDeformRoIPoolPack`` records its RoIs and the outputs of ``offset_fc``
  (and ``mask_fc``) as a :class:`PoolRecord`;
- ``model.backbone`` records the size of the (resized, padded) image tensor, from which each layer's stride in
  image pixels follows.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

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
    from det_dcn.layers import DeformConv2dPack, ModulatedDeformConv2dPack

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (DeformConv2dPack, ModulatedDeformConv2dPack))]


def deformable_pool_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(name, module) of every deformable RoI pooler Pack module (one with an ``offset_fc``)."""
    from det_dcn.layers import DeformRoIPoolPack, ModulatedDeformRoIPoolPack

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (DeformRoIPoolPack, ModulatedDeformRoIPoolPack))]


def _is_modulated(module: nn.Module) -> bool:
    from det_dcn.layers import ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack

    return isinstance(module, (ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack))


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
        self._conv_inputs: Dict[str, Tuple[int, int]] = {}
        self._pool_inputs: Dict[str, torch.Tensor] = {}
        self._pool_offsets: Dict[str, torch.Tensor] = {}
        self._pool_masks: Dict[str, torch.Tensor] = {}

    def clear_pool(self) -> None:
        self.pool = []

    def __enter__(self) -> "DeformRecorder":
        backbone = getattr(self.model, "backbone", None)
        if backbone is None:
            raise ValueError(f"DeformRecorder needs a model with a .backbone, got {type(self.model).__name__}")
        self._handles.append(backbone.register_forward_pre_hook(self._backbone_hook))
        for name, m in deformable_conv_modules(self.model):
            self._handles.append(m.register_forward_pre_hook(self._make_conv_pre_hook(name)))
            self._handles.append(m.conv_offset.register_forward_hook(self._make_offset_hook(name, m)))
        for name, m in deformable_pool_modules(self.model):
            self._handles.append(m.register_forward_pre_hook(self._make_pool_pre_hook(name)))
            self._handles.append(m.offset_fc.register_forward_hook(self._make_fc_hook(name, self._pool_offsets)))
            if _is_modulated(m):
                self._handles.append(m.mask_fc.register_forward_hook(self._make_fc_hook(name, self._pool_masks)))
            self._handles.append(m.register_forward_hook(self._make_pool_hook(name, m)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- hooks ---------------------------------------------------------------------------------------------
    def _backbone_hook(self, module, args):
        self.image_size = tuple(int(v) for v in args[0].shape[-2:])

    def _make_conv_pre_hook(self, name):
        def hook(module, args):
            self._conv_inputs[name] = tuple(int(v) for v in args[0].shape[-2:])
        return hook

    def _make_offset_hook(self, name, pack):
        def hook(conv_offset, args, out):
            out = out[0].detach().float().cpu()  # image 0: [C, Ho, Wo]
            mask = None
            if _is_modulated(pack):
                # The layer's own split: chunk(3) -> o1, o2, mask logits; offset = cat(o1, o2).
                o1, o2, m = torch.chunk(out, 3, dim=0)
                offset = torch.cat([o1, o2], dim=0)
                mask = torch.sigmoid(m).numpy()
            else:
                offset = out
            in_h, _ = self._conv_inputs.get(name, (None, None))
            if self.image_size is None or in_h is None:
                raise RuntimeError(f"DeformRecorder: no input size recorded for {name}: call model.backbone first")
            self.dcn[name] = DCNRecord(
                name=name,
                kernel_size=_pair(conv_offset.kernel_size),
                stride=_pair(conv_offset.stride),
                padding=_pair(conv_offset.padding),
                dilation=_pair(conv_offset.dilation),
                in_stride=_stride(self.image_size[0], in_h),
                offset=offset.numpy(),
                mask=mask,
            )
        return hook

    def _make_pool_pre_hook(self, name):
        def hook(module, args):
            self._pool_inputs[name] = args[1].detach().float().cpu()
        return hook

    @staticmethod
    def _make_fc_hook(name, store):
        def hook(module, args, out):
            store[name] = out.detach().float().cpu()
        return hook

    def _make_pool_hook(self, name, pack):
        def hook(module, args, out):
            rois = self._pool_inputs.pop(name)
            raw = self._pool_offsets.pop(name, None)
            ph, pw = _pair(pack.output_size)
            r = rois.shape[0]
            offset = np.zeros((r, 2, ph, pw)) if raw is None else raw.reshape(r, 2, ph, pw).numpy()
            raw_mask = self._pool_masks.pop(name, None)
            # mask_fc ends with its sigmoid, so its output is the mask itself.
            mask = None if raw_mask is None else raw_mask.reshape(r, ph, pw).numpy()
            self.pool.append(PoolRecord(name, rois.numpy(), offset, mask, float(pack.gamma),
                                        float(pack.spatial_scale), (ph, pw)))
        return hook
