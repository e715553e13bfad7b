"""Meta-architectures (registered in META_ARCH_REGISTRY)."""

from .rcnn import GeneralizedRCNN
