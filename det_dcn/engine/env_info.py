"""collect_env_info: the software and hardware a run used, logged at start-up so results can be traced."""

import os
import platform
import sys

import numpy as np
import torch


def collect_env_info() -> str:
    """A few ``name: value`` lines: Python, det_dcn, torch, torchvision, NumPy, CUDA / GPUs, CPU threads."""
    import det_dcn

    rows = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", " ")),
        ("det_dcn", f"{det_dcn.__version__} @ {os.path.dirname(det_dcn.__file__)}"),
        ("PyTorch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"),
        ("NumPy", np.__version__),
        ("CPU", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"torch threads {torch.get_num_threads()}"),
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
