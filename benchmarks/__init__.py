"""Ratio benchmarks: each compares our code with a baseline run in the same process.

Register a benchmark with :func:`register`; ``python -m benchmarks`` runs them
all (or ``--only NAME``) and rewrites ``BENCHMARKS.md``. A benchmark returns a
list of :class:`Row`; ``ratio`` is ours / baseline for times (lower is better)
unless the row says otherwise in ``what``. Times are medians over repeats;
absolute times are informative only, ratios are the result.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List

__all__ = ["Row", "register", "BENCHMARKS", "median_time", "machine"]


@dataclass
class Row:
    """One line of BENCHMARKS.md.

    Attributes:
        what: what is measured (ours).
        baseline: what it is compared against, run in the same process.
        ratio: ours / baseline (time ratio unless ``what`` says otherwise).
        value: an informative absolute figure (e.g. ``"612 img/s"``).
        repeats: how many repeats the medians are over.
    """

    what: str
    baseline: str
    ratio: float
    value: str = ""
    repeats: int = 0


BENCHMARKS: Dict[str, Callable[..., List[Row]]] = {}


def register(name: str):
    """Decorator adding ``fn(quick: bool) -> list[Row]`` to the benchmark registry."""

    def wrap(fn):
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = fn
        return fn

    return wrap


def median_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    import os
    import platform

    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
