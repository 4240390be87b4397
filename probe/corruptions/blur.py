"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur.

From ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261), reproducing the
reference package ``imagecorruptions`` (glass blur's sequential pixel copy exactly,
defocus blur's anti-aliased disk, motion blur's shifted-copy kernel, zoom blur's
clipped zooms). Each function has the registry signature
``fn(x, table entry, spatial scale, rng, table)`` (see :mod:`probe.corruptions._registry`);
call them through :func:`probe.corruptions.corrupt`.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import _numba
from ._filters import (_compiled_cpu, _opencv_planes, convolve2d, for_each_index, gaussian, gaussian_kernel1d,
                       motion_blur_at, opencv, separable)
from ._registry import register_corruption
from ._rng import Device, Rng

__all__ = ["gaussian_blur", "glass_blur", "defocus_blur", "motion_blur", "zoom_blur"]


@register_corruption("gaussian_blur")
def gaussian_blur(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """skimage's Gaussian filter with sigma ``c`` (times the spatial scale)."""
    return gaussian(x, c * s)


def _glass_draws(rng: Rng, b: int, h: int, w: int, n: int, iterations: int) -> torch.Tensor:
    """Glass blur's offset draws ``[iterations, B * H * W]``: one per pixel and iteration,
    ``d`` in ``[0, n^2)`` for ``dy = d // n - delta``, ``dx = d % n - delta``.

    A power of two ``n^2 <= 256`` takes the low bits of 8-bit draws (``uint8``), else
    ``int32`` draws of ``randint``.
    """
    draws = []
    for _ in range(iterations):
        if n * n <= 256 and (n * n) & (n * n - 1) == 0:  # a power of two: low bits of 8-bit draws
            draw = rng.bits16(((b * h * w + 1) // 2,)).view(torch.uint8)[:b * h * w]
            draws.append(draw.bitwise_and(n * n - 1))
        else:
            draws.append(rng.randint(0, n * n, (b * h * w,), dtype=torch.int32))
    return torch.stack(draws)


def _shuffle_chains(x: torch.Tensor, draws: torch.Tensor, delta: int) -> torch.Tensor:
    """Glass blur's sequential copy on ``x [B, C, H, W]`` (any device), batched: each pixel
    follows the chain of its reads to its end by pointer doubling, then the pixels move by
    one int32 ``index_select`` per plane. Returns a new tensor."""
    b, ch, h, w = x.shape
    lo, hi_row, hi_col = delta + 1, h - delta, w - delta  # visited rows/cols, inclusive
    rows = torch.arange(h, device=x.device)[:, None]
    cols = torch.arange(w, device=x.device)[None, :]
    visited = ((rows >= lo) & (rows <= hi_row) & (cols >= lo) & (cols <= hi_col)).reshape(-1)
    # int32 indices throughout: index_select on int32 is several times faster than int64
    i32 = torch.int32
    position = torch.arange(h * w, device=x.device, dtype=i32)
    offset = (torch.arange(b, device=x.device, dtype=i32) * (h * w))[:, None]
    identity = torch.arange(b * h * w, device=x.device, dtype=i32)
    n = 2 * delta
    shifts = torch.arange(n * n, device=x.device, dtype=i32)
    shifts = (shifts // n - delta) * w + (shifts % n - delta)
    source = None  # output pixel -> input pixel (flat over all images); None: identity
    for draw in draws:
        shift = shifts.index_select(0, draw.to(i32)).view(b, h * w).mul_(visited)  # 0: not visited
        partner = shift + position
        # the partner was visited before (later in raster order): read its new value
        chained = visited.index_select(0, partner.view(-1)).view(b, h * w).logical_and_(shift > 0)
        partner = partner.add_(offset).view(-1)
        # follow the chains to their ends by pointer doubling: 4 rounds unchecked (a batch
        # has chains of more than 8 reads), then until nothing moves
        nxt = shift.mul_(chained).view(-1).add_(identity)
        for _ in range(4):
            nxt = nxt.index_select(0, nxt)
        while True:
            jumped = nxt.index_select(0, nxt)
            if torch.equal(jumped, nxt):
                break
            nxt = jumped
        step = partner.index_select(0, nxt)
        source = step if source is None else source.index_select(0, step)
    local = source.view(b, h * w) - offset
    shuffled = torch.empty_like(x)
    for i in range(b):  # plane by plane: int32 index_select is several times faster than gather
        for channel in range(ch):
            torch.index_select(x[i, channel].view(-1), 0, local[i], out=shuffled[i, channel].view(-1))
    return shuffled


@functools.lru_cache(maxsize=1)
def _sequential_kernel() -> Optional[Callable[..., None]]:
    """The numba kernel of :func:`_shuffle_sequential` (compiled once, cached on disk), or
    ``None`` without numba."""
    try:
        import numba
    except ModuleNotFoundError:
        return None

    @numba.njit(nogil=True, cache=True)
    def shuffle(x, draws, image, shifts, delta, w):  # pragma: no cover (compiled)
        # x [B, C, H * W], draws [iterations, B, H * W], shifts: flat offset of each draw
        planes, h = x.shape[1], x.shape[2] // w
        for it in range(draws.shape[0]):
            for row in range(h - delta, delta, -1):
                for p in range(row * w + w - delta, row * w + delta, -1):
                    q = p + shifts[draws[it, image, p]]
                    for c in range(planes):
                        x[image, c, p] = x[image, c, q]
    return shuffle


def _shuffle_sequential(x: torch.Tensor, draws: torch.Tensor, delta: int) -> bool:
    """Glass blur's sequential copy on a CPU batch ``x [B, C, H, W]`` in place, as the
    reference runs it (a numba loop per image, images on ``torch.get_num_threads()``
    threads); ``False`` (nothing done) without numba."""
    kernel = _sequential_kernel()
    if kernel is None or x.requires_grad or not x.is_contiguous():
        return False
    b, _, h, w = x.shape
    x_np = x.view(b, -1, h * w).numpy()
    draws_np = draws.view(draws.shape[0], b, h * w).numpy()
    n = 2 * delta
    shifts = np.array([(d // n - delta) * w + d % n - delta for d in range(n * n)], dtype=np.int64)
    for_each_index(lambda i: kernel(x_np, draws_np, i, shifts, delta, w), b)
    return True


def _glass_fused(x: torch.Tensor, sigma: float, delta: int, draws: torch.Tensor, out: torch.Tensor) -> bool:
    """Glass blur of a CPU batch image by image, written into ``out``: OpenCV's Gaussian filter
    into a per-image buffer, the uint8 cast, the sequential copy (numba), the second filter
    straight into ``out`` and the clip, all while the image is in cache, images on torch's
    threads. The same operations as the batched path (:func:`gaussian` takes OpenCV there
    too); ``False`` (nothing done) where that path would not use OpenCV and numba."""
    kernel = _sequential_kernel()
    radius = int(4.0 * float(sigma) + 0.5)
    if (kernel is None or not out.is_contiguous() or not _compiled_cpu(x) or radius == 0 or sigma <= 1e-15
            or not _opencv_planes(x, radius, radius)):
        return False
    cv2 = opencv("glass blur on CPU")
    b, ch, h, w = x.shape
    k = gaussian_kernel1d(sigma, 4.0, "cpu", x.dtype).numpy()
    src, dst = x.contiguous().numpy(), out.numpy()
    draws_np = draws.view(draws.shape[0], b, h * w).numpy()
    n = 2 * delta
    shifts = np.array([(d // n - delta) * w + d % n - delta for d in range(n * n)], dtype=np.int64)

    def image(i: int) -> None:
        buf = np.empty((ch, h, w), dtype=src.dtype)
        for c in range(ch):
            cv2.sepFilter2D(src[i, c], -1, k, k, dst=buf[c], borderType=cv2.BORDER_REPLICATE)
        np.multiply(buf, 255, out=buf)
        np.floor(buf, out=buf)
        np.divide(buf, 255, out=buf)
        kernel(buf.reshape(1, ch, h * w), draws_np[:, i:i + 1], 0, shifts, delta, w)
        for c in range(ch):
            cv2.sepFilter2D(buf[c], -1, k, k, dst=dst[i, c], borderType=cv2.BORDER_REPLICATE)
        np.clip(dst[i], 0, 1, out=dst[i])
    for_each_index(image, b)
    return True


@register_corruption("glass_blur", fills_output=True)
def glass_blur(x: torch.Tensor, c: Tuple[float, int, int], s: float, rng: Rng,
               table: str, out: torch.Tensor) -> None:
    """Blur, locally scramble pixels, blur again (the reference's glass blur), into ``out``.

    The reference visits pixels in descending raster order and runs
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy views, which is a copy
    ``x[h, w] = x[h + dy, w + dx]`` (the second assignment writes back the copied
    value), so a pixel reads an already updated one whenever its partner comes
    later in raster order. That sequential loop is run as such on CPU (numba; large images
    fused with the filters image by image, :func:`_glass_fused`), and elsewhere (or without
    numba) computed exactly, batched, by pointer doubling (:func:`_shuffle_chains`); all
    give the same pixels from the same draws.
    """
    sigma, delta, iterations = c[0] * s, max(1, int(round(c[1] * s))), c[2]
    b, ch, h, w = x.shape
    if h - delta < delta + 1 or w - delta < delta + 1:  # no pixel visited
        # the reference's uint8 cast, out of place: a sigma below half a pixel gives x itself back
        cast = torch.mul(gaussian(x, sigma), 255).floor_().div_(255)
        torch.clamp(gaussian(cast, sigma), 0, 1, out=out)
        return
    draws = _glass_draws(rng, b, h, w, 2 * delta, iterations)
    if _glass_fused(x, sigma, delta, draws, out):
        return
    x = torch.mul(gaussian(x, sigma), 255).floor_().div_(255)
    if x.device.type != "cpu" or not _shuffle_sequential(x, draws, delta):
        x = _shuffle_chains(x, draws, delta)
    torch.clamp(gaussian(x, sigma), 0, 1, out=out)


def _disk(radius: float, alias_blur: float, device: Device, dtype: torch.dtype, *,
          soft: bool = False) -> torch.Tensor:
    """The reference's anti-aliased disk kernel (``cv2.GaussianBlur`` of an aliased disk).

    ``soft=True`` (used when ``preset="auto"`` rescales the radius) weights pixels by
    ``clamp(radius + 0.5 - distance, 0, 1)`` instead of a hard ``distance <= radius``,
    so that a radius shrunk below 1 px still blurs and severities stay ordered.
    """
    if radius <= 8:
        r, ksize = 8, 3
    else:
        r, ksize = int(radius), 5
    t = torch.arange(-r, r + 1, device=device, dtype=torch.float64)
    distance = (t[None, :] ** 2 + t[:, None] ** 2).sqrt()
    if soft:  # rescaled radii: pixel coverage, so the kernel grows continuously with the radius
        disk = (radius + 0.5 - distance).clamp(0, 1)
    else:
        disk = (distance ** 2 <= radius ** 2).to(torch.float64)
    disk = disk / disk.sum()
    g = torch.exp(-(torch.arange(ksize, device=device, dtype=torch.float64) - (ksize - 1) / 2) ** 2
                  / (2 * alias_blur ** 2))
    g = g / g.sum()
    disk = separable(disk[None, None], g, g, "reflect101")[0, 0]
    return disk.to(dtype)


@register_corruption("defocus_blur", fills_output=True)
def defocus_blur(x: torch.Tensor, c: Tuple[float, float], s: float, rng: Rng,
                 table: str, out: torch.Tensor) -> None:
    """Convolution with an anti-aliased disk of radius ``c[0]`` (OpenCV's borders), into ``out``."""
    kernel = _disk(c[0] * s, c[1] * s, x.device, x.dtype, soft=s != 1)
    convolve2d(x, kernel, "reflect101", out=out)


@register_corruption("motion_blur", fills_output=True)
def motion_blur(x: torch.Tensor, c: Tuple[float, float], s: float, rng: Rng,
                table: str, out: torch.Tensor) -> None:
    """The reference's motion blur (radius ``c[0]``, sigma ``c[1]``), angle uniform in
    [-45, 45] degrees per image, into ``out``."""
    radius, sigma = max(1, int(round(c[0] * s))), c[1] * s
    angle = rng.uniform((x.shape[0],), -45, 45)
    motion_blur_at(x, radius, sigma, angle, out=out)


def _zoom_axis(n: int, factors: Sequence[float], dtype: np.dtype) -> Tuple[np.ndarray, ...]:
    """One axis of zoom blur's clipped zooms as torch's bilinear resize (``align_corners``)
    computes it: for each factor and output sample, the two source samples (indices into
    the whole axis) and their weights ``[F, n]``, in torch's arithmetic (``dtype``)."""
    index0, index1, weight0, weight1 = [], [], [], []
    out = np.arange(n, dtype=dtype)
    for factor in factors:
        crop = int(math.ceil(n / factor))
        start, size = (n - crop) // 2, max(int(round(crop * factor)), n)
        ratio = dtype.type(crop - 1) / dtype.type(size - 1) if size > 1 else dtype.type(0)
        real = ratio * out  # the first n of the resize's size outputs
        i0 = real.astype(np.int64)
        lam1 = np.clip(real - i0.astype(dtype), 0, 1).astype(dtype)
        index0.append(start + i0)
        index1.append(start + i0 + (i0 < crop - 1))
        weight0.append((dtype.type(1) - lam1).astype(dtype))
        weight1.append(lam1)
    return tuple(np.ascontiguousarray(np.stack(a)) for a in (index0, index1, weight0, weight1))


def _zoom_blur_compiled(x: torch.Tensor, factors: Sequence[float], out: torch.Tensor) -> bool:
    """Zoom blur of a CPU batch by a compiled kernel (output rows in blocks on torch's threads),
    clipped to [0, 1] into ``out``; ``False`` (nothing done) without numba. The same bilinear
    samples as the generic path."""
    compiled = _numba.kernel("zoom_sum") if _compiled_cpu(x) and out.is_contiguous() else None
    if compiled is None:
        return False
    b, ch, h, w = x.shape
    dtype = np.dtype(np.float32 if x.dtype == torch.float32 else np.float64)
    rows = _zoom_axis(h, factors, dtype)
    cols = _zoom_axis(w, factors, dtype)
    src = x.reshape(b * ch, h * w).t().contiguous().view(h, w, b * ch).numpy()  # channels last
    out_np = out.view(b * ch, h, w).numpy()
    blocks = min(h, 4 * torch.get_num_threads())
    scale = dtype.type(1 / (len(factors) + 1))

    def block(i: int) -> None:
        compiled(src, out_np, i * h // blocks, (i + 1) * h // blocks, *rows, *cols, scale)
    for_each_index(block, blocks)
    return True


@register_corruption("zoom_blur", fills_output=True)
def zoom_blur(x: torch.Tensor, c: Sequence[float], s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """Mean of the image and its clipped zooms by each factor of ``c``, into ``out``."""
    if not _zoom_blur_compiled(x, c, out):
        torch.clamp(_zoom_blur_batched(x, c), 0, 1, out=out)


def _zoom_blur_batched(x: torch.Tensor, c: Sequence[float]) -> torch.Tensor:
    """Zoom blur by torch's bilinear resizes (any device), not clipped."""
    b, ch, h, w = x.shape
    # all images and channels as the channels of one channels-last image: torch's bilinear
    # resize then runs vectorised over B * C values per pixel (several times faster)
    x = x.reshape(1, b * ch, h, w).contiguous(memory_format=torch.channels_last)
    total = x.clone()
    for factor in c:  # each clipped zoom: bilinear (align_corners) resize of the central crop
        cth, ctw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
        top, left = (h - cth) // 2, (w - ctw) // 2
        size = (max(int(round(cth * factor)), h), max(int(round(ctw * factor)), w))
        crop = x[..., top:top + cth, left:left + ctw]
        if size == (cth, ctw):
            total += crop
            continue
        zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
        total += zoomed[..., :h, :w]
    total.mul_(1 / (len(c) + 1))
    # back to NCHW as one 2-D transpose ([H * W, B * C] -> [B * C, H * W]), which torch
    # copies in cache blocks (several times faster than the generic strided copy)
    return total.permute(0, 2, 3, 1).reshape(h * w, b * ch).t().contiguous().view(b, ch, h, w)
