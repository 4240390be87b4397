"""Fourier heat map (Yin et al. 2019, "A Fourier Perspective on Model Robustness in Computer
Vision", arXiv:1906.08988): error rate under ``x + r * eps * U_ij`` for every 2-D Fourier basis
image ``U_ij`` (unit L2 norm), ``r`` a random sign per image, clipped to [0, 1]; the grid is
centred (zero frequency in the middle).

Memory is bounded at any image size: basis images are made per forward batch (never the
whole ``[H*W, H, W]`` basis, ~20 GB at 224 px), and large images are probed on a ``K x K``
window of frequencies around the zero frequency (:func:`heatmap_window`). Frequencies ``k`` and ``-k`` give the
same real basis image, so each pair is evaluated once and mirrored.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["DEFAULT_HEATMAP_SIZE", "FULL_GRID_MAX", "heatmap_size", "heatmap_window",
           "fourier_basis_images", "fourier_basis", "forward_batch", "fourier_heatmap_counts"]

DEFAULT_HEATMAP_SIZE = 31        # frequency window for images larger than FULL_GRID_MAX
FULL_GRID_MAX = 32               # images up to this side get every frequency
_PIXELS_PER_FORWARD = 1 << 23    # default images per forward: this many input floats (32 MB)
_MAX_FORWARD = 512               # ... and never more than this many images


def heatmap_size(h: int, w: int, size: Optional[int] = None) -> Tuple[int, int]:
    """Rows and columns of the heat map of ``h x w`` images for a ``size`` option.

    ``size=None``: the full grid for images whose sides are <= :data:`FULL_GRID_MAX`, else
    :data:`DEFAULT_HEATMAP_SIZE`. A ``size`` at least a side keeps that side whole; smaller
    sizes must be odd (a window centred on the zero frequency keeps the k <-> -k symmetry).
    """
    if size is None:
        size = max(h, w) if max(h, w) <= FULL_GRID_MAX else DEFAULT_HEATMAP_SIZE
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"heat-map size must be a positive integer, got {size!r}")
    if size < max(h, w) and size % 2 == 0:
        raise ValueError(f"heat-map size {size} is even; pass an odd --heatmap-size (e.g. "
                         f"{size - 1} or {size + 1}) so the window is centred on the zero frequency")
    return min(size, h), min(size, w)


def heatmap_window(h: int, w: int, size: Optional[int] = None) -> Tuple[range, range]:
    """Centred-spectrum rows and columns probed for ``h x w`` images (see :func:`heatmap_size`).

    Row ``r`` of the heat map is the frequency ``r - rows // 2`` cycles per image height
    (likewise columns): the zero frequency sits at ``(rows // 2, cols // 2)``.
    """
    kh, kw = heatmap_size(h, w, size)
    top, left = h // 2 - kh // 2, w // 2 - kw // 2
    return range(top, top + kh), range(left, left + kw)


def fourier_basis_images(h: int, w: int, freqs: Sequence[Tuple[int, int]], *,
                         device="cpu") -> torch.Tensor:
    """Real 2-D Fourier basis images ``[F, h, w]`` of unit L2 norm, one per frequency.

    ``freqs`` are ``(row, column)`` indices of the *centred* spectrum (zero frequency at
    ``(h // 2, w // 2)``); each image is ``Re(ifft2(delta at that frequency))`` normalised.
    Only ``F`` images are made, bit for bit what the full basis holds.
    """
    deltas = torch.zeros(len(freqs), h, w, dtype=torch.complex64, device=device)
    for k, (i, j) in enumerate(freqs):
        deltas[k, (i - h // 2) % h, (j - w // 2) % w] = 1.0     # ifftshift of the centred delta
    basis = torch.fft.ifft2(deltas).real
    return basis / basis.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]


def fourier_basis(h: int, w: int, *, device="cpu") -> torch.Tensor:
    """The full basis ``[h, w, h, w]``: ``[i, j]`` is :func:`fourier_basis_images` of ``(i, j)``.

    ``h * w`` images of ``h * w`` floats: for small images and tests only (10 GB at 224 px);
    :func:`fourier_heatmap_counts` never builds it.
    """
    freqs = [(i, j) for i in range(h) for j in range(w)]
    return fourier_basis_images(h, w, freqs, device=device).reshape(h, w, h, w)


def _unique_frequencies(h: int, w: int, rows: Sequence[int], cols: Sequence[int]
                        ) -> Tuple[List[Tuple[int, int]], Dict[Tuple[int, int], Tuple[int, int]]]:
    """Centred frequencies of the window up to the k <-> -k symmetry, and each one's representative.

    ``Re(ifft2(delta_k)) == Re(ifft2(delta_-k))``, so the two basis images are the same.
    """
    ci, cj = h // 2, w // 2
    unique: List[Tuple[int, int]] = []
    rep: Dict[Tuple[int, int], Tuple[int, int]] = {}
    for i in rows:
        for j in cols:
            a, b = (i - ci) % h, (j - cj) % w                     # uncentred index
            mi, mj = ((-a) % h + ci) % h, ((-b) % w + cj) % w       # centred index of -k
            if (mi, mj) in rep:
                rep[(i, j)] = rep[(mi, mj)]
            else:
                rep[(i, j)] = (i, j)
                unique.append((i, j))
    return unique, rep


def forward_batch(image_shape: Sequence[int]) -> int:
    """Default images per forward pass of the heat map for images of shape ``(C, H, W)``.

    512 for small images (28 x 28: as before), fewer for large ones so that a forward batch
    holds at most 2**23 input floats (55 images at 3 x 224 x 224).
    """
    pixels = 1
    for s in image_shape:
        pixels *= int(s)
    return max(1, min(_MAX_FORWARD, _PIXELS_PER_FORWARD // pixels))


def fourier_heatmap_counts(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
                           generator: torch.Generator, batch: Optional[int] = None,
                           size: Optional[int] = None) -> torch.Tensor:
    """Misclassification counts ``[K_h, K_w]`` under each Fourier-basis perturbation.

    Args:
        model: classifier on ``[B, C, H, W]`` images in [0, 1].
        x: ``[B, C, H, W]`` images; y: ``[B]`` labels.
        epsilon: L2 norm of the perturbation.
        generator: draws the per-image signs ``r`` (on its own device).
        batch: images per forward pass (default :func:`forward_batch`).
        size: frequency window (:func:`heatmap_size`; default: full grid up to 32 px, else 31).

    Returns:
        ``[K_h, K_w]`` long counts on the CPU, centred (zero frequency at ``(K_h // 2, K_w // 2)``).
        Memory: one forward batch of perturbed images and its basis images, at any size.
    """
    b, c, h, w = x.shape
    rows, cols = heatmap_window(h, w, size)
    batch = forward_batch((c, h, w)) if batch is None else batch
    unique, mirror = _unique_frequencies(h, w, rows, cols)
    signs = torch.randint(0, 2, (b,), generator=generator, device=generator.device)
    signs = signs.to(x.device, x.dtype) * 2 - 1
    counts = {}
    per = max(1, batch // b)
    with torch.no_grad():
        for start in range(0, len(unique), per):
            freqs = unique[start:start + per]
            pert = fourier_basis_images(h, w, freqs, device=x.device).to(x.dtype)   # [F, H, W]
            xs = x[None] + epsilon * signs[None, :, None, None, None] * pert[:, None, None]
            xs = xs.clamp(0, 1).reshape(-1, c, h, w)
            wrong = (model(xs).argmax(1) != y.repeat(len(freqs))).reshape(len(freqs), b).sum(1)
            for f, k in zip(freqs, wrong.tolist()):
                counts[f] = k
    grid = torch.zeros(len(rows), len(cols), dtype=torch.long)
    for (i, j), src in mirror.items():
        grid[i - rows.start, j - cols.start] = counts[src]
    return grid
