import os

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, kept out of CI (run with -m slow)")


@pytest.fixture(autouse=True)
def two_threads():
    """Every test runs on at most 2 intra-op threads (the CI machine's cores), restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one intra-op thread is fastest and immune to oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
