from .norm import FrozenBatchNorm2d, get_norm
