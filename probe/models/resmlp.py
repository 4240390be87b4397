"""ResMLP (Touvron et al. 2021, arXiv:2105.03404): linear token mixing, affine norms, timm ``MlpMixer``."""
from __future__ import annotations

from functools import partial

import torch.nn as nn
from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock

from ..registry import contains, register_family


@register_family("resmlp", description="ResMLP: linear token mixing + channel MLP, affine norms",
                 paper="Touvron et al. 2021, arXiv:2105.03404", label="ResMLP", color="#17becf",
                 mixing_kind="token-linear", group="mlp", epochs=5, lr=2e-3,
                 timm_match=contains(ResBlock))
def _resmlp(num_classes: int, in_chans: int, img_size: int, *,
            patch_size: int = 4) -> nn.Module:
    """The zoo family (patch 4: 7x7 tokens on 28 px); ``patch_size`` changes only the
    token grid (2: the 14x14-token variant of issue 16, ``analyses.common.FINEGRID``)."""
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans,
                    patch_size=patch_size, num_blocks=4, embed_dim=128, mlp_ratio=4,
                    block_layer=partial(ResBlock, init_values=0.1), norm_layer=Affine)
