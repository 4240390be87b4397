"""Batched torch corruptions in the style of ImageNet-C and CIFAR-10-C.

Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", arXiv:1903.12261. The 15 benchmark corruptions
come first in :data:`NAMES` (the order of the paper and of the reference
``imagecorruptions`` package), then the 4 held-out ones.

:func:`corrupt` takes a batch ``[B, C, H, W]`` of floats in ``[0, 1]`` with
``C`` = 1 or 3 and any ``H, W`` (Fashion-MNIST's 28x28 grayscale included), and
returns a tensor of the same shape, dtype and device, in ``[0, 1]``. Everything
but JPEG is torch (CPU or CUDA), batched over images (on CPU a few MB of images
at a time, so that intermediates stay in cache), except that on CPU large images'
Gaussian, box and defocus filters are OpenCV's, plane by plane on torch's threads;
JPEG is libjpeg-turbo itself, on CPU threads. All randomness comes from the
given ``torch.Generator`` (``generator=None`` uses a generator seeded with
:data:`DEFAULT_SEED`, so the same call gives the same output).

Severity parameters (``preset``):

- ``"imagenet"``: the ImageNet-C parameters exactly as the reference package
  ``imagecorruptions`` applies them, at any image size (the package does not
  rescale them either). Deterministic corruptions match that package's output
  (PSNR >= 30 dB; JPEG exactly); random ones match the distribution of its
  per-image change.
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
has hue 0, red). Frost uses the six texture photographs shipped with the
reference package ``imagecorruptions`` (a pinned requirement) and fails with a
clear error if the package, OpenCV or a photograph is missing: there are no
substitute textures.

How the reference's numpy/OpenCV/PIL steps are done in torch:

- JPEG: each image quantised to uint8, then encoded and decoded by libjpeg-turbo
  through OpenCV (in memory, one image per task on ``torch.get_num_threads()``
  threads): the same codec output as the reference's Pillow round trip, byte for
  byte (JFIF YCbCr, 4:2:0, islow DCT, fancy upsampling). A CUDA batch is coded on
  CPU and moved back. JPEG, pixelate, Gaussian and shot noise and fog write straight into the
  output (registered with ``fills_output=True``: no clamp or copy pass); pixelate's NEAREST upscale is
  OpenCV's ``INTER_NEAREST_EXACT`` on CPU planes where that picks Pillow's pixels.
- Glass blur: the reference's pixel loop is a sequential *copy*
  ``x[h, w] = x[h + dy, w + dx]`` in descending raster order (its tuple "swap"
  of numpy views writes the copied value back). On CPU that loop runs as such
  (a numba kernel per image on torch's threads, offsets drawn from the torch
  generator); elsewhere, or without numba, it is reproduced exactly, for all
  pixels and images at once, by following each pixel's chain of reads (pointer
  doubling), then moving the pixels with one int32 ``index_select`` per plane.
  Both give the same output from the same draws.
- Gaussian and box filters are OpenCV's ``sepFilter2D`` plane by plane on CPU
  planes of 64x64 px and more (on torch's threads), elsewhere products with cached
  banded matrices (on CPU tile by tile over the band only); Pillow's BOX resize is
  such a product too (BOX downsampling of rows as a multiply-add chain over each
  box, which gives the banded product's float32 result); defocus blur is OpenCV's
  ``filter2D`` with the disk (zero outer rows and columns dropped) on such CPU
  planes, elsewhere an FFT convolution of the border-extended image, both equal
  to the reference's spatial filtering up to float rounding; motion blur (per-image angle) is the reference's sum of
  edge-replicated shifted copies, taken as slices of the padded batch; zoom
  blur is a sum of bilinear resizes (``align_corners=True``, scipy's
  ``zoom(order=1)``) done on the whole batch as one channels-last image.
  On CPU, with numba (a pinned requirement), motion blur (also snow's), zoom
  blur's sum of resizes, shot noise's uint8-level check and lookup, impulse noise
  the ImageNet elastic warp's bilinear sampling, fog's plasma fractal and blend and
  snow's final blend are compiled kernels
  (:mod:`._numba`), one pass per image, row block or cache-sized piece on torch's
  threads, with the generic path's arithmetic (the same draws; outputs equal up to
  float rounding);
  elastic warps use ``grid_sample`` with the reference's border rules (the compiled
  kernel samples from the displacement field with ``grid_sample``'s CPU arithmetic);
  spatter's Canny, distance transform and histogram equalisation are batched
  re-implementations of OpenCV's (Sobel and squared distances in exact integer
  arithmetic).
- Shot noise at rates ``c <= 64`` (all of ImageNet-C's) inverts the Poisson CDF
  at uniform draws, stopping at ``ceil(c)`` counts (the output is clipped at 1
  there), so the result equals clipped ``Poisson(x c) / c`` in distribution
  (CIFAR-10-C's larger rates use ``torch.poisson``). Batches of uint8 levels
  (``x = q / 255`` up to float rounding, as images read from files are) invert it
  through per-level tables: a 16-bit draw picks the uniform's interval, which fixes
  the count unless a CDF value falls inside it (a few percent of the values, whose
  uniform is then completed in float64); other batches step through the CDF;
  impulse noise draws 16-bit uniforms.
- Frost textures are resized once per image size with torch bicubic/bilinear
  interpolation (cached), then cropped at random per image.
- Where the reference divides by zero (spatter without any drop gives a NaN
  layer and a black image), the image is left unchanged here.

Layout: this module holds the names, the severity tables, :func:`params`, input
checks and :func:`corrupt`; the implementations live in :mod:`.noise`,
:mod:`.blur`, :mod:`.weather` and :mod:`.digital`, each bound to its name by
:func:`register_corruption`; ``python -m probe.corruptions`` draws a PDF grid
(:mod:`.__main__`).
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import blur, digital, noise, weather
from ._registry import COMMON, EXTRA, FILLS_OUTPUT, NAMES, REGISTRY, register_corruption
from ._rng import Rng

__all__ = ["NAMES", "COMMON", "EXTRA", "PRESETS", "DEFAULT_SEED", "corrupt", "params",
           "register_corruption"]

# The modules whose @register_corruption decorators fill REGISTRY when imported above.
_IMPLEMENTATIONS = (noise, blur, weather, digital)
PRESETS = ("auto", "imagenet", "cifar")
DEFAULT_SEED = 0
# On CPU a batch is corrupted a few images at a time, about this many values each:
# every intermediate then stays in cache, and under glibc's 32 MB mmap threshold, so
# freed buffers are reused instead of being mapped (and page-faulted) afresh.
_CHUNK = 1 << 21
_REFERENCE_SIZE = {"imagenet": 224, "cifar": 32}
_NUMPY_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


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


def params(name: str, severity: int, *, size: int, preset: str = "auto") -> Tuple[str, Any, float]:
    """The parameters :func:`corrupt` uses: ``(table, table entry, spatial scale)``.

    ``table`` is ``"imagenet"`` or ``"cifar"``; spatial parameters of the entry
    are multiplied by ``spatial scale`` (1 unless ``preset="auto"``).
    """
    _check_name_severity(name, severity)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    if preset == "auto":
        table = "cifar" if size <= 64 else "imagenet"
        scale = size / _REFERENCE_SIZE[table]
    else:
        table, scale = preset, 1.0
    return table, _PARAMS[table][name][severity - 1], scale


def _check_name_severity(name: str, severity: int) -> None:
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown corruption {name!r}; use one of: {', '.join(NAMES)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer 1..5, got {severity!r}")


def _validate(x: torch.Tensor, name: str, severity: int) -> None:
    _check_name_severity(name, severity)
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
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); pass at least one image")


# The last batch found in [0, 1]: a weak reference and its torch version counter then
_IN_RANGE: List = [None, -1]


def _validate_range(x: torch.Tensor) -> None:
    """Raise unless ``x`` is in [0, 1] (and has no NaN).

    The last batch found in range is remembered by identity and torch's version counter
    (which every in-place change made through torch bumps, through any view too), so
    corrupting one batch with every corruption and severity checks it once. (A change made
    behind torch's back, through ``x.numpy()``, is not seen.)
    """
    ref, version = _IN_RANGE
    if ref is not None and ref() is x and x._version == version:
        return
    lo, hi = (float(v) for v in torch.aminmax(x))
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError("x contains NaN; clean the images first, e.g. torch.nan_to_num(x)")
    if lo < 0 or hi > 1:
        raise ValueError(f"x must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                         f"divide uint8 images by 255")
    _IN_RANGE[:] = [weakref.ref(x), x._version]


def _new_cpu_like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised CPU tensor like ``x`` (float32/64), allocated by numpy.

    numpy asks the kernel for transparent huge pages (``madvise``) on large arrays, so
    a batch-sized output (38 MB for 64 RGB images at 224 px) is page-faulted in 2 MB
    pages: several times less time than ``torch.empty``'s 4 kB faults, the same
    values. Where the kernel gives no huge pages, this is ``torch.empty``.
    """
    return torch.from_numpy(np.empty(tuple(x.shape), dtype=_NUMPY_DTYPE[x.dtype]))


def corrupt(x: torch.Tensor, name: str, severity: int, *,
            generator: Optional[torch.Generator] = None, preset: str = "auto",
            out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Corrupt a batch of images with one ImageNet-C / CIFAR-10-C corruption.

    Args:
        x: ``[B, C, H, W]`` float in ``[0, 1]``, ``C`` = 1 or 3, any ``H, W``, CPU or CUDA.
        name: one of :data:`NAMES`.
        severity: 1..5.
        generator: source of all randomness (any device); ``None`` uses a fresh
            generator seeded with :data:`DEFAULT_SEED` on ``x``'s device.
        preset: ``"auto"`` (by image size, spatial parameters rescaled),
            ``"imagenet"`` (the reference package's parameters) or ``"cifar"``.
        out: optional tensor of ``x``'s shape, dtype and device, not sharing memory with
            ``x``, that receives the result (the same values as without it). Reusing one
            buffer across corruptions and severities saves allocating (and the kernel
            zeroing) a batch-sized output per call; see :func:`probe.robustness`.

    Returns:
        ``[B, C, H, W]`` tensor of ``x``'s dtype and device, in ``[0, 1]`` (``out`` when given).
    """
    _validate(x, name, severity)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    _validate_out(x, out)
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(DEFAULT_SEED)
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    table, c, scale = params(name, severity, size=min(x.shape[-2:]), preset=preset)
    rng = Rng(generator, x.device, dtype)
    xd = x.to(dtype).contiguous()  # e.g. a permuted HWC batch: one copy, then fast NCHW ops
    _validate_range(xd)
    fn = REGISTRY[name]
    step = max(1, _CHUNK // xd[0].numel())
    cpu = xd.device.type == "cpu"
    direct = out is not None and out.dtype == dtype and out.is_contiguous()  # written in place
    if name in FILLS_OUTPUT:  # writes its [0, 1] result straight into the output
        result = out if direct else _new_cpu_like(xd) if cpu else torch.empty_like(xd)
        size = step if cpu else xd.shape[0]  # CPU: chunk by chunk, as below
        for i in range(0, xd.shape[0], size):
            fn(xd[i:i + size], c, scale, rng, table, result[i:i + size])
    elif cpu and step < xd.shape[0]:
        result = out if direct else _new_cpu_like(xd)
        for i in range(0, xd.shape[0], step):
            torch.clamp(fn(xd[i:i + step], c, scale, rng, table), 0, 1, out=result[i:i + step])
    else:
        result = fn(xd, c, scale, rng, table)
        if direct:
            result = torch.clamp(result, 0, 1, out=out)
        elif result.untyped_storage().data_ptr() == xd.untyped_storage().data_ptr():
            result = result.clamp(0, 1)  # a view of the input: never modify it in place
        else:
            result = result.clamp_(0, 1)
    if out is None:
        return result.to(x.dtype)
    if result is not out:
        out.copy_(result)
    return out


def _validate_out(x: torch.Tensor, out: Optional[torch.Tensor]) -> None:
    if out is None:
        return
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype \
            or out.device != x.device:
        got = (f"{tuple(out.shape)} {out.dtype} on {out.device}" if isinstance(out, torch.Tensor)
               else type(out).__name__)
        raise ValueError(f"out must be a tensor like x ({tuple(x.shape)} {x.dtype} on {x.device}), "
                         f"got {got}; use torch.empty_like(x)")
    if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        raise ValueError("out shares memory with x; corruptions read x while writing out: "
                         "pass a separate buffer, e.g. torch.empty_like(x)")
