"""The one place that chooses which implementation runs an op on a device.

Each switch is an environment variable (read when the op runs, validated: an unknown value is an error naming the
allowed ones) or :func:`set_implementation` (which wins over the environment):

| op              | variable                       | values                                                          |
|-----------------|--------------------------------|-----------------------------------------------------------------|
| deform_roi_pool | DET_DCN_DEFORM_ROI_POOL_IMPL   | auto (Triton on CUDA when installed, else torch), torch, triton |
| deform_conv2d   | DET_DCN_DEFORM_CONV_IMPL       | auto (torch on CPU, torchvision elsewhere), torch, torchvision  |
| roi_align       | DET_DCN_ROI_ALIGN_IMPL         | auto (torch on CPU, torchvision elsewhere), torch, torchvision  |

"torch" is det_dcn's plain PyTorch implementation (``*_torch.py``), the reference the others are tested against.
roi_align's "torch" is deform_roi_pool without offsets and exists only for ``aligned=True`` (the unaligned op
always runs torchvision's kernel). "triton" on a CPU tensor needs ``TRITON_INTERPRET=1`` (how the kernels are
tested without a GPU).

The only fallback: when Triton's compiler fails on this machine (a GPU or toolchain it cannot build for), the op
logs one warning and runs the torch implementation for the rest of the process. Any other error propagates.
"""

import importlib.util
import logging
import os
from typing import Dict, Optional

_SWITCHES = {
    "deform_roi_pool": ("DET_DCN_DEFORM_ROI_POOL_IMPL", ("auto", "torch", "triton")),
    "deform_conv2d": ("DET_DCN_DEFORM_CONV_IMPL", ("auto", "torch", "torchvision")),
    "roi_align": ("DET_DCN_ROI_ALIGN_IMPL", ("auto", "torch", "torchvision")),
}
_overrides: Dict[str, str] = {}
_compiler_failed: Dict[str, str] = {}  # op -> the compiler error that switched it to "torch"
_logger = logging.getLogger(__name__)


def _check(op: str, value: str, source: str) -> str:
    if op not in _SWITCHES:
        raise ValueError(f"det_dcn.layers: unknown op {op!r}; expected one of {sorted(_SWITCHES)}")
    allowed = _SWITCHES[op][1]
    if value not in allowed:
        raise ValueError(f"{source}={value!r} is not a valid implementation of {op}; expected one of {list(allowed)}")
    return value


def set_implementation(op: str, value: Optional[str]) -> None:
    """Forces ``op``'s implementation ("auto" restores the default choice; None returns to the environment)."""
    if value is None:
        _check(op, "auto", "set_implementation")
        _overrides.pop(op, None)
        return
    _overrides[op] = _check(op, value, f"set_implementation({op!r})")


def requested(op: str) -> str:
    """The validated switch value for ``op`` ("auto" unless set)."""
    if op in _overrides:
        return _overrides[op]
    env = _SWITCHES[op][0] if op in _SWITCHES else op
    return _check(op, os.environ.get(env, "auto"), env)


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def implementation(op: str, device_type: str) -> str:
    """The implementation that runs ``op`` on ``device_type`` ("cpu", "cuda", ...)."""
    impl = requested(op)
    if op == "deform_roi_pool":
        if impl == "auto":
            impl = "triton" if device_type == "cuda" and triton_available() else "torch"
        if impl == "triton" and op in _compiler_failed:
            return "torch"
        if impl == "triton" and not triton_available():
            raise RuntimeError(f"{_SWITCHES[op][0]}=triton but Triton is not installed (pip install triton)")
        return impl
    if impl == "auto":
        return "torch" if device_type == "cpu" else "torchvision"
    return impl


def is_compiler_error(error: BaseException) -> bool:
    """True for errors raised by Triton's compiler or its assembler (not by the kernel's own logic)."""
    try:
        from triton.compiler.errors import CompilationError
        from triton.runtime.errors import OutOfResources
    except ImportError:
        return False
    kinds = [CompilationError, OutOfResources]
    try:
        from triton.runtime.errors import PTXASError
        kinds.append(PTXASError)
    except ImportError:  # older Triton
        pass
    return isinstance(error, tuple(kinds))


def compiler_failed(op: str, error: BaseException) -> None:
    """Records that Triton could not compile ``op`` here; warns once; later calls use the torch path."""
    if op not in _compiler_failed:
        _compiler_failed[op] = f"{type(error).__name__}: {error}"
        _logger.warning("%s: Triton could not compile the fused kernel (%s); using the plain PyTorch path from now "
                        "on (set %s=torch to choose it explicitly)", op, _compiler_failed[op], _SWITCHES[op][0])


def fallback_reason(op: str) -> Optional[str]:
    """The compiler error that made ``op`` fall back to torch in this process, or None."""
    return _compiler_failed.get(op)
