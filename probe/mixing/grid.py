"""Where token-mixing layers and their tokens sit in a model.

The lookup half of the extractor registry (:data:`REGISTRY`, filled by
:func:`probe.mixing.register_extractor`), the token grid of a model
(:class:`TokenContext`) and the input check, shared by :mod:`probe.mixing`
and :mod:`probe.spectra`. A leaf module: it imports nothing from
:mod:`probe.mixing`, so :mod:`probe.spectra` can use it without an import cycle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["LayerInfo", "Extractor", "REGISTRY", "SUPPORTED", "TokenContext", "check_input",
           "find_layers", "find_or_raise"]

SUPPORTED = ("timm MixerBlock (token-mlp), ResBlock (token-linear), SpatialGatingUnit "
             "(spatial-gating), Attention (attention), probe FNetBlock and FNet2dBlock (fourier), "
             "FeedForwardBlock (token-mlp), conv stages (nn.Sequential of ResNet "
             "BasicBlock/Bottleneck: conv), and modules describing their own mixing "
             "(token_mixing(x) and mixing_kind: the Synthesizer ladder, External Attention, "
             "RepMLP, the pure MLP's pixel layer)")


@dataclass(frozen=True)
class LayerInfo:
    """A token-mixing layer found in a model (see :func:`probe.mixing.layers`)."""

    layer: str
    kind: str
    block: str
    depth: int


@dataclass(frozen=True)
class Extractor:
    """One registry entry (see :func:`probe.mixing.register_extractor`).

    Attributes:
        kind: one of :data:`probe.mixing.KINDS`.
        match: ``module -> bool`` for the module the entry applies to.
        sublayer: path of the token-mixing module relative to the matched module.
        block_up: levels from the matched module up to its residual block.
        compute: ``compute(ctx, info, module, record) -> MixingMap``.
    """

    kind: str
    match: Callable[[nn.Module], bool]
    sublayer: str
    block_up: int
    compute: Callable


REGISTRY: List[Extractor] = []


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _parent(path: str, levels: int) -> str:
    parts = path.split(".") if path else []
    return ".".join(parts[:max(0, len(parts) - levels)])


def find_layers(model: nn.Module) -> List[Tuple[LayerInfo, Extractor]]:
    """Every registered token-mixing layer of ``model`` by depth, with its registry entry.

    A module matched by an entry hides its submodules from further matches.
    """
    found: List[Tuple[LayerInfo, Extractor]] = []
    taken: List[str] = []
    for name, module in model.named_modules():
        if any(name == t or name.startswith(t + ".") for t in taken):
            continue
        for ex in REGISTRY:
            if ex.match(module):
                info = LayerInfo(_join(name, ex.sublayer), ex.kind, _parent(name, ex.block_up),
                                 len(found))
                found.append((info, ex))
                taken.append(name)
                break
    return found


def find_or_raise(model: nn.Module) -> List[Tuple[LayerInfo, Extractor]]:
    """:func:`find_layers`, raising ``ValueError`` (naming what is supported) when none is found."""
    found = find_layers(model)
    if not found:
        raise ValueError(f"{type(getattr(model, 'net', model)).__name__} has no token-mixing "
                         f"layer this probe knows; supported: {SUPPORTED}. Register more "
                         f"with mixing.register_extractor")
    return found


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is an input ``model`` accepts (its ``check_input`` if any)."""
    if hasattr(model, "check_input"):
        model.check_input(x)
    elif not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")


class TokenContext:
    """What the extractors need to know about the whole model: its modules and token grid."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules: Dict[str, nn.Module] = dict(model.named_modules())
        self.patch_grid: Optional[Tuple[int, int]] = None
        for m in model.modules():
            g = getattr(m, "grid_size", None)
            if isinstance(g, (tuple, list)) and len(g) == 2:
                self.patch_grid = (int(g[0]), int(g[1]))
                break

    def grid(self, tokens: int) -> Tuple[Tuple[int, int], int]:
        """``((h, w), prefix_tokens)`` for a sequence of ``tokens`` tokens."""
        if self.patch_grid is not None:
            h, w = self.patch_grid
            if h * w <= tokens:
                return (h, w), tokens - h * w
        for prefix in range(0, 9):
            side = int(round(math.sqrt(tokens - prefix))) if tokens > prefix else 0
            if side > 0 and side * side == tokens - prefix:
                return (side, side), prefix
        raise ValueError(f"cannot place {tokens} tokens on a spatial grid; the model needs a "
                         f"patch embedding with grid_size")
