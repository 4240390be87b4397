"""Random draws of the corruptions: all from one ``torch.Generator``, moved to the images' device.

Large uniform and bit draws on a CPU generator are made in fixed pieces of :data:`PIECE`
values, each by its own numpy ``PCG64`` generator seeded (through ``SeedSequence.spawn``)
from one 63-bit draw of the ``torch.Generator``: the pieces fill on all of torch's threads
(torch's own CPU generator is one serial stream), and since the pieces do not depend on the
thread count, the same generator state gives the same values on any number of threads.
Smaller draws, and every draw on a CUDA generator, come from the ``torch.Generator`` itself.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ._threads import for_each_index

__all__ = ["Rng", "threshold16", "PIECE"]

PIECE = 1 << 18  # values per independently seeded piece of a large CPU draw

Device = Union[str, torch.device]


class Rng:
    """Random draws from one ``torch.Generator``, moved to the images' device."""

    def __init__(self, generator: torch.Generator, device: Device, dtype: torch.dtype) -> None:
        self.g, self.device, self.dtype = generator, device, dtype

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device)

    def _pieces(self, n: int) -> bool:
        """Whether a draw of ``n`` values is made in numpy pieces (CPU generator, > 1 piece)."""
        return self.g.device.type == "cpu" and n > PIECE

    def _fill_pieces(self, flat: np.ndarray, fill) -> None:
        """``fill(generator, piece)`` for the :data:`PIECE`-sized pieces of the 1-D array ``flat``,
        each with its own ``PCG64`` generator spawned from one draw of ``self.g``, on torch's threads."""
        seed = int(torch.randint(0, 2 ** 63 - 1, (1,), generator=self.g, device=self.g.device))
        count = (flat.shape[0] + PIECE - 1) // PIECE
        children = np.random.SeedSequence(seed).spawn(count)
        for_each_index(lambda i: fill(np.random.Generator(np.random.PCG64(children[i])),
                                      flat[i * PIECE:(i + 1) * PIECE]), count)

    def normal(self, shape: Sequence[int], mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        t = torch.randn(shape, generator=self.g, device=self.g.device, dtype=self.dtype)
        if std != 1:
            t.mul_(std)
        if mean != 0:
            t.add_(mean)
        return self._to(t)

    def normal_into(self, out: torch.Tensor, std: float = 1.0) -> None:
        """Write ``N(0, std^2)`` draws into ``out`` (of the images' dtype): the same values as
        :meth:`normal` of ``out``'s shape, drawn in place where the generator is on ``out``'s
        device (no temporary)."""
        if torch.device(out.device) != torch.device(self.g.device) or out.dtype != self.dtype:
            out.copy_(self.normal(out.shape, std=std))
            return
        torch.randn(out.shape, generator=self.g, device=self.g.device, dtype=self.dtype, out=out)
        if std != 1:
            out.mul_(std)

    def uniform(self, shape: Sequence[int], low: float, high: float, *,
                dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """Uniform in ``[low, high)``, of the images' dtype unless ``dtype`` is given."""
        dtype = dtype or self.dtype
        if self._pieces(math.prod(shape)) and dtype in (torch.float32, torch.float64):
            t = torch.empty(tuple(shape), dtype=dtype)
            span, np_dtype = high - low, np.float32 if dtype == torch.float32 else np.float64

            def fill(gen: np.random.Generator, piece: np.ndarray) -> None:
                gen.random(out=piece, dtype=np_dtype)
                if span != 1:
                    piece *= np_dtype(span)
                if low != 0:
                    piece += np_dtype(low)
            self._fill_pieces(t.view(-1).numpy(), fill)
            return self._to(t)
        t = torch.rand(shape, generator=self.g, device=self.g.device, dtype=dtype)
        if high - low != 1:
            t.mul_(high - low)
        if low != 0:
            t.add_(low)
        return self._to(t)

    def bits16(self, shape: Sequence[int]) -> torch.Tensor:
        """Uniform 16-bit integers (``int16``, all of -32768..32767) of ``shape``: four per
        64-bit draw of the generator, several times cheaper than ``uniform``."""
        n = math.prod(shape)
        if self._pieces((n + 3) // 4):
            t = torch.empty((n + 3) // 4, dtype=torch.int64)

            def fill(gen: np.random.Generator, piece: np.ndarray) -> None:
                piece[:] = gen.bit_generator.random_raw(piece.shape[0])
            self._fill_pieces(t.numpy().view(np.uint64), fill)
            return self._to(t.view(torch.int16)[:n].view(shape))
        t = torch.empty((n + 3) // 4, dtype=torch.int64, device=self.g.device)
        t.random_(-2 ** 63, None, generator=self.g)
        return self._to(t.view(torch.int16)[:n].view(shape))

    def randint(self, low: int, high: int, shape: Sequence[int],
                dtype: torch.dtype = torch.int64) -> torch.Tensor:
        return self._to(torch.randint(low, high, shape, generator=self.g, device=self.g.device,
                                      dtype=dtype))

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        return self._to(torch.poisson(rate.to(self.g.device), generator=self.g))


def threshold16(p: float) -> int:
    """``t`` with ``P(u < t) = p`` (to 1 / 65536) for :meth:`Rng.bits16` draws ``u``."""
    return min(int(round(min(max(p, 0.0), 1.0) * 65536)) - 32768, 32767)
