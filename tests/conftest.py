import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, kept out of CI (run with -m slow)")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one intra-op thread is fastest and immune to oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
