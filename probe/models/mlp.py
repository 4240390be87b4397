"""A pure MLP on the flattened image: no patches, no tokens, no convolution.

LeCun's remark in the 2021 debate: "a real MLP would flatten the input". The image
(28x28x1, normalised) is flattened to 784 pixels and goes through three hidden layers
784 -> 512 -> 256 -> 128 (linear + GELU) and a linear head, about the zoo's parameter
count. Nothing in it knows that pixels have neighbours: any fixed permutation of the
pixels (applied to training and test images alike) gives the same family of functions.
Cf. Rumelhart, Hinton & Williams 1986; the MLP baselines of Tolstikhin et al. 2021
(arXiv:2105.01601) and Melas-Kyriazi 2021 (arXiv:2105.02723).

Token mixing. There are no tokens; the only layer that acts on the pixel grid is the
first, where every hidden unit reads every pixel. :mod:`probe.mixing` extracts it (kind
``dense``, input dependent, one ``[784, 784]`` map per image on the 28x28 pixel grid, one
pixel per "token") as the pixel view of that layer's Jacobian ``J = d h / d x``
``[512, 784]``, ``J = diag(GELU'(W x + b)) W``:

    M = J^T J / 512,     M[p, q] = mean over hidden units of dh/dx_p * dh/dx_q

the metric the first layer puts on pixel space (``|h(x + d) - h(x)|^2 ~ 512 d^T M d``):
``M[p, q]`` is large when pixels ``p`` and ``q`` drive the same hidden units the same way.
It is symmetric and positive semi-definite, not a row-normalised mixing like attention's;
mixing distance and locality read ``|M|`` as they read every other map. The deeper layers
act on hidden units that have no position, so they have no map.

Grad-CAM does not apply: no layer's output lies on a spatial grid (the family registers
``gradcam=False``; :func:`probe.attribution.attribute` says so, the tools skip it).
Neither do feature-map spectra (:mod:`probe.spectra`): the hidden units have no grid.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch.func import jvp

from ..registry import register_family

__all__ = ["PixelDense", "FlatMLP", "HIDDEN"]

Tensor = torch.Tensor
HIDDEN = (512, 256, 128)


class PixelDense(nn.Module):
    """The first layer ``h = GELU(W x + b)`` on the flattened pixels ``x`` ``[B, P]``.

    Describes its own mixing over the pixel grid (module docstring): :meth:`token_mixing`.
    """

    mixing_kind = "dense"

    def __init__(self, pixels: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(pixels, hidden)
        self.act = nn.GELU()

    def jacobian(self, x: Tensor) -> Tensor:
        """``d h / d x`` ``[B, hidden, P]`` at ``x`` ``[B, P]``: ``diag(GELU'(W x + b)) W``."""
        pre = self.fc(x)
        _, slope = jvp(self.act, (pre,), (torch.ones_like(pre),))   # elementwise GELU'
        return slope[:, :, None] * self.fc.weight

    def token_mixing(self, x: Optional[Tensor] = None) -> Tensor:
        """The pixel map ``J^T J / hidden`` ``[B, 1, P, P]`` at the layer's input ``x`` ``[B, P]``."""
        if x is None:
            raise ValueError("the pure MLP's pixel map depends on the input; pass the layer's "
                             "input, the flattened normalised pixels [B, P]")
        jac = self.jacobian(x)
        return (jac.transpose(1, 2) @ jac / jac.shape[1])[:, None]

    def mixing_native(self, x: Tensor) -> dict:
        return {"hidden_units": int(self.fc.out_features),
                "matrix": "J^T J / hidden, J = d h / d x of the first layer (pixels x pixels)"}

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.fc(x))


class FlatMLP(nn.Module):
    """Flatten, :class:`PixelDense`, then ``len(hidden) - 1`` more linear + GELU layers, head.

    Args:
        num_classes: classifier outputs.
        in_chans, img_size: input ``[B, in_chans, img_size, img_size]``.
        hidden: widths of the hidden layers.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 hidden: Sequence[int] = HIDDEN) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("a pure MLP needs at least one hidden layer")
        self.num_classes = num_classes
        self.pixels = PixelDense(in_chans * img_size * img_size, hidden[0])
        self.hidden = nn.Sequential(*[nn.Sequential(nn.Linear(a, b), nn.GELU())
                                      for a, b in zip(hidden[:-1], hidden[1:])])
        self.num_features = hidden[-1]
        self.head = nn.Linear(hidden[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.hidden(self.pixels(x.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


@register_family("mlp", description="pure MLP on the flattened image: 784-512-256-128, no patches",
                 paper="LeCun's remark (2021 debate); Rumelhart et al. 1986", label="MLP",
                 color="#393b79", mixing_kind="dense", group="mlp",
                 gradcam_layer=lambda model: None, gradcam=False, epochs=5, lr=1e-3)
def _mlp(num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    return FlatMLP(num_classes=num_classes, in_chans=in_chans, img_size=img_size, hidden=HIDDEN)
