"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper) and speckle noise.

From ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261), with the parameters of
the reference package ``imagecorruptions`` and of CIFAR-10-C. Each function has the
registry signature ``fn(x, table entry, spatial scale, rng, table)`` (see
:mod:`probe.corruptions._registry`); call them through :func:`probe.corruptions.corrupt`.
"""
from __future__ import annotations

import math

import torch

from ._registry import register_corruption
from ._rng import Rng, threshold16

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


@register_corruption("gaussian_noise")
def gaussian_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """``x + N(0, c^2)`` per value."""
    return rng.normal(x.shape, std=c).add_(x)


def _poisson_capped(rate: torch.Tensor, u: torch.Tensor, cap: int) -> torch.Tensor:
    """``min(Poisson(rate), cap)`` by inversion of the CDF at uniforms ``u`` (same shape),
    for ``0 <= rate <= cap``, in cache-sized chunks: ``cap`` steps of adding the CDF's
    terms ``exp(-rate) rate^k / k!`` (elementwise, so the chunking does not change the
    result).

    A term is kept as ``exp(-rate) (rate / a)^k`` times the scalar ``a^k / k!`` with
    ``a = cap / e``: every kept value is then at most 1 (its maximum is at
    ``rate = k = cap``), so nothing overflows float32 for any ``cap``, and a kept value
    small enough to underflow stands for a term below 1e-28.
    """
    flat_rate, flat_u = rate.reshape(-1), u.reshape(-1)
    out = torch.empty_like(flat_rate)
    a = max(cap / math.e, 1.0)
    # CPU: 64k values per thread (each thread's share of a step stays in its core's cache, and
    # a step's parallel region is not split finer than that); GPU: all at once
    chunk = (1 << 16) * torch.get_num_threads() if rate.device.type == "cpu" else flat_rate.numel()
    for start in range(0, flat_rate.numel(), chunk):
        lam, v = flat_rate[start:start + chunk], flat_u[start:start + chunk]
        p = torch.exp(-lam)
        cdf = p.clone()
        count = out[start:start + chunk]
        torch.gt(v, cdf, out=count)
        below = torch.empty_like(p)  # comparisons written as floats: no bool -> float copy
        scaled = lam * (1.0 / a)
        weight = 1.0
        for k in range(1, cap):
            weight *= a / k  # a^k / k!
            p.mul_(scaled)
            cdf.add_(p, alpha=weight)
            count.add_(torch.gt(v, cdf, out=below))
    return out.view(rate.shape)


@register_corruption("shot_noise")
def shot_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """``Poisson(x c) / c`` per value."""
    cap = int(math.ceil(c))
    if cap <= 64:  # the output is clipped at 1, i.e. counts >= c: only P(k < cap) matters
        return _poisson_capped(x * c, rng.uniform(x.shape, 0, 1), cap).mul_(1.0 / c)
    return rng.poisson(x * c).mul_(1.0 / c)


@register_corruption("impulse_noise")
def impulse_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """Each value flips with probability ``c``, to salt or pepper with probability 1/2
    (skimage's ``random_noise(mode="s&p")``)."""
    u = rng.bits16(x.shape)
    return torch.where(u < threshold16(c), (u < threshold16(c / 2)).to(x.dtype), x)


@register_corruption("speckle_noise")
def speckle_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """``x (1 + N(0, c^2))`` per value."""
    return rng.normal(x.shape, std=c).add_(1).mul_(x)
