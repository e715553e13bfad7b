"""Input validation shared by the layers: every failure is a ValueError naming the argument, what was received and
what was expected, so a wrong call never reaches a kernel (no segfaults, no silent garbage)."""

from typing import Optional, Tuple

import torch


def autocast_active(device_type: str) -> bool:
    """True when autocast is enabled for ``device_type`` ("cpu", "cuda", ...)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # device types without autocast support (torch < 2.4 is refused by det_dcn/__init__.py)
        return False


def check_feature_map(op: str, input: torch.Tensor, name: str = "input") -> None:
    """``input`` must be a floating [N, C, H, W] tensor."""
    if not isinstance(input, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(f"{op}: {name} must have shape [N, C, H, W], got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating point tensor, got dtype {input.dtype}")


def check_same_device_dtype(op: str, input: torch.Tensor, other: torch.Tensor, name: str) -> None:
    """``other`` must live on ``input``'s device and, outside autocast, have its dtype."""
    if other.device != input.device:
        raise ValueError(f"{op}: {name} is on device {other.device} but input is on {input.device}; "
                         f"expected both on the same device")
    if not other.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating point tensor, got dtype {other.dtype}")
    # Under autocast the op computes in float32 itself, so float16/bfloat16 features with float32 boxes are fine.
    if other.dtype != input.dtype and not autocast_active(input.device.type):
        raise ValueError(f"{op}: {name} has dtype {other.dtype} but input has dtype {input.dtype}; "
                         f"expected the same dtype (or run under torch.autocast)")


def check_rois(op: str, input: torch.Tensor, rois: torch.Tensor, name: str = "rois",
               ordered: bool = False) -> None:
    """``rois`` must be [R, 5] = (batch_index, x1, y1, x2, y2) with integral batch indices in [0, N) and, if
    ``ordered``, x2 >= x1 and y2 >= y1."""
    if not isinstance(rois, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor of shape [R, 5], got {type(rois).__name__}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"{op}: {name} must have shape [R, 5] (batch_index, x1, y1, x2, y2), "
                         f"got shape {tuple(rois.shape)}")
    check_same_device_dtype(op, input, rois, name)
    if rois.shape[0] == 0:
        return
    idx = rois[:, 0]
    bad_index = (idx < 0) | (idx >= input.shape[0]) | (idx != idx.floor())
    bad_order = (rois[:, 3] < rois[:, 1]) | (rois[:, 4] < rois[:, 2]) if ordered else torch.zeros_like(bad_index)
    # one host sync for both checks; wrong indices would read another image or out of bounds
    any_index, any_order = torch.stack([bad_index.any(), bad_order.any()]).tolist()
    if any_index:
        value = idx[bad_index][0].item()
        raise ValueError(f"{op}: {name}[:, 0] holds batch index {value}, expected an integer in "
                         f"[0, {input.shape[0]}) for an input batch of {input.shape[0]} images")
    if any_order:
        box = [round(v, 4) for v in rois[bad_order][0].tolist()]
        raise ValueError(f"{op}: {name} holds box {box} with x2 < x1 or y2 < y1; expected x1 <= x2 and y1 <= y2")


def check_offset(op: str, input: torch.Tensor, offset: Optional[torch.Tensor], num_rois: int,
                 output_size: Tuple[int, int]) -> None:
    """``offset`` must be None or [R, 2, PH, PW]."""
    if offset is None:
        return
    if not isinstance(offset, torch.Tensor):
        raise ValueError(f"{op}: offset must be a torch.Tensor or None, got {type(offset).__name__}")
    expected = (num_rois, 2, output_size[0], output_size[1])
    if tuple(offset.shape) != expected:
        raise ValueError(f"{op}: offset must have shape [R, 2, PH, PW] = {list(expected)}, "
                         f"got shape {tuple(offset.shape)}")
    check_same_device_dtype(op, input, offset, "offset")


def pair(value, name: str, op: str, minimum: int = 1) -> Tuple[int, int]:
    """An int or a pair of ints (each >= ``minimum``) -> (h, w)."""
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v >= minimum for v in value):
        raise ValueError(f"{op}: {name} must be an int >= {minimum} or a pair of them, got {value}")
    return value
