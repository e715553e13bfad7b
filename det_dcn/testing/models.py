"""Making randomly initialised models behave like trained ones where a test or a benchmark needs it."""

import torch
from torch import nn

from det_dcn.layers import FrozenBatchNorm2d, ModulatedDeformConv2dPack, ModulatedDeformRoIPoolPack

# sigmoid(20) rounds to exactly 1.0 in float32 (and is within 3e-9 of it in float64).
_SATURATED_LOGIT = 20.0


@torch.no_grad()
def calibrate_frozen_bn(model: nn.Module, *inputs) -> None:
    """Set every FrozenBatchNorm2d's statistics to those of its input during ``model(*inputs)`` (one pass, in order).

    A randomly initialised ResNet with identity FrozenBN statistics blows activations up block after block (R-101:
    the first SGD step already overflows, and every detection scores ~1); real models start from pretrained
    statistics, which this imitates for tests and benchmarks without pretrained weights.
    """

    def set_stats(module, args):
        x = args[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-2)

    handles = [m.register_forward_pre_hook(set_stats) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    was_training = model.training
    try:
        model.eval()
        model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def start_as_plain_model(model: nn.Module, plain_state: dict) -> None:
    """Load the plain (non-deformable) model's ``plain_state`` into its deformable variant ``model`` so that the
    variant computes the plain model's outputs.

    The deformable parts missing from ``plain_state`` keep their zero-initialised offset branches (zero offsets:
    the regular grid / bins); the modulated layers' masks, sigmoid(0) = 0.5 when fresh, are set to 1 through the
    bias of their mask branch, whose weights are zero. A benchmark then times every variant on the plain model's
    workload (the same detections reach NMS) instead of on whatever random weights happen to produce.
    Raises ValueError naming keys of ``plain_state`` the variant does not have.
    """
    result = model.load_state_dict(plain_state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"start_as_plain_model: keys of the plain model the variant lacks: {result.unexpected_keys}")
    for module in model.modules():
        if isinstance(module, ModulatedDeformConv2dPack):
            # conv_offset's channels are (offset x, offset y, mask logits) in thirds, as the layer splits them.
            module.conv_offset.bias.chunk(3)[2].fill_(_SATURATED_LOGIT)
        elif isinstance(module, ModulatedDeformRoIPoolPack):
            module.mask_fc[2].bias.fill_(_SATURATED_LOGIT)
