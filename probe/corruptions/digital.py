"""Digital corruptions: contrast, brightness, saturate, pixelate, JPEG compression and elastic transform.

From ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261), reproducing the
reference package ``imagecorruptions`` (skimage's HSV for brightness and saturate,
Pillow's BOX/NEAREST resizes for pixelate, libjpeg's baseline codec for JPEG, the
elastic distortions of Simard, Steinkraus & Platt 2003) and, for ``table="cifar"``,
CIFAR-10-C's elastic transform (random affine, then elastic field). Each function has
the registry signature ``fn(x, table entry, spatial scale, rng, table)`` (see
:mod:`probe.corruptions._registry`); call them through :func:`probe.corruptions.corrupt`.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ._filters import (Band, as_rgb_then_mean, box_resize, gaussian_kernel1d, pad, sample_bilinear,
                       separable)
from ._registry import register_corruption
from ._rng import Rng

__all__ = ["contrast", "brightness", "saturate", "pixelate", "jpeg_compression", "elastic_transform"]


@register_corruption("contrast")
def contrast(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """Each channel pulled towards its mean: ``mean + c (x - mean)``."""
    means = x.mean(dim=(2, 3), keepdim=True)
    return torch.add(means * (1 - c), x, alpha=c)


@register_corruption("brightness")
def brightness(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """HSV value plus ``c``, hue and saturation kept."""
    # HSV value + c with hue and saturation kept == scaling RGB by v'/v (gray where v = 0)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp_(0, 1)
    black = v <= 0
    gain = torch.where(black, torch.zeros_like(v), v_new / v.clamp_min(1e-12))
    return torch.addcmul(v_new.masked_fill_(~black, 0), x, gain)


@register_corruption("saturate")
def saturate(x: torch.Tensor, c: Tuple[float, float], s: float, rng: Rng, table: str) -> torch.Tensor:
    """HSV saturation ``S -> clamp(S c[0] + c[1], 0, 1)``, as skimage's HSV does it."""
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
    return as_rgb_then_mean(rgb, x)


@register_corruption("pixelate")
def pixelate(x: torch.Tensor, c: float, s: float, rng: Rng, table: str) -> torch.Tensor:
    """Pillow BOX downsampling by ``c``, then back up (NEAREST; BOX for CIFAR-10-C)."""
    h, w = x.shape[-2:]
    small = box_resize(x, max(1, int(h * c)), max(1, int(w * c)))
    if table == "cifar":
        return box_resize(small, h, w)
    # Pillow's NEAREST takes source pixel floor((i + 0.5) * in / out), as "nearest-exact" does
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


_JPEG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
              14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
              18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_JPEG_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def _jpeg_table(base: Sequence[int], quality: int, device: Union[str, torch.device],
                dtype: torch.dtype) -> torch.Tensor:
    """libjpeg's ``jpeg_set_quality`` table (baseline, clamped to 1..255) ``[8, 8]``."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    t = torch.tensor(base, dtype=torch.long)
    t = ((t * scale + 50) // 100).clamp(1, 255)
    return t.view(8, 8).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _dct_matrix(device: str, dtype: torch.dtype) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix ``[8, 8]``."""
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
def _fancy_band(n: int, device: str, dtype: torch.dtype) -> Band:
    """libjpeg's h2v2 "fancy" (triangle) chroma upsampling of an axis, ``[2n, n]``: ``3/4`` of
    the nearer and ``1/4`` of the farther sample, edges replicated (which is bilinear x2
    interpolation with ``align_corners=False``)."""
    i = torch.arange(n)
    m = torch.zeros(2 * n, n, dtype=torch.float64)
    for parity, farther in ((0, (i - 1).clamp(min=0)), (1, (i + 1).clamp(max=n - 1))):
        m[2 * i + parity, i] += 0.75
        m[2 * i + parity, farther] += 0.25
    return Band(m, device, dtype)


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


@register_corruption("jpeg_compression")
def jpeg_compression(x: torch.Tensor, c: int, s: float, rng: Rng, table: str) -> torch.Tensor:
    """Baseline JPEG at quality ``c`` as libjpeg/Pillow does it (JFIF YCbCr, 4:2:0, fancy
    upsampling); luminance only for gray images. No file is written."""
    # the output is left unclamped: corrupt() clamps to [0, 1], as libjpeg clamps to 0..255
    b, ch, h, w = x.shape
    v = (x * 255).round_()
    if ch == 1:
        hp, wp = -(-h // 8) * 8, -(-w // 8) * 8
        y = pad(v[:, 0], 0, hp - h, 0, wp - w, "edge").sub_(128)
        return _jpeg_plane(y, c, False, 128.0)[:, None, :h, :w].round_().div_(255)
    hp, wp = -(-h // 16) * 16, -(-w // 16) * 16
    v = pad(v, 0, hp - h, 0, wp - w, "edge")
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


def _elastic_imagenet(x: torch.Tensor, alpha: float, rng: Rng) -> torch.Tensor:
    """The reference's elastic transform: a smoothed uniform displacement field times ``alpha``."""
    b, _, h, w = x.shape
    sigma = (h * 0.01, w * 0.01)
    max_d = h * 0.005
    kh = gaussian_kernel1d(sigma[0], 3.0, x.device, x.dtype)
    kw = gaussian_kernel1d(sigma[1], 3.0, x.device, x.dtype)
    field = rng.uniform((b, 2, h, w), -max_d, max_d)
    field = separable(field, kh, kw, "symmetric")
    # grid_sample coordinates of (row + alpha * dy, col + alpha * dx), scipy's "reflect"
    # borders (see sample_bilinear), written in one pass
    gx = (2 * torch.arange(w, device=x.device, dtype=x.dtype) + 1) / w - 1
    gy = (2 * torch.arange(h, device=x.device, dtype=x.dtype) + 1) / h - 1
    base = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)
    scale = torch.tensor([2 * alpha / w, 2 * alpha / h], device=x.device, dtype=x.dtype)
    grid = torch.addcmul(base, field.permute(0, 2, 3, 1), scale)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _elastic_cifar(x: torch.Tensor, c: Tuple[float, float, float], s: float, rng: Rng) -> torch.Tensor:
    """CIFAR-10-C's elastic transform: a random affine of three points, then an elastic field."""
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
    x = sample_bilinear(x, sy.to(x.dtype), sx.to(x.dtype), "reflect101")
    if alpha == 0:
        return x
    k = gaussian_kernel1d(sigma, 3.0, x.device, x.dtype)
    field = separable(rng.uniform((b, 2, h, w), -1, 1), k, k, "symmetric") * alpha
    rows = torch.arange(h, device=x.device, dtype=x.dtype)[:, None] + field[:, 1]
    cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, :] + field[:, 0]
    return sample_bilinear(x, rows, cols, "symmetric")


@register_corruption("elastic_transform")
def elastic_transform(x: torch.Tensor, c: Union[float, Tuple[float, float, float]], s: float,
                      rng: Rng, table: str) -> torch.Tensor:
    """The reference's elastic warp (``table="imagenet"``) or CIFAR-10-C's affine + elastic warp."""
    if table == "cifar":
        return _elastic_cifar(x, c, s, rng)
    return _elastic_imagenet(x, c, rng)
