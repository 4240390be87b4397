"""Ratio benchmarks: each compares our code with a baseline run in the same process.

Register a benchmark with :func:`register`; ``python -m benchmarks`` runs them
all (or ``--only NAME``) and rewrites ``BENCHMARKS.md``. A benchmark returns a
list of :class:`Row`; ``ratio`` is ours / baseline for times (lower is better)
unless the row says otherwise in ``what``. Times are medians over repeats;
absolute times are informative only, ratios are the result.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

__all__ = ["Row", "register", "BENCHMARKS", "median_time", "paired_ratio", "one_thread", "machine"]


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


def paired_ratio(ours: Callable[[], object], baseline: Callable[[], object], *,
                 rounds: int) -> Tuple[float, float, float]:
    """``(baseline_s, ours_s, ours/baseline)`` of the median round, each round timed back to
    back so that load drift hits both sides alike."""
    median_time(ours, repeats=1)
    median_time(baseline, repeats=1)
    pairs = []
    for _ in range(rounds):
        b = median_time(baseline, repeats=3, warmup=0)
        o = median_time(ours, repeats=3, warmup=0)
        pairs.append((b, o, o / b))
    pairs.sort(key=lambda p: p[2])
    return pairs[len(pairs) // 2]


@contextlib.contextmanager
def one_thread():
    """Run the block with one torch intra-op thread; the previous count is restored."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
