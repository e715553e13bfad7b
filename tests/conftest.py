import os

import pytest
import torch

# Tests must never touch a user's ./datasets; generated datasets go to a per-session temporary folder.
os.environ.setdefault("DET_DCN_DATASETS", os.path.join(os.path.dirname(__file__), "..", ".pytest_datasets"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)
