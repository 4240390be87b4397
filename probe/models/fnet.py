"""FNet for images: Fourier token mixing in a timm-style residual block.

Based on: Lee-Thorp et al. 2021, "FNet: Mixing Tokens with Fourier Transforms"
(https://arxiv.org/abs/2105.03824). The vision variant here replaces the
token-mixing MLP of an MLP-Mixer block (timm ``MixerBlock``) with the real part
of the orthonormal 2-D discrete Fourier transform over the token grid, so the
whole model is a timm ``MlpMixer`` built with ``block_layer=FNetBlock``.

Mixing over the token grid only (not over channels, as the language FNet also
does) keeps the sublayer an exact, input-independent token-mixing matrix:
``Re(F_2d) @ X``. That is what makes "FNet is Mixer with a fixed Fourier
matrix" directly checkable.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Tuple, Type, Union

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp, to_2tuple
from timm.models.mlp_mixer import MlpMixer

from ..registry import register_family

__all__ = ["FourierMixing", "FNetBlock", "fourier_mixing_matrix"]


def _square_grid(seq_len: int) -> Tuple[int, int]:
    side = int(round(math.sqrt(seq_len)))
    if side * side != seq_len:
        raise ValueError(f"FNet needs a square token grid; got {seq_len} tokens")
    return side, side


class FourierMixing(nn.Module):
    """Real part of the orthonormal 2-D DFT over a token grid.

    Input and output: ``[B, T, C]`` with ``T = h * w`` tokens in row-major order.
    """

    def __init__(self, grid: Tuple[int, int]) -> None:
        super().__init__()
        self.grid = tuple(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h, w = self.grid
        y = x.reshape(b, h, w, c)
        y = torch.fft.fft2(y.float(), dim=(1, 2), norm="ortho").real
        return y.reshape(b, t, c).to(x.dtype)

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


def fourier_mixing_matrix(grid: Tuple[int, int]) -> torch.Tensor:
    """The ``[T, T]`` real matrix that :class:`FourierMixing` applies to the tokens.

    Row = output token, column = input token (row-major over the grid); it is
    ``Re(kron(F_h, F_w))`` with ``F_n`` the orthonormal DFT matrix.
    """
    h, w = grid

    def dft(n: int) -> torch.Tensor:
        k = torch.arange(n, dtype=torch.float64)
        return torch.exp(-2j * math.pi * torch.outer(k, k) / n) / math.sqrt(n)

    return torch.kron(dft(h), dft(w)).real.float()


class FNetBlock(nn.Module):
    """Residual block: Fourier token mixing, then a channel MLP (pre-norm).

    Same constructor signature as timm's ``MixerBlock`` so it plugs into
    ``timm.models.mlp_mixer.MlpMixer(block_layer=FNetBlock)``; the token-mixing
    ratio in ``mlp_ratio`` is ignored (the Fourier mixing has no parameters).
    """

    def __init__(
            self,
            dim: int,
            seq_len: int,
            mlp_ratio: Union[float, Tuple[float, float]] = (0.5, 4.0),
            mlp_layer: Type[nn.Module] = Mlp,
            norm_layer: Type[nn.Module] = partial(nn.LayerNorm, eps=1e-6),
            act_layer: Type[nn.Module] = nn.GELU,
            drop: float = 0.,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ) -> None:
        dd = {"device": device, "dtype": dtype}
        super().__init__()
        channels_dim = int(to_2tuple(mlp_ratio)[1] * dim)
        self.norm1 = norm_layer(dim, **dd)
        self.mixing = FourierMixing(_square_grid(seq_len))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp_channels = mlp_layer(dim, channels_dim, act_layer=act_layer, drop=drop, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixing(self.norm1(x)))
        x = x + self.drop_path(self.mlp_channels(self.norm2(x)))
        return x


@register_family("fnet", description="FNet: parameter-free 2-D Fourier token mixing + channel MLP",
                 paper="Lee-Thorp et al. 2021, arXiv:2105.03824", label="FNet", color="#9467bd",
                 mixing_kind="fourier", group="mlp", epochs=5, lr=2e-3)
def _fnet(num_classes: int, in_chans: int, img_size: int, *,
          patch_size: int = 4) -> nn.Module:
    """The zoo family (patch 4: 7x7 tokens on 28 px); ``patch_size`` changes only the
    token grid (2: the 14x14-token variant of issue 16, ``analyses.common.FINEGRID``)."""
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans,
                    patch_size=patch_size, num_blocks=4, embed_dim=128, mlp_ratio=(0.5, 4.0),
                    block_layer=FNetBlock)
