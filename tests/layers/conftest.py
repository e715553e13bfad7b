import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """The layer tests use tiny tensors: one intra-op thread avoids thread wake-up costs on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
