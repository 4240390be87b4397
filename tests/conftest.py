import json
import os

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, kept out of CI (run with -m slow)")


# pytest-xdist workers (``make test`` runs one per core: ``-n auto``) share the cores
WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.fixture(autouse=True)
def two_threads():
    """Every test runs on at most 2 intra-op threads (the CI machine's cores), divided among the
    pytest-xdist workers (one thread each on 2 cores with 2 workers), restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // WORKERS)))
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one intra-op thread is fastest and immune to oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def quick_analysis():
    """``run(module, out) -> (argv, exit code, results or None)``: one ``--quick`` analysis run
    writing results, figures and its model cache under ``out``."""

    def run(module, out):
        argv = ["--quick", "--results", str(out), "--figures", str(out), "--cache",
                str(out / "models"), "--no-progress"]
        code = module.main(argv)
        path = out / f"{module.NAME}.json"
        return argv, code, (json.loads(path.read_text()) if code == 0 else None)

    return run
