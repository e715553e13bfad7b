"""det_dcn: Faster R-CNN with deformable / dilated convolution and deformable RoI pooling."""

import re
import sys
from importlib import metadata

__version__ = "0.1.0"

# torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type), which the deformable ops use to
# compute in float32 under autocast, exist since torch 2.4 (torchvision 0.19); below it fail here, by name.
# Read from the installed package's metadata, not by importing torch: det_dcn.deploy.OnnxPredictor runs without it.
MIN_TORCH_VERSION = "2.4"
if "torch" in sys.modules:
    _torch_version = str(sys.modules["torch"].__version__)
else:
    try:
        _torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:  # no torch: only det_dcn.deploy.OnnxPredictor can work
        _torch_version = None
if _torch_version is not None:
    _found = tuple(int(v) for v in re.match(r"(\d+)\.(\d+)", _torch_version).groups())
    if _found < tuple(int(v) for v in MIN_TORCH_VERSION.split(".")):
        raise ImportError(f"det_dcn needs torch >= {MIN_TORCH_VERSION} (torch.is_autocast_enabled(device_type), "
                          f"torch.get_autocast_dtype), found torch {_torch_version}; see setup.py")
