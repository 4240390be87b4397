"""The ResMLP ladder: from Mixer's block to ResMLP's, one change per rung.

Su Jianlin's remark that a stack of feed-forward layers (Melas-Kyriazi 2021, arXiv:2105.02723),
ResMLP (Touvron et al. 2021, arXiv:2105.03404) and MLP-Mixer (Tolstikhin et al. 2021,
arXiv:2105.01601) "are the same model" is tested on a ladder in Mixer's body (timm
``MlpMixer``: patch 4, 4 blocks, width 128, channel MLP 128 -> 512 -> 128, average pooling,
linear head, timm's Mixer initialisation), where each rung adds exactly one of the
differences between Mixer's block and ResMLP's:

====== ============================= =======================================================
rung   name                          block (tokens ``x`` ``[T, C]``; ``n``: the norm)
====== ============================= =======================================================
(a)    ``mixer``                     the zoo Mixer: ``x + MLP_tokens(LN(x))``, ``x + MLP_ch(LN(x))``
(b)    ``token_linear``              the token MLP becomes one linear ``T x T`` map ``R x + b``
                                     (the Synthesizer ladder's rung (b),
                                     :mod:`probe.models.synth_ladder`)
(c)    ``linear_affine``             (b) with ResMLP's ``Affine`` (``alpha * x + beta`` per
                                     channel) instead of every LayerNorm (the blocks' two and
                                     the final one)
(d)    ``linear_affine_layerscale``  (c) with LayerScale: each residual branch multiplied by
                                     a learned per-channel vector, initialised at 0.1 as the
                                     zoo ResMLP's (``init_values=0.1``): ResMLP's block
====== ============================= =======================================================

Rung (d) is the zoo ``resmlp`` architecture (timm ``ResBlock``, ``norm_layer=Affine``, channel
MLP ratio 4) module for module: only the token map's parameter names differ
(``mixing.weight``/``mixing.bias`` here, ``linear_tokens.weight``/``.bias`` there;
:func:`as_resmlp_state_dict` maps them), and its initialisation draws from the same
distributions. What separates (d) from the zoo ResMLP in the analysis is the learning rate:
the rungs train at Mixer's swept learning rate (the same body), the zoo ResMLP at its own.

Each rung's parameter count: (b) replaces the token MLP (``2 T H + T + H`` with hidden
``H = 64``) by ``T^2 + T``; (c) changes no count (LayerNorm and Affine both hold ``2 C`` per
norm); (d) adds ``2 C`` per block. The token mixing of (c) and (d) is rung (b)'s
:class:`~probe.models.synth_ladder.LinearTokenMixing` (kind ``token-linear``, read from its
parameters by :mod:`probe.mixing`); LayerScale scales the branch per channel after it.
"""
from __future__ import annotations

from functools import partial
from typing import Dict, Mapping, Tuple, Type

import torch
import torch.nn as nn
from timm.layers import Mlp
from timm.models.mlp_mixer import Affine

from .synth_ladder import LadderBlock, LinearTokenMixing

__all__ = ["RUNGS", "LAYERSCALE_INIT", "LayerScaleLadderBlock", "resmlp_ladder_mixer",
           "as_resmlp_state_dict"]

LAYERSCALE_INIT = 0.1   # the zoo ResMLP's ``init_values`` (ResMLP's value for shallow models)


class LayerScaleLadderBlock(LadderBlock):
    """:class:`~probe.models.synth_ladder.LadderBlock` with LayerScale (Touvron et al. 2021):
    ``x = x + ls1 * mixing(norm1(x)); x = x + ls2 * mlp_channels(norm2(x))`` on ``[B, T, C]``,
    ``ls1``, ``ls2`` ``[C]`` initialised at ``init_values`` (timm ``ResBlock``'s names)."""

    def __init__(self, dim: int, seq_len: int, *args, init_values: float = LAYERSCALE_INIT,
                 device=None, dtype=None, **kwargs) -> None:
        super().__init__(dim, seq_len, *args, device=device, dtype=dtype, **kwargs)
        self.ls1 = nn.Parameter(init_values * torch.ones(dim, device=device, dtype=dtype))
        self.ls2 = nn.Parameter(init_values * torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1 * self.mixing(self.norm1(x)))
        x = x + self.drop_path(self.ls2 * self.mlp_channels(self.norm2(x)))
        return x


_LAYER_NORM = partial(nn.LayerNorm, eps=1e-6)     # Mixer's (timm MlpMixer's default)

# rung name -> (letter, block class, norm layer); rung (a) is the zoo ``mixer``, rung (b) is
# the Synthesizer ladder's ``token_linear`` (built here too, so the ladder's steps are testable)
RUNGS: Dict[str, Tuple[str, Type[nn.Module], Type[nn.Module]]] = {
    "token_linear": ("b", LadderBlock, _LAYER_NORM),
    "linear_affine": ("c", LadderBlock, Affine),
    "linear_affine_layerscale": ("d", LayerScaleLadderBlock, Affine),
}


def resmlp_ladder_mixer(rung: str, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    """The zoo Mixer's body (patch 4, 4 blocks, width 128, ``mlp_ratio=(0.5, 4.0)``) at rung
    ``rung`` of the ladder (:data:`RUNGS`; rung (a) is the zoo family ``mixer``)."""
    from timm.models.mlp_mixer import MlpMixer
    if rung not in RUNGS:
        raise ValueError(f"unknown ResMLP-ladder rung {rung!r}; choose from {', '.join(RUNGS)} "
                         f"(rung (a) is the zoo family 'mixer')")
    _, block, norm = RUNGS[rung]
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans, patch_size=4,
                    num_blocks=4, embed_dim=128, mlp_ratio=(0.5, 4.0), mlp_layer=Mlp,
                    block_layer=partial(block, mixing=LinearTokenMixing), norm_layer=norm)


def as_resmlp_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rung (d)'s state dict under the zoo ResMLP's parameter names (``blocks.<i>.mixing.*`` ->
    ``blocks.<i>.linear_tokens.*``), so that ``resmlp.load_state_dict`` takes it."""
    return {k.replace(".mixing.", ".linear_tokens."): v for k, v in state.items()}
