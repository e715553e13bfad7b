"""Deformable RoI pooling modules that predict their own offsets (and masks) from a first, plain pooling.

Attribute names (``offset_fc``, ``mask_fc``) and layer indices follow mmcv, so mmdetection checkpoints load.
"""

from typing import Optional, Tuple, Union

import torch
from torch import nn

from .deform_roi_pool import DeformRoIPool, deform_roi_pool


class DeformRoIPoolPack(DeformRoIPool):
    """Pools once without offsets, predicts normalised offsets with ``offset_fc``, pools again with them.

    ``offset_fc`` = Linear(PH*PW*C, fc), ReLU, Linear(fc, fc), ReLU, Linear(fc, PH*PW*2); the last Linear starts at
    zero, so a fresh module equals :class:`DeformRoIPool` without offsets.

    Shape:
        input (Tensor[N, C, H, W]) with C == ``output_channels``, rois (Tensor[R, 5]) -> Tensor[R, C, PH, PW]
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]], output_channels: int,
                 deform_fc_channels: int = 1024, spatial_scale: float = 1.0, sampling_ratio: int = 0,
                 gamma: float = 0.1):
        super().__init__(output_size, spatial_scale, sampling_ratio, gamma)
        self.output_channels = int(output_channels)
        self.deform_fc_channels = int(deform_fc_channels)
        ph, pw = self.output_size
        self.offset_fc = nn.Sequential(
            nn.Linear(ph * pw * self.output_channels, self.deform_fc_channels),
            nn.ReLU(inplace=True),
            nn.Linear(self.deform_fc_channels, self.deform_fc_channels),
            nn.ReLU(inplace=True),
            nn.Linear(self.deform_fc_channels, ph * pw * 2),
        )
        nn.init.zeros_(self.offset_fc[-1].weight)
        nn.init.zeros_(self.offset_fc[-1].bias)

    def _check_channels(self, input: torch.Tensor) -> None:
        if not isinstance(input, torch.Tensor) or input.dim() != 4 or input.shape[1] != self.output_channels:
            shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise ValueError(f"{type(self).__name__}: input must have shape [N, {self.output_channels}, H, W] "
                             f"(output_channels={self.output_channels}), got {shape}")

    def _pool(self, input, rois, offset=None):
        return deform_roi_pool(input, rois, offset, self.output_size, self.spatial_scale, self.sampling_ratio,
                               self.gamma)

    def predict_offset(self, input: torch.Tensor, rois: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(input [N, C, H, W], rois [R, 5]) -> (normalised offset [R, 2, PH, PW], mask [R, 1, PH, PW] or None):
        what ``forward`` pools with, from a first pooling without offsets."""
        self._check_channels(input)
        x = self._pool(input, rois).flatten(1)
        return self.offset_fc(x).view(-1, 2, *self.output_size), self._predict_mask(x)

    def _predict_mask(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        return None  # unmodulated

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        offset, mask = self.predict_offset(input, rois)
        out = self._pool(input, rois, offset)
        return out if mask is None else out * mask.to(input.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", output_channels={self.output_channels}"


class ModulatedDeformRoIPoolPack(DeformRoIPoolPack):
    """:class:`DeformRoIPoolPack` whose deformed bins are also multiplied by a predicted mask in (0, 1).

    ``mask_fc`` = Linear(PH*PW*C, fc), ReLU, Linear(fc, PH*PW), Sigmoid; its last Linear starts at zero, so a fresh
    module returns 0.5 x the plain pooling.

    Shape:
        input (Tensor[N, C, H, W]) with C == ``output_channels``, rois (Tensor[R, 5]) -> Tensor[R, C, PH, PW]
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]], output_channels: int,
                 deform_fc_channels: int = 1024, spatial_scale: float = 1.0, sampling_ratio: int = 0,
                 gamma: float = 0.1):
        super().__init__(output_size, output_channels, deform_fc_channels, spatial_scale, sampling_ratio, gamma)
        ph, pw = self.output_size
        self.mask_fc = nn.Sequential(
            nn.Linear(ph * pw * self.output_channels, self.deform_fc_channels),
            nn.ReLU(inplace=True),
            nn.Linear(self.deform_fc_channels, ph * pw),
            nn.Sigmoid(),
        )
        nn.init.zeros_(self.mask_fc[2].weight)
        nn.init.zeros_(self.mask_fc[2].bias)

    def _predict_mask(self, x: torch.Tensor) -> torch.Tensor:
        """x [R, PH*PW*C] (the first pooling, flattened) -> mask [R, 1, PH, PW]."""
        return self.mask_fc(x).view(-1, 1, *self.output_size)
