"""Random draws of the corruptions: all from one ``torch.Generator``, moved to the images' device."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

__all__ = ["Rng", "threshold16"]

Device = Union[str, torch.device]


class Rng:
    """Random draws from one ``torch.Generator``, moved to the images' device."""

    def __init__(self, generator: torch.Generator, device: Device, dtype: torch.dtype) -> None:
        self.g, self.device, self.dtype = generator, device, dtype

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device)

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
        t = torch.rand(shape, generator=self.g, device=self.g.device, dtype=dtype or self.dtype)
        if high - low != 1:
            t.mul_(high - low)
        if low != 0:
            t.add_(low)
        return self._to(t)

    def bits16(self, shape: Sequence[int]) -> torch.Tensor:
        """Uniform 16-bit integers (``int16``, all of -32768..32767) of ``shape``: four per
        64-bit draw of the generator, several times cheaper than ``uniform``."""
        n = math.prod(shape)
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
