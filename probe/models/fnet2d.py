"""FNet as published (Lee-Thorp et al. 2021, arXiv:2105.03824): Fourier over tokens AND hidden.

The published FNet sublayer is ``Re(F_seq(F_hidden(x)))``: a discrete Fourier transform
along the hidden (channel) dimension, then along the sequence, real part kept. For images
the sequence is the 7x7 token grid (its 2-D DFT ``F_s``, as in the zoo ``fnet``) and the
hidden dimension the 128 channels (``F_h``), so on the tokens ``X`` ``[T, C]``

    Re(F_s X F_h^T) = Re F_s X Re F_h^T - Im F_s X Im F_h^T

(both DFTs orthonormal here; the paper's are unnormalised, a per-layer scale that the
pre-norm blocks would add to the residual stream unnormalised). Everything else is the
zoo ``fnet``: timm ``MlpMixer``, patch 4, width 128, 4 blocks, channel MLP 128 -> 512 -> 128.

The zoo family ``fnet`` keeps the token-only form ``Re(F_s) X`` (:mod:`probe.models.fnet`;
its shipped weights and the protocol's converged models were trained as that), an ablation
of this one. What holds for which:

- ``fnet``: the mixing is ONE fixed token-mixing matrix ``Re F_s`` applied to every channel,
  so FNet is a Mixer whose token mixing is fixed (``probe.equivalences.fnet_is_dft``).
- ``fnet2d``: the mixing is a fixed linear map of the whole ``[T, C]`` token array,
  ``Re(F_s kron F_h)``, the sum of TWO token-mixing matrices (``Re F_s`` and ``Im F_s``), each
  paired with its own channel mixing (``Re F_h``, ``-Im F_h``). It is not one token-mixing
  matrix shared by the channels (:func:`probe.equivalences.fnet2d_token_matrix_residual`
  measures how far it is from the nearest one), so "FNet is a special case of Mixer" holds
  for it only with Mixer's token mixing generalised to a sum of two token matrices, each
  after a fixed channel mixing.

:mod:`probe.mixing` extracts it as kind ``fourier``, static, with the two token matrices as
two "heads" ``[1, 2, T, T]``: head 0 ``Re F_s`` (applied to ``X Re F_h^T``), head 1 ``Im F_s``
(applied to ``-X Im F_h^T``), so ``MixingMap.apply`` on those two channel-mixed copies summed
over heads gives the sublayer's output. The effective (uniform-shift Jacobian) view is
``Re F_s / sqrt(C)``: a shift of every channel excites only the channel frequency 0.
"""
from __future__ import annotations

from functools import partial
from typing import Tuple, Type, Union

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp, to_2tuple
from timm.models.mlp_mixer import MlpMixer

from ..registry import register_family
from .fnet import _square_grid

__all__ = ["TokenChannelFourierMixing", "FNet2dBlock"]


class TokenChannelFourierMixing(nn.Module):
    """``Re(F_s X F_h^T)``: orthonormal DFTs over the token grid and over the channels, real part.

    Input and output: ``[B, T, C]`` with ``T = h * w`` tokens in row-major order.
    """

    def __init__(self, grid: Tuple[int, int]) -> None:
        super().__init__()
        self.grid = tuple(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h, w = self.grid
        y = torch.fft.fftn(x.reshape(b, h, w, c).float(), dim=(1, 2, 3), norm="ortho").real
        return y.reshape(b, t, c).to(x.dtype)

    def extra_repr(self) -> str:
        return f"grid={self.grid}, channels=fft"


class FNet2dBlock(nn.Module):
    """Residual block: token-and-channel Fourier mixing, then a channel MLP (pre-norm).

    timm ``MixerBlock``'s constructor, for ``MlpMixer(block_layer=FNet2dBlock)``; the
    token-mixing ratio in ``mlp_ratio`` is ignored (the mixing has no parameters).
    """

    def __init__(self, dim: int, seq_len: int,
                 mlp_ratio: Union[float, Tuple[float, float]] = (0.5, 4.0),
                 mlp_layer: Type[nn.Module] = Mlp,
                 norm_layer: Type[nn.Module] = partial(nn.LayerNorm, eps=1e-6),
                 act_layer: Type[nn.Module] = nn.GELU, drop: float = 0., drop_path: float = 0.,
                 device=None, dtype=None) -> None:
        dd = {"device": device, "dtype": dtype}
        super().__init__()
        channels_dim = int(to_2tuple(mlp_ratio)[1] * dim)
        self.norm1 = norm_layer(dim, **dd)
        self.mixing = TokenChannelFourierMixing(_square_grid(seq_len))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp_channels = mlp_layer(dim, channels_dim, act_layer=act_layer, drop=drop, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixing(self.norm1(x)))
        x = x + self.drop_path(self.mlp_channels(self.norm2(x)))
        return x


@register_family("fnet2d", description="FNet as published: Re(DFT over tokens and channels) "
                 "+ channel MLP", paper="Lee-Thorp et al. 2021, arXiv:2105.03824",
                 label="FNet (tokens+hidden)", color="#c5b0d5", mixing_kind="fourier",
                 group="mlp", epochs=5, lr=2e-3)
def _fnet2d(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans, patch_size=4,
                    num_blocks=4, embed_dim=128, mlp_ratio=(0.5, 4.0), block_layer=FNet2dBlock)
