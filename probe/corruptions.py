"""Batched torch corruptions in the style of ImageNet-C and CIFAR-10-C.

Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", arXiv:1903.12261. The 15 benchmark corruptions
come first in :data:`NAMES` (the order of the paper and of the reference
``imagecorruptions`` package), then the 4 held-out ones.

:func:`corrupt` takes a batch ``[B, C, H, W]`` of floats in ``[0, 1]`` with
``C`` = 1 or 3 and any ``H, W`` (Fashion-MNIST's 28x28 grayscale included), and
returns a tensor of the same shape, dtype and device, in ``[0, 1]``. Everything
is torch (CPU or CUDA), batched over images (on CPU a few MB of images at a
time, so that intermediates stay in cache); all randomness comes from the
given ``torch.Generator`` (``generator=None`` uses a generator seeded with
:data:`DEFAULT_SEED`, so the same call gives the same output).

Severity parameters (``preset``):

- ``"imagenet"``: the ImageNet-C parameters exactly as the reference package
  ``imagecorruptions`` applies them, at any image size (the package does not
  rescale them either). Deterministic corruptions match that package's output
  (PSNR >= 30 dB); random ones match the distribution of its per-image change.
- ``"cifar"``: the CIFAR-10-C parameters of Hendrycks's ``make_cifar_c.py``
  (32 px), unscaled. CIFAR-10-C's motion blur and snow used ImageMagick's motion
  blur; here the reference package's own motion-blur kernel is used with the
  CIFAR-10-C radius/sigma. CIFAR-10-C's elastic transform (random affine + elastic
  field) is implemented as published.
- ``"auto"`` (default): ``"cifar"`` parameters for images whose shorter side is
  <= 64 px, ``"imagenet"`` ones above, with every *spatial* parameter (blur
  sigmas and radii, glass-blur displacement, motion-blur length, spatter blur,
  frost texture scale, elastic size) multiplied by ``min(H, W) / 32`` or
  ``min(H, W) / 224``. At exactly 32 and 224 px ``"auto"`` equals the preset.
  Dimensionless parameters (noise levels, zoom factors, pixelate factors, JPEG
  quality, colour shifts, fog fractal decay) are kept; the JPEG block stays 8x8.

Gray images (``C = 1``): per-pixel and spatial corruptions act on the single
channel (noise is drawn once per pixel, JPEG encodes luminance only). The colour
corruptions (brightness, saturate, frost, snow, spatter) are defined as "replicate
to RGB, corrupt, average the three channels", which is also how a gray image
goes through the reference package and back; for ``saturate`` this is the
identity at severities 1-3 and a slight darkening at 4-5 (the added saturation
has hue 0, red). Frost uses the six texture photographs shipped with
``imagecorruptions`` if it is installed, else procedural fractal textures.

How the reference's numpy/OpenCV/PIL steps are done in torch:

- JPEG: baseline JPEG as libjpeg/Pillow does it at the given quality (JFIF
  YCbCr, 4:2:0 chroma subsampling, the standard tables scaled by quality,
  orthonormal 8x8 DCT, rounding quantisation, "fancy" chroma upsampling on
  decode), as tensor ops. It simulates the codec's loss; no file is written.
- Glass blur: the reference's pixel loop is a sequential *copy*
  ``x[h, w] = x[h + dy, w + dx]`` in descending raster order (its tuple "swap"
  of numpy views writes the copied value back). It is reproduced exactly, for
  all pixels and images at once, by following each pixel's chain of reads
  (pointer doubling).
- Gaussian and box filters (and Pillow's BOX resize) are products with cached
  banded matrices, on CPU tile by tile over the band only; defocus blur is an
  FFT convolution of the border-extended image, equal to the reference's
  spatial filtering; motion blur (per-image angle) is the reference's sum of
  edge-replicated shifted copies, taken as slices of the padded batch; zoom
  blur is a sum of bilinear resizes (``align_corners=True``, scipy's
  ``zoom(order=1)``) done on the whole batch as one channels-last image;
  elastic warps use ``grid_sample`` with the reference's border rules;
  spatter's Canny, distance transform and histogram equalisation are batched
  re-implementations of OpenCV's.
- JPEG works on flattened 8x8 blocks with one ``[64, 64]`` matrix per direction
  (2-D DCT divided by the quantisation table, and back), so a whole batch is two
  matrix products and a rounding; libjpeg's "fancy" chroma upsampling (exactly
  a bilinear x2 resize) is a banded product per axis, applied once to the
  chroma share of each RGB channel.
- Shot noise at rates ``c <= 64`` (all of ImageNet-C's) inverts the Poisson CDF
  at uniform draws, stopping at ``ceil(c)`` counts (the output is clipped at 1
  there), so the result equals clipped ``Poisson(x c) / c`` in distribution
  (CIFAR-10-C's larger rates use ``torch.poisson``);
  impulse noise draws 16-bit uniforms.
- Frost textures are resized once per image size with torch bicubic/bilinear
  interpolation (cached), then cropped at random per image.
- Where the reference divides by zero (spatter without any drop gives a NaN
  layer and a black image), the image is left unchanged here.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["NAMES", "COMMON", "EXTRA", "PRESETS", "DEFAULT_SEED", "corrupt", "params",
           "main"]

COMMON: List[str] = [
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
]
EXTRA: List[str] = ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
NAMES: List[str] = COMMON + EXTRA
PRESETS = ("auto", "imagenet", "cifar")
DEFAULT_SEED = 0
# On CPU a batch is corrupted a few images at a time, about this many values each:
# every intermediate then stays in cache, and under glibc's 32 MB mmap threshold, so
# freed buffers are reused instead of being mapped (and page-faulted) afresh.
_CHUNK = 1 << 21
_REFERENCE_SIZE = {"imagenet": 224, "cifar": 32}


def _arange(start: float, stop: float, step: float) -> Tuple[float, ...]:
    """``numpy.arange`` semantics (``start + i * step``) as a tuple of floats."""
    n = int(math.ceil((stop - start) / step))
    return tuple(start + i * step for i in range(n))


# Severity tables: one entry per severity 1..5 (reference package / make_cifar_c.py).
_PARAMS: Dict[str, Dict[str, list]] = {
    "imagenet": {
        "gaussian_noise": [.08, .12, 0.18, 0.26, 0.38],
        "shot_noise": [60, 25, 12, 5, 3],
        "impulse_noise": [.03, .06, .09, 0.17, 0.27],
        "speckle_noise": [.15, .2, 0.35, 0.45, 0.6],
        "gaussian_blur": [1, 2, 3, 4, 6],
        "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
        "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
        "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
        "zoom_blur": [_arange(1, 1.11, 0.01), _arange(1, 1.16, 0.01), _arange(1, 1.21, 0.02),
                      _arange(1, 1.26, 0.02), _arange(1, 1.31, 0.03)],
        "fog": [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)],
        "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
        "snow": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                 (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                 (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
        "spatter": [(0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
                    (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
                    (0.67, 0.4, 1, 0.65, 1.5, 1)],
        "contrast": [0.4, .3, .2, .1, .05],
        "brightness": [.1, .2, .3, .4, .5],
        "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
        "jpeg_compression": [25, 18, 15, 10, 7],
        "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
        "elastic_transform": [250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12],
    },
    "cifar": {
        "gaussian_noise": [0.04, 0.06, .08, .09, .10],
        "shot_noise": [500, 250, 100, 75, 50],
        "impulse_noise": [.01, .02, .03, .05, .07],
        "speckle_noise": [.06, .1, .12, .16, .2],
        "gaussian_blur": [.4, .6, 0.7, .8, 1],
        "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "zoom_blur": [_arange(1, 1.06, 0.01), _arange(1, 1.11, 0.01), _arange(1, 1.16, 0.01),
                      _arange(1, 1.21, 0.01), _arange(1, 1.26, 0.01)],
        "fog": [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                 (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                 (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
        "spatter": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                    (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                    (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
        "contrast": [.75, .5, .4, .3, 0.15],
        "brightness": [.05, .1, .15, .2, .3],
        "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
        "jpeg_compression": [80, 65, 58, 50, 40],
        "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
        # (alpha, sigma, affine jitter) in units of the image size (IMSIZE = 32 there)
        "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                              (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
    },
}


def params(name: str, severity: int, *, size: int, preset: str = "auto") -> Tuple[str, object, float]:
    """The parameters :func:`corrupt` uses: ``(table, table entry, spatial scale)``.

    ``table`` is ``"imagenet"`` or ``"cifar"``; spatial parameters of the entry
    are multiplied by ``spatial scale`` (1 unless ``preset="auto"``).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    if preset == "auto":
        table = "cifar" if size <= 64 else "imagenet"
        scale = size / _REFERENCE_SIZE[table]
    else:
        table, scale = preset, 1.0
    return table, _PARAMS[table][name][severity - 1], scale


# ----------------------------------------------------------------------------- helpers


def _pad_index(n: int, before: int, after: int, mode: str, device) -> torch.Tensor:
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
    raise ValueError(f"unknown pad mode {mode!r}")


def _pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last two dims of ``x`` by index (works for pads larger than the image)."""
    h, w = x.shape[-2:]
    if not (top or bottom or left or right):
        return x
    if mode == "edge" and x.ndim >= 3 and min(h, w) > 1:
        return F.pad(x, (left, right, top, bottom), mode="replicate")
    if mode == "reflect101" and x.ndim >= 3 and max(top, bottom) < h and max(left, right) < w:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    if top or bottom:
        x = x.index_select(-2, _pad_index(h, top, bottom, mode, x.device))
    if left or right:
        x = x.index_select(-1, _pad_index(w, left, right, mode, x.device))
    return x


def _gaussian_kernel1d(sigma: float, truncate: float, device, dtype) -> torch.Tensor:
    """scipy.ndimage's Gaussian kernel (radius ``int(truncate * sigma + 0.5)``)."""
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 1e-15 or radius == 0:
        return torch.ones(1, device=device, dtype=dtype)
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (k / k.sum()).to(dtype)


_TILE = 32  # output samples per tile of a banded product (see _Band)


class _Band:
    """A matrix ``[n_out, n_in]`` applied along one axis, whose rows each read a short
    run of input samples (a filter or resampling band).

    On CPU the product is done tile by tile when that saves most of the work: each
    :data:`_TILE` output samples multiply only the input samples they read (a
    9-tap filter on 224 px: 40 instead of 224 multiply-adds per output sample).
    """

    def __init__(self, m: torch.Tensor, device, dtype: torch.dtype) -> None:
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
def _filter_band(n: int, kernel: Tuple[float, ...], mode: str, device: str, dtype: torch.dtype) -> _Band:
    """The ``[n, n]`` 1-D correlation with ``kernel`` (odd) and ``mode`` borders."""
    k = torch.tensor(kernel, dtype=torch.float64)
    r = k.numel() // 2
    src = _pad_index(n, r, r, mode, "cpu")
    cols = src[torch.arange(n)[:, None] + torch.arange(k.numel())[None, :]]
    rows = torch.arange(n)[:, None].expand_as(cols)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((rows, cols), k.expand_as(cols), accumulate=True)
    return _Band(m, device, dtype)


def _separable(x: torch.Tensor, kh: torch.Tensor, kw: torch.Tensor, mode: str) -> torch.Tensor:
    """Separable filtering of ``x [..., H, W]`` with odd 1-D kernels (borders by ``mode``).

    Done as two products with cached banded matrices (:class:`_Band`): on CPU this
    is an order of magnitude faster than ``conv2d`` with single-channel kernels.
    """
    h, w = x.shape[-2:]
    if kh.numel() > 1:
        x = _filter_band(h, tuple(kh.tolist()), mode, str(x.device), x.dtype).along(x, -2)
    if kw.numel() > 1:
        x = _filter_band(w, tuple(kw.tolist()), mode, str(x.device), x.dtype).along(x, -1)
    return x


def _gaussian(x: torch.Tensor, sigma: float, *, mode: str = "edge", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian on each channel (default ``mode="nearest"``, ``truncate=4``)."""
    k = _gaussian_kernel1d(sigma, truncate, x.device, x.dtype)
    if k.numel() == 1:
        return x
    return _separable(x, k, k, mode)


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


def _fft_convolve(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Convolve ``x [B, C, H, W]`` with centred odd kernels ``[1 or B, kh, kw]`` via FFT.

    Borders are extended by ``mode`` by the kernel radius first, so the result is
    exactly a spatial convolution with that border handling.
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    ph, pw = kh // 2, kw // 2
    xp = _pad(x, ph, ph, pw, pw, mode)
    hp, wp = _fast_size(h + 2 * ph), _fast_size(w + 2 * pw)
    k = x.new_zeros(kernel.shape[0], hp, wp)
    k[:, :kh, :kw] = kernel
    k = torch.roll(k, shifts=(-ph, -pw), dims=(1, 2))
    spectrum = torch.fft.rfft2(xp, s=(hp, wp)).mul_(torch.fft.rfft2(k)[:, None])
    out = torch.fft.irfft2(spectrum, s=(hp, wp))
    return out[..., ph:ph + h, pw:pw + w]


def _sample_bilinear(img: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
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


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``[B, 1, H, W]`` (OpenCV's RGB2GRAY) of RGB, or ``x`` itself if gray."""
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _as_rgb_then_mean(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Gray rule for colour corruptions: replicate to RGB, corrupt, average the channels."""
    if x.shape[1] == 3:
        return fn(x)
    return fn(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)


class _Rng:
    """Random draws from one ``torch.Generator``, moved to the images' device."""

    def __init__(self, generator: torch.Generator, device, dtype) -> None:
        self.g, self.device, self.dtype = generator, device, dtype

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device)

    def normal(self, shape, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        t = torch.randn(shape, generator=self.g, device=self.g.device, dtype=self.dtype)
        if std != 1:
            t.mul_(std)
        if mean != 0:
            t.add_(mean)
        return self._to(t)

    def uniform(self, shape, low: float, high: float) -> torch.Tensor:
        t = torch.rand(shape, generator=self.g, device=self.g.device, dtype=self.dtype)
        if high - low != 1:
            t.mul_(high - low)
        if low != 0:
            t.add_(low)
        return self._to(t)

    def bits16(self, shape) -> torch.Tensor:
        """Uniform 16-bit integers (``int16``, all of -32768..32767) of ``shape``: four per
        64-bit draw of the generator, several times cheaper than ``uniform``."""
        n = math.prod(shape)
        t = torch.empty((n + 3) // 4, dtype=torch.int64, device=self.g.device)
        t.random_(-2 ** 63, None, generator=self.g)
        return self._to(t.view(torch.int16)[:n].view(shape))

    def randint(self, low: int, high: int, shape, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        return self._to(torch.randint(low, high, shape, generator=self.g, device=self.g.device,
                                      dtype=dtype))

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        return self._to(torch.poisson(rate.to(self.g.device), generator=self.g))


def _clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The reference's ``clipped_zoom``: central crop then scipy ``zoom(order=1)`` (not cropped)."""
    h, w = x.shape[-2:]
    ch, cw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    size = (int(round(ch * factor)), int(round(cw * factor)))
    if size == (ch, cw):
        return crop
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=True)


def _motion_blur(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """The reference package's motion blur, per-image angle (degrees) ``[B]``.

    Sum over ``2 * radius + 1`` taps of Gaussian weights of the image shifted by
    ``(-ceil(i sin a - 0.5), -ceil(i cos a - 0.5))`` with edge replication; taps
    stop once a shift leaves the image (the reference's ``break``). Done as
    shifted slices of the edge-padded batch, image by image (a few dozen
    multiply-adds per image, each on a cache-sized slice).
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
    py = min(int(dy.abs().max()), h - 1)
    px = min(int(dx.abs().max()), w - 1)
    xp = _pad(x, py, py, px, px, "edge")
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


# ----------------------------------------------------------------------------- corruptions
# Each takes (x [B, C, H, W] in [0, 1], entry of the severity table, spatial scale, rng,
# table name "imagenet" | "cifar").


def _gaussian_noise(x, c, s, rng, table):
    return rng.normal(x.shape, std=c).add_(x)


def _poisson_capped(rate: torch.Tensor, u: torch.Tensor, cap: int) -> torch.Tensor:
    """``min(Poisson(rate), cap)`` by inversion of the CDF at uniforms ``u`` (same shape),
    for ``0 <= rate <= cap``, in cache-sized chunks: ``cap`` steps of adding the CDF's
    terms ``exp(-rate) rate^k / k!``.

    A term is kept as ``exp(-rate) (rate / a)^k`` times the scalar ``a^k / k!`` with
    ``a = cap / e``: every kept value is then at most 1 (its maximum is at
    ``rate = k = cap``), so nothing overflows float32 for any ``cap``, and a kept value
    small enough to underflow stands for a term below 1e-28.
    """
    flat_rate, flat_u = rate.reshape(-1), u.reshape(-1)
    out = torch.empty_like(flat_rate)
    a = max(cap / math.e, 1.0)
    chunk = 1 << 16 if rate.device.type == "cpu" else flat_rate.numel()  # CPU: cache-sized
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


def _threshold16(p: float) -> int:
    """``t`` with ``P(u < t) = p`` (to 1 / 65536) for :meth:`_Rng.bits16` draws ``u``."""
    return min(int(round(min(max(p, 0.0), 1.0) * 65536)) - 32768, 32767)


def _shot_noise(x, c, s, rng, table):
    cap = int(math.ceil(c))
    if cap <= 64:  # the output is clipped at 1, i.e. counts >= c: only P(k < cap) matters
        return _poisson_capped(x * c, rng.uniform(x.shape, 0, 1), cap).mul_(1.0 / c)
    return rng.poisson(x * c).mul_(1.0 / c)


def _impulse_noise(x, c, s, rng, table):
    # each value flips with probability c, to salt or pepper with probability 1/2 (skimage "s&p")
    u = rng.bits16(x.shape)
    return torch.where(u < _threshold16(c), (u < _threshold16(c / 2)).to(x.dtype), x)


def _speckle_noise(x, c, s, rng, table):
    return rng.normal(x.shape, std=c).add_(1).mul_(x)


def _gaussian_blur(x, c, s, rng, table):
    return _gaussian(x, c * s)


def _glass_blur(x, c, s, rng, table):
    """Blur, locally scramble pixels, blur again (the reference's glass blur).

    The reference visits pixels in descending raster order and runs
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy views, which is a copy
    ``x[h, w] = x[h + dy, w + dx]`` (the second assignment writes back the copied
    value), so a pixel reads an already updated one whenever its partner comes
    later in raster order. That sequential loop is computed exactly here, batched:
    each pixel follows the chain of such reads to its end by pointer doubling.
    """
    sigma, delta, iterations = c[0] * s, max(1, int(round(c[1] * s))), c[2]
    x = _gaussian(x, sigma).mul_(255).floor_().div_(255)  # the reference's uint8 cast
    b, ch, h, w = x.shape
    lo, hi_row, hi_col = delta + 1, h - delta, w - delta  # visited rows/cols, inclusive
    if hi_row < lo or hi_col < lo:
        return _gaussian(x, sigma)
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
    if source is not None:
        local = (source.view(b, h * w) - offset).long()[:, None].expand(b, ch, h * w)
        x = torch.gather(x.reshape(b, ch, h * w), 2, local).view(b, ch, h, w)
    return _gaussian(x, sigma)


def _disk(radius: float, alias_blur: float, device, dtype, *, soft: bool = False) -> torch.Tensor:
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
    disk = _separable(disk[None, None], g, g, "reflect101")[0, 0]
    return disk.to(dtype)


def _defocus_blur(x, c, s, rng, table):
    kernel = _disk(c[0] * s, c[1] * s, x.device, x.dtype, soft=s != 1)
    return _fft_convolve(x, kernel[None], "reflect101")


def _motion(x, c, s, rng, table):
    radius, sigma = max(1, int(round(c[0] * s))), c[1] * s
    angle = rng.uniform((x.shape[0],), -45, 45)
    return _motion_blur(x, radius, sigma, angle)


def _zoom_blur(x, c, s, rng, table):
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


def _plasma_fractal(batch: int, mapsize: int, wibbledecay: float, rng: _Rng) -> torch.Tensor:
    """Diamond-square height maps ``[B, N, N]`` in [0, 1] (the reference's ``plasma_fractal``)."""
    m = torch.zeros(batch, mapsize, mapsize, device=rng.device, dtype=rng.dtype)
    step, wibble = mapsize, 100.0

    def mean_plus_noise(total: torch.Tensor) -> torch.Tensor:  # total / 4 + wibble * U(-wibble, wibble)
        noise = rng.uniform(total.shape, 0, 1).mul_(2 * wibble * wibble).sub_(wibble * wibble)
        return noise.add_(total, alpha=0.25)

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + torch.roll(corner, -1, 1)
        sq += torch.roll(sq, -1, 2)
        m[:, half::step, half::step] = mean_plus_noise(sq)
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        lt = dr + ul
        lt += torch.roll(dr, 1, 1)
        lt += torch.roll(ul, -1, 2)
        m[:, 0::step, half::step] = mean_plus_noise(lt)
        tt = dr + ul
        tt += torch.roll(dr, 1, 2)
        tt += torch.roll(ul, -1, 1)
        m[:, half::step, 0::step] = mean_plus_noise(tt)
        step //= 2
        wibble /= wibbledecay
    m -= m.amin(dim=(1, 2), keepdim=True)
    return m.div_(m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12))


def _fog(x, c, s, rng, table):
    b, _, h, w = x.shape
    size = 1 << max(0, (max(h, w) - 1).bit_length())
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    plasma = _plasma_fractal(b, size, c[1], rng)[:, None, :h, :w]
    gain = max_val / (max_val + c[0])
    return torch.addcmul(x * gain, plasma, gain * c[0])


@functools.lru_cache(maxsize=2)
def _frost_sources() -> Tuple[torch.Tensor, ...]:
    """The six frost photographs of ``imagecorruptions`` as RGB uint8 ``[3, h, w]`` tensors,
    or six procedural fractal ice textures if the package is not installed."""
    try:
        import importlib.resources

        import cv2
        folder = importlib.resources.files("imagecorruptions") / "frost"
        out = []
        for name in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg",
                     "frost6.jpg"):
            with importlib.resources.as_file(folder / name) as path:
                bgr = cv2.imread(str(path))
            out.append(torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1).contiguous())
        return tuple(out)
    except (ImportError, ModuleNotFoundError, FileNotFoundError, AttributeError, TypeError):
        return _procedural_frost()


def _procedural_frost() -> Tuple[torch.Tensor, ...]:
    """Six seeded fractal ice textures, RGB uint8 ``[3, 512, 512]`` (used without the package):
    squared diamond-square noise, i.e. sparse bright crystal-like patches, tinted pale blue."""
    rng = _Rng(torch.Generator().manual_seed(1234), "cpu", torch.float32)
    tex = _plasma_fractal(6, 512, 1.3, rng) ** 2
    tint = torch.tensor([0.85, 0.93, 1.0])[None, :, None, None]
    return tuple((tex[:, None] * tint * 255).round().to(torch.uint8).unbind(0))


@functools.lru_cache(maxsize=4)
def _frost_textures(table: str, h: int, w: int, scale: float, device: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frost textures resized for ``h x w`` images, stacked ``[6, 3, Hmax, Wmax]`` float in
    [0, 1], and their sizes ``[6, 2]``. Resizing happens once per size (cached)."""
    textures = []
    for src in _frost_sources():
        th, tw = src.shape[-2:]
        if table == "cifar":
            factor = 0.2 * scale
        else:  # the package: scale up to cover the image if needed, then x1.1
            factor = max(scale, h / th if th < h else 1.0, w / tw if tw < w else 1.0) * 1.1
        factor = max(factor, (h + 1) / th, (w + 1) / tw)  # room for a random crop
        size = (int(math.ceil(th * factor)), int(math.ceil(tw * factor)))
        t = F.interpolate(src[None].float(), size=size, mode="bicubic" if table != "cifar" else "bilinear",
                          align_corners=False)[0].clamp(0, 255)
        textures.append(t / 255)
    hmax = max(t.shape[1] for t in textures)
    wmax = max(t.shape[2] for t in textures)
    stack = torch.zeros(len(textures), 3, hmax, wmax)
    for i, t in enumerate(textures):
        stack[i, :, :t.shape[1], :t.shape[2]] = t
    sizes = torch.tensor([t.shape[1:] for t in textures])
    return stack.to(device), sizes.to(device)


def _frost(x, c, s, rng, table):
    b, _, h, w = x.shape
    stack, sizes = _frost_textures(table, h, w, float(s), str(x.device))
    idx = rng.randint(0, stack.shape[0], (b,))
    room = sizes[idx] - torch.tensor([h, w], device=x.device)
    u = rng.uniform((b, 2), 0, 1).to(x.device)
    start = torch.minimum((u * room).long(), room - 1)
    crops = [stack[i, :, r:r + h, q:q + w] for i, (r, q) in zip(idx.tolist(), start.tolist())]
    if x.shape[1] == 3 and stack.dtype == x.dtype:
        out = torch.empty_like(x)
        for n, crop in enumerate(crops):  # image by image: each product stays in cache
            torch.mul(crop, c[1], out=out[n]).add_(x[n], alpha=c[0])
        return out
    crop = torch.stack(crops).to(x.dtype)
    return _as_rgb_then_mean(lambda rgb: c[0] * rgb + c[1] * crop, x)


def _snow(x, c, s, rng, table):
    b, _, h, w = x.shape
    layer = rng.normal((b, 1, h, w), mean=c[0], std=c[1])
    layer = _clipped_zoom(layer, c[2])
    layer = torch.where(layer < c[3], torch.zeros_like(layer), layer).clamp(0, 1)
    angle = rng.uniform((b,), -135, -45)
    layer = _motion_blur(layer, max(1, int(round(c[4] * s))), c[5] * s, angle)
    layer = torch.round(layer * 255) / 255
    layer = layer[..., :h, :w]
    layer = layer + torch.flip(layer, dims=(-2, -1))
    out = torch.maximum(x, (_gray(x) * 1.5).add_(0.5))
    return out.mul_(1 - c[6]).add_(x, alpha=c[6]).add_(layer)


def _equalize_hist(v: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` of integer-valued ``[B, H, W]`` in 0..255, batched."""
    b = v.shape[0]
    flat = v.reshape(b, -1).long()
    total = flat.shape[1]
    hist = torch.zeros(b, 256, device=v.device, dtype=torch.float64)
    hist.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    first = (hist > 0).to(torch.int8).argmax(dim=1, keepdim=True)
    cum = hist.cumsum(dim=1)
    base = cum.gather(1, first)
    denom = (total - hist.gather(1, first)).clamp_min(1)
    lut = torch.round((cum - base) * (255.0 / denom)).clamp(0, 255)
    lut = torch.where(torch.arange(256, device=v.device) <= first, torch.zeros_like(lut), lut)
    out = lut.gather(1, flat).reshape(v.shape)
    constant = hist.gather(1, first) == total
    return torch.where(constant.view(b, 1, 1), first.view(b, 1, 1).to(out.dtype), out).to(v.dtype)


def _distance_to(mask: torch.Tensor, cap: int, dtype: torch.dtype) -> torch.Tensor:
    """Euclidean distance ``[B, H, W]`` to the nearest True pixel of ``mask``, capped at ``cap``."""
    h, w = mask.shape[-2:]
    far = float(cap + 1)
    cols = torch.arange(w, device=mask.device, dtype=dtype).expand_as(mask)
    # distance along each row to the nearest True pixel on the left and on the right
    left = torch.where(mask, cols, torch.full_like(cols, -1e9)).cummax(dim=-1).values
    right = torch.where(mask, cols, torch.full_like(cols, 1e9)).flip(-1).cummin(dim=-1).values.flip(-1)
    row = torch.minimum(cols - left, right - cols).clamp(max=far)
    sq = row ** 2
    out = sq.clone()
    for k in range(1, min(cap, h - 1) + 1):  # lower envelope over vertical offsets
        out[..., k:, :] = torch.minimum(out[..., k:, :], sq[..., :-k, :] + k * k)
        out[..., :-k, :] = torch.minimum(out[..., :-k, :], sq[..., k:, :] + k * k)
    return out.sqrt().clamp(max=cap)


def _correlate3x3(x: torch.Tensor, kernel: Tuple[Tuple[float, ...], ...], mode: str) -> torch.Tensor:
    """``cv2.filter2D``-style 3x3 correlation of ``x [..., H, W]`` as a sum of shifted copies."""
    h, w = x.shape[-2:]
    padded = _pad(x, 1, 1, 1, 1, mode)
    out = torch.zeros_like(x)
    for i in range(3):
        for j in range(3):
            if kernel[i][j]:
                out = out + kernel[i][j] * padded[..., i:i + h, j:j + w]
    return out


def _box3(v: torch.Tensor) -> torch.Tensor:
    k = torch.full((3,), 1 / 3, device=v.device, dtype=v.dtype)
    return _separable(v, k, k, "reflect101")


def _dilate3(mask: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a bool ``[..., H, W]`` mask (zero outside)."""
    padded = F.pad(mask, (1, 1, 1, 1))
    rows = padded[..., :, :-2] | padded[..., :, 1:-1] | padded[..., :, 2:]
    return rows[..., :-2, :] | rows[..., 1:-1, :] | rows[..., 2:, :]


def _canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``cv2.Canny(img, low, high)`` (3x3 Sobel, L1 magnitude) of ``[B, 1, H, W]`` 0..255, batched.

    Non-maximum suppression with OpenCV's tie rules; hysteresis by repeated
    8-neighbour growth from the strong edges until nothing changes.
    """
    smooth = torch.tensor([1., 2, 1], device=img.device, dtype=img.dtype)
    diff = torch.tensor([-1., 0, 1], device=img.device, dtype=img.dtype)
    gx = _separable(img, smooth, diff, "edge")  # 3x3 Sobel, replicated borders
    gy = _separable(img, diff, smooth, "edge")
    mag = gx.abs() + gy.abs()
    mp = F.pad(mag, (1, 1, 1, 1))  # OpenCV's magnitude buffer has zero borders
    h, w = mag.shape[-2:]

    def at(dr: int, dc: int) -> torch.Tensor:
        return mp[..., 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < ax * 0.4142135623730951
    vertical = ay > ax * 2.4142135623730951
    same_sign = (gx * gy) >= 0
    keep_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    keep_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    keep_d = torch.where(same_sign, (mag > at(-1, -1)) & (mag > at(1, 1)),
                         (mag > at(-1, 1)) & (mag > at(1, -1)))
    keep = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d))
    candidate = keep & (mag > low)
    edges = candidate & (mag > high)
    while bool((candidate & ~edges).any()):
        grown = candidate & _dilate3(edges)
        grown = grown | edges
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def _water_mask(liquid: torch.Tensor, strength: float) -> torch.Tensor:
    """Spatter's water-drop layer ``[B, 1, H, W]`` from the thresholded liquid layer.

    The reference's OpenCV chain (Canny edges, distance transform capped at 20,
    3x3 blur, histogram equalisation, an emboss kernel, 3x3 blur), batched.
    """
    level = torch.floor(liquid.clamp(0, 1) * 255)
    edges = _canny(level, 50, 150)[:, 0]
    dist = _distance_to(edges, 20, liquid.dtype)
    dist = torch.floor(_box3(dist[:, None]))[:, 0]
    dist = _equalize_hist(dist)
    ker = ((-2., -1, 0), (-1, 1, 1), (0, 1, 2))
    dist = _correlate3x3(dist[:, None], ker, "reflect101")
    dist = _box3(torch.round(dist).clamp(0, 255))
    m = level * dist
    return m / m.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) * strength


def _spatter(x, c, s, rng, table):
    b, _, h, w = x.shape
    liquid = rng.normal((b, 1, h, w), mean=c[0], std=c[1])
    liquid = _gaussian(liquid, c[2] * s)
    liquid = torch.where(liquid < c[3], torch.zeros_like(liquid), liquid)
    if c[5] == 0:
        m = _water_mask(liquid, c[4])
        color = torch.tensor([175 / 255., 238 / 255., 238 / 255.], device=x.device, dtype=x.dtype)
        return _as_rgb_then_mean(lambda rgb: rgb + m * color.view(1, 3, 1, 1), x)
    m = _gaussian((liquid > c[3]).to(x.dtype), c[4] * s)
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    color = torch.tensor([63 / 255., 42 / 255., 20 / 255.], device=x.device, dtype=x.dtype)
    return _as_rgb_then_mean(lambda rgb: rgb * (1 - m) + color.view(1, 3, 1, 1) * m, x)


def _contrast(x, c, s, rng, table):
    means = x.mean(dim=(2, 3), keepdim=True)
    return torch.add(means * (1 - c), x, alpha=c)


def _brightness(x, c, s, rng, table):
    # HSV value + c with hue and saturation kept == scaling RGB by v'/v (gray where v = 0)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp_(0, 1)
    black = v <= 0
    gain = torch.where(black, torch.zeros_like(v), v_new / v.clamp_min(1e-12))
    return torch.addcmul(v_new.masked_fill_(~black, 0), x, gain)


def _saturate(x, c, s, rng, table):
    gray_sat = min(max(float(c[1]), 0.0), 1.0)  # the new saturation of gray pixels (S = 0)

    def rgb(x3: torch.Tensor) -> torch.Tensor:
        # HSV with S -> clamp(S * c0 + c1, 0, 1): each channel is v - S' v (v - x) / delta,
        # i.e. lerp(v, x, S' v / delta) (S = delta / v; 0 for black, where delta = 0 too)
        v = x3.amax(dim=1, keepdim=True)
        delta = v - x3.amin(dim=1, keepdim=True)
        sat = torch.div(delta, v.clamp_min(1e-12)).mul_(c[0]).add_(c[1]).clamp_(0, 1)
        weight = sat.mul_(v).div_(delta.clamp_min(1e-12))  # finite; delta = 0 where x = v
        out = torch.lerp(v.expand_as(x3), x3, weight)
        if gray_sat:  # gray pixels have hue 0 (red) in skimage: G and B drop to v (1 - S')
            out[:, 1:].addcmul_((delta == 0).to(x3.dtype), v, value=-gray_sat)
        return out
    return _as_rgb_then_mean(rgb, x)


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
def _box_band(n_in: int, n_out: int, device: str, dtype: torch.dtype) -> _Band:
    """Pillow BOX resampling of an axis from ``n_in`` to ``n_out`` samples."""
    return _Band(_pil_box_weights(n_in, n_out), device, dtype)


def _box_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x = _box_band(x.shape[-2], h, str(x.device), x.dtype).along(x, -2)
    return _box_band(x.shape[-1], w, str(x.device), x.dtype).along(x, -1)


def _pixelate(x, c, s, rng, table):
    h, w = x.shape[-2:]
    small = _box_resize(x, max(1, int(h * c)), max(1, int(w * c)))
    if table == "cifar":
        return _box_resize(small, h, w)
    # Pillow's NEAREST takes source pixel floor((i + 0.5) * in / out), as "nearest-exact" does
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


_JPEG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
              14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
              18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_JPEG_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def _jpeg_table(base: Sequence[int], quality: int, device, dtype) -> torch.Tensor:
    """libjpeg's ``jpeg_set_quality`` table (baseline, clamped to 1..255) ``[8, 8]``."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    t = torch.tensor(base, dtype=torch.long)
    t = ((t * scale + 50) // 100).clamp(1, 255)
    return t.view(8, 8).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _dct_matrix(device: str, dtype: torch.dtype) -> torch.Tensor:
    n = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=16)
def _jpeg_matrices(quality: int, chroma: bool, device: str, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(forward, inverse)`` ``[64, 64]`` matrices on flattened 8x8 blocks: the 2-D DCT
    divided by the quantisation table, and the table times the inverse DCT."""
    d = _dct_matrix("cpu", torch.float64)
    k = torch.kron(d, d)  # coef (flattened) = k @ block (flattened)
    t = _jpeg_table(_JPEG_CHROMA if chroma else _JPEG_LUMA, quality, "cpu", torch.float64).reshape(64)
    forward = (k / t[:, None]).t()  # blocks [N, 64] @ forward = coef / table
    inverse = k * t[:, None]  # quantised [N, 64] @ inverse = inverse DCT of (q * table)
    return forward.to(device=device, dtype=dtype), inverse.to(device=device, dtype=dtype)


def _jpeg_plane(plane: torch.Tensor, quality: int, chroma: bool, shift: float = 0.0) -> torch.Tensor:
    """Quantise level-shifted planes ``[..., H, W]`` (H, W multiples of 8) in the 8x8 DCT domain;
    ``shift`` is added on the way back to the plane layout."""
    shape = plane.shape
    h, w = shape[-2:]
    forward, inverse = _jpeg_matrices(int(quality), chroma, str(plane.device), plane.dtype)
    blocks = plane.reshape(-1, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(-1, 64)
    q = torch.round_(blocks @ forward)
    blocks = (q @ inverse).view(-1, h // 8, w // 8, 8, 8).transpose(2, 3)
    out = plane.new_empty(shape)
    torch.add(blocks, shift, out=out.view(-1, h // 8, 8, w // 8, 8))
    return out


@functools.lru_cache(maxsize=16)
def _fancy_band(n: int, device: str, dtype: torch.dtype) -> _Band:
    """libjpeg's h2v2 "fancy" (triangle) chroma upsampling of an axis, ``[2n, n]``: ``3/4`` of
    the nearer and ``1/4`` of the farther sample, edges replicated (which is bilinear x2
    interpolation with ``align_corners=False``)."""
    i = torch.arange(n)
    m = torch.zeros(2 * n, n, dtype=torch.float64)
    for parity, farther in ((0, (i - 1).clamp(min=0)), (1, (i + 1).clamp(max=n - 1))):
        m[2 * i + parity, i] += 0.75
        m[2 * i + parity, farther] += 0.25
    return _Band(m, device, dtype)


def _upsample_fancy(c: torch.Tensor) -> torch.Tensor:
    """Fancy upsampling of ``[..., h, w]`` to ``[..., 2h, 2w]`` (:func:`_fancy_band`)."""
    h, w = c.shape[-2:]
    c = _fancy_band(w, str(c.device), c.dtype).along(c, -1)
    return _fancy_band(h, str(c.device), c.dtype).along(c, -2)


_RGB_TO_YCC = ((0.299, 0.587, 0.114),
               (-0.168735892, -0.331264108, 0.5),
               (0.5, -0.418687589, -0.081312411))
_YCC_TO_RGB = ((1.0, 0.0, 1.402),
               (1.0, -0.344136286, -0.714136286),
               (1.0, 1.772, 0.0))


def _jpeg_compression(x, c, s, rng, table):
    # the output is left unclamped: corrupt() clamps to [0, 1], as libjpeg clamps to 0..255
    b, ch, h, w = x.shape
    v = (x * 255).round_()
    if ch == 1:
        hp, wp = -(-h // 8) * 8, -(-w // 8) * 8
        y = _pad(v[:, 0], 0, hp - h, 0, wp - w, "edge").sub_(128)
        return _jpeg_plane(y, c, False, 128.0)[:, None, :h, :w].round_().div_(255)
    hp, wp = -(-h // 16) * 16, -(-w // 16) * 16
    v = _pad(v, 0, hp - h, 0, wp - w, "edge")
    r, g, bl = v.unbind(1)
    (yr, yg, yb), (ur, ug, ub), (vr, vg, vb) = _RGB_TO_YCC
    y = torch.add(r * yr, g, alpha=yg).add_(bl, alpha=yb).round_().sub_(128)
    # 2x2 means first (the colour transform is linear), then Cb, Cr at quarter resolution
    pooled = v[..., 0::2, 0::2] + v[..., 1::2, 0::2]
    pooled += v[..., 0::2, 1::2]
    pooled += v[..., 1::2, 1::2]
    pr, pg, pb = pooled.mul_(0.25).unbind(1)
    cb = torch.add(pr * ur, pg, alpha=ug).add_(pb, alpha=ub)  # level shift: +128 - 128
    cr = torch.add(pr * vr, pg, alpha=vg).add_(pb, alpha=vb)
    chroma = torch.stack((cb, cr), dim=1).round_()
    y = _jpeg_plane(y, c, False, 128.0).round_().clamp_(0, 255)
    cb, cr = _jpeg_plane(chroma, c, True).round_().clamp_(-128, 127).unbind(1)
    # each RGB channel is Y plus a mix of Cb, Cr: mixed at chroma resolution, then upsampled
    (_, _, rv), (_, gu, gv), (_, bu, _) = _YCC_TO_RGB
    mix = torch.empty_like(pooled)
    torch.mul(cr, rv, out=mix[:, 0])
    torch.mul(cb, gu, out=mix[:, 1]).add_(cr, alpha=gv)
    torch.mul(cb, bu, out=mix[:, 2])
    rgb = _upsample_fancy(mix).add_(y[:, None])
    return rgb[..., :h, :w].round_().div_(255)


def _elastic_imagenet(x, alpha, s, rng):
    b, _, h, w = x.shape
    sigma = (h * 0.01, w * 0.01)
    max_d = h * 0.005
    kh = _gaussian_kernel1d(sigma[0], 3.0, x.device, x.dtype)
    kw = _gaussian_kernel1d(sigma[1], 3.0, x.device, x.dtype)
    field = rng.uniform((b, 2, h, w), -max_d, max_d)
    field = _separable(field, kh, kw, "symmetric")
    # grid_sample coordinates of (row + alpha * dy, col + alpha * dx), scipy's "reflect"
    # borders (see _sample_bilinear), written in one pass
    gx = (2 * torch.arange(w, device=x.device, dtype=x.dtype) + 1) / w - 1
    gy = (2 * torch.arange(h, device=x.device, dtype=x.dtype) + 1) / h - 1
    base = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)
    scale = torch.tensor([2 * alpha / w, 2 * alpha / h], device=x.device, dtype=x.dtype)
    grid = torch.addcmul(base, field.permute(0, 2, 3, 1), scale)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _elastic_cifar(x, c, s, rng):
    b, _, h, w = x.shape
    size = 32 * s
    alpha, sigma, jitter = c[0] * size, c[1] * size, c[2] * size
    # random affine of three points around the centre (cv2.getAffineTransform + warpAffine)
    cx, cy = float(h // 2), float(w // 2)  # the reference's (row, col)-ordered "x, y"
    sq = float(min(h, w) // 3)
    pts1 = torch.tensor([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]],
                        device=x.device, dtype=torch.float64)
    pts2 = pts1 + rng.uniform((b, 3, 2), -jitter, jitter).to(torch.float64)
    ones = torch.ones(3, 1, device=x.device, dtype=torch.float64)
    src = torch.cat((pts1, ones), dim=1).expand(b, 3, 3)
    m = torch.linalg.solve(src, pts2).transpose(1, 2)  # [B, 2, 3]: dst = A src + t
    a, t = m[:, :, :2], m[:, :, 2]
    inv = torch.linalg.inv(a)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float64),
                            torch.arange(w, device=x.device, dtype=torch.float64), indexing="ij")
    dst = torch.stack((gx, gy), dim=-1).reshape(1, -1, 2) - t[:, None, :]
    srcxy = dst @ inv.transpose(1, 2)
    sx, sy = srcxy[..., 0].reshape(b, h, w), srcxy[..., 1].reshape(b, h, w)
    x = _sample_bilinear(x, sy.to(x.dtype), sx.to(x.dtype), "reflect101")
    if alpha == 0:
        return x
    k = _gaussian_kernel1d(sigma, 3.0, x.device, x.dtype)
    field = _separable(rng.uniform((b, 2, h, w), -1, 1), k, k, "symmetric") * alpha
    rows = torch.arange(h, device=x.device, dtype=x.dtype)[:, None] + field[:, 1]
    cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, :] + field[:, 0]
    return _sample_bilinear(x, rows, cols, "symmetric")


def _elastic_transform(x, c, s, rng, table):
    if table == "cifar":
        return _elastic_cifar(x, c, s, rng)
    return _elastic_imagenet(x, c, s, rng)


# name -> fn(x, table entry, spatial scale, rng, table name): the one place names are looked up
_CORRUPTIONS: Dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "defocus_blur": _defocus_blur, "glass_blur": _glass_blur,
    "motion_blur": _motion, "zoom_blur": _zoom_blur, "snow": _snow, "frost": _frost, "fog": _fog,
    "brightness": _brightness, "contrast": _contrast, "elastic_transform": _elastic_transform,
    "pixelate": _pixelate, "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise, "gaussian_blur": _gaussian_blur, "spatter": _spatter,
    "saturate": _saturate,
}


def _validate(x: torch.Tensor, name: str, severity: int) -> None:
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown corruption {name!r}; use one of: {', '.join(NAMES)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer 1..5, got {severity!r}")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}; "
                         f"add a batch dim with x[None]")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"x must have 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
                         f"images are NCHW")
    if not x.is_floating_point():
        raise ValueError(f"x must be float in [0, 1], got {x.dtype}; use x.float() / 255")
    if x.numel() == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)})")


def _validate_range(x: torch.Tensor) -> None:
    lo, hi = (float(v) for v in torch.aminmax(x))
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError("x contains NaN")
    if lo < 0 or hi > 1:
        raise ValueError(f"x must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                         f"divide uint8 images by 255")


def corrupt(x: torch.Tensor, name: str, severity: int, *,
            generator: Optional[torch.Generator] = None, preset: str = "auto") -> torch.Tensor:
    """Corrupt a batch of images with one ImageNet-C / CIFAR-10-C corruption.

    Args:
        x: ``[B, C, H, W]`` float in ``[0, 1]``, ``C`` = 1 or 3, any ``H, W``, CPU or CUDA.
        name: one of :data:`NAMES`.
        severity: 1..5.
        generator: source of all randomness (any device); ``None`` uses a fresh
            generator seeded with :data:`DEFAULT_SEED` on ``x``'s device.
        preset: ``"auto"`` (by image size, spatial parameters rescaled),
            ``"imagenet"`` (the reference package's parameters) or ``"cifar"``.

    Returns:
        ``[B, C, H, W]`` tensor of ``x``'s dtype and device, in ``[0, 1]``.
    """
    _validate(x, name, severity)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(DEFAULT_SEED)
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    table, c, scale = params(name, severity, size=min(x.shape[-2:]), preset=preset)
    rng = _Rng(generator, x.device, dtype)
    xd = x.to(dtype).contiguous()  # e.g. a permuted HWC batch: one copy, then fast NCHW ops
    _validate_range(xd)
    fn = _CORRUPTIONS[name]
    step = max(1, _CHUNK // xd[0].numel())
    if xd.device.type == "cpu" and step < xd.shape[0]:
        out = torch.empty_like(xd)
        for i in range(0, xd.shape[0], step):
            torch.clamp(fn(xd[i:i + step], c, scale, rng, table), 0, 1, out=out[i:i + step])
        return out.to(x.dtype)
    out = fn(xd, c, scale, rng, table)
    if out.untyped_storage().data_ptr() == xd.untyped_storage().data_ptr():
        return out.clamp(0, 1).to(x.dtype)  # a view of the input: never modify it in place
    return out.clamp_(0, 1).to(x.dtype)


# ----------------------------------------------------------------------------- CLI


def _load_image(path: str) -> torch.Tensor:
    from PIL import Image
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image {path} not found")
    try:
        img = Image.open(p).convert("RGB")
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return t.view(img.height, img.width, 3).permute(2, 0, 1)[None].float() / 255


def _figure(images: torch.Tensor, names: Sequence[str], path: Path, *, seed: int, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    grids = {}
    for name in names:
        grids[name] = [corrupt(images, name, sev, generator=torch.Generator().manual_seed(seed))
                       for sev in range(1, 6)]
    with PdfPages(path) as pdf:
        for i in range(images.shape[0]):
            fig, axes = plt.subplots(len(names), 6, figsize=(6 * 1.3, len(names) * 1.3))
            for r, name in enumerate(names):
                row = [images[i]] + [g[i] for g in grids[name]]
                for col, img in enumerate(row):
                    ax = axes[r, col]
                    arr = img.permute(1, 2, 0).cpu().numpy()
                    ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r == 0:
                        ax.set_title("clean" if col == 0 else f"severity {col}", fontsize=7)
                    if col == 0:
                        ax.set_ylabel(name, fontsize=6)
            fig.suptitle(f"{title}, image {i}", fontsize=8)
            fig.tight_layout()
            pdf.savefig(fig)
            plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probe.corruptions``: PDF grid of every corruption x severity."""
    parser = argparse.ArgumentParser(
        prog="python -m probe.corruptions",
        description="Write a PDF grid (rows: corruption, columns: severity) of ImageNet-C style "
                    "corruptions applied to an image or to a few dataset images.")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="path of an image file (PNG, JPEG, ...)")
    src.add_argument("--data", help="dataset name, e.g. fashion-mnist (test split)")
    parser.add_argument("--n", type=int, default=4, help="dataset images to show (default 4)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 0)")
    parser.add_argument("--preset", choices=PRESETS, default="auto", help="severity parameters")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="corruptions to show (default: all)")
    parser.add_argument("--out", default="runs", help="output folder (default runs/)")
    args = parser.parse_args(argv)
    try:
        names = args.names or NAMES
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"unknown corruption {unknown[0]!r}; use one of: {', '.join(NAMES)}")
        if args.n <= 0:
            raise ValueError(f"--n must be positive, got {args.n}")
        if args.image:
            images, title = _load_image(args.image), Path(args.image).stem
        else:
            from probe import data
            ds = data.load(args.data, "test", n=args.n, seed=args.seed)
            images, title = data.as_tensors(ds)[0][:args.n], args.data
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"corruptions_{title.replace('/', '_').replace(':', '_')}.pdf"
        _figure(images, names, path, seed=args.seed, title=title)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
