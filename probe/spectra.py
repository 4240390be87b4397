"""Fourier analysis of token mixing and of feature maps on the token grid.

- Spectra of token-mixing templates: each row of a mixing matrix (how one
  output token weighs the input tokens), or each hidden unit of Mixer's
  token-mixing MLP (Tolstikhin et al. 2021, arXiv:2105.01601, Fig. 5), laid out
  on the token grid and 2-D Fourier transformed. Low-pass templates mix
  smoothly over space; a convolution's template is the same at every token.
- Relative log amplitude of Fourier-transformed feature maps by depth (Park &
  Kim 2022, "How do vision transformers work?", arXiv:2202.06709, Fig. 2):
  ``log|F(z)|`` of every feature map's 2-D FFT, averaged over channels and
  images, taken along the half diagonal of the centred spectrum from frequency
  0 to the highest frequency, minus its value at frequency 0. The value at the
  highest frequency is the relative log amplitude (``Δ log amplitude``): MSAs
  (low-pass) reduce it, convolutions (high-pass) raise it.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from . import hooks
from .mixing.grid import TokenContext, check_input, find_or_raise
from .mixing.maps import MixingMap

__all__ = ["grid_spectrum", "templates", "template_spectra", "feature_maps",
           "log_amplitude_profile", "relative_log_amplitude", "relative_log_amplitudes"]

Tensor = torch.Tensor


def grid_spectrum(x: Tensor, *, centered: bool = True) -> Tensor:
    """Amplitude ``|FFT2|`` (orthonormal) of maps on a grid.

    Args:
        x: ``[..., h, w]`` real maps.
        centered: move frequency 0 to the centre (``fftshift``).

    Returns:
        ``[..., h, w]`` amplitudes.
    """
    if x.ndim < 2:
        raise ValueError(f"grid_spectrum needs [..., h, w], got {tuple(x.shape)}")
    amp = torch.fft.fft2(x.double(), norm="ortho").abs()
    if centered:
        amp = torch.fft.fftshift(amp, dim=(-2, -1))
    return amp.float()


def templates(m: MixingMap, *, native: bool = True) -> Tensor:
    """Token-mixing templates on the input grid, ``[K, h, w]``.

    For Mixer (``native=True``) the first-layer weights of the token-mixing MLP
    (one template per hidden unit, as in the MLP-Mixer paper); otherwise the
    rows of the spatial mixing matrix (one per output token), averaged over
    images and heads.
    """
    if native and isinstance(m.native, dict) and "fc1" in m.native:
        return m.native["fc1"].float()
    p = m.prefix_tokens
    rows = m.matrix[..., p:, p:].mean((0, 1))                  # [T_out, T_in]
    h, w = m.in_grid
    return rows.reshape(rows.shape[0], h, w)


def template_spectra(m: MixingMap, *, native: bool = True) -> Tensor:
    """Centred amplitude spectra ``[K, h, w]`` of :func:`templates`."""
    return grid_spectrum(templates(m, native=native))


def _to_grid(out: Tensor, ctx: TokenContext, block: str = "") -> Tensor:
    if out.ndim == 4:                                         # [B, C, h, w]
        return out
    if out.ndim != 3:
        raise ValueError(f"cannot read a feature map from {block or 'a block'}'s output of shape "
                         f"{tuple(out.shape)}: it lies on no spatial grid (a pure MLP's hidden "
                         f"units have no position), so feature-map spectra do not apply")
    b, t, c = out.shape
    (h, w), prefix = ctx.grid(t)
    return out[:, prefix:].reshape(b, h, w, c).permute(0, 3, 1, 2)


def feature_maps(model: nn.Module, x: Tensor) -> List[Tuple[str, Tensor]]:
    """Output of every block that holds a token-mixing layer, as ``[B, C, h, w]``, by depth.

    Prefix (class/register) tokens are dropped; tokens are placed on their grid.
    """
    check_input(model, x)
    found = find_or_raise(model)
    blocks: List[str] = []
    for info, _ in found:
        if info.block not in blocks:
            blocks.append(info.block)
    ctx = TokenContext(model)
    with hooks.evaluating(model), torch.no_grad(), \
            hooks.capture(model, blocks, inputs=False) as rec:
        model(x)
    return [(b, _to_grid(rec[b].output, ctx, b)) for b in blocks]


def log_amplitude_profile(fmap: Tensor) -> Tensor:
    """Relative log amplitude from frequency 0 to the highest, ``[min(h, w) // 2 + 1]``.

    ``log(|FFT2(fmap)| + 1e-6)`` averaged over images and channels, centred,
    read along the half diagonal, minus the value at frequency 0 (Park & Kim
    2022). The last entry is the highest frequency (``pi`` for even sizes,
    included here; the authors' code stops one step before it).

    Args:
        fmap: ``[B, C, h, w]``.
    """
    if fmap.ndim != 4:
        raise ValueError(f"feature maps must be [B, C, h, w], got {tuple(fmap.shape)}")
    _, _, h, w = fmap.shape
    f = torch.log(torch.fft.fft2(fmap.double()).abs() + 1e-6)
    f = torch.roll(f, shifts=(h // 2, w // 2), dims=(2, 3)).mean((0, 1))
    diag = torch.stack([f[(h // 2 + k) % h, (w // 2 + k) % w] for k in range(min(h, w) // 2 + 1)])
    return (diag - diag[0]).float()


def relative_log_amplitude(fmap: Tensor) -> float:
    """``Δ log amplitude`` at the highest frequency of ``fmap`` ``[B, C, h, w]`` (Park & Kim)."""
    return float(log_amplitude_profile(fmap)[-1])


def relative_log_amplitudes(model: nn.Module, x: Tensor) -> List[Dict]:
    """Relative log amplitude of every token-mixing block's output, by depth.

    Returns:
        ``[{"depth", "block", "grid", "delta_log_amplitude", "profile"}]``.
    """
    rows = []
    for depth, (block, fmap) in enumerate(feature_maps(model, x)):
        profile = log_amplitude_profile(fmap)
        rows.append({"depth": depth, "block": block, "grid": list(fmap.shape[-2:]),
                     "delta_log_amplitude": float(profile[-1]),
                     "profile": [float(v) for v in profile]})
    return rows
