"""det_dcn: Faster R-CNN with deformable / dilated convolution and deformable RoI pooling."""

import torch

__version__ = "0.1.0"

# torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type), which the deformable ops use to
# compute in float32 under autocast, exist since torch 2.4 (torchvision 0.19); below it fail here, by name.
MIN_TORCH_VERSION = "2.4"
if torch.__version__ < MIN_TORCH_VERSION:
    raise ImportError(f"det_dcn needs torch >= {MIN_TORCH_VERSION} (torch.is_autocast_enabled(device_type), "
                      f"torch.get_autocast_dtype), found torch {torch.__version__}; see setup.py")
