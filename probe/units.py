"""Units of work of a robustness run: sharding over processes and the atomic unit store.

Examples are processed in fixed chunks of :data:`CHUNK` whose random streams depend only on
(seed, unit, chunk) (:func:`chunk_seed`), so ``torchrun --nproc_per_node=N`` shards the chunks
over processes (:class:`Dist`: gloo on CPU, NCCL on GPU), sums the counts and gets exactly the
single-process numbers. :class:`UnitStore` saves every finished unit atomically, so a killed
run resumes where it stopped.
"""
from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from .results import atomic_write_json, read_json

__all__ = ["CHUNK", "chunk_seed", "Dist", "UnitStore"]

CHUNK = 50  # examples per chunk; fixed so sharding never changes the numbers


def chunk_seed(seed: int, unit: str, chunk: int) -> int:
    """The seed of one chunk of one unit: a function of (seed, unit, chunk) only."""
    return zlib.crc32(f"{seed}:{unit}:{chunk}".encode()) & 0x7FFFFFFF


class Dist:
    """torch.distributed when launched by torchrun (WORLD_SIZE > 1), else a no-op."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                backend = "nccl" if device.startswith("cuda") else "gloo"
                dist.init_process_group(backend)
            if device.startswith("cuda"):
                local = int(os.environ.get("LOCAL_RANK", "0"))
                self.device = f"cuda:{local}"
                torch.cuda.set_device(local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def chunks(self, n: int) -> List[Tuple[int, slice]]:
        """This process's chunks: (chunk index, slice of the examples)."""
        count = math.ceil(n / CHUNK)
        return [(c, slice(c * CHUNK, min(n, (c + 1) * CHUNK))) for c in range(count)
                if c % self.world == self.rank]

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist
            dev = self.device if self.device.startswith("cuda") else "cpu"
            t = t.to(dev)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t = t.cpu()
        return t

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


class UnitStore:
    """Completed units of one model's run, saved atomically after each unit."""

    def __init__(self, path: Path, identity: dict, *, fresh: bool, writer: bool) -> None:
        self.path = path
        self.identity = identity
        self.writer = writer
        stored = None if fresh else read_json(path)
        if stored and stored.get("identity") == identity:
            self.units = dict(stored.get("units", {}))
        else:
            self.units = {}
        self.resumed = len(self.units)

    def __contains__(self, unit: str) -> bool:
        return unit in self.units

    def get(self, unit: str):
        return self.units[unit]

    def put(self, unit: str, value) -> None:
        self.update({unit: value})

    def update(self, units: Dict[str, object]) -> None:
        self.units.update(units)
        if self.writer:
            atomic_write_json(self.path, {"identity": self.identity, "units": self.units})


class ShardImages:
    """The images of this process's chunks only, decoded once and kept on ``device``.

    Under torchrun each process holds ``1 / world`` of the ``n`` images (the chunks
    ``Dist.chunks`` gives it), not all of them. Supports ``len(x)``, ``x.shape``,
    ``x.device`` and ``x[sl]`` for a slice inside one of this process's chunks (every
    slice the units take: ``Dist.chunks(m)`` for any ``m <= n``).

    Args:
        ds: a dataset whose items are ``(image [C, H, W] in [0, 1], label, ...)``.
        dist: the process group view.
        fit: ``images -> images`` fitted to the model (``data.fit_to_model``).
        device: where the images go.
        load: ``(dataset, indices) -> images [k, C, H, W]`` (decoding, workers allowed).
    """

    def __init__(self, ds, dist: "Dist", *, fit, device, load) -> None:
        self.n = len(ds)
        self.device = torch.device(device)
        self._chunks: Dict[int, torch.Tensor] = {}
        shape = None
        for c, sl in dist.chunks(self.n):
            xs = load(ds, list(range(sl.start, sl.stop)))
            if torch.isnan(xs).any() or float(xs.min()) < 0 or float(xs.max()) > 1:
                raise ValueError("the dataset holds NaN or values outside [0, 1]; fix the data")
            xs = fit(xs).to(self.device)
            shape = tuple(xs.shape[1:])
            self._chunks[c] = xs
        if shape is None:       # a process with no chunk: take the shape from one image
            shape = tuple(fit(load(ds, [0])).shape[1:])
        self.shape = torch.Size((self.n, *shape))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, sl: slice) -> torch.Tensor:
        if not isinstance(sl, slice) or sl.step not in (None, 1):
            raise TypeError("ShardImages takes contiguous slices inside one chunk")
        start = sl.start or 0
        c = start // CHUNK
        stop = self.n if sl.stop is None else min(sl.stop, self.n)
        if c not in self._chunks or stop > (c + 1) * CHUNK:
            raise IndexError(f"images {start}:{stop} are not in one of this process's chunks")
        return self._chunks[c][start - c * CHUNK: stop - c * CHUNK]
