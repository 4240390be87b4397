"""External Attention (Guo et al. 2021, arXiv:2105.02358) in a ViT body, timm ``VisionTransformer``.

"Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks"
replaces self-attention's keys and values, computed from the tokens, by two small
learned memories ``M_k``, ``M_v`` of ``S`` units shared by every input: per head,

    A = Norm(Q M_k^T)        Q = x W_q  [T, d],  M_k [S, d]   ->  A [T, S]
    y = A M_v                M_v [S, d]

with the paper's double normalisation ``Norm``: a softmax over the TOKENS (each memory
unit's logits over the ``T`` tokens, column-wise), then an L1 normalisation over the
memory (each token's row divided by its sum, so it sums to 1). The multi-head form
follows the authors' EAMLP code: a query projection ``W_q`` (``trans_dims``), ``H`` heads
sharing one ``M_k`` (``memory_key``) and one ``M_v`` (``memory_value``), then an output
projection; two differences. The authors widen the queries by ``coef = 4`` (four times the
heads); here ``coef = 1`` (4 heads of 32 channels, ``S = 64`` units), leaving the parameter
budget to the channel MLP. And ``M_k``, ``M_v`` have no bias: a bias of ``M_k`` is the same
for every token of a memory unit's column and cancels in the softmax over tokens; one of
``M_v`` adds a constant that the output projection's bias absorbs (rows of ``A`` sum to 1). The rest is the zoo ViT (patch 4, width 128, 4 blocks, 4 heads, learned
position embedding, pre-norm blocks) with two changes. The channel MLP ratio is 3 (ViT: 2),
to stay within the zoo's +-25% parameter band, as EA's memories are much smaller than
ViT's ``W_k``, ``W_v``. And the head reads the mean of the tokens (timm
``global_pool="avg"``, no class token): a class token's EA output is a mixture of memory
values weighted by ITS OWN row of ``A``, so it would see the image only through the
softmax over tokens' competition for the memory units, and at a ViT initialisation (memory
logits ~ 0: that softmax uniform) not at all; trained with one, the model stayed at chance
(train loss 2.33 after an epoch of 1,280 images, where ViT reached 2.07).

Token mixing. EA has no token-to-token attention matrix: token ``t``'s output mixes the
MEMORY values, and other tokens reach it only through the softmax over tokens. What
:mod:`probe.mixing` extracts (kind ``attention``, input dependent, ``[B, H, T, T]``) is
the token-to-token map THROUGH the memory,

    M[t, t'] = sum_s A[t, s] P[t', s],     P = softmax over tokens of Q M_k^T  [T, S]

token ``t`` reads memory unit ``s`` with weight ``A[t, s]`` (rows of ``A`` sum to 1), and
unit ``s`` is, through the softmax over tokens, the soft selection ``P[:, s]`` of the tokens
that match it (columns of ``P`` sum to 1), so ``M``'s rows sum to 1 like attention's. It
says which tokens share memory units with ``t``; the values ``y`` are memory values, not
those tokens' values. The normalised token-to-memory attention ``A`` itself (and ``P``) is
in ``MixingMap.native``; the exact token-to-token dependence (how ``y_t`` moves with
``x_t'``) is :func:`probe.mixing.effective`'s Jacobian view.
"""
from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from ..registry import last_child, register_family

__all__ = ["ExternalAttention", "MEMORY_UNITS"]

Tensor = torch.Tensor
MEMORY_UNITS = 64     # S, per head (the memory is shared by the heads)


class ExternalAttention(nn.Module):
    """Multi-head External Attention on ``[B, T, C]`` (module docstring), a timm ``attn_layer``.

    Takes the keyword arguments timm's ``Block`` gives its attention layer (``qkv_bias``,
    ``qk_norm`` ... are accepted and unused: EA has no keys or values to normalise).
    """

    mixing_kind = "attention"

    def __init__(self, dim: int, num_heads: int = 4, *, memory_units: int = MEMORY_UNITS,
                 proj_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0.,
                 norm_layer: Optional[Type[nn.Module]] = None, device=None, dtype=None,
                 **unused) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible into {num_heads} heads")
        dd = {"device": device, "dtype": dtype}
        self.num_heads, self.memory_units = num_heads, memory_units
        head_dim = dim // num_heads
        self.trans_dims = nn.Linear(dim, dim, **dd)                              # W_q
        self.memory_key = nn.Linear(head_dim, memory_units, bias=False, **dd)     # M_k
        self.memory_value = nn.Linear(memory_units, head_dim, bias=False, **dd)   # M_v
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def attention(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(A, P)``, both ``[B, H, T, S]``: ``P`` = softmax over the tokens of ``Q M_k^T``,
        ``A`` = ``P`` L1-normalised over the memory (rows sum to 1)."""
        b, t, c = x.shape
        q = self.trans_dims(x).reshape(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)
        p = self.memory_key(q).softmax(dim=-2)                       # over tokens
        a = p / (1e-9 + p.sum(dim=-1, keepdim=True))                 # L1 over memory
        return a, p

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """The token-to-token map through the memory ``A P^T`` ``[B, H, T, T]`` at the module's
        input ``x`` ``[B, T, C]`` (module docstring); rows sum to 1."""
        if x is None:
            raise ValueError("External Attention's token mixing depends on the input; pass the "
                             "module's input tokens [B, T, C]")
        a, p = self.attention(x)
        return a @ p.transpose(-2, -1)

    def mixing_native(self, x: Tensor) -> dict:
        """What :mod:`probe.mixing` keeps beside the map: the token-to-memory attention ``A`` and
        the softmax over tokens ``P`` (``[B, H, T, S]``)."""
        a, p = self.attention(x)
        return {"token_to_memory": a, "memory_softmax": p, "memory_units": self.memory_units,
                "matrix": "A P^T: token t reads memory unit s (A), unit s selects tokens (P)"}

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False
                ) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("External Attention takes no attention mask")
        b, t, c = x.shape
        a, _ = self.attention(x)
        y = self.memory_value(self.attn_drop(a))                     # [B, H, T, C / H]
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.proj_drop(self.proj(y))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, memory_units={self.memory_units}"


@register_family("extattn", description="External Attention: two linear memories (softmax over "
                 "tokens, L1 over memory) in a ViT body",
                 paper="Guo et al. 2021, arXiv:2105.02358", label="ExtAttn", color="#e377c2",
                 mixing_kind="attention", group="attention",
                 gradcam_layer=last_child("net.blocks"), epochs=5, lr=1e-3)
def _extattn(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    return VisionTransformer(img_size=img_size, patch_size=4, in_chans=in_chans,
                             num_classes=num_classes, embed_dim=128, depth=4, num_heads=4,
                             mlp_ratio=3.0, class_token=False, global_pool="avg",
                             attn_layer=ExternalAttention)
