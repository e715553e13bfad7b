"""Export-friendly stand-ins for det_dcn's op modules, sharing their parameters.

det_dcn's op modules validate their inputs with data-dependent checks and pick kernels per device, which
``torch.export`` cannot trace. :func:`make_exportable` swaps each of them, in a copy of the model, for a module
that computes the same function with traceable operators that have a standard ONNX translation:

==========================================================  ================================================
det_dcn module                                              export form (ONNX operator)
==========================================================  ================================================
DeformConv2d(Pack), ModulatedDeformConv2d(Pack) (+ norm)    ``torchvision.ops.deform_conv2d`` (DeformConv)
ROIAlign                                                    ``torchvision.ops.roi_align`` (RoiAlign)
ROIPool                                                     ``torchvision.ops.roi_pool`` (MaxRoiPool)
DeformRoIPool(Pack), ModulatedDeformRoIPoolPack             :func:`deform_roi_pool_export` (RoiAlign)
==========================================================  ================================================

A module with an ``export_module()`` method (a plugin's way in) is replaced by what that method returns. Any other
subclass of an op module, or a RoI pooler of unknown type, has no export path: :class:`ExportError` names it.
"""

import copy
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d, roi_align, roi_pool

from ..layers import (DeformConv2d, DeformConv2dPack, DeformRoIPool, DeformRoIPoolPack, ModulatedDeformConv2d,
                      ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack, ROIAlign, ROIPool)
from ..modeling.backbone.conv import DeformConv2dNorm, ModulatedDeformConv2dNorm
from ..modeling.roi_heads.poolers import ROIPooler
from .deform_roi_pool_export import deform_roi_pool_export

class ExportError(RuntimeError):
    """The model (or a module of it, named in the message) cannot be exported, and why."""


class ExportDeformConv(nn.Module):
    """DCNv1 / DCNv2 as ``torchvision.ops.deform_conv2d``; ``conv_offset``, ``norm`` and ``activation`` as the source.

    forward(x [N, C_in, H, W], offset=None, mask=None) -> [N, C_out, H_out, W_out]; a Pack source predicts its own
    offset (and mask = sigmoid of the third chunk, mmcv's layout), a plain one takes them as arguments.
    """

    def __init__(self, src: DeformConv2d):
        super().__init__()
        self.weight, self.bias = src.weight, src.bias
        self.stride, self.padding, self.dilation = src.stride, src.padding, src.dilation
        self.modulated = isinstance(src, ModulatedDeformConv2d)
        self.conv_offset = getattr(src, "conv_offset", None)
        self.norm = getattr(src, "norm", None)
        self.activation = getattr(src, "activation", None)

    def forward(self, x: Tensor, offset: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> Tensor:
        if self.conv_offset is not None:
            out = self.conv_offset(x)
            if self.modulated:
                o1, o2, logits = torch.chunk(out, 3, dim=1)
                offset, mask = torch.cat((o1, o2), dim=1), torch.sigmoid(logits)
            else:
                offset = out
        x = deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class ExportROIAlign(nn.Module):
    """``torchvision.ops.roi_align`` with the source ROIAlign's settings; (x [N, C, H, W], rois [R, 5]) -> [R, C, PH, PW]."""

    def __init__(self, src: ROIAlign):
        super().__init__()
        self.output_size, self.spatial_scale = src.output_size, src.spatial_scale
        self.sampling_ratio, self.aligned = src.sampling_ratio, src.aligned

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        return roi_align(x, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)


class ExportROIPool(nn.Module):
    """``torchvision.ops.roi_pool`` with the source ROIPool's settings; shapes as :class:`ExportROIAlign`."""

    def __init__(self, src: ROIPool):
        super().__init__()
        self.output_size, self.spatial_scale = src.output_size, src.spatial_scale

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        return roi_pool(x, rois, self.output_size, self.spatial_scale)


class ExportDeformRoIPool(nn.Module):
    """Deformable RoI pooling (plain, Pack or modulated Pack) from standard operators, sharing the source's
    ``offset_fc`` / ``mask_fc``: (x [N, C, H, W], rois [R, 5], offset [R, 2, PH, PW] for the plain one) ->
    [R, C, PH, PW]. A Pack pools once without offsets, predicts them, and pools again (mmcv's Pack)."""

    def __init__(self, src: DeformRoIPool):
        super().__init__()
        self.output_size, self.spatial_scale = src.output_size, src.spatial_scale
        self.sampling_ratio, self.gamma = src.sampling_ratio, src.gamma
        self.offset_fc = getattr(src, "offset_fc", None)
        self.mask_fc = getattr(src, "mask_fc", None)

    def _pool(self, x: Tensor, rois: Tensor, offset: Optional[Tensor]) -> Tensor:
        return deform_roi_pool_export(x, rois, offset, self.output_size, self.spatial_scale, self.sampling_ratio,
                                      self.gamma)

    def forward(self, x: Tensor, rois: Tensor, offset: Optional[Tensor] = None) -> Tensor:
        if self.offset_fc is None:
            return self._pool(x, rois, offset)
        flat = self._pool(x, rois, None).flatten(1)
        out = self._pool(x, rois, self.offset_fc(flat).view(-1, 2, *self.output_size))
        if self.mask_fc is not None:
            out = out * self.mask_fc(flat).view(-1, 1, *self.output_size)
        return out


# Exact classes only: a subclass may change forward, and the stand-in would then silently compute something else.
_SWAPS: Dict[type, Callable[[nn.Module], nn.Module]] = {
    **{cls: ExportDeformConv for cls in (DeformConv2d, ModulatedDeformConv2d, DeformConv2dPack,
                                         ModulatedDeformConv2dPack, DeformConv2dNorm, ModulatedDeformConv2dNorm)},
    ROIAlign: ExportROIAlign,
    ROIPool: ExportROIPool,
    **{cls: ExportDeformRoIPool for cls in (DeformRoIPool, DeformRoIPoolPack, ModulatedDeformRoIPoolPack)},
}
_OP_BASES: Tuple[type, ...] = (DeformConv2d, DeformRoIPool, ROIAlign, ROIPool)


def _export_form(name: str, module: nn.Module, pooler: bool) -> Optional[nn.Module]:
    """The stand-in for ``module`` (None: keep it as it is); ExportError when it has no export path."""
    if callable(getattr(module, "export_module", None)):
        return module.export_module()
    swap = _SWAPS.get(type(module))
    if swap is not None:
        return swap(module)
    cls = f"{type(module).__module__}.{type(module).__qualname__}"
    if isinstance(module, _OP_BASES):
        raise ExportError(
            f"module '{name}' ({cls}) subclasses det_dcn's {type(module).__mro__[1].__name__} with its own code: the "
            f"exporter knows only the op modules themselves ({sorted(c.__name__ for c in _SWAPS)}). Give the class "
            f"an export_module() method returning a traceable nn.Module that computes the same function")
    if pooler:
        raise ExportError(
            f"RoI pooler '{name}' ({cls}) has no export path: the exporter replaces only ROIAlign, ROIPool and the "
            f"deformable RoI pooling modules (MODEL.ROI_BOX_HEAD.POOLER_TYPE ROIAlign, ROIAlignV2, ROIPool, "
            f"DeformRoIPool, ModulatedDeformRoIPool). Give the class an export_module() method returning a traceable "
            f"nn.Module (standard ops, or torchvision's roi_align) that computes the same function")
    return None


def make_exportable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) in which every det_dcn op module is replaced by its export form.

    Raises ExportError naming the first module that has no export path.
    """
    model = copy.deepcopy(model).eval()
    poolers = {f"{name}.level_poolers.{i}" for name, m in model.named_modules() if isinstance(m, ROIPooler)
               for i in range(len(m.level_poolers))}
    replaced = []
    for name, module in list(model.named_modules()):
        if any(name.startswith(r + ".") for r in replaced):
            continue  # inside a module already replaced (e.g. a Pack's conv_offset)
        new = _export_form(name, module, name in poolers)
        if new is None:
            continue
        if name == "":
            return new.eval()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, new.eval())
        replaced.append(name)
    return model


def has_deform_conv(model: nn.Module) -> Optional[str]:
    """Name of the first deformable convolution in ``model`` (needs ONNX opset >= 19), or None."""
    return next((n for n, m in model.named_modules() if isinstance(m, (DeformConv2d, ExportDeformConv))), None)
