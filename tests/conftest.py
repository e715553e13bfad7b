import os

import pytest
import torch

# Tests must never touch a user's ./datasets; generated datasets go to a per-session temporary folder.
os.environ.setdefault("DET_DCN_DATASETS", os.path.join(os.path.dirname(__file__), "..", ".pytest_datasets"))

# The tests' tensors are small: one intra-op thread per process avoids OpenMP spin-waiting when several processes
# (DDP tests, tools run as subprocesses, data workers) share the machine's cores, which was measured at 10-20x
# slower than a single thread on a 2-core machine. Subprocesses inherit the environment variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _reset_det_dcn_logger():
    """setup_logger (called by trainer and tool tests, some in module- or session-scoped fixtures) gives the
    "det_dcn" logger its own handlers and stops propagation, as an application should. Every test starts from a
    plain, propagating logger so that caplog sees det_dcn's records whatever ran before."""
    import logging

    logger = logging.getLogger("det_dcn")

    def reset():
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)

    reset()
    yield
    reset()
