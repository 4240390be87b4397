"""Digital corruptions: contrast, brightness, saturate, pixelate, JPEG compression and elastic transform.

From ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261), reproducing the
reference package ``imagecorruptions`` (skimage's HSV for brightness and saturate,
Pillow's BOX/NEAREST resizes for pixelate, libjpeg-turbo itself for JPEG, the
elastic distortions of Simard, Steinkraus & Platt 2003) and, for ``table="cifar"``,
CIFAR-10-C's elastic transform (random affine, then elastic field). Each function has
the registry signature ``fn(x, table entry, spatial scale, rng, table)`` (see
:mod:`probe.corruptions._registry`); call them through :func:`probe.corruptions.corrupt`.
"""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import _numba
from ._filters import (_compiled_cpu, _opencv_planes, _pil_box_weights, as_rgb_then_mean, box_resize,
                       for_each_index, gaussian_kernel1d, opencv, sample_bilinear, separable)
from ._registry import register_corruption
from ._rng import Rng

__all__ = ["contrast", "brightness", "saturate", "pixelate", "jpeg_compression", "elastic_transform"]


@register_corruption("contrast", fills_output=True)
def contrast(x: torch.Tensor, c: float, s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """Each channel pulled towards its mean: ``mean + c (x - mean)``, into ``out``."""
    means = x.mean(dim=(2, 3), keepdim=True)
    torch.add(means * (1 - c), x, alpha=c, out=out).clamp_(0, 1)


@register_corruption("brightness", fills_output=True)
def brightness(x: torch.Tensor, c: float, s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """HSV value plus ``c``, hue and saturation kept, written into ``out`` (on CPU one compiled
    pass per image)."""
    compiled = _numba.kernel("brightness") if _compiled_cpu(x) and out.is_contiguous() else None
    if compiled is not None:
        args = (x.numpy(), out.numpy())
        for_each_index(lambda i: compiled(*args, i, float(c)), x.shape[0])
        return
    # HSV value + c with hue and saturation kept == scaling RGB by v'/v (gray where v = 0)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp_(0, 1)
    black = v <= 0
    gain = torch.where(black, torch.zeros_like(v), v_new / v.clamp_min(1e-12))
    torch.clamp(torch.addcmul(v_new.masked_fill_(~black, 0), x, gain), 0, 1, out=out)


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


@functools.lru_cache(maxsize=64)
def _opencv_nearest_is_pillows(n: int, m: int, h: int, w: int) -> bool:
    """Whether OpenCV's INTER_NEAREST_EXACT resize from ``n x m`` to ``h x w`` picks the same
    source pixels as ``nearest-exact`` (Pillow's NEAREST): checked on a plane holding each
    pixel's index (OpenCV's fixed-point coordinates differ at some sizes, e.g. 16 -> 28)."""
    cv2 = opencv("pixelate on CPU")
    index = torch.arange(n * m, dtype=torch.float64).view(1, 1, n, m)
    ours = F.interpolate(index, size=(h, w), mode="nearest-exact")[0, 0].numpy()
    theirs = cv2.resize(index[0, 0].numpy(), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return bool(np.array_equal(ours, theirs))


@functools.lru_cache(maxsize=64)
def _pixelate_maps(h: int, w: int, hs: int, ws: int) -> Tuple[np.ndarray, ...]:
    """The compiled pixelate's tables for ``h x w`` -> ``hs x ws`` -> ``h x w``: per axis the
    BOX ranges (first input index, count, weight ``1 / count``) and the NEAREST source index of
    every output pixel (``nearest-exact``, i.e. Pillow's ``floor((i + 0.5) in / out)``)."""
    def ranges(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        weights = _pil_box_weights(n_in, n_out)
        inside = weights > 0
        first = torch.where(inside, torch.arange(n_in), n_in).amin(dim=1)
        return first.numpy(), inside.sum(dim=1).numpy(), weights.amax(dim=1).numpy()

    def nearest(n_small: int, n: int) -> np.ndarray:
        index = torch.arange(n_small, dtype=torch.float64).view(1, 1, n_small)
        return F.interpolate(index, size=n, mode="nearest-exact")[0, 0].long().numpy()
    return (*ranges(h, hs), *ranges(w, ws), nearest(hs, h), nearest(ws, w))


@register_corruption("pixelate", fills_output=True)
def pixelate(x: torch.Tensor, c: float, s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """Pillow BOX downsampling by ``c``, then back up (NEAREST; BOX for CIFAR-10-C), into ``out``."""
    h, w = x.shape[-2:]
    hs, ws = max(1, int(h * c)), max(1, int(w * c))
    compiled = (_numba.kernel("pixelate") if table != "cifar" and _compiled_cpu(x) and out.is_contiguous()
                else None)
    if compiled is not None:  # one compiled pass per image, on torch's threads
        args = (x.numpy(), out.numpy())
        maps = _pixelate_maps(h, w, hs, ws)
        for_each_index(lambda i: compiled(*args, i, *maps), x.shape[0])
        return
    small = box_resize(x, hs, ws).clamp_(0, 1)
    if table == "cifar":
        torch.clamp(box_resize(small, h, w), 0, 1, out=out)
        return
    # Pillow's NEAREST takes source pixel floor((i + 0.5) * in / out), as "nearest-exact" and
    # OpenCV's INTER_NEAREST_EXACT do; on CPU OpenCV writes each plane straight into out
    if out.device.type != "cpu" or not out.is_contiguous() or not _opencv_nearest_is_pillows(
            *small.shape[-2:], h, w):
        out.copy_(F.interpolate(small, size=(h, w), mode="nearest-exact"))
        return
    cv2 = opencv("pixelate on CPU")
    src, dst = small.reshape(-1, *small.shape[-2:]).numpy(), out.view(-1, h, w).numpy()

    def plane(i: int) -> None:
        cv2.resize(src[i], (w, h), dst=dst[i], interpolation=cv2.INTER_NEAREST_EXACT)
    for_each_index(plane, src.shape[0])


_OPENCV_INSTALL = "pip install imagecorruptions-imaug==1.1.5 (pinned in requirements.txt)"


def _opencv() -> ModuleType:
    """OpenCV (``cv2``), imported when JPEG compression first needs it.

    Raises:
        ModuleNotFoundError: OpenCV is not installed.
    """
    try:
        import cv2  # heavy optional import, only when JPEG is first used
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"jpeg_compression encodes with libjpeg through OpenCV (cv2), "
                                  f"which is not installed; {_OPENCV_INSTALL} installs it "
                                  f"(opencv-python)", name="cv2") from e
    return cv2


@register_corruption("jpeg_compression", fills_output=True)
def jpeg_compression(x: torch.Tensor, c: int, s: float, rng: Rng, table: str, out: torch.Tensor) -> None:
    """Baseline JPEG at quality ``c``, encoded and decoded by libjpeg-turbo (through OpenCV), into ``out``.

    Each image is quantised to uint8 (``round(255 x)``, half to even), coded as the reference
    codes it with Pillow (JFIF YCbCr, 4:2:0 chroma, islow integer DCT, fancy upsampling: the
    same libjpeg-turbo output, byte for byte) and returned as ``k / 255``. Gray images are
    coded as grayscale JPEGs, which equals the reference's RGB round trip converted back
    to gray. The codec runs on CPU (a CUDA batch goes there and back), one image per
    task on ``torch.get_num_threads()`` threads (OpenCV releases the GIL).
    """
    cv2 = _opencv()
    src_np = x.detach().cpu().numpy()
    target = out if out.device.type == "cpu" else torch.empty(out.shape, dtype=out.dtype)
    out_np = target.numpy()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(c)]
    gray = x.shape[1] == 1

    def code(i: int) -> None:
        # OpenCV releases the GIL: the threads run in parallel. convertScaleAbs is
        # saturate(rint(255 x)) in one pass per plane (x >= 0)
        planes = [cv2.convertScaleAbs(src_np[i, channel], alpha=255) for channel in range(x.shape[1])]
        image = planes[0] if gray else cv2.merge(planes[::-1])  # BGR
        ok, encoded = cv2.imencode(".jpg", image, params)
        if not ok:
            raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {tuple(x.shape[1:])}")
        decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        planes = (decoded,) if gray else cv2.split(decoded)[::-1]  # RGB order
        for channel, plane in enumerate(planes):
            np.divide(plane, 255, out=out_np[i, channel], dtype=out_np.dtype)

    for_each_index(code, x.shape[0])
    if target is not out:
        out.copy_(target)


def _elastic_imagenet(x: torch.Tensor, alpha: float, rng: Rng, out: torch.Tensor) -> None:
    """The reference's elastic transform: a smoothed uniform displacement field times ``alpha``,
    clipped to [0, 1] into ``out``."""
    b, _, h, w = x.shape
    sigma = (h * 0.01, w * 0.01)
    max_d = h * 0.005
    kh = gaussian_kernel1d(sigma[0], 3.0, x.device, x.dtype)
    kw = gaussian_kernel1d(sigma[1], 3.0, x.device, x.dtype)
    field = rng.uniform((b, 2, h, w), -max_d, max_d)
    # grid_sample coordinates of (row + alpha * dy, col + alpha * dx), scipy's "reflect"
    # borders (see sample_bilinear), written in one pass; on CPU with numba a compiled kernel
    # samples from the field directly with grid_sample's arithmetic (the same output)
    gx = (2 * torch.arange(w, device=x.device, dtype=x.dtype) + 1) / w - 1
    gy = (2 * torch.arange(h, device=x.device, dtype=x.dtype) + 1) / h - 1
    scale = torch.tensor([2 * alpha / w, 2 * alpha / h], device=x.device, dtype=x.dtype)
    compiled = _numba.kernel("elastic_sample") if _compiled_cpu(x) and out.is_contiguous() else None
    if compiled is None:
        field = separable(field, kh, kw, "symmetric")
        base = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)
        grid = torch.addcmul(base, field.permute(0, 2, 3, 1), scale)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        torch.clamp(warped, 0, 1, out=out)
        return
    # image by image on torch's threads: the field smoothed (OpenCV, as separable() does for
    # large planes) into a small buffer, then sampled straight from it into out and clipped
    fused = _opencv_planes(field, kh.numel() // 2, kw.numel() // 2) and kh.numel() > 1 and kw.numel() > 1
    if not fused:
        field = separable(field, kh, kw, "symmetric")
    cv2 = opencv("elastic transform on CPU") if fused else None
    x_np, field_np, out_np = (t.reshape(b, -1, h * w).numpy() for t in (x, field, out))
    k_h, k_w = kh.numpy(), kw.numpy()
    sx, sy = scale.numpy()
    gx_np, gy_np = gx.numpy(), gy.numpy()

    def image(i: int) -> None:
        smooth = field_np[i:i + 1]
        if fused:
            smooth = np.empty((1, 2, h * w), dtype=field_np.dtype)
            for d in range(2):
                cv2.sepFilter2D(field_np[i, d].reshape(h, w), -1, k_w, k_h, dst=smooth[0, d].reshape(h, w),
                                borderType=cv2.BORDER_REFLECT)
        compiled(x_np[i:i + 1], smooth, out_np[i:i + 1], 0, w, gx_np, gy_np, sx, sy)
        np.clip(out_np[i], 0, 1, out=out_np[i])
    for_each_index(image, b)


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


@register_corruption("elastic_transform", fills_output=True)
def elastic_transform(x: torch.Tensor, c: Union[float, Tuple[float, float, float]], s: float,
                      rng: Rng, table: str, out: torch.Tensor) -> None:
    """The reference's elastic warp (``table="imagenet"``) or CIFAR-10-C's affine + elastic warp,
    into ``out``."""
    if table == "cifar":
        torch.clamp(_elastic_cifar(x, c, s, rng), 0, 1, out=out)
        return
    _elastic_imagenet(x, c, rng, out)
