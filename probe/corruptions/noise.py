"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper) and speckle noise.

From ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261), with the parameters of
the reference package ``imagecorruptions`` and of CIFAR-10-C. Each function has the
registry signature ``fn(x, table entry, spatial scale, rng, table)`` (see
:mod:`probe.corruptions._registry`); call them through :func:`probe.corruptions.corrupt`.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import numpy as np
import torch

from . import _numba
from ._filters import _compiled_cpu, for_each_index
from ._registry import register_corruption
from ._rng import Rng, threshold16

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


@register_corruption("gaussian_noise", fills_output=True)
def gaussian_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """``x + N(0, c^2)`` per value, clipped to [0, 1], written into ``out`` (the noise is
    drawn straight into it: no temporary)."""
    rng.normal_into(out, std=c)
    out.add_(x).clamp_(0, 1)


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


# Shot noise on uint8 levels: the top bits of a 16-bit draw pick one of 2^_GUIDE_BITS intervals
# of the uniform that inverts the Poisson CDF
_GUIDE_BITS = 10
# x * 255 within this of an integer everywhere: the batch holds uint8 levels (up to float rounding)
_LEVEL_TOLERANCE = 2.0 ** -14
_PIECE = 1 << 17  # values per cache-sized piece of a batch


@functools.lru_cache(maxsize=16)
def _level_tables(c: float, device: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Shot noise's tables for the 256 rates ``c q / 255`` (``q`` = 0..255), ``cap = ceil(c)``.

    Returns ``(lookup [256 * 2^G] int8, cdf [256 * cap] float64)``: ``cdf[q * cap + k] =
    P(Poisson(c q / 255) <= k)``, and ``lookup[q * 2^G + j]`` is, for the uniforms ``u`` in
    ``[j / 2^G, (j + 1) / 2^G)``, their count ``k0`` of CDF values below ``u`` where that count
    is the same over the whole interval, else ``-1 - k0`` with ``k0`` the count at its start.
    """
    cap = int(math.ceil(c))
    rate = c * torch.arange(256, dtype=torch.float64) / 255
    k = torch.arange(cap, dtype=torch.float64)
    log_pmf = torch.xlogy(k, rate[:, None]) - rate[:, None] - torch.lgamma(k + 1)
    cdf = torch.exp(log_pmf).cumsum(dim=1).clamp_(max=1)
    edges = torch.arange((1 << _GUIDE_BITS) + 1, dtype=torch.float64) / (1 << _GUIDE_BITS)
    # counts just above an interval's start and just below its end
    first = torch.searchsorted(cdf, edges[:-1].expand(256, -1).contiguous(), right=True)
    last = torch.searchsorted(cdf, edges[1:].expand(256, -1).contiguous(), right=False)
    lookup = torch.where(first == last, first, -1 - first).to(torch.int8)
    return lookup.reshape(-1).to(device), cdf.reshape(-1).to(device)


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the True values of a flat bool tensor (numpy's on CPU: several times faster)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask)[:, 0]


def _shot_noise_levels(x: torch.Tensor, c: float, rng: Rng, out: torch.Tensor) -> bool:
    """``min(Poisson(x c), ceil(c)) / c``, clipped at 1, written into ``out`` for a batch of uint8
    levels ``x = q / 255``; ``False`` (nothing drawn, ``out`` undefined) when ``x`` holds other
    values.

    The CDF is inverted at a uniform ``u`` through a table per level: the top bits of a 16-bit
    draw give ``u``'s interval, which fixes the count unless a CDF value falls inside it;
    there (a few percent of the values) the rest of ``u`` is drawn (float64) and the count
    stepped up from the interval's start while the CDF stays below ``u``. Exactly the capped
    Poisson distribution of the levels' rates (up to float64 rounding).

    With numba on CPU the level check, the lookup and the product ``count * (1 / c)`` are one
    pass per piece (pieces on torch's threads); when the check fails, the generator is put
    back to its state before the draw, so nothing is drawn.
    """
    flat, flat_out = x.reshape(-1), out.view(-1)
    pieces = [(start, min(start + _PIECE, flat.numel())) for start in range(0, flat.numel(), _PIECE)]
    lookup_kernel = _numba.kernel("shot_lookup") if _compiled_cpu(x) else None
    if lookup_kernel is None:
        for start, stop in pieces:  # cache-sized pieces: no batch-sized temporaries
            scaled = flat[start:stop] * 255
            if float(scaled.sub_(torch.round(scaled)).abs_().amax()) > _LEVEL_TOLERANCE:
                return False  # not uint8 levels: nothing drawn
    cap = int(math.ceil(c))
    lookup, cdf = _level_tables(float(c), str(x.device))
    half = 1 << (_GUIDE_BITS - 1)
    state = rng.g.get_state() if lookup_kernel is not None else None
    bits = rng.bits16(flat.shape)
    count = torch.empty(flat.shape, dtype=torch.int8, device=x.device)
    if lookup_kernel is not None:
        arrays = (flat.numpy(), bits.numpy(), lookup.numpy(), count.numpy(), flat_out.numpy())
        scale = arrays[-1].dtype.type(1.0 / c)
        bad = np.zeros(len(pieces), dtype=np.int64)
        positions = np.empty(flat.numel(), dtype=np.int64)  # per piece: where its counts are negative
        found = np.zeros(len(pieces), dtype=np.int64)

        def look_up(i: int) -> None:
            start, stop = pieces[i]
            piece = [a if a is arrays[2] else a[start:stop] for a in arrays]
            bad[i], found[i] = lookup_kernel(*piece, 16 - _GUIDE_BITS, half, scale, _LEVEL_TOLERANCE,
                                             positions[start:stop], start)
        for_each_index(look_up, len(pieces))
        if bad.any():
            rng.g.set_state(state)  # not uint8 levels: as if nothing was drawn
            return False
        inside = torch.from_numpy(np.concatenate([positions[start:start + n]
                                                  for (start, _), n in zip(pieces, found.tolist())]))
    else:
        index = torch.empty(min(flat.numel(), _PIECE), dtype=torch.int32, device=x.device)
        for start, stop in pieces:
            piece = index[:stop - start]
            piece.copy_(torch.round(flat[start:stop] * 255).mul_(1 << _GUIDE_BITS).add_(half))  # exact
            piece += bits[start:stop] >> (16 - _GUIDE_BITS)  # -half .. half - 1
            torch.index_select(lookup, 0, piece, out=count[start:stop])
        torch.mul(count.to(x.dtype), 1.0 / c, out=flat_out).clamp_(max=1)  # the generic path's product
        inside = _flat_nonzero(count < 0)
    if inside.numel():
        row = torch.round(flat.index_select(0, inside) * 255).long()
        interval = (bits.index_select(0, inside) >> (16 - _GUIDE_BITS)).long() + half
        u = rng.uniform(inside.shape, 0, 1, dtype=torch.float64)
        u.add_(interval).mul_(1.0 / (1 << _GUIDE_BITS))
        k = -1 - count.index_select(0, inside).long()

        def below() -> torch.Tensor:  # the CDF at the current count is below u
            return (k < cap) & (u > cdf.index_select(0, row * cap + k.clamp(max=cap - 1)))
        for _ in range(2):  # a CDF value or two inside the interval: step up
            k += below()
        rest = _flat_nonzero(below())
        if rest.numel():  # an interval holding many CDF values (a low tail): count them all
            rows = cdf.view(256, cap).index_select(0, row.index_select(0, rest))
            k[rest] = (rows < u.index_select(0, rest)[:, None]).sum(dim=1)
        flat_out[inside] = k.to(x.dtype).mul_(1.0 / c).clamp_(max=1)
    return True


@register_corruption("shot_noise", fills_output=True)
def shot_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """``Poisson(x c) / c`` per value, clipped at 1, written into ``out``."""
    cap = int(math.ceil(c))
    if cap <= 64:  # the output is clipped at 1, i.e. counts >= c: only P(k < cap) matters
        if _shot_noise_levels(x, c, rng, out):
            return
        noisy = _poisson_capped(x * c, rng.uniform(x.shape, 0, 1), cap).mul_(1.0 / c)
    else:
        noisy = rng.poisson(x * c).mul_(1.0 / c)
    torch.clamp(noisy, 0, 1, out=out)


@register_corruption("impulse_noise", fills_output=True)
def impulse_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """Each value flips with probability ``c``, to salt or pepper with probability 1/2
    (skimage's ``random_noise(mode="s&p")``), into ``out`` (the values stay in [0, 1])."""
    u = rng.bits16(x.shape)
    compiled = _numba.kernel("impulse") if _compiled_cpu(x) and out.is_contiguous() else None
    if compiled is None:
        torch.where(u < threshold16(c), (u < threshold16(c / 2)).to(x.dtype), x, out=out)
        return
    # one pass per piece, pieces on torch's threads
    arrays = (x.reshape(-1).numpy(), u.reshape(-1).numpy(), out.view(-1).numpy())
    pieces = range(0, x.numel(), _PIECE)
    for_each_index(lambda i: compiled(*(a[pieces[i]:pieces[i] + _PIECE] for a in arrays),
                                      threshold16(c), threshold16(c / 2)), len(pieces))


@register_corruption("speckle_noise")
def speckle_noise(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """``x (1 + N(0, c^2))`` per value."""
    return rng.normal(x.shape, std=c).add_(1).mul_(x)
