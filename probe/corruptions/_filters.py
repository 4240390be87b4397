"""Filters shared by the corruptions: border padding, separable filters, 2-D convolution,
bilinear sampling, motion blur and Pillow's BOX resize, batched in torch (OpenCV's filters
plane by plane for large CPU images)."""
from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import _numba
from ._rng import Device
from ._threads import for_each_index  # noqa: F401  (re-exported: the corruptions import it from here)

__all__ = ["opencv", "for_each_index", "pad_index", "pad", "gaussian_kernel1d", "Band", "filter_band",
           "separable", "gaussian", "fft_convolve", "convolve2d", "sample_bilinear", "gray",
           "as_rgb_then_mean", "clipped_zoom", "motion_blur_at", "box_resize"]

_OPENCV_INSTALL = "pip install imagecorruptions-imaug==1.1.5 (pinned in requirements.txt)"
# OpenCV's border modes for ours (scipy/skimage "nearest" and "reflect", OpenCV's default)
_OPENCV_BORDER = {"edge": "BORDER_REPLICATE", "symmetric": "BORDER_REFLECT",
                  "reflect101": "BORDER_REFLECT_101"}
# CPU planes of at least this many pixels are filtered by OpenCV, plane by plane (several
# times faster than the batched torch products there); smaller ones by one torch product
_OPENCV_MIN_PIXELS = 64 * 64


def opencv(purpose: str) -> ModuleType:
    """OpenCV (``cv2``), imported when first needed (it is heavy).

    Raises:
        ModuleNotFoundError: OpenCV is not installed; the message says what needs it.
    """
    try:
        import cv2
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"{purpose} uses OpenCV (cv2), which is not installed; "
                                  f"{_OPENCV_INSTALL} installs it (opencv-python)", name="cv2") from e
    return cv2


def _opencv_planes(x: torch.Tensor, radius_h: int, radius_w: int) -> bool:
    """Whether OpenCV filters ``x [..., H, W]`` plane by plane: large float32/64 CPU planes,
    filter radii below the sides (one reflection at most)."""
    h, w = x.shape[-2:]
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and h * w >= _OPENCV_MIN_PIXELS and radius_h < h and radius_w < w
            and not x.requires_grad)


def _compiled_cpu(x: torch.Tensor) -> bool:
    """Whether ``x`` can go through a compiled kernel (:mod:`._numba`): float32/64 on CPU,
    no gradient."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad


def pad_index(n: int, before: int, after: int, mode: str, device: Device) -> torch.Tensor:
    """Source indices of a padded axis of length ``n`` (any pad width)."""
    i = torch.arange(-before, n + after, device=device)
    if mode == "edge" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "symmetric":  # scipy/skimage "reflect": d c b a | a b c d
        j = i % (2 * n)
        return torch.where(j >= n, 2 * n - 1 - j, j)
    if mode == "reflect101":  # OpenCV default border: d c b | a b c d
        j = i % (2 * n - 2)
        return torch.where(j >= n, 2 * n - 2 - j, j)
    raise ValueError(f"unknown pad mode {mode!r}; use edge, symmetric or reflect101")


def pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last two dims of ``x`` by index (works for pads larger than the image)."""
    h, w = x.shape[-2:]
    if not (top or bottom or left or right):
        return x
    if mode == "edge" and x.ndim >= 3 and min(h, w) > 1:
        return F.pad(x, (left, right, top, bottom), mode="replicate")
    if mode == "reflect101" and x.ndim >= 3 and max(top, bottom) < h and max(left, right) < w:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    if top or bottom:
        x = x.index_select(-2, pad_index(h, top, bottom, mode, x.device))
    if left or right:
        x = x.index_select(-1, pad_index(w, left, right, mode, x.device))
    return x


def gaussian_kernel1d(sigma: float, truncate: float, device: Device, dtype: torch.dtype) -> torch.Tensor:
    """scipy.ndimage's Gaussian kernel (radius ``int(truncate * sigma + 0.5)``)."""
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 1e-15 or radius == 0:
        return torch.ones(1, device=device, dtype=dtype)
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (k / k.sum()).to(dtype)


_TILE = 32  # output samples per tile of a banded product (see Band)


class Band:
    """A matrix ``[n_out, n_in]`` applied along one axis, whose rows each read a short
    run of input samples (a filter or resampling band).

    On CPU the product is done tile by tile when that saves most of the work: each
    :data:`_TILE` output samples multiply only the input samples they read (a
    9-tap filter on 224 px: 40 instead of 224 multiply-adds per output sample).
    """

    def __init__(self, m: torch.Tensor, device: Device, dtype: torch.dtype) -> None:
        n_out, n_in = m.shape
        self.m = m.to(device=device, dtype=dtype)
        self.n_out, self.n_in = n_out, n_in
        cols = torch.arange(n_in)
        nonzero = m != 0
        first = torch.where(nonzero, cols, n_in).amin(dim=1)
        last = torch.where(nonzero, cols, -1).amax(dim=1)
        spans = []
        for r0 in range(0, n_out, _TILE):
            r1 = min(r0 + _TILE, n_out)
            c0, c1 = int(first[r0:r1].min()), int(last[r0:r1].max()) + 1
            if c1 <= c0:  # all-zero rows: any one column gives them
                c0, c1 = 0, 1
            spans.append((r0, r1, c0, c1))
        self.tiles = None
        work = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in spans)
        if torch.device(device).type == "cpu" and 2 * work <= n_out * n_in:
            # (rows, cols, tile, its transpose): contiguous tiles for both directions
            self.tiles = [(slice(r0, r1), slice(c0, c1), self.m[r0:r1, c0:c1].contiguous(),
                           self.m[r0:r1, c0:c1].t().contiguous()) for r0, r1, c0, c1 in spans]

    def along(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """``m`` applied to axis ``dim`` (-2 or -1) of ``x [..., H, W]``."""
        if self.tiles is None:
            return torch.matmul(self.m, x) if dim == -2 else torch.matmul(x, self.m.t())
        shape = list(x.shape)
        shape[dim] = self.n_out
        out = x.new_empty(shape)
        if dim == -1:
            src, dst = x.reshape(-1, self.n_in), out.view(-1, self.n_out)
            for rows, cols, _, tile_t in self.tiles:
                torch.matmul(src[:, cols], tile_t, out=dst[:, rows])
        else:
            src = x.reshape(-1, self.n_in, x.shape[-1])
            dst = out.view(-1, self.n_out, x.shape[-1])
            for rows, cols, tile, _ in self.tiles:
                torch.bmm(tile.expand(src.shape[0], -1, -1), src[:, cols], out=dst[:, rows])
        return out


@functools.lru_cache(maxsize=64)
def filter_band(n: int, kernel: Tuple[float, ...], mode: str, device: str, dtype: torch.dtype) -> Band:
    """The ``[n, n]`` 1-D correlation with ``kernel`` (odd) and ``mode`` borders."""
    k = torch.tensor(kernel, dtype=torch.float64)
    r = k.numel() // 2
    src = pad_index(n, r, r, mode, "cpu")
    cols = src[torch.arange(n)[:, None] + torch.arange(k.numel())[None, :]]
    rows = torch.arange(n)[:, None].expand_as(cols)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((rows, cols), k.expand_as(cols), accumulate=True)
    return Band(m, device, dtype)


def separable(x: torch.Tensor, kh: torch.Tensor, kw: torch.Tensor, mode: str) -> torch.Tensor:
    """Separable filtering of ``x [..., H, W]`` with odd 1-D kernels (borders by ``mode``).

    Large CPU planes: OpenCV's ``sepFilter2D`` plane by plane (on torch's threads).
    Otherwise two products with cached banded matrices (:class:`Band`): on CPU an order
    of magnitude faster than ``conv2d`` with single-channel kernels.
    """
    h, w = x.shape[-2:]
    if (kh.numel() > 1 or kw.numel() > 1) and _opencv_planes(x, kh.numel() // 2, kw.numel() // 2):
        cv2 = opencv("filtering large CPU images")
        border = getattr(cv2, _OPENCV_BORDER[mode])
        src = x.reshape(-1, h, w).contiguous().numpy()
        out = torch.empty(x.shape, dtype=x.dtype)
        dst = out.view(-1, h, w).numpy()
        ky, kx = (k.detach().to("cpu", x.dtype).numpy() for k in (kh, kw))

        def plane(i: int) -> None:
            cv2.sepFilter2D(src[i], -1, kx, ky, dst=dst[i], borderType=border)
        for_each_index(plane, src.shape[0])
        return out
    if kh.numel() > 1:
        x = filter_band(h, tuple(kh.tolist()), mode, str(x.device), x.dtype).along(x, -2)
    if kw.numel() > 1:
        x = filter_band(w, tuple(kw.tolist()), mode, str(x.device), x.dtype).along(x, -1)
    return x


def gaussian(x: torch.Tensor, sigma: float, *, mode: str = "edge", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian on each channel (default ``mode="nearest"``, ``truncate=4``)."""
    k = gaussian_kernel1d(sigma, truncate, x.device, x.dtype)
    if k.numel() == 1:
        return x
    return separable(x, k, k, mode)


def _fast_size(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3, 5 (fast FFT length)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def fft_convolve(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Convolve ``x [B, C, H, W]`` with centred odd kernels ``[1 or B, kh, kw]`` via FFT.

    Borders are extended by ``mode`` by the kernel radius first, so the result is
    exactly a spatial convolution with that border handling.
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    ph, pw = kh // 2, kw // 2
    xp = pad(x, ph, ph, pw, pw, mode)
    hp, wp = _fast_size(h + 2 * ph), _fast_size(w + 2 * pw)
    if kernel.shape[0] == 1 and kernel.device.type == "cpu":  # one kernel for a batch, chunk by chunk
        kernel_spectrum = _kernel_spectrum(tuple(kernel.flatten().tolist()), kh, kw, hp, wp, kernel.dtype)
    else:
        kernel_spectrum = _kernel_spectrum_of(kernel, hp, wp)
    spectrum = torch.fft.rfft2(xp, s=(hp, wp)).mul_(kernel_spectrum[:, None])
    out = torch.fft.irfft2(spectrum, s=(hp, wp))
    return out[..., ph:ph + h, pw:pw + w]


def convolve2d(x: torch.Tensor, kernel: torch.Tensor, mode: str, *,
               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Convolve ``x [B, C, H, W]`` with one centred odd kernel ``[kh, kw]``, borders by ``mode``.

    With ``out`` (contiguous, ``x``'s shape and dtype) the result, clipped to [0, 1], is
    written there (on OpenCV's path plane by plane, the clip while the plane is in cache) and
    ``out`` is returned.

    Large CPU planes: OpenCV's ``filter2D`` (a correlation, so with the kernel turned by a
    half turn) plane by plane on torch's threads, with the kernel's all-zero outer rows and
    columns dropped (the same sum; OpenCV filters small kernels directly and large ones by
    DFT). Otherwise :func:`fft_convolve`.
    """
    kh, kw = kernel.shape
    nonzero_rows = torch.nonzero(kernel.ne(0).any(dim=1))[:, 0]
    nonzero_cols = torch.nonzero(kernel.ne(0).any(dim=0))[:, 0]
    if nonzero_rows.numel() == 0:
        return torch.zeros_like(x) if out is None else out.zero_()
    # drop zero borders symmetrically, so the kernel stays centred
    trim_h = min(int(nonzero_rows[0]), kh - 1 - int(nonzero_rows[-1]))
    trim_w = min(int(nonzero_cols[0]), kw - 1 - int(nonzero_cols[-1]))
    kernel = kernel[trim_h:kh - trim_h, trim_w:kw - trim_w]
    kh, kw = kernel.shape
    if not _opencv_planes(x, kh // 2, kw // 2):
        result = fft_convolve(x, kernel[None], mode)
        return result if out is None else torch.clamp(result, 0, 1, out=out)
    cv2 = opencv("filtering large CPU images")
    border = getattr(cv2, _OPENCV_BORDER[mode])
    h, w = x.shape[-2:]
    src = x.reshape(-1, h, w).contiguous().numpy()
    clip = out is not None
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype)
    dst = out.view(-1, h, w).numpy()
    k = kernel.detach().flip(0, 1).to("cpu", x.dtype).contiguous().numpy()

    def plane(i: int) -> None:
        cv2.filter2D(src[i], -1, k, dst=dst[i], borderType=border)
        if clip:
            np.clip(dst[i], 0, 1, out=dst[i])
    for_each_index(plane, src.shape[0])
    return out


def _kernel_spectrum_of(kernel: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """``rfft2`` of centred kernels ``[K, kh, kw]`` zero-padded to ``hp x wp``, centre at (0, 0)."""
    kh, kw = kernel.shape[-2:]
    k = kernel.new_zeros(kernel.shape[0], hp, wp)
    k[:, :kh, :kw] = kernel
    k = torch.roll(k, shifts=(-(kh // 2), -(kw // 2)), dims=(1, 2))
    return torch.fft.rfft2(k)


@functools.lru_cache(maxsize=8)
def _kernel_spectrum(values: Tuple[float, ...], kh: int, kw: int, hp: int, wp: int,
                     dtype: torch.dtype) -> torch.Tensor:
    """:func:`_kernel_spectrum_of` one CPU kernel given by its values, cached (the same
    kernel serves every chunk of a batch)."""
    kernel = torch.tensor(values, dtype=dtype).view(1, kh, kw)
    return _kernel_spectrum_of(kernel, hp, wp)


def sample_bilinear(img: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear samples of ``img [B, C, H, W]`` at pixel coordinates ``rows, cols [B, H', W']``.

    ``mode="symmetric"`` is scipy's ``map_coordinates(order=1, mode="reflect")``
    (``grid_sample`` reflection about the image border, ``align_corners=False``);
    ``mode="reflect101"`` is OpenCV's ``BORDER_REFLECT_101`` (reflection about the
    border pixel centres, ``align_corners=True``).
    """
    h, w = img.shape[-2:]
    if mode == "symmetric":
        gx, gy = (2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1
        corners = False
    else:
        gx, gy = 2 * cols / max(w - 1, 1) - 1, 2 * rows / max(h - 1, 1) - 1
        corners = True
    grid = torch.stack((gx, gy), dim=-1).to(img.dtype)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=corners)


def gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``[B, 1, H, W]`` (OpenCV's RGB2GRAY) of RGB, or ``x`` itself if gray."""
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def as_rgb_then_mean(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Gray rule for colour corruptions: replicate to RGB, corrupt, average the channels."""
    if x.shape[1] == 3:
        return fn(x)
    return fn(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The reference's ``clipped_zoom``: central crop then scipy ``zoom(order=1)`` (not cropped)."""
    h, w = x.shape[-2:]
    ch, cw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    size = (int(round(ch * factor)), int(round(cw * factor)))
    if size == (ch, cw):
        return crop
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=True)


def motion_blur_at(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor, *,
                   out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The reference package's motion blur, per-image angle (degrees) ``[B]``.

    Sum over ``2 * radius + 1`` taps of Gaussian weights of the image shifted by
    ``(-ceil(i sin a - 0.5), -ceil(i cos a - 0.5))`` with edge replication; taps
    stop once a shift leaves the image (the reference's ``break``). Done as
    shifted slices of the edge-padded batch, image by image (a few dozen
    multiply-adds per image, each on a cache-sized slice); on CPU, with numba, by a
    compiled kernel, one pass per image on torch's threads.
    """
    b, c, h, w = x.shape
    width = 2 * int(radius) + 1
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-i ** 2 / (2 * float(sigma) ** 2))
    k = k / k.sum()
    a = torch.deg2rad(angle.detach().to("cpu", torch.float64))[:, None]
    dy = -torch.ceil(i * torch.sin(a) - 0.5).long()
    dx = -torch.ceil(i * torch.cos(a) - 0.5).long()
    inside = ((dy.abs() < h) & (dx.abs() < w)).long().cumprod(dim=1)
    compiled = _numba.kernel("motion_blur") if _compiled_cpu(x) else None
    if compiled is not None and (out is None or out.is_contiguous()):  # one pass per image
        src = x.contiguous()
        clip = out is not None
        if out is None:
            out = torch.empty_like(src)
        src_np, out_np, taps = src.numpy(), out.numpy(), inside.sum(dim=1).numpy()
        k_np = k.to(x.dtype).numpy()
        dy_np, dx_np = dy.numpy(), dx.numpy()

        def image(n: int) -> None:
            compiled(src_np, out_np, n, dy_np, dx_np, k_np, taps)
            if clip:
                np.clip(out_np[n], 0, 1, out=out_np[n])
        for_each_index(image, b)
        return out
    if out is not None:
        return torch.clamp(motion_blur_at(x, radius, sigma, angle), 0, 1, out=out)
    py = min(int(dy.abs().max()), h - 1)
    px = min(int(dx.abs().max()), w - 1)
    xp = pad(x, py, py, px, px, "edge")
    out = torch.empty_like(x)
    dy, dx, inside, k = dy.tolist(), dx.tolist(), inside.tolist(), k.tolist()
    for n in range(b):
        acc, src = out[n], xp[n]
        first = True
        for t in range(width):
            if not inside[n][t]:
                break
            y0, x0 = py - dy[n][t], px - dx[n][t]
            tap = src[:, y0:y0 + h, x0:x0 + w]
            if first:
                torch.mul(tap, k[t], out=acc)
                first = False
            else:
                acc.add_(tap, alpha=k[t])
    return out


def _pil_box_weights(n_in: int, n_out: int) -> torch.Tensor:
    """Pillow's BOX resampling weights ``[n_out, n_in]`` (``precompute_coeffs``)."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    wts = torch.zeros(n_out, n_in, dtype=torch.float64)
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        for xi in range(xmin, xmax):
            t = (xi - center + 0.5) / filterscale
            wts[xx, xi] = 1.0 if -0.5 < t <= 0.5 else 0.0
        total = wts[xx].sum()
        if total > 0:
            wts[xx] /= total
    return wts


@functools.lru_cache(maxsize=16)
def _box_band(n_in: int, n_out: int, device: str, dtype: torch.dtype) -> Band:
    """Pillow BOX resampling of an axis from ``n_in`` to ``n_out`` samples."""
    return Band(_pil_box_weights(n_in, n_out), device, dtype)


class _BoxChain:
    """Pillow BOX resampling along dim -2 as a fused multiply-add chain over each output
    row's box, for the rows of :class:`Band`'s full tiles.

    A box has a few samples (``ceil(n_in / n_out) + 1`` at most), so the chain does a few
    multiply-adds per output sample where the banded product of a tile does one per
    column of its span (about 30 times more work at 224 -> 89 px). In float32 the chain
    gives, for the rows of full tiles, the banded product's result to the bit (both add
    the products in source order with fused multiply-adds; checked for every preset's
    sizes); the rows of a last, partial tile keep the banded product (its small-matrix
    kernel may round differently).
    """

    def __init__(self, band: Band, weights: torch.Tensor) -> None:
        self.band = band
        self.full = (band.n_out // _TILE) * _TILE
        rows = weights[:self.full]
        nonzero = rows != 0
        count = nonzero.sum(dim=1)
        first = torch.where(nonzero, torch.arange(band.n_in), band.n_in).amin(dim=1)
        # tap k of a row reads sample first + k; a row with fewer samples repeats its last
        # one with weight 0 (exact: acc + 0 * x = acc)
        self.index, self.weight = [], []
        for k in range(int(count.max())):
            source = first + torch.clamp(count - 1, max=k)
            weight = torch.where(count > k, rows.gather(1, source[:, None])[:, 0], 0.0)
            self.index.append(source.to(band.m.device))
            self.weight.append(weight.to(device=band.m.device, dtype=band.m.dtype)[:, None])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(x.shape)
        shape[-2] = self.band.n_out
        out = x.new_empty(shape)
        head = out[..., :self.full, :]
        torch.mul(x.index_select(-2, self.index[0]), self.weight[0], out=head)
        for index, weight in zip(self.index[1:], self.weight[1:]):
            head.addcmul_(x.index_select(-2, index), weight)
        if self.full < self.band.n_out:  # the partial tile: the banded product, as in Band.along
            _, cols, tile, _ = self.band.tiles[-1]
            src = x.reshape(-1, self.band.n_in, x.shape[-1])
            dst = out.view(-1, self.band.n_out, x.shape[-1])
            torch.bmm(tile.expand(src.shape[0], -1, -1), src[:, cols], out=dst[:, self.full:])
        return out


@functools.lru_cache(maxsize=16)
def _box_rows(n_in: int, n_out: int, device: str,
              dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """Pillow BOX resampling along dim -2 from ``n_in`` to ``n_out`` rows: :class:`_BoxChain`
    for float32 where the band is tiled (CPU, large sizes), the banded product otherwise
    (float64's product rounds differently from the chain)."""
    weights = _pil_box_weights(n_in, n_out)
    band = Band(weights, device, dtype)
    if band.tiles is None or n_out < _TILE or dtype != torch.float32:
        return functools.partial(band.along, dim=-2)
    return _BoxChain(band, weights)


def box_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pillow's ``resize(BOX)`` of ``x [..., H, W]`` to ``h x w``."""
    x = _box_rows(x.shape[-2], h, str(x.device), x.dtype)(x)
    return _box_band(x.shape[-1], w, str(x.device), x.dtype).along(x, -1)
