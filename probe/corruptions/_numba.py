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
        # out = clamp(scale * (src + sum over zooms f of the bilinear sample
        #   wy0 (wx0 src[r0, c0] + wx1 src[r0, c1]) + wy1 (wx0 src[r1, c0] + wx1 src[r1, c1])), 0, 1)
        h, w, planes = src.shape
        zero, one = src.dtype.type(0), src.dtype.type(1)
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
                    o[x] = min(max(acc[x, p] * scale, zero), one)
    return zoom_sum


# The element-wise kernels below take whole (sliced) 1-D arrays and loop from 0 with
# branch-free bodies and same-width integer constants, which LLVM vectorises.

def _shot_lookup(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True)
    def shot_lookup(flat, bits, lookup, count, out, shift, half, scale, tolerance, inside, base):
        # count[i] = lookup[rint(255 flat[i]) 2 half + half + (bits[i] >> shift)],
        # out[i] = min(count[i] scale, 1); the positions base + i of the negative counts
        # (a CDF value inside the interval) go to inside[0 .. n - 1]. Returns (how many
        # 255 flat[i] are further than tolerance from an integer: the batch is not uint8
        # levels unless that is 0, n)
        width, offset, right = np.int32(2 * half), np.int32(half), np.int32(shift)
        one = out.dtype.type(1)
        bad = 0
        for i in range(flat.shape[0]):
            v = flat[i] * 255
            r = np.rint(v)
            bad += abs(v - r) > tolerance
            k = lookup[np.int32(r) * width + offset + (np.int32(bits[i]) >> right)]
            count[i] = k
            out[i] = min(k * scale, one)
        n = 0
        for i in range(flat.shape[0]):
            if count[i] < 0:
                inside[n] = base + i
                n += 1
        return bad, n
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


def _elastic_sample(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True, fastmath={"contract"})
    def elastic_sample(x, field, out, image, w, base_x, base_y, scale_x, scale_y):
        # x, out [B, C, H * W], field [B, 2, H * W]: out = grid_sample(x, base + field * scale,
        # bilinear, reflection, align_corners=False) with torch's CPU arithmetic (fused
        # multiply-adds where its kernels have them): grid value g -> (g + 1) w / 2 - 1 / 2,
        # reflected about -1/2 and w - 1/2, clipped to [0, w - 1]; a corner past the last row or
        # column has weight 0 (read at the edge instead). Unsigned offsets: no wraparound test.
        channels, h = x.shape[1], x.shape[2] // w
        one, half = x.dtype.type(1), x.dtype.type(0.5)
        zero, lo = x.dtype.type(0), x.dtype.type(-0.5)
        half_w, half_h = x.dtype.type(w / 2), x.dtype.type(h / 2)
        span_w, span_h = x.dtype.type(2 * w), x.dtype.type(2 * h)
        last_w, last_h = x.dtype.type(w - 1), x.dtype.type(h - 1)
        weights = np.empty((4, w), dtype=x.dtype)
        offsets = np.empty((4, w), dtype=np.uint64)
        w_nw, w_ne, w_sw, w_se = weights[0], weights[1], weights[2], weights[3]
        o_nw, o_ne, o_sw, o_se = offsets[0], offsets[1], offsets[2], offsets[3]
        width, top = np.uint64(w), np.uint64(w * (h - 1))
        for y in range(h):
            f0, f1, gy0 = field[image, 0, y * w:(y + 1) * w], field[image, 1, y * w:(y + 1) * w], base_y[y]
            for i in range(w):
                cx = (base_x[i] + f0[i] * scale_x + one) * half_w - half
                cy = (gy0 + f1[i] * scale_y + one) * half_h - half
                ax = abs(cx - lo)
                ax = ax - np.trunc(ax / span_w) * span_w
                cx = min(max(min(ax, span_w - ax) + lo, zero), last_w)
                ay = abs(cy - lo)
                ay = ay - np.trunc(ay / span_h) * span_h
                cy = min(max(min(ay, span_h - ay) + lo, zero), last_h)
                fx, fy = np.floor(cx), np.floor(cy)
                we = cx - fx
                ea = one - we
                no = cy - fy
                so = one - no
                w_nw[i] = so * ea
                w_ne[i] = so * we
                w_sw[i] = no * ea
                w_se[i] = no * we
                col, row = np.uint64(fx), np.uint64(fy) * width
                east = min(col + np.uint64(1), width - np.uint64(1))
                south = min(row + width, top)
                o_nw[i] = row + col
                o_ne[i] = row + east
                o_sw[i] = south + col
                o_se[i] = south + east
            for c in range(channels):
                plane, o = x[image, c], out[image, c, y * w:(y + 1) * w]
                for i in range(w):
                    # torch's ((nw + fma ne) + fma sw) + fma se, written for LLVM to fuse that way
                    o[i] = (plane[o_ne[i]] * w_ne[i] + plane[o_nw[i]] * w_nw[i]
                            + plane[o_sw[i]] * w_sw[i] + plane[o_se[i]] * w_se[i])
    return elastic_sample


def _plasma(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True, fastmath={"contract"})
    def plasma(m, noise, image):
        # m [B, N, N]: the diamond-square map of weather._plasma_fractal for one image, from
        # its transformed draws noise[image] (per level: the square, then the two diamond
        # stages, k x k values each, k = N / step); each new value is noise + total / 4 as
        # torch's add_(total, alpha=0.25) (one fused multiply-add), totals summed in its order;
        # then shifted to minimum 0 and divided by the maximum (at least 1e-12)
        n = m.shape[1]
        a, draws = m[image], noise[image]
        quarter = m.dtype.type(0.25)
        a[:, :] = 0
        offset, step = 0, n
        while step >= 2:
            half, k = step // 2, n // step
            for i in range(k):
                r, r1 = i * step, ((i + 1) % k) * step
                for j in range(k):
                    q, q1 = j * step, (j + 1) * step if j + 1 < k else 0
                    total = (a[r, q] + a[r1, q]) + (a[r, q1] + a[r1, q1])
                    a[r + half, q + half] = draws[offset + i * k + j] + total * quarter
            offset += k * k
            for i in range(k):
                r, r0 = i * step, ((i - 1) % k) * step
                for j in range(k):
                    q, q1 = j * step, (j + 1) * step if j + 1 < k else 0
                    total = ((a[r + half, q + half] + a[r, q]) + a[r0 + half, q + half]) + a[r, q1]
                    a[r, q + half] = draws[offset + i * k + j] + total * quarter
            offset += k * k
            for i in range(k):
                r, r1 = i * step, ((i + 1) % k) * step
                for j in range(k):
                    q, q0 = j * step, (j - 1) * step if j > 0 else (k - 1) * step
                    total = ((a[r + half, q + half] + a[r, q]) + a[r + half, q0 + half]) + a[r1, q]
                    a[r + half, q] = draws[offset + i * k + j] + total * quarter
            offset += k * k
            step //= 2
        low = a.min()
        for i in range(n):
            row = a[i]
            for j in range(n):
                row[j] = row[j] - low
        high = max(a.max(), m.dtype.type(1e-12))
        for i in range(n):
            row = a[i]
            for j in range(n):
                row[j] = row[j] / high
    return plasma


def _fma(numba):
    """``fma(a, b, c) = a b + c`` rounded once (LLVM's ``llvm.fma``): the kernels below are
    compiled without contraction and fuse exactly where torch's kernels do."""
    @numba.extending.intrinsic
    def fma(typingctx, a, b, c):  # pragma: no cover (compiled)
        def codegen(context, builder, signature, args):
            return builder.fma(*args)
        return a(a, a, a), codegen
    return fma


def _fog_blend(numba):  # pragma: no cover (compiled)
    fma = _fma(numba)

    @numba.njit(nogil=True, cache=True)
    def fog_blend(x, plasma, out, image, gain, weight):
        # out = clamp(addcmul(x gain, plasma, weight), 0, 1) for one image: torch's addcmul
        # is one fused multiply-add on the rounded product x gain
        channels, h, w = x.shape[1], x.shape[2], x.shape[3]
        zero, one = x.dtype.type(0), x.dtype.type(1)
        g, s = gain[image], weight[image]
        for c in range(channels):
            for y in range(h):
                src, p, o = x[image, c, y], plasma[image, y, :w], out[image, c, y]
                for i in range(w):
                    o[i] = src[i] * g
                for i in range(w):
                    o[i] = min(max(fma(p[i], s, o[i]), zero), one)
    return fog_blend


def _snow_blend(numba):  # pragma: no cover (compiled)
    fma = _fma(numba)

    @numba.njit(nogil=True, cache=True)
    def snow_blend(x, layer, out, image, keep, mix):
        # RGB x: out = clamp(fma(x, mix, max(x, 1.5 gray + 0.5) keep) + layer, 0, 1) for one
        # image, gray = (0.299 r + 0.587 g) + 0.114 b, every product rounded as torch's ops
        h = x.shape[2]
        zero, one = x.dtype.type(0), x.dtype.type(1)
        red, green, blue = x.dtype.type(0.299), x.dtype.type(0.587), x.dtype.type(0.114)
        gain, bias = x.dtype.type(1.5), x.dtype.type(0.5)
        k, m = x.dtype.type(keep), x.dtype.type(mix)
        bright = np.empty(x.shape[3], dtype=x.dtype)
        for y in range(h):
            r, g, b, flakes = x[image, 0, y], x[image, 1, y], x[image, 2, y], layer[image, 0, y]
            for i in range(bright.shape[0]):
                bright[i] = ((red * r[i] + green * g[i]) + blue * b[i]) * gain + bias
            for c in range(3):
                src, o = x[image, c, y], out[image, c, y]
                for i in range(bright.shape[0]):
                    v = fma(src[i], m, max(src[i], bright[i]) * k) + flakes[i]
                    o[i] = min(max(v, zero), one)
    return snow_blend


def _brightness(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True)
    def brightness(x, out, image, c):
        # one image: v = max over channels, v' = clamp(v + c, 0, 1); every channel times v' / v
        # (v' where v = 0: black turns gray), clipped to [0, 1], as the torch path rounds it
        channels, h, w = x.shape[1], x.shape[2], x.shape[3]
        zero, one, add = x.dtype.type(0), x.dtype.type(1), x.dtype.type(c)
        v = np.empty(w, dtype=x.dtype)
        gain = np.empty(w, dtype=x.dtype)
        black = np.empty(w, dtype=x.dtype)
        for y in range(h):
            v[:] = x[image, 0, y]
            for ch in range(1, channels):
                src = x[image, ch, y]
                for i in range(w):
                    v[i] = max(v[i], src[i])
            for i in range(w):
                new = min(max(v[i] + add, zero), one)
                positive = v[i] > zero
                gain[i] = new / v[i] if positive else zero
                black[i] = zero if positive else new
            for ch in range(channels):
                src, o = x[image, ch, y], out[image, ch, y]
                for i in range(w):
                    o[i] = min(max(src[i] * gain[i] + black[i], zero), one)
    return brightness


def _pixelate(numba):  # pragma: no cover (compiled)
    @numba.njit(nogil=True, cache=True)
    def pixelate(x, out, image, row_first, row_count, row_weight, col_first, col_count, col_weight,
                 ymap, xmap):
        # one image: Pillow's BOX downsampling (output row i = row_weight[i] times the sum of
        # input rows row_first[i] .. + row_count[i] - 1, then the same along columns), clipped
        # to [0, 1], then NEAREST back up (out[y, x] = small[ymap[y], xmap[x]])
        channels, h, w = x.shape[1], x.shape[2], x.shape[3]
        hs, ws = row_first.shape[0], col_first.shape[0]
        zero, one = x.dtype.type(0), x.dtype.type(1)
        rows = np.empty(w, dtype=x.dtype)
        small = np.empty((hs, ws), dtype=x.dtype)
        for c in range(channels):
            for i in range(hs):
                rows[:] = x[image, c, row_first[i]]
                for k in range(1, row_count[i]):
                    src = x[image, c, row_first[i] + k]
                    for j in range(w):
                        rows[j] += src[j]
                weight = x.dtype.type(row_weight[i])
                for j in range(w):
                    rows[j] *= weight
                for j in range(ws):
                    total = rows[col_first[j]]
                    for k in range(1, col_count[j]):
                        total += rows[col_first[j] + k]
                    small[i, j] = min(max(total * x.dtype.type(col_weight[j]), zero), one)
            for y in range(h):
                o = out[image, c, y]
                if y > 0 and ymap[y] == ymap[y - 1]:
                    o[:] = out[image, c, y - 1]
                    continue
                src = small[ymap[y]]
                for i in range(w):
                    o[i] = src[xmap[i]]
    return pixelate


def _frost_blend(numba):  # pragma: no cover (compiled)
    fma = _fma(numba)

    @numba.njit(nogil=True, cache=True)
    def frost_blend(x, stack, out, image, texture, top, left, keep, mix):
        # out = clamp(fma(x, keep, crop mix), 0, 1) for one image, crop = stack[texture] from
        # (top, left): torch's mul then add_(x, alpha=keep) (one fused multiply-add)
        channels, h, w = x.shape[1], x.shape[2], x.shape[3]
        zero, one = x.dtype.type(0), x.dtype.type(1)
        k, m = x.dtype.type(keep), x.dtype.type(mix)
        for c in range(channels):
            for y in range(h):
                src, o, crop = x[image, c, y], out[image, c, y], stack[texture, c, top + y, left:left + w]
                for i in range(w):
                    o[i] = min(max(fma(src[i], k, crop[i] * m), zero), one)
    return frost_blend


_BUILDERS = {"motion_blur": _motion_blur, "zoom_sum": _zoom_sum, "shot_lookup": _shot_lookup, "impulse": _impulse,
             "elastic_sample": _elastic_sample, "plasma": _plasma,
             "fog_blend": _fog_blend, "snow_blend": _snow_blend, "brightness": _brightness,
             "pixelate": _pixelate, "frost_blend": _frost_blend}


@functools.lru_cache(maxsize=None)
def kernel(name: str) -> Optional[Callable[..., None]]:
    """The compiled kernel ``name`` (see the builders above), or ``None`` without numba."""
    try:
        import numba
    except ModuleNotFoundError:
        return None
    return _BUILDERS[name](numba)
