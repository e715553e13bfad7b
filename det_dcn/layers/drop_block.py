"""DropBlock (Ghiasi et al. 2018, "DropBlock: A regularization method for convolutional networks").

Dropout for feature maps: whole ``block_size`` x ``block_size`` squares of a channel are zeroed, since neighbouring
activations are correlated and dropping single ones removes almost no information. The sampling is torchvision's
``torchvision.ops.drop_block2d``; this module adds the paper's linear warm-up of the drop probability (mmdetection's
``warmup_iters``), driven by the trainer's ``DropBlockWarmup`` hook so that it follows the iteration, also on resume.
"""

import torch
from torch import nn
from torchvision.ops import drop_block2d


class DropBlock2d(nn.Module):
    """Zero random ``block_size`` squares of each channel with drop probability ``p``, rescale the rest.

    forward(x: [N, C, H, W]) -> [N, C, H, W]; the identity in eval mode or while the probability is 0. The
    probability used is ``p * min(1, iteration / warmup_iters)`` once ``set_iteration`` was called (the trainer calls
    it before every step), ``p`` before that and with ``warmup_iters`` 0. A block larger than the map shrinks to the
    largest odd size that fits. No parameters or buffers: adding it leaves a model's state_dict unchanged.
    """

    def __init__(self, p: float, block_size: int, warmup_iters: int = 0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropBlock2d: p={p!r} is invalid: expected a drop probability in [0, 1)")
        if not isinstance(block_size, int) or block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"DropBlock2d: block_size={block_size!r} is invalid: expected an odd integer >= 1")
        if not isinstance(warmup_iters, int) or warmup_iters < 0:
            raise ValueError(f"DropBlock2d: warmup_iters={warmup_iters!r} is invalid: expected an integer >= 0")
        self.p, self.block_size, self.warmup_iters = p, block_size, warmup_iters
        self.current_p = p

    def set_iteration(self, iteration: int) -> None:
        """Set the drop probability for training iteration ``iteration`` (0-based) of the linear warm-up."""
        ramp = 1.0 if self.warmup_iters == 0 else min(1.0, iteration / self.warmup_iters)
        self.current_p = self.p * ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.current_p == 0.0:
            return x
        if x.dim() != 4:
            raise ValueError(f"DropBlock2d takes [N, C, H, W] features; got a tensor of shape {tuple(x.shape)}")
        # An even block_size can result from the shrink to a map of even size; torchvision refuses it, so use the
        # largest odd size that fits.
        size = min(self.block_size, x.shape[-2], x.shape[-1])
        size -= 1 - size % 2
        return drop_block2d(x, self.current_p, size, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}, warmup_iters={self.warmup_iters}"
