"""Compiled CPU kernels of the corruptions (numba, ``nogil``): one pass per image or row block
on torch's threads (:func:`probe.corruptions._filters.for_each_index`), where the torch ops
would make several passes over batch-sized temporaries.

Each kernel is compiled when first needed (cached on disk); :func:`kernel` returns ``None``
without numba, and the callers then take their generic torch path.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import numpy as np

__all__ = ["kernel"]


def _motion_blur(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True, fastmath={"contract"})
    def motion_blur(src, out, image, dy, dx, k, taps):
        # out[image, c, y, x] = sum over t < taps[image] of
        #   k[t] * src[image, c, clamp(y - dy[image, t]), clamp(x - dx[image, t])],
        # added in tap order; rows are read from a copy of the plane with edge-replicated
        # columns, four taps per pass over an output row
        channels, h, w = src.shape[1], src.shape[2], src.shape[3]
        n = taps[image]
        margin = 0
        for t in range(n):
            margin = max(margin, abs(dx[image, t]))
        padded = np.empty((h, w + 2 * margin), dtype=src.dtype)
        rows = np.empty(n, dtype=np.int64)
        starts = np.empty(n, dtype=np.int64)
        for c in range(channels):
            for y in range(h):
                s = src[image, c, y]
                p = padded[y]
                for x in range(margin):
                    p[x] = s[0]
                    p[margin + w + x] = s[w - 1]
                p[margin:margin + w] = s
            for y in range(h):
                for t in range(n):
                    rows[t] = min(max(y - dy[image, t], 0), h - 1)
                    starts[t] = margin - dx[image, t]
                row = out[image, c, y]
                s0 = padded[rows[0], starts[0]:starts[0] + w]
                k0 = k[0]
                for x in range(w):
                    row[x] = k0 * s0[x]
                t = 1
                while t + 4 <= n:
                    s0 = padded[rows[t], starts[t]:starts[t] + w]
                    s1 = padded[rows[t + 1], starts[t + 1]:starts[t + 1] + w]
                    s2 = padded[rows[t + 2], starts[t + 2]:starts[t + 2] + w]
                    s3 = padded[rows[t + 3], starts[t + 3]:starts[t + 3] + w]
                    k0, k1, k2, k3 = k[t], k[t + 1], k[t + 2], k[t + 3]
                    for x in range(w):
                        row[x] = row[x] + k0 * s0[x] + k1 * s1[x] + k2 * s2[x] + k3 * s3[x]
                    t += 4
                while t < n:
                    s0 = padded[rows[t], starts[t]:starts[t] + w]
                    k0 = k[t]
                    for x in range(w):
                        row[x] += k0 * s0[x]
                    t += 1
    return motion_blur


def _zoom_sum(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True, fastmath={"contract"})
    def zoom_sum(src, out, y0, y1, row0, row1, wy0, wy1, col0, col1, wx0, wx1, scale):
        # src [H, W, P] (channels last), out [P, H, W]: for rows y0..y1 - 1,
        # out = scale * (src + sum over zooms f of the bilinear sample
        #   wy0 (wx0 src[r0, c0] + wx1 src[r0, c1]) + wy1 (wx0 src[r1, c0] + wx1 src[r1, c1]))
        h, w, planes = src.shape
        acc = np.empty((w, planes), dtype=src.dtype)
        for y in range(y0, y1):
            acc[:, :] = src[y]
            for f in range(row0.shape[0]):
                r0, r1 = row0[f, y], row1[f, y]
                h0, h1 = wy0[f, y], wy1[f, y]
                for x in range(w):
                    c0, c1 = col0[f, x], col1[f, x]
                    w0, w1 = wx0[f, x], wx1[f, x]
                    a00, a01, a10, a11 = src[r0, c0], src[r0, c1], src[r1, c0], src[r1, c1]
                    a = acc[x]
                    for p in range(planes):
                        a[p] += h0 * (w0 * a00[p] + w1 * a01[p]) + h1 * (w0 * a10[p] + w1 * a11[p])
            for p in range(planes):
                o = out[p, y]
                for x in range(w):
                    o[x] = acc[x, p] * scale
    return zoom_sum


# The element-wise kernels below take whole (sliced) 1-D arrays and loop from 0 with
# branch-free bodies and same-width integer constants, which LLVM vectorises.

def _uint8_levels(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True)
    def uint8_levels(flat, tolerance):
        # whether 255 flat[i] is within tolerance of an integer for every i
        bad = 0
        for i in range(flat.shape[0]):
            v = flat[i] * 255
            bad += abs(v - np.rint(v)) > tolerance
        return bad == 0
    return uint8_levels


def _shot_lookup(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True)
    def shot_lookup(flat, bits, lookup, count, out, shift, half, scale):
        # count[i] = lookup[rint(255 flat[i]) 2 half + half + (bits[i] >> shift)], out[i] = count[i] scale
        width, offset, right = np.int32(2 * half), np.int32(half), np.int32(shift)
        for i in range(flat.shape[0]):
            level = np.int32(np.rint(flat[i] * 255))
            k = lookup[level * width + offset + (np.int32(bits[i]) >> right)]
            count[i] = k
            out[i] = k * scale
    return shot_lookup


def _impulse(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True)
    def impulse(x, bits, out, flip, salt):
        # out = (bits < salt) where bits < flip, else x; as x keep + add with keep, add in {0, 1}:
        # x 1 + 0 = x and x 0 + 1 = 1, x 0 + 0 = 0 exactly (salt <= flip)
        flip16, salt16 = np.int16(flip), np.int16(salt)
        one, zero = x.dtype.type(1), x.dtype.type(0)
        for i in range(x.shape[0]):
            u = bits[i]
            keep = one if u >= flip16 else zero
            add = one if u < salt16 else zero
            out[i] = x[i] * keep + add
    return impulse


_BUILDERS = {"motion_blur": _motion_blur, "zoom_sum": _zoom_sum, "uint8_levels": _uint8_levels,
             "shot_lookup": _shot_lookup, "impulse": _impulse}


@functools.lru_cache(maxsize=None)
def kernel(name: str) -> Optional[Callable[..., None]]:
    """The compiled kernel ``name`` (see the builders above), or ``None`` without numba."""
    try:
        import numba
    except ModuleNotFoundError:
        return None
    return _BUILDERS[name](numba)
