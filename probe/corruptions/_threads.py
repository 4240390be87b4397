"""Running independent pieces of CPU work on ``torch.get_num_threads()`` Python threads."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

__all__ = ["for_each_index"]


def for_each_index(fn: Callable[[int], None], n: int) -> None:
    """``fn(i)`` for ``i`` in ``range(n)``, on ``torch.get_num_threads()`` threads (thread ``t``
    takes ``i = t, t + threads, ...``). ``fn`` must release the GIL to run in parallel, as
    OpenCV's functions, numpy's ufuncs and random generators and the ``nogil`` numba kernels do."""
    threads = max(1, min(torch.get_num_threads(), n))
    if threads == 1:
        for i in range(n):
            fn(i)
        return

    def run(start: int) -> None:
        for i in range(start, n, threads):
            fn(i)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(run, range(threads)))
