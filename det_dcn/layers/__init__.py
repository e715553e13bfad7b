"""det_dcn.layers: deformable / dilated building blocks usable as a plugin in any PyTorch model.

Imports only torch and torchvision (never other det_dcn packages), so the ops can be used and checked standalone.
"""

from ._dispatch import set_implementation
from .aspp import ASPP
from .deform_conv import DeformConv2d, ModulatedDeformConv2d, deform_conv2d
from .deform_conv_pack import DeformConv2dPack, ModulatedDeformConv2dPack
from .deform_roi_pool import DeformRoIPool, deform_roi_pool
from .deform_roi_pool_pack import DeformRoIPoolPack, ModulatedDeformRoIPoolPack
from .drop_block import DropBlock2d
from .norm import FrozenBatchNorm2d, get_norm
from .precise_bn import update_bn_stats
from .roi_align import ROIAlign
from .roi_pool import ROIPool

__all__ = [
    "deform_roi_pool", "DeformRoIPool", "DeformRoIPoolPack", "ModulatedDeformRoIPoolPack",
    "DeformConv2d", "ModulatedDeformConv2d", "DeformConv2dPack", "ModulatedDeformConv2dPack",
    "ROIAlign", "ROIPool", "FrozenBatchNorm2d", "get_norm", "deform_conv2d", "set_implementation", "ASPP",
    "DropBlock2d", "update_bn_stats",
]
