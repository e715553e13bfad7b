"""FrozenBatchNorm2d and get_norm: the normalisation layers a config can name."""

from typing import Optional, Union

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, folded into one scale and shift.
    Used with pretrained backbones and small per-GPU batches, where batch statistics would be noise.
    State-dict keys match ``nn.BatchNorm2d`` (weight, bias, running_mean, running_var), so BN checkpoints load.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # BatchNorm2d checkpoints carry num_batches_tracked, which a frozen norm has no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm2d / SyncBatchNorm in ``module`` by a FrozenBatchNorm2d with its values."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


NORM_TYPES = ("", "BN", "SyncBN", "FrozenBN", "GN")


def get_norm(norm: Union[str, nn.Module, None], out_channels: int) -> Optional[nn.Module]:
    """Build the norm layer a config names: "BN", "SyncBN", "FrozenBN", "GN" (32 groups) or "" / None (none)."""
    if norm is None or norm == "":
        return None
    if not isinstance(norm, str):
        return norm(out_channels) if callable(norm) else norm
    if norm == "BN":
        return nn.BatchNorm2d(out_channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(out_channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(out_channels)
    if norm == "GN":
        if out_channels % 32 != 0:
            raise ValueError(f"norm='GN' uses 32 groups, which need channels divisible by 32; got {out_channels}")
        return nn.GroupNorm(32, out_channels)
    raise ValueError(f"Unknown norm '{norm}'; expected one of {NORM_TYPES}")
