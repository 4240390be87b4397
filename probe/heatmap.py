"""Fourier heat map (Yin et al. 2019, "A Fourier Perspective on Model Robustness in Computer
Vision", arXiv:1906.08988): error rate under ``x + r * eps * U_ij`` for every 2-D Fourier basis
image ``U_ij`` (unit L2 norm), ``r`` a random sign per image, clipped to [0, 1]; the grid is
centred (zero frequency in the middle).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn as nn

__all__ = ["fourier_basis", "fourier_heatmap_counts"]


def fourier_basis(h: int, w: int, *, device="cpu") -> torch.Tensor:
    """Real 2-D Fourier basis images, one per frequency, unit L2 norm.

    Returns ``[h, w, h, w]``: ``[i, j]`` is the basis image of the frequency at
    row ``i``, column ``j`` of the *centred* spectrum (zero frequency at
    ``(h // 2, w // 2)``), ``Re(ifft2(delta at that frequency))`` normalised.
    """
    freqs = torch.zeros(h * w, h, w, dtype=torch.complex64, device=device)
    idx = torch.arange(h * w, device=device)
    freqs[idx, idx // w, idx % w] = 1.0
    freqs = torch.fft.ifftshift(freqs, dim=(-2, -1))
    basis = torch.fft.ifft2(freqs).real
    basis = basis / basis.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    return basis.reshape(h, w, h, w)


def _unique_frequencies(h: int, w: int) -> Tuple[List[Tuple[int, int]], Dict[Tuple[int, int], Tuple[int, int]]]:
    """Centred frequencies up to the k <-> -k symmetry, and each one's representative.

    ``Re(ifft2(delta_k)) == Re(ifft2(delta_-k))``, so the two basis images are the same.
    """
    ci, cj = h // 2, w // 2
    unique: List[Tuple[int, int]] = []
    rep: Dict[Tuple[int, int], Tuple[int, int]] = {}
    for i in range(h):
        for j in range(w):
            a, b = (i - ci) % h, (j - cj) % w                     # uncentred index
            mi, mj = ((-a) % h + ci) % h, ((-b) % w + cj) % w       # centred index of -k
            if (mi, mj) in rep:
                rep[(i, j)] = rep[(mi, mj)]
            else:
                rep[(i, j)] = (i, j)
                unique.append((i, j))
    return unique, rep


def fourier_heatmap_counts(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
                           generator: torch.Generator, batch: int = 512) -> torch.Tensor:
    """Misclassification counts ``[H, W]`` under each Fourier-basis perturbation (centred grid).

    Basis images of frequencies ``k`` and ``-k`` are identical for real images,
    so each pair is evaluated once and mirrored.
    """
    b, c, h, w = x.shape
    basis = fourier_basis(h, w, device=x.device)
    unique, mirror = _unique_frequencies(h, w)
    signs = torch.randint(0, 2, (b,), generator=generator).to(x.device, x.dtype) * 2 - 1
    counts = {}
    per = max(1, batch // b)
    with torch.no_grad():
        for start in range(0, len(unique), per):
            freqs = unique[start:start + per]
            pert = torch.stack([basis[i, j] for i, j in freqs])            # [F, H, W]
            xs = x[None] + epsilon * signs[None, :, None, None, None] * pert[:, None, None]
            xs = xs.clamp(0, 1).reshape(-1, c, h, w)
            wrong = (model(xs).argmax(1) != y.repeat(len(freqs))).reshape(len(freqs), b).sum(1)
            for f, k in zip(freqs, wrong.tolist()):
                counts[f] = k
    grid = torch.zeros(h, w, dtype=torch.long)
    for (i, j), src in mirror.items():
        grid[i, j] = counts[src]
    return grid
