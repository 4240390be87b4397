"""Vision Transformer (Dosovitskiy et al. 2021, arXiv:2010.11929), timm ``VisionTransformer``."""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer

from ..registry import contains, last_child, register_family


def _is_timm_vit(net: nn.Module) -> bool:
    """A timm ``VisionTransformer`` (ViT, DeiT incl. distilled, register and DINOv2 variants)
    whose attention is timm's ``Attention``, so the probabilities can be captured."""
    return isinstance(net, VisionTransformer) and contains(Attention)(net)


def _vit_cam_layer(model: nn.Module) -> Optional[str]:
    # With class-token pooling the patch tokens leaving the last block never reach
    # the head (zero gradient); the last block's norm1 output (its attention input)
    # is the last token grid the class token reads from (as in pytorch-grad-cam).
    block = last_child("net.blocks")(model)
    if block is None or "norm1" not in dict(dict(model.named_modules())[block].named_children()):
        return block
    return f"{block}.norm1"


@register_family("vit", description="ViT: multi-head self-attention + MLP, class token",
                 paper="Dosovitskiy et al. 2021, arXiv:2010.11929", label="ViT", color="#d62728",
                 mixing_kind="attention", group="attention", gradcam_layer=_vit_cam_layer,
                 rollout=True, epochs=5, lr=1e-3, timm_match=_is_timm_vit)
def _vit(num_classes: int, in_chans: int, img_size: int, *,
         patch_size: int = 4, depth: int = 4) -> nn.Module:
    """The zoo family (patch 4: 7x7 tokens on 28 px, 4 blocks); ``patch_size`` changes only the
    token grid (2: the 14x14-token variant of issue 16, ``analyses.common.FINEGRID``), ``depth``
    only the number of blocks (2, 3: the shallower ViTs of the ``fewer-layers`` claim)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer (blocks), got {depth!r}")
    return VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                             num_classes=num_classes, embed_dim=128, depth=depth, num_heads=4,
                             mlp_ratio=2.0)
