"""Weight initialisations of Caffe2 / Detectron, as detectron2 uses them (so training recipes carry over)."""

from torch import nn


def c2_msra_fill(module: nn.Module) -> None:
    """He (MSRA) normal init with fan_out and ReLU gain for ``module.weight``; zero bias.

    Touches only the module's own ``weight`` / ``bias``: a deformable conv's ``conv_offset`` keeps its zero init.
    """
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, 0)


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's "XavierFill": uniform with bound sqrt(3 / fan_in) (= kaiming_uniform with a=1); zero bias.

    torchvision's FPN uses the same init.
    """
    nn.init.kaiming_uniform_(module.weight, a=1)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, 0)
