"""The Synthesizer ladder: Mixer's body with one token-mixing change per rung.

From MLP-Mixer's token-mixing MLP (Tolstikhin et al. 2021, arXiv:2105.01601) to
dot-product attention (Vaswani et al. 2017; ViT, Dosovitskiy et al. 2021), through
the Synthesizers of Tay et al. 2021 ("Synthesizer: Rethinking Self-Attention in
Transformer Models", arXiv:2005.00743). Every rung keeps the zoo Mixer's body: timm
``MlpMixer`` with patch 4, 4 blocks, width 128, the same pre-norm residual blocks
(LayerNorm, token mixing, LayerNorm, channel MLP 128 -> 512 -> 128), the same pooling
and head and timm's Mixer initialisation of every ``nn.Linear`` (xavier-uniform weights,
zero biases). Only the token-mixing sublayer of each block changes:

====== ================ ==========================================================
rung   name             token mixing of the block (tokens ``x`` ``[T, C]``)
====== ================ ==========================================================
(a)    ``mixer``        the zoo Mixer itself: ``W2 GELU(W1 x + b1) + b2`` over tokens
(b)    ``token_linear`` ``R x + b``: one linear ``T x T`` matrix, no hidden layer
(c)    ``token_softmax`` ``softmax(R) x + b``, logits ``R ~ N(0, 1)``
(d)    ``synth_random`` Synthesizer-Random: per head ``softmax(R_h) (x W_v)_h``
(e)    ``synth_dense``  Dense Synthesizer: per head ``softmax(F_h(x_t + p_t)) (x W_v)_h``
(f)    ``dot_attention`` per head ``softmax(q_h k_h^T / sqrt(d)) (x W_v)_h``
====== ================ ==========================================================

Choices, each stated where it is made:

- (b) ``R`` is xavier-uniform like Mixer's token-MLP layers: a square matrix with that
  init keeps the tokens' variance (gain 1), so the block starts like Mixer's, not as an
  average (uniform) or a copy (identity) of its input; ``b`` starts at 0.
- (c) is (b) with a softmax on ``R`` (the per-token bias kept), logits ``N(0, 1)`` so
  ``softmax(R)`` starts far from the plain average that ``N(0, 0.02)`` logits give.
- (d) is (c) split into 4 heads (as the zoo ViT) with a value projection ``W_v``
  (128 -> 128), ``R_h ~ N(0, 1)``, and no per-token bias (Tay et al.'s form). No output
  projection, in (d), (e) or (f): the channel MLP that follows mixes channels, and with
  one (16.5k parameters per block) (d) and (e) would leave the +-25% parameter band.
- (e) and (f) share (d)'s value path; only where the logits come from changes. Their
  logits see a learned position embedding ``p`` ``[T, C]`` (``N(0, 0.02)``, as ViT's),
  added to the tokens the logits are generated from only (values are unchanged): without
  it a permutation-equivariant logit generator in a body that has no position embedding
  could not tell where a token is, a handicap (d)'s position-indexed ``R_h`` does not
  have. (e)'s generator is Tay et al.'s two-layer ``W2 ReLU(W1 . + b1) + b2``, hidden
  width 48 shared by the heads, output ``heads x T`` logits; (f)'s queries and keys are
  64-dimensional (16 per head, scale ``1/sqrt(16)``) instead of ViT's 128 to stay in the
  band; 48 makes (e)'s generator (15.8k parameters per block) about the size of (f)'s
  query/key projections (16.5k).

Every rung's token-mixing module acts on ``[B, T, C]`` inside :class:`LadderBlock` and
describes its own mixing with ``token_mixing(x) -> [B or 1, H, T, T]`` (row = output token),
the map its ``forward`` applies (per head to that head's value channels for (d)-(f)):
:mod:`probe.mixing` reads fixed rungs ((b)-(d), ``B = 1``, kind ``token-linear``) from
their parameters and input-dependent ones ((e), (f), kind ``attention``) from the
module's captured input.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Dict, Optional, Tuple, Type, Union

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp, to_2tuple

__all__ = ["RUNGS", "LadderBlock", "LinearTokenMixing", "SoftmaxTokenMixing", "RandomSynthesizer",
           "DenseSynthesizer", "DotProductAttention", "ladder_mixer", "HEADS", "DENSE_HIDDEN",
           "QK_DIM"]

Tensor = torch.Tensor
HEADS = 4            # heads of (d)-(f), as the zoo ViT
DENSE_HIDDEN = 48    # hidden width of (e)'s logit generator
QK_DIM = 64          # query/key width of (f), all heads together
POSITION_STD = 0.02  # init of (e)/(f)'s position embedding (ViT's)


class LinearTokenMixing(nn.Module):
    """(b) ``y = R x + b`` over tokens: ``R`` ``[T, T]`` xavier-uniform, ``b`` ``[T]`` zero.

    Input and output ``[B, T, C]``; the same ``R`` for every channel.
    """

    mixing_kind = "token-linear"

    def __init__(self, dim: int, tokens: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.weight = nn.Parameter(torch.empty(tokens, tokens))
        self.bias = nn.Parameter(torch.zeros(tokens))
        nn.init.xavier_uniform_(self.weight)

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """The fixed map ``[1, 1, T, T]`` (``x`` is ignored)."""
        return self.weight[None, None]

    def forward(self, x: Tensor) -> Tensor:
        return self.token_mixing()[0] @ x + self.bias[:, None]

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}"


class SoftmaxTokenMixing(LinearTokenMixing):
    """(c) ``y = softmax(R) x + b``: (b) with a row softmax on ``R``, logits ``N(0, logit_std)``."""

    def __init__(self, dim: int, tokens: int, *, logit_std: float = 1.0) -> None:
        super().__init__(dim, tokens)
        self.logit_std = logit_std
        with torch.no_grad():
            self.weight.normal_(0.0, logit_std)

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """``softmax(R)`` ``[1, 1, T, T]``: rows sum to 1 (``x`` is ignored)."""
        return self.weight.softmax(-1)[None, None]

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}, logit_std={self.logit_std:g}"


class _HeadMixing(nn.Module):
    """Per-head softmax mixing of a value projection: ``y = concat_h A_h (x W_v + b_v)_h``.

    Subclasses give the probabilities ``A`` ``[B or 1, H, T, T]`` in :meth:`token_mixing`.
    """

    mixing_kind = "attention"

    def __init__(self, dim: int, tokens: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible into {heads} heads")
        self.dim, self.tokens, self.heads = dim, tokens, heads
        self.value = nn.Linear(dim, dim)

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        v = self.value(x).reshape(b, t, self.heads, c // self.heads).transpose(1, 2)
        y = self.token_mixing(x).to(v.dtype) @ v                  # [B, H, T, C / H]
        return y.transpose(1, 2).reshape(b, t, c)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, tokens={self.tokens}, heads={self.heads}"


class RandomSynthesizer(_HeadMixing):
    """(d) Synthesizer-Random (Tay et al. 2021): per head ``softmax(R_h)``, ``R_h ~ N(0, 1)``,
    applied to that head's channels of the value projection; input independent."""

    mixing_kind = "token-linear"

    def __init__(self, dim: int, tokens: int, *, heads: int = HEADS, logit_std: float = 1.0
                 ) -> None:
        super().__init__(dim, tokens, heads)
        self.logits = nn.Parameter(torch.randn(heads, tokens, tokens) * logit_std)

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """``softmax(R_h)`` ``[1, H, T, T]`` (``x`` is ignored)."""
        return self.logits.softmax(-1)[None]


class _PositionedLogits(_HeadMixing):
    """Per-head logits generated from the tokens plus a learned position embedding."""

    def __init__(self, dim: int, tokens: int, heads: int) -> None:
        super().__init__(dim, tokens, heads)
        self.position = nn.Parameter(torch.randn(tokens, dim) * POSITION_STD)

    def logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """Attention probabilities ``[B, H, T, T]`` at the module's input ``x`` ``[B, T, C]``."""
        if x is None:
            raise ValueError(f"{type(self).__name__}'s token mixing depends on the input; pass "
                             f"the module's input tokens [B, T, C]")
        return self.logits(x + self.position).softmax(-1)


class DenseSynthesizer(_PositionedLogits):
    """(e) Dense Synthesizer (Tay et al. 2021): token ``t``'s logits over the ``T`` positions,
    per head, are ``F(x_t + p_t) = W2 ReLU(W1 (x_t + p_t) + b1) + b2`` (no query-key product)."""

    def __init__(self, dim: int, tokens: int, *, heads: int = HEADS, hidden: int = DENSE_HIDDEN
                 ) -> None:
        super().__init__(dim, tokens, heads)
        self.hidden = hidden
        self.generate = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                      nn.Linear(hidden, heads * tokens))

    def logits(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return self.generate(x).reshape(b, t, self.heads, self.tokens).transpose(1, 2)


class DotProductAttention(_PositionedLogits):
    """(f) Scaled dot-product attention: per head ``q_h k_h^T / sqrt(d_h)`` with
    ``q = W_q (x + p)``, ``k = W_k (x + p)`` of width :data:`QK_DIM` (``d_h = QK_DIM / H``)."""

    def __init__(self, dim: int, tokens: int, *, heads: int = HEADS, qk_dim: int = QK_DIM) -> None:
        super().__init__(dim, tokens, heads)
        if qk_dim % heads:
            raise ValueError(f"query/key width {qk_dim} is not divisible into {heads} heads")
        self.qk_dim = qk_dim
        self.query = nn.Linear(dim, qk_dim)
        self.key = nn.Linear(dim, qk_dim)
        self.scale = (qk_dim // heads) ** -0.5

    def logits(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        q = self.query(x).reshape(b, t, self.heads, -1).transpose(1, 2)
        k = self.key(x).reshape(b, t, self.heads, -1).transpose(1, 2)
        return (q * self.scale) @ k.transpose(-2, -1)


class LadderBlock(nn.Module):
    """timm's ``MixerBlock`` with its token-mixing MLP replaced by ``mixing(dim, tokens)``.

    ``x = x + mixing(norm1(x)); x = x + mlp_channels(norm2(x))`` on ``[B, T, C]``; the same
    constructor as ``MixerBlock`` (plus ``mixing``), so it plugs into ``MlpMixer(block_layer=...)``.
    """

    def __init__(self, dim: int, seq_len: int,
                 mlp_ratio: Union[float, Tuple[float, float]] = (0.5, 4.0),
                 mlp_layer: Type[nn.Module] = Mlp,
                 norm_layer: Type[nn.Module] = partial(nn.LayerNorm, eps=1e-6),
                 act_layer: Type[nn.Module] = nn.GELU, drop: float = 0., drop_path: float = 0.,
                 device=None, dtype=None, *, mixing: Callable[[int, int], nn.Module]) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        channels_dim = int(to_2tuple(mlp_ratio)[1] * dim)
        self.norm1 = norm_layer(dim, **dd)
        self.mixing = mixing(dim, seq_len)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp_channels = mlp_layer(dim, channels_dim, act_layer=act_layer, drop=drop, **dd)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.mixing(self.norm1(x)))
        x = x + self.drop_path(self.mlp_channels(self.norm2(x)))
        return x


# rung name -> (letter, token-mixing module factory (dim, tokens) -> module)
RUNGS: Dict[str, Tuple[str, Callable[[int, int], nn.Module]]] = {
    "token_linear": ("b", LinearTokenMixing),
    "token_softmax": ("c", SoftmaxTokenMixing),
    "synth_random": ("d", RandomSynthesizer),
    "synth_dense": ("e", DenseSynthesizer),
    "dot_attention": ("f", DotProductAttention),
}


def ladder_mixer(rung: str, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    """The zoo Mixer (patch 4, 4 blocks, width 128, ``mlp_ratio=(0.5, 4.0)``) with rung ``rung``'s
    token mixing in every block (:data:`RUNGS`; rung (a) is the zoo ``mixer`` itself)."""
    from timm.models.mlp_mixer import MlpMixer
    if rung not in RUNGS:
        raise ValueError(f"unknown ladder rung {rung!r}; choose from {', '.join(RUNGS)} (rung (a) "
                         f"is the zoo family 'mixer')")
    block = partial(LadderBlock, mixing=RUNGS[rung][1])
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans, patch_size=4,
                    num_blocks=4, embed_dim=128, mlp_ratio=(0.5, 4.0), block_layer=block)
