"""gMLP (Liu et al. 2021, arXiv:2105.08050): spatial gating unit, timm ``MlpMixer``."""
from __future__ import annotations

import torch.nn as nn
from timm.layers import GatedMlp
from timm.models.mlp_mixer import MlpMixer, SpatialGatingBlock

from ..registry import contains, register_family


@register_family("gmlp", description="gMLP: spatial gating unit (token projection x gate)",
                 paper="Liu et al. 2021, arXiv:2105.08050", label="gMLP", color="#2ca02c",
                 mixing_kind="spatial-gating", group="mlp", epochs=3, lr=2e-3,
                 timm_match=contains(SpatialGatingBlock))
def _gmlp(num_classes: int, in_chans: int, img_size: int, *,
          patch_size: int = 4) -> nn.Module:
    """The zoo family (patch 4: 7x7 tokens on 28 px); ``patch_size`` changes only the
    token grid (2: the 14x14-token variant of issue 16, ``analyses.common.FINEGRID``)."""
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans,
                    patch_size=patch_size, num_blocks=4, embed_dim=112, mlp_ratio=6,
                    block_layer=SpatialGatingBlock, mlp_layer=GatedMlp)
