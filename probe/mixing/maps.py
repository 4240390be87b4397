"""The token mixing of one layer as a matrix: :class:`MixingMap` and the kinds of mixing.

A leaf of :mod:`probe.mixing` (it imports only :mod:`probe.mixing.metrics`, which
imports nothing from the package), so :mod:`probe.spectra` and
:mod:`probe.plots` can use it without an import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch

from .metrics import summarize

__all__ = ["KINDS", "KIND_LABELS", "STATIC_KINDS", "MixingMap"]

KINDS = ("token-mlp", "token-linear", "spatial-gating", "attention", "fourier", "conv", "dense")
STATIC_KINDS = ("token-linear", "spatial-gating", "fourier")
# How each kind reads in captions (the app, figures)
KIND_LABELS = {"token-mlp": "token-mixing MLP (Jacobian)", "token-linear": "linear token mixing",
               "spatial-gating": "spatial gating projection", "attention": "self-attention",
               "fourier": "Fourier mixing Re(F)", "conv": "conv effective mixing",
               "dense": "pixel Gram of the first dense layer's Jacobian"}
Tensor = torch.Tensor


@dataclass
class MixingMap:
    """The token mixing of one layer.

    Attributes:
        layer: module path inside the model given to :func:`probe.mixing.extract`;
            ``dict(model.named_modules())[layer]`` is the token-mixing module.
        kind: one of :data:`KINDS`.
        matrix: ``[B, H, T_out, T_in]``, row = output token, column = input token,
            tokens in row-major grid order after ``prefix_tokens`` leading
            non-spatial tokens. ``B = 1`` for input-independent maps, ``H = 1``
            unless attention heads.
        grid: ``(h, w)`` spatial grid of the output tokens.
        prefix_tokens: leading non-spatial tokens (class/register), included in ``matrix``.
        native: the family's own object (Mixer: ``fc1``/``fc2`` token templates
            ``[hidden, h, w]``; ResMLP/gMLP: weight and bias; attention: heads and
            scale; FNet: the complex DFT matrix; CNN: the stage's conv kernels).
        depth: index of the layer among the model's token-mixing layers.
        bias: ``[T_out]`` per-token constant the linear kinds add (``None`` if none).
        input_grid: ``(h, w)`` grid of the input tokens when it differs from
            ``grid`` (strided conv stages); ``None`` means the same grid.
        block: path of the enclosing residual block (whose output :mod:`probe.spectra` reads).
        image_size: ``(H, W)`` in pixels of the model input the map was extracted
            at (set by :func:`probe.mixing.extract`); gives :attr:`px_per_token`.
        channels: ``[B, G, T_out, T_in]`` per-channel (``G = C``) or per channel-group
            token mixing (``extract(..., per_channel=True or G)``), whose mean over ``G``
            is ``matrix[:, 0]``; ``None`` unless asked for (and for static maps, where every
            channel mixes with ``matrix``).
        gated: a spatial-gating map extracted with its gate (``extract(..., gated=True)``):
            ``matrix`` is then per image and input dependent (not :attr:`static`).
    """

    layer: str
    kind: str
    matrix: Tensor
    grid: Tuple[int, int]
    prefix_tokens: int = 0
    native: object = None
    depth: int = 0
    bias: Optional[Tensor] = None
    input_grid: Optional[Tuple[int, int]] = None
    block: str = ""
    image_size: Optional[Tuple[int, int]] = None
    channels: Optional[Tensor] = None
    gated: bool = False

    @property
    def static(self) -> bool:
        """True when the map does not depend on the input."""
        return self.kind in STATIC_KINDS and not self.gated

    @property
    def heads(self) -> int:
        """Number of heads ``H`` (1 unless attention)."""
        return int(self.matrix.shape[1])

    @property
    def in_grid(self) -> Tuple[int, int]:
        """``(h, w)`` grid of the input tokens (the grid distances are measured on)."""
        return tuple(self.input_grid or self.grid)

    @property
    def px_per_token(self) -> Tuple[float, float]:
        """Input pixels per input-grid cell along ``(rows, cols)``: ``image_size / in_grid``.

        The patch size for patch-embedded token models (28 px / 7 tokens = 4 px);
        the stage's input stride for a CNN (1 px for a stage on the full-size map).

        Raises:
            ValueError: the map has no ``image_size`` (built by hand, not by ``extract``).
        """
        if self.image_size is None:
            raise ValueError(f"{self.layer or 'this map'} has no image_size, so its tokens have "
                             f"no size in pixels; build it with probe.mixing.extract or set "
                             f"image_size=(H, W) of the model input")
        (h, w), (hi, wi) = self.image_size, self.in_grid
        return float(h) / hi, float(w) / wi

    def cpu(self) -> "MixingMap":
        """A copy with every tensor (matrix, bias, tensors in ``native``) on the CPU."""
        native = self.native
        if isinstance(native, dict):
            native = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in native.items()}
        elif isinstance(native, torch.Tensor):
            native = native.cpu()
        return replace(self, matrix=self.matrix.cpu(), native=native,
                       bias=None if self.bias is None else self.bias.cpu(),
                       channels=None if self.channels is None else self.channels.cpu())

    def apply(self, tokens: Tensor) -> Tensor:
        """Mix ``tokens`` with this map: ``matrix @ tokens (+ bias)``.

        Args:
            tokens: ``[B, T_in, C]`` (``H = 1``) or ``[B, H, T_in, D]`` (per head).
                ``B`` must match ``matrix``'s or the map be static (``B = 1``).

        Returns:
            ``[B, T_out, C]`` or ``[B, H, T_out, D]``. For the linear kinds
            (token-linear, spatial-gating's projection, attention given its
            probabilities, fourier) this reproduces the sublayer's token mixing.
        """
        m = self.matrix.to(tokens.dtype)
        if tokens.ndim == 3:
            if m.shape[1] != 1:
                raise ValueError(f"{self.layer} has {m.shape[1]} heads; pass tokens as "
                                 f"[B, H, T, D]")
            out = m[:, 0] @ tokens
            if self.bias is not None:
                out = out + self.bias.to(tokens.dtype)[:, None]
            return out
        if tokens.ndim == 4:
            out = m @ tokens
            if self.bias is not None:
                out = out + self.bias.to(tokens.dtype)[:, None]
            return out
        raise ValueError(f"tokens must be [B, T, C] or [B, H, T, D], got {tuple(tokens.shape)}")

    def summary(self, *, radius: float = 1.0, unit: str = "tokens") -> dict:
        """Metrics of this map as plain floats (JSON-ready), per head and overall.

        See :func:`probe.mixing.summarize` for ``radius`` and ``unit``.
        """
        return summarize([self], radius=radius, unit=unit)[0]
