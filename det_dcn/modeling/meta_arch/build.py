"""META_ARCH_REGISTRY and build_model: config -> model on the configured device.

Beside the meta-architectures it builds (as detectron2's meta_arch/build.py): they import the registry from here,
and importing the package (meta_arch/__init__.py) registers them, so build_model needs no import inside it."""

import torch
from torch import nn

from ...utils.registry import Registry

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Meta-architectures: a class with from_config(cfg) or fn(cfg) -> nn.Module."


def resolve_device(device: str) -> torch.device:
    """MODEL.DEVICE -> torch.device: "auto" is "cuda" when a GPU is visible, else "cpu"."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"MODEL.DEVICE='{device}' is not a device; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE='{device}' but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def build_model(cfg) -> nn.Module:
    """Build cfg.MODEL.META_ARCHITECTURE (weights are not loaded: see det_dcn.checkpoint) on cfg.MODEL.DEVICE."""
    name = cfg.MODEL.META_ARCHITECTURE
    obj = META_ARCH_REGISTRY.get_configured("MODEL.META_ARCHITECTURE", name)
    device = resolve_device(cfg.MODEL.DEVICE)
    model = obj.from_config(cfg) if hasattr(obj, "from_config") else obj(cfg)
    return model.to(device)
