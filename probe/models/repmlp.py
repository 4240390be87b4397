"""RepMLP (Ding et al. 2021, arXiv:2105.01883): FC token mixing with conv branches merged into it.

"RepMLP: Re-parameterizing Convolutions into Fully-connected Layers for Image Recognition"
(and its RepMLPNet block, arXiv:2112.11081) trains a fully-connected token-mixing layer
beside parallel convolution branches, each a ``k x k`` convolution followed by batch norm,
and after training folds every branch into the FC weights: a convolution on a fixed ``h x w``
grid IS a (sparse, weight-shared) ``T x T`` matrix, and an eval-mode batch norm is a scale and
a shift. The inference model has the FC layer only and computes the same function.

Here the token mixer acts on ``[B, T, C]`` tokens of a 7x7 grid, channels in ``S``
"sharesets" (RepMLPNet's ``num_sharesets``; channel ``c`` uses shareset ``c mod S``):

    training form   y_s = W_s x_s + b_s + sum_k BN_k,s(conv_k,s(x_s))     per channel of set s
    inference form  y_s = W'_s x_s + b'_s,   W'_s = W_s + sum_k (g_k,s / sd_k,s) K_k,s
                                             b'_s = b_s + sum_k (beta_k,s - g_k,s mu_k,s / sd_k,s)

with ``K_k,s`` the ``[T, T]`` matrix of the depthwise ``k x k`` convolution (zero padding
``k // 2``) on the grid, ``g``/``beta`` the batch norm's affine parameters and ``mu``, ``sd``
its running mean and standard deviation. The zoo family uses ``S = 1`` (one ``T x T`` matrix
for every channel, as ResMLP's linear token mixing) and branches ``k = 1, 3, 5``, in the zoo
Mixer's body (timm ``MlpMixer``, patch 4, width 128, 4 blocks, channel MLP 128 -> 512 -> 128,
pre-norm residual blocks: :class:`probe.models.synth_ladder.LadderBlock`). RepMLPNet also
puts a batch norm after the FC; it is left out here (it would fold into ``W'``, ``b'`` the
same way), and the block's LayerNorm comes before the mixing as in Mixer. RepMLP's global
perceptron and its channel-partition FC (for large CNN feature maps) have no counterpart on
a 7x7 token grid.

Both forms are in the zoo: ``zoo.load("repmlp")`` is the training form (the shipped weights:
FC plus branches); ``zoo.load("repmlp", merged=True)`` or :func:`reparameterize` turns every
:class:`RepTokenMixing` into the :class:`SharesetTokenLinear` it equals (eval mode: the batch
norms use their running statistics). :mod:`probe.mixing` extracts the merged matrix
``W'`` from either form (kind ``token-linear``, static, ``[1, S, T, T]``).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models.mlp_mixer import MlpMixer

from ..registry import register_family
from .synth_ladder import LadderBlock

__all__ = ["RepTokenMixing", "SharesetTokenLinear", "reparameterize", "BRANCH_KERNELS"]

Tensor = torch.Tensor
BRANCH_KERNELS = (1, 3, 5)


def _grid(tokens: int) -> Tuple[int, int]:
    side = int(round(math.sqrt(tokens)))
    if side * side != tokens:
        raise ValueError(f"RepMLP's conv branches need a square token grid; got {tokens} tokens")
    return side, side


class SharesetTokenLinear(nn.Module):
    """``y_s = W_s x_s + b_s`` over tokens for each shareset ``s`` (the inference form).

    Input and output ``[B, T, C]``; channel ``c`` uses shareset ``c mod S``. ``weight``
    ``[S, T, T]`` (row = output token), ``bias`` ``[S, T]``.
    """

    mixing_kind = "token-linear"

    def __init__(self, tokens: int, sharesets: int = 1) -> None:
        super().__init__()
        self.tokens, self.sharesets = tokens, sharesets
        self.weight = nn.Parameter(torch.empty(sharesets, tokens, tokens))
        self.bias = nn.Parameter(torch.zeros(sharesets, tokens))
        for w in self.weight:
            nn.init.xavier_uniform_(w)

    def _sets(self, x: Tensor) -> Tensor:
        """``[B, T, C]`` -> ``[B * C / S, S, T]``."""
        b, t, c = x.shape
        if c % self.sharesets:
            raise ValueError(f"{c} channels do not split into {self.sharesets} sharesets")
        return x.transpose(1, 2).reshape(b * c // self.sharesets, self.sharesets, t)

    def _mix(self, z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return torch.einsum("sut,nst->nsu", weight.to(z.dtype), z) + bias.to(z.dtype)

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """The fixed map ``[1, S, T, T]`` (``x`` is ignored)."""
        return self.weight[None]

    def mixing_bias(self) -> Optional[Tensor]:
        """The per-token bias ``[T]`` the map adds (one shareset), else ``None``."""
        return self.bias[0] if self.sharesets == 1 else None

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        y = self._mix(self._sets(x), self.weight, self.bias)
        return y.reshape(b, c, t).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}, sharesets={self.sharesets}"


class RepTokenMixing(SharesetTokenLinear):
    """The training form: :class:`SharesetTokenLinear` plus depthwise ``k x k`` conv + batch
    norm branches on the token grid, one per ``kernels`` entry (module docstring)."""

    def __init__(self, dim: int, tokens: int, *, sharesets: int = 1,
                 kernels: Sequence[int] = BRANCH_KERNELS) -> None:
        super().__init__(tokens, sharesets)
        if any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(f"branch kernels must be odd and positive, got {tuple(kernels)}")
        self.grid = _grid(tokens)
        self.kernels = tuple(int(k) for k in kernels)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(sharesets, sharesets, k, padding=k // 2, groups=sharesets,
                                    bias=False), nn.BatchNorm2d(sharesets))
            for k in self.kernels)

    def conv_matrix(self, conv: nn.Conv2d) -> Tensor:
        """The ``[S, T, T]`` matrices (row = output token) a branch's depthwise convolution applies
        to each shareset's ``h x w`` grid: column ``j`` is its response to token ``j`` alone."""
        s, t = self.sharesets, self.tokens
        h, w = self.grid
        unit = torch.eye(t, dtype=conv.weight.dtype, device=conv.weight.device)
        response = conv(unit.reshape(t, 1, h, w).expand(t, s, h, w))    # [T_in, S, h, w]
        return response.reshape(t, s, t).permute(1, 2, 0)

    def merged(self) -> Tuple[Tensor, Tensor]:
        """``(W', b')``: the FC weight ``[S, T, T]`` and bias ``[S, T]`` with every branch folded
        in (batch norms at their running statistics, as in eval mode)."""
        weight, bias = self.weight, self.bias
        for conv, bn in self.branches:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = weight + scale[:, None, None] * self.conv_matrix(conv)
            bias = bias + (bn.bias - scale * bn.running_mean)[:, None]
        return weight, bias

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """The merged map ``W'`` ``[1, S, T, T]`` (``x`` is ignored): the inference form's matrix."""
        return self.merged()[0][None]

    def mixing_bias(self) -> Optional[Tensor]:
        return self.merged()[1][0] if self.sharesets == 1 else None

    def merge(self) -> SharesetTokenLinear:
        """The inference form: a :class:`SharesetTokenLinear` holding ``W'``, ``b'``."""
        out = SharesetTokenLinear(self.tokens, self.sharesets).to(self.weight.device)
        with torch.no_grad():
            weight, bias = self.merged()
            out.weight.copy_(weight)
            out.bias.copy_(bias)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Each branch's convolution is applied as its :meth:`conv_matrix` (the same function as
        the ``Conv2d`` on the grid, zero padding; one matrix product instead of a convolution
        of ``B * C / S`` tiny images), then its batch norm."""
        b, t, c = x.shape
        z = self._sets(x)
        y = self._mix(z, self.weight, self.bias)
        for conv, bn in self.branches:
            response = self._mix(z, self.conv_matrix(conv), torch.zeros_like(self.bias))
            y = y + bn(response.reshape(-1, self.sharesets, *self.grid)).reshape_as(y)
        return y.reshape(b, c, t).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}, sharesets={self.sharesets}, kernels={self.kernels}"


def reparameterize(model: nn.Module) -> nn.Module:
    """Replace every :class:`RepTokenMixing` in ``model`` by its merged
    :class:`SharesetTokenLinear`, in place; returns ``model`` (in eval mode)."""
    model.eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RepTokenMixing):
                setattr(parent, name, child.merge())
    return model


@register_family("repmlp", description="RepMLP: FC token mixing + conv/BN branches (k = 1, 3, 5), "
                 "merged into the FC for inference",
                 paper="Ding et al. 2021, arXiv:2105.01883", label="RepMLP", color="#8c564b",
                 mixing_kind="token-linear", group="mlp", epochs=5, lr=2e-3,
                 reparameterize=reparameterize)
def _repmlp(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    block = partial(LadderBlock, mixing=partial(RepTokenMixing, sharesets=1))
    return MlpMixer(num_classes=num_classes, img_size=img_size, in_chans=in_chans, patch_size=4,
                    num_blocks=4, embed_dim=128, mlp_ratio=(0.5, 4.0), block_layer=block)
