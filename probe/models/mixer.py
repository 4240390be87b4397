"""MLP-Mixer (Tolstikhin et al. 2021, arXiv:2105.01601): token-mixing MLP + channel MLP, timm ``MlpMixer``."""
from __future__ import annotations

import torch.nn as nn
from timm.models.mlp_mixer import MixerBlock, MlpMixer

from ..registry import contains, register_family


@register_family("mixer", description="MLP-Mixer: token-mixing MLP + channel MLP",
                 paper="Tolstikhin et al. 2021, arXiv:2105.01601", label="Mixer", color="#1f77b4",
                 mixing_kind="token-mlp", group="mlp", epochs=3, lr=2e-3,
                 timm_match=contains(MixerBlock))
def _mixer(num_classes: int, in_chans: int, img_size: int, *,
           patch_size: int = 4) -> nn.Module:
    """The zoo family (patch 4: 7x7 tokens on 28 px); ``patch_size`` changes only the
    token grid (2: the 14x14-token variant of issue 16, ``analyses.common.FINEGRID``)."""
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans,
                    patch_size=patch_size, num_blocks=4, embed_dim=128, mlp_ratio=(0.5, 4.0))
