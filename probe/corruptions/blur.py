"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur.

From ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261), reproducing the
reference package ``imagecorruptions`` (glass blur's sequential pixel copy exactly,
defocus blur's anti-aliased disk, motion blur's shifted-copy kernel, zoom blur's
clipped zooms). Each function has the registry signature
``fn(x, table entry, spatial scale, rng, table)`` (see :mod:`probe.corruptions._registry`);
call them through :func:`probe.corruptions.corrupt`.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from ._filters import convolve2d, gaussian, motion_blur_at, separable
from ._registry import register_corruption
from ._rng import Device, Rng

__all__ = ["gaussian_blur", "glass_blur", "defocus_blur", "motion_blur", "zoom_blur"]


@register_corruption("gaussian_blur")
def gaussian_blur(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """skimage's Gaussian filter with sigma ``c`` (times the spatial scale)."""
    return gaussian(x, c * s)


@register_corruption("glass_blur")
def glass_blur(x: torch.Tensor, c: Tuple[float, int, int], s: float, rng: Rng,
               table: str) -> torch.Tensor:
    """Blur, locally scramble pixels, blur again (the reference's glass blur).

    The reference visits pixels in descending raster order and runs
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy views, which is a copy
    ``x[h, w] = x[h + dy, w + dx]`` (the second assignment writes back the copied
    value), so a pixel reads an already updated one whenever its partner comes
    later in raster order. That sequential loop is computed exactly here, batched:
    each pixel follows the chain of such reads to its end by pointer doubling.
    """
    sigma, delta, iterations = c[0] * s, max(1, int(round(c[1] * s))), c[2]
    # the reference's uint8 cast, out of place: a sigma below half a pixel gives x itself back
    x = torch.mul(gaussian(x, sigma), 255).floor_().div_(255)
    b, ch, h, w = x.shape
    lo, hi_row, hi_col = delta + 1, h - delta, w - delta  # visited rows/cols, inclusive
    if hi_row < lo or hi_col < lo:
        return gaussian(x, sigma)
    rows = torch.arange(h, device=x.device)[:, None]
    cols = torch.arange(w, device=x.device)[None, :]
    visited = ((rows >= lo) & (rows <= hi_row) & (cols >= lo) & (cols <= hi_col)).reshape(-1)
    # int32 indices throughout: index_select on int32 is several times faster than int64
    i32 = torch.int32
    position = torch.arange(h * w, device=x.device, dtype=i32)
    offset = (torch.arange(b, device=x.device, dtype=i32) * (h * w))[:, None]
    identity = torch.arange(b * h * w, device=x.device, dtype=i32)
    # one draw per pixel for both offsets: dy, dx uniform in [-delta, delta - 1] each
    n = 2 * delta
    shifts = torch.arange(n * n, device=x.device, dtype=i32)
    shifts = (shifts // n - delta) * w + (shifts % n - delta)
    source = None  # output pixel -> input pixel (flat over all images); None: identity
    for _ in range(iterations):
        if n * n <= 256 and (n * n) & (n * n - 1) == 0:  # a power of two: low bits of 8-bit draws
            draw = rng.bits16(((b * h * w + 1) // 2,)).view(torch.uint8)[:b * h * w].to(i32)
            draw &= n * n - 1
        else:
            draw = rng.randint(0, n * n, (b * h * w,), dtype=i32)
        shift = shifts.index_select(0, draw).view(b, h * w).mul_(visited)  # 0: not visited
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
    if source is not None:  # plane by plane: int32 index_select is several times faster than gather
        local = source.view(b, h * w) - offset
        shuffled = torch.empty_like(x)
        for i in range(b):
            for channel in range(ch):
                torch.index_select(x[i, channel].view(-1), 0, local[i],
                                   out=shuffled[i, channel].view(-1))
        x = shuffled
    return gaussian(x, sigma)


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


@register_corruption("defocus_blur")
def defocus_blur(x: torch.Tensor, c: Tuple[float, float], s: float, rng: Rng,
                 table: str) -> torch.Tensor:
    """Convolution with an anti-aliased disk of radius ``c[0]`` (OpenCV's borders)."""
    kernel = _disk(c[0] * s, c[1] * s, x.device, x.dtype, soft=s != 1)
    return convolve2d(x, kernel, "reflect101")


@register_corruption("motion_blur")
def motion_blur(x: torch.Tensor, c: Tuple[float, float], s: float, rng: Rng,
                table: str) -> torch.Tensor:
    """The reference's motion blur (radius ``c[0]``, sigma ``c[1]``), angle uniform in
    [-45, 45] degrees per image."""
    radius, sigma = max(1, int(round(c[0] * s))), c[1] * s
    angle = rng.uniform((x.shape[0],), -45, 45)
    return motion_blur_at(x, radius, sigma, angle)


@register_corruption("zoom_blur")
def zoom_blur(x: torch.Tensor, c: Sequence[float], s: float, rng: Rng, table: str) -> torch.Tensor:
    """Mean of the image and its clipped zooms by each factor of ``c``."""
    b, ch, h, w = x.shape
    # all images and channels as the channels of one channels-last image: torch's bilinear
    # resize then runs vectorised over B * C values per pixel (several times faster)
    x = x.reshape(1, b * ch, h, w).contiguous(memory_format=torch.channels_last)
    out = x.clone()
    for factor in c:  # each clipped zoom: bilinear (align_corners) resize of the central crop
        cth, ctw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
        top, left = (h - cth) // 2, (w - ctw) // 2
        size = (max(int(round(cth * factor)), h), max(int(round(ctw * factor)), w))
        crop = x[..., top:top + cth, left:left + ctw]
        if size == (cth, ctw):
            out += crop
            continue
        zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
        out += zoomed[..., :h, :w]
    out.mul_(1 / (len(c) + 1))
    # back to NCHW as one 2-D transpose ([H * W, B * C] -> [B * C, H * W]), which torch
    # copies in cache blocks (several times faster than the generic strided copy)
    return out.permute(0, 2, 3, 1).reshape(h * w, b * ch).t().contiguous().view(b, ch, h, w)
