"""collect_env_info: the software and hardware a run used, logged at start-up so results can be traced."""

import os
import platform
import sys

import numpy as np
import torch


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or platform.machine()


def collect_env_info() -> str:
    """A few ``name: value`` lines: Python, det_dcn, torch, torchvision, NumPy, CUDA / GPUs, CPU model, threads and
    the SIMD level torch's CPU kernels dispatch to (which changes float results: CPU training is bit-reproducible
    only where that line is the same)."""
    import det_dcn

    rows = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", " ")),
        ("det_dcn", f"{det_dcn.__version__} @ {os.path.dirname(det_dcn.__file__)}"),
        ("PyTorch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"),
        ("NumPy", np.__version__),
        ("CPU", f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, "
                f"torch threads {torch.get_num_threads()}, kernels {torch.backends.cpu.get_cpu_capability()}"),
    ]
    try:
        import torchvision

        rows.append(("torchvision", torchvision.__version__))
    except ImportError:
        rows.append(("torchvision", "not installed"))
    if torch.cuda.is_available():
        rows.append(("CUDA (torch built with)", torch.version.cuda))
        for i in range(torch.cuda.device_count()):
            rows.append((f"GPU {i}", torch.cuda.get_device_name(i)))
        rows.append(("cuDNN", str(torch.backends.cudnn.version())))
    else:
        rows.append(("GPU", "none (CPU only)"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
