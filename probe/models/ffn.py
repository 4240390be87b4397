"""A stack of feed-forward layers (Melas-Kyriazi 2021, arXiv:2105.02723), timm ``VisionTransformer``.

"Do You Even Need Attention? A Stack of Feed-Forward Layers Does Surprisingly Well on
ImageNet" keeps the ViT/DeiT body (patch embedding, class token, learned position
embedding, pre-norm residual blocks, class-token head) and replaces every attention
layer by a feed-forward layer applied across the patch dimension. The block follows the
author's ``LinearBlock``: first the feed-forward layer over channels, then the one over
tokens, each residual, the token stage normalised with a LayerNorm over the ``T`` tokens
(class token included) of each channel:

    x = x + mlp(norm1(x))                                   # over channels, per token
    x = x + mlp_tokens(norm2(x^T))^T                        # over tokens, per channel

Both MLPs are timm ``Mlp`` (fc, GELU, fc) with the same ``mlp_ratio`` (hidden ``T * ratio``
for the token MLP, as in the paper's code). Zoo size: patch 4 (7x7 tokens + class token),
width 128, 4 blocks, ``mlp_ratio=3.5`` (within the zoo's +-25% parameter band).

Token mixing: the token MLP, extracted like Mixer's (kind ``token-mlp``: the channel-mean
Jacobian of ``mlp_tokens`` at its input, class token included as a prefix token). Grad-CAM
reads the last block's ``norm1`` output, as for ViT: the head reads the class token only, so
the patch tokens leaving the last block get no gradient; those entering its token MLP do.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Type

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp
from timm.models.vision_transformer import VisionTransformer

from ..registry import register_family
from .vit import _vit_cam_layer

__all__ = ["FeedForwardBlock"]


class FeedForwardBlock(nn.Module):
    """The paper's block (module docstring) with timm ``Block``'s constructor, for
    ``VisionTransformer(block_fn=partial(FeedForwardBlock, tokens=T))``; attention options
    (``num_heads``, ``qkv_bias``, ...) are accepted and unused.

    Input and output ``[B, T, C]``; ``mlp_tokens`` acts on ``[B, C, T]``.
    """

    def __init__(self, dim: int, num_heads: int = 0, mlp_ratio: float = 4.0, *, tokens: int,
                 proj_drop: float = 0., drop_path: float = 0.,
                 act_layer: Type[nn.Module] = nn.GELU,
                 norm_layer: Optional[Type[nn.Module]] = None, mlp_layer: Type[nn.Module] = Mlp,
                 device=None, dtype=None, **unused) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.tokens = tokens
        self.norm1 = norm_layer(dim, **dd)
        self.mlp = mlp_layer(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop, **dd)
        self.norm2 = norm_layer(tokens, **dd)
        self.mlp_tokens = mlp_layer(tokens, int(tokens * mlp_ratio), act_layer=act_layer,
                                    drop=proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("a feed-forward block takes no attention mask")
        x = x + self.drop_path(self.mlp(self.norm1(x)))
        x = x.transpose(1, 2)
        x = x + self.drop_path(self.mlp_tokens(self.norm2(x)))
        return x.transpose(1, 2)

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}"


@register_family("ffn", description="stack of feed-forward layers: ViT body, attention replaced "
                 "by an MLP over the patches",
                 paper="Melas-Kyriazi 2021, arXiv:2105.02723", label="FF-only", color="#bcbd22",
                 mixing_kind="token-mlp", group="mlp", gradcam_layer=_vit_cam_layer,
                 epochs=5, lr=1e-3)
def _ffn(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    tokens = (img_size // 4) ** 2 + 1                        # patches + class token
    return VisionTransformer(img_size=img_size, patch_size=4, in_chans=in_chans,
                             num_classes=num_classes, embed_dim=128, depth=4, mlp_ratio=3.5,
                             block_fn=partial(FeedForwardBlock, tokens=tokens))
