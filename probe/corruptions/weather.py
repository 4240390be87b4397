"""Weather corruptions: fog, frost, snow and spatter.

From ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261), reproducing the
reference package ``imagecorruptions``: fog is its diamond-square plasma fractal
(Fournier, Fussell & Carpenter 1982), frost blends crops of its six frost
photographs, snow its zoomed, motion-blurred flake layer, and spatter its water
drops (OpenCV's Canny edges, distance transform and histogram equalisation,
batched) or mud. Each function has the registry signature
``fn(x, table entry, spatial scale, rng, table)`` (see :mod:`probe.corruptions._registry`);
call them through :func:`probe.corruptions.corrupt`.
"""
from __future__ import annotations

import functools
import importlib.resources
import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import _numba
from ._filters import (_compiled_cpu, as_rgb_then_mean, clipped_zoom, for_each_index, gaussian, gray,
                       motion_blur_at, pad, separable)
from ._registry import register_corruption
from ._rng import Rng

__all__ = ["fog", "frost", "snow", "spatter"]

# The frost photographs of ImageNet-C, shipped inside the reference package.
FROST_PACKAGE = "imagecorruptions"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
_INSTALL = "pip install imagecorruptions-imaug==1.1.5 (pinned in requirements.txt)"


def _plasma_noise(batch: int, mapsize: int, wibbledecay: float, rng: Rng) -> torch.Tensor:
    """The diamond-square's random offsets ``[B, N^2 - 1]`` (CPU, huge pages), drawn at once: level
    by level (step N, N/2, ..., 2; ``k = N / step``), its three stages (square centres, then
    the two kinds of edge midpoints) of ``k^2`` values each, uniform in ``[-wibble^2, wibble^2)``
    with ``wibble`` = 100 divided by ``wibbledecay`` once per level."""
    numpy_dtype = np.float32 if rng.dtype == torch.float32 else np.float64
    total = mapsize * mapsize - 1  # 3 (1 + 4 + ... + (N / 2)^2)
    buffer = torch.from_numpy(np.empty((batch, total), dtype=numpy_dtype))  # huge pages
    buffer.copy_(rng.uniform((batch, total), 0, 1))
    offset, step, wibble = 0, mapsize, 100.0
    while step >= 2:
        k = mapsize // step
        buffer[:, offset:offset + 3 * k * k].mul_(2 * wibble * wibble).sub_(wibble * wibble)
        offset += 3 * k * k
        step //= 2
        wibble /= wibbledecay
    return buffer


def _plasma_fractal_compiled(batch: int, mapsize: int, wibbledecay: float,
                             rng: Rng) -> Optional[torch.Tensor]:
    """:func:`_plasma_fractal` by the compiled kernel, image by image from the same draws,
    or ``None`` where it does not apply."""
    plasma = _numba.kernel("plasma")
    cpu = torch.device(rng.device).type == "cpu"
    if plasma is None or not cpu or rng.dtype not in (torch.float32, torch.float64):
        return None
    noise = _plasma_noise(batch, mapsize, wibbledecay, rng).numpy()
    out = np.empty((batch, mapsize, mapsize), dtype=noise.dtype)
    for_each_index(lambda i: plasma(out, noise, i), batch)
    return torch.from_numpy(out)


def _plasma_fractal(batch: int, mapsize: int, wibbledecay: float, rng: Rng) -> torch.Tensor:
    """Diamond-square height maps ``[B, N, N]`` in [0, 1] (the reference's ``plasma_fractal``)."""
    compiled = _plasma_fractal_compiled(batch, mapsize, wibbledecay, rng)
    if compiled is not None:
        return compiled
    m = torch.zeros(batch, mapsize, mapsize, device=rng.device, dtype=rng.dtype)
    noise = _plasma_noise(batch, mapsize, wibbledecay, rng).to(rng.device, rng.dtype)
    step, used = mapsize, 0

    def mean_plus_noise(total: torch.Tensor) -> torch.Tensor:  # total / 4 + the next offsets
        nonlocal used
        n = total.shape[1] * total.shape[2]
        offsets = noise[:, used:used + n].reshape(total.shape)
        used += n
        return offsets.add(total, alpha=0.25)

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
    m -= m.amin(dim=(1, 2), keepdim=True)
    return m.div_(m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12))


@register_corruption("fog", fills_output=True)
def fog(x: torch.Tensor, c: Tuple[float, float], s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """A plasma fractal (decay ``c[1]``) of strength ``c[0]`` added, then renormalised."""
    b, _, h, w = x.shape
    size = 1 << max(0, (max(h, w) - 1).bit_length())
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    plasma = _plasma_fractal(b, size, c[1], rng)
    gain = max_val / (max_val + c[0])
    weight = gain * c[0]
    blend = _numba.kernel("fog_blend") if _compiled_cpu(x) and plasma.device.type == "cpu" else None
    if blend is None:
        torch.clamp(torch.addcmul(x * gain, plasma[:, None, :h, :w], weight), 0, 1, out=out)
        return
    args = (x.numpy(), plasma.numpy(), out.numpy(), 0, gain.view(-1).numpy(), weight.view(-1).numpy())
    for_each_index(lambda i: blend(*args[:3], i, *args[4:]), b)


def _read_texture(path: str) -> torch.Tensor:
    """One frost photograph as RGB uint8 ``[3, h, w]``, decoded by OpenCV as the reference does.

    Raises:
        ModuleNotFoundError: OpenCV (``cv2``) is not installed.
        FileNotFoundError: the file is missing or OpenCV cannot decode it.
    """
    try:
        import cv2  # heavy optional import, only when frost textures are first needed
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"frost decodes its texture photographs with OpenCV (cv2) as the "
                                  f"reference does, and cv2 is not installed; {_INSTALL} installs "
                                  f"it (opencv-python)", name="cv2") from e
    bgr = cv2.imread(path)
    if bgr is None:
        raise FileNotFoundError(f"frost texture {path} is missing or OpenCV cannot read it; "
                                f"reinstall the reference package: pip install --force-reinstall "
                                f"imagecorruptions-imaug==1.1.5")
    return torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1).contiguous()


@functools.lru_cache(maxsize=1)
def _frost_sources() -> Tuple[torch.Tensor, ...]:
    """The six frost photographs shipped with the reference package ``imagecorruptions``
    (ImageNet-C's frost textures), as RGB uint8 ``[3, h, w]`` tensors.

    There is no fallback: frost without these photographs would not be ImageNet-C's frost.

    Raises:
        ModuleNotFoundError: ``imagecorruptions`` or OpenCV is not installed.
        FileNotFoundError: a photograph is missing or unreadable.
    """
    try:
        folder = importlib.resources.files(FROST_PACKAGE) / "frost"
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"frost needs the six texture photographs shipped with the "
                                  f"reference package {FROST_PACKAGE}, which is not installed; "
                                  f"{_INSTALL}", name=FROST_PACKAGE) from e
    out = []
    for name in FROST_FILES:
        with importlib.resources.as_file(folder / name) as path:
            out.append(_read_texture(str(path)))
    return tuple(out)


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


@register_corruption("frost", fills_output=True)
def frost(x: torch.Tensor, c: Tuple[float, float], s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """``c[0] x + c[1] crop`` of a random crop of a random frost photograph, into ``out``."""
    b, _, h, w = x.shape
    stack, sizes = _frost_textures(table, h, w, float(s), str(x.device))
    idx = rng.randint(0, stack.shape[0], (b,))
    room = sizes[idx] - torch.tensor([h, w], device=x.device)
    u = rng.uniform((b, 2), 0, 1).to(x.device)
    start = torch.minimum((u * room).long(), room - 1)
    blend = (_numba.kernel("frost_blend") if _compiled_cpu(x) and x.shape[1] == 3 and stack.dtype == x.dtype
             and out.is_contiguous() and stack.is_contiguous() else None)
    if blend is not None:  # one compiled pass per image, on torch's threads
        arrays, where = (x.numpy(), stack.numpy(), out.numpy()), (idx.tolist(), start.tolist())
        for_each_index(lambda n: blend(*arrays, n, where[0][n], *where[1][n], c[0], c[1]), b)
        return
    crops = [stack[i, :, r:r + h, q:q + w] for i, (r, q) in zip(idx.tolist(), start.tolist())]
    if x.shape[1] == 3 and stack.dtype == x.dtype:
        for n, crop in enumerate(crops):  # image by image: each product stays in cache
            torch.mul(crop, c[1], out=out[n]).add_(x[n], alpha=c[0]).clamp_(0, 1)
        return
    crop = torch.stack(crops).to(x.dtype)
    torch.clamp(as_rgb_then_mean(lambda rgb: c[0] * rgb + c[1] * crop, x), 0, 1, out=out)


@register_corruption("snow", fills_output=True)
def snow(x: torch.Tensor, c: Tuple[float, ...], s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """A zoomed, thresholded, motion-blurred flake layer over a brightened image, into ``out``."""
    b, _, h, w = x.shape
    layer = rng.normal((b, 1, h, w), mean=c[0], std=c[1])
    layer = clipped_zoom(layer, c[2])
    layer = torch.where(layer < c[3], torch.zeros_like(layer), layer).clamp(0, 1)
    angle = rng.uniform((b,), -135, -45)
    layer = motion_blur_at(layer, max(1, int(round(c[4] * s))), c[5] * s, angle)
    layer = torch.round(layer * 255) / 255
    layer = layer[..., :h, :w]
    layer = layer + torch.flip(layer, dims=(-2, -1))
    blend = (_numba.kernel("snow_blend") if _compiled_cpu(x) and x.shape[1] == 3 and out.is_contiguous()
             else None)
    if blend is None:
        bright = torch.maximum(x, (gray(x) * 1.5).add_(0.5))
        torch.clamp(bright.mul_(1 - c[6]).add_(x, alpha=c[6]).add_(layer), 0, 1, out=out)
        return
    arrays = (x.numpy(), layer.contiguous().numpy(), out.numpy())
    for_each_index(lambda i: blend(*arrays, i, 1 - c[6], c[6]), b)


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
    """Euclidean distance ``[B, H, W]`` to the nearest True pixel of ``mask``, capped at ``cap``.

    Squared distances are integers: they are computed exactly in int16/int32 (half or
    all of float32's memory traffic) and only the square root is taken in ``dtype``.
    """
    h, w = mask.shape[-2:]
    far = cap + 1
    cols = torch.arange(w, device=mask.device, dtype=torch.int32).expand_as(mask)
    # distance along each row to the nearest True pixel on the left and on the right
    left = torch.where(mask, cols, -far).cummax(dim=-1).values
    right = torch.where(mask, cols, w + far).flip(-1).cummin(dim=-1).values.flip(-1)
    row = torch.minimum(cols - left, right - cols).clamp_(max=far)
    reach = min(cap, h - 1)  # vertical offsets 1..reach
    kind = torch.int16 if far * far + reach * reach <= torch.iinfo(torch.int16).max else torch.int32
    sq = (row * row).to(kind)
    # lower envelope over vertical offsets k: min(sq[i - k], sq[i + k]) + k^2, with rows of
    # far^2 beyond the image (never smaller than sq itself)
    padded = sq.new_full((*sq.shape[:-2], h + 2 * reach, w), far * far)
    padded[..., reach:reach + h, :] = sq
    out, pair = sq, torch.empty_like(sq)  # out: sq itself, updated in place (padded holds a copy)
    for k in range(1, reach + 1):
        torch.minimum(padded[..., reach - k:reach - k + h, :], padded[..., reach + k:reach + k + h, :],
                      out=pair)
        torch.minimum(out, pair.add_(k * k), out=out)
    return out.to(dtype).sqrt_().clamp_(max=cap)


def _correlate3x3(x: torch.Tensor, kernel: Tuple[Tuple[float, ...], ...], mode: str) -> torch.Tensor:
    """``cv2.filter2D``-style 3x3 correlation of ``x [..., H, W]`` as a sum of shifted copies."""
    h, w = x.shape[-2:]
    padded = pad(x, 1, 1, 1, 1, mode)
    out = torch.zeros_like(x)
    for i in range(3):
        for j in range(3):
            if kernel[i][j]:
                out = out + kernel[i][j] * padded[..., i:i + h, j:j + w]
    return out


def _box3(v: torch.Tensor) -> torch.Tensor:
    """``cv2.blur`` with a 3x3 box (OpenCV's default border)."""
    k = torch.full((3,), 1 / 3, device=v.device, dtype=v.dtype)
    return separable(v, k, k, "reflect101")


def _dilate3(mask: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a bool ``[..., H, W]`` mask (zero outside)."""
    padded = F.pad(mask, (1, 1, 1, 1))
    rows = padded[..., :, :-2] | padded[..., :, 1:-1] | padded[..., :, 2:]
    return rows[..., :-2, :] | rows[..., 1:-1, :] | rows[..., 2:, :]


def _canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``cv2.Canny(img, low, high)`` (3x3 Sobel, L1 magnitude) of ``[B, 1, H, W]`` 0..255, batched.

    Canny 1986, "A Computational Approach to Edge Detection". Non-maximum suppression
    with OpenCV's tie rules; hysteresis by repeated 8-neighbour growth from the strong
    edges until nothing changes.
    """
    # 3x3 Sobel with replicated borders, as shifted sums: the levels are integers, so every
    # sum is exact and equals the separable filter's
    h, w = img.shape[-2:]
    v = pad(img, 1, 1, 1, 1, "edge")
    rows = torch.add(v[..., :-2, :], v[..., 1:-1, :], alpha=2).add_(v[..., 2:, :])  # [1, 2, 1] along H
    cols = torch.add(v[..., :, :-2], v[..., :, 1:-1], alpha=2).add_(v[..., :, 2:])  # along W
    gx = rows[..., 2:] - rows[..., :-2]
    gy = cols[..., 2:, :] - cols[..., :-2, :]
    ax, ay = gx.abs(), gy.abs()
    mag = ax + ay
    mp = F.pad(mag, (1, 1, 1, 1))  # OpenCV's magnitude buffer has zero borders

    def at(dr: int, dc: int) -> torch.Tensor:
        return mp[..., 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    horizontal = ay < ax * 0.4142135623730951
    vertical = ay > ax * 2.4142135623730951
    same_sign = (gx * gy) >= 0
    keep_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    keep_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    # diagonals: the neighbour pair picked by the gradient's sign first, then compared
    keep_d = (mag > torch.where(same_sign, at(-1, -1), at(-1, 1)))
    keep_d &= mag > torch.where(same_sign, at(1, 1), at(1, -1))
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


@register_corruption("spatter")
def spatter(x: torch.Tensor, c: Tuple[float, ...], s: float, rng: Rng, table: str) -> torch.Tensor:
    """Water drops (``c[5] == 0``) or mud (``c[5] == 1``) from a thresholded blurred noise layer.

    Where the reference divides by zero (no drop at all: a NaN layer and a black
    image), the image is left unchanged here.
    """
    b, _, h, w = x.shape
    liquid = rng.normal((b, 1, h, w), mean=c[0], std=c[1])
    liquid = gaussian(liquid, c[2] * s)
    liquid = torch.where(liquid < c[3], torch.zeros_like(liquid), liquid)
    if c[5] == 0:
        m = _water_mask(liquid, c[4])
        color = torch.tensor([175 / 255., 238 / 255., 238 / 255.], device=x.device, dtype=x.dtype)
        return as_rgb_then_mean(lambda rgb: rgb + m * color.view(1, 3, 1, 1), x)
    m = gaussian((liquid > c[3]).to(x.dtype), c[4] * s)
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    color = torch.tensor([63 / 255., 42 / 255., 20 / 255.], device=x.device, dtype=x.dtype)
    return as_rgb_then_mean(lambda rgb: rgb * (1 - m) + color.view(1, 3, 1, 1) * m, x)
