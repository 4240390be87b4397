"""The family registry: everything family-specific, on one registration per family.

A family is registered once, in its own module under :mod:`probe.models`, with
:func:`register_family`; :mod:`probe.zoo` builds, loads and lists models from
this registry, and every tool (mixing, attribution, robustness, analyses, the
app) reads family facts (display name, colour, extraction kind, Grad-CAM layer,
rollout) from here rather than keeping its own table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch.nn as nn

TIMM_PREFIX = "timm:"

__all__ = ["Family", "check_name", "TIMM_PREFIX", "register_family", "last_child", "contains",
           "names", "families", "family_of", "timm_family"]


def last_child(root: str) -> Callable[[nn.Module], Optional[str]]:
    """A resolver: the path of the last child of module ``root`` (``"net.blocks"`` -> ``"net.blocks.3"``)."""

    def resolve(model: nn.Module) -> Optional[str]:
        modules = dict(model.named_modules())
        if root not in modules:
            return None
        children = [n for n, _ in modules[root].named_children()]
        return f"{root}.{children[-1]}" if children else None

    return resolve


def contains(*types: type) -> Callable[[nn.Module], bool]:
    """A ``timm_match`` predicate: true when the network holds a module of one of ``types``."""

    def match(net: nn.Module) -> bool:
        return any(isinstance(m, types) for m in net.modules())

    return match


@dataclass(frozen=True)
class Family:
    """One zoo family: how to build it, how it was trained, and how the tools treat it.

    Everything family-specific lives here, so adding a family touches one registration.

    Attributes:
        name: registry key (``"mixer"``).
        builder: ``builder(num_classes, in_chans, img_size) -> nn.Module``.
        description: one line for tables and ``--help``.
        paper: the paper the architecture comes from.
        label: display name in figures and tables (``"Mixer"``).
        color: default colour of the family in figures.
        mixing_kind: the :class:`probe.mixing.MixingMap` kind its token mixing is extracted as.
        group: ``"mlp"`` (token mixing without attention or convolution), ``"attention"``
            or ``"conv"``; the analyses' "MLPs" group is ``group == "mlp"``.
        gradcam_layer: resolver ``model -> module path`` of the Grad-CAM layer.
        rollout: whether attention rollout applies (attention weights exist).
        epochs, lr, weight_decay, batch_size, augment: training defaults of ``probe.train``
            (``augment``: random 2-px translations and horizontal flips; the shipped zoo
            was trained without it).
        timm_match: ``net -> bool``, true when a timm network (``timm:<arch>``) belongs to
            this family (its blocks are this family's token mixers); ``None``: no timm
            network does. :func:`timm_family` asks the families in registry order.
        gradcam: whether Grad-CAM applies (some layer's output lies on the spatial grid);
            ``False`` for the pure MLP, whose hidden units have no position.
        reparameterize: ``net -> net``, the family's inference form made from its trained
            (training) form in place, computing the same function (RepMLP: conv branches
            merged into the FC weights); ``zoo.load(name, merged=True)`` applies it.
            ``None``: the family has one form.
    """

    name: str
    builder: Callable[[int, int, int], nn.Module]
    description: str
    paper: str
    label: str
    color: str
    mixing_kind: str
    group: str
    gradcam_layer: Callable[[nn.Module], Optional[str]]
    rollout: bool
    epochs: int
    lr: float
    weight_decay: float = 0.05
    batch_size: int = 128
    augment: bool = False
    timm_match: Optional[Callable[[nn.Module], bool]] = None
    gradcam: bool = True
    reparameterize: Optional[Callable[[nn.Module], nn.Module]] = None


_FAMILIES: Dict[str, Family] = {}
_GROUPS = ("mlp", "attention", "conv")


def register_family(name: str, *, description: str, paper: str, label: str, color: str,
                    mixing_kind: str, group: str, epochs: int, lr: float,
                    gradcam_layer: Callable[[nn.Module], Optional[str]] = last_child("net.blocks"),
                    rollout: bool = False, weight_decay: float = 0.05, batch_size: int = 128,
                    augment: bool = False,
                    timm_match: Optional[Callable[[nn.Module], bool]] = None,
                    gradcam: bool = True,
                    reparameterize: Optional[Callable[[nn.Module], nn.Module]] = None):
    """Decorator that adds a builder to the zoo registry under ``name`` (see :class:`Family`)."""
    if group not in _GROUPS:
        raise ValueError(f"group must be one of {_GROUPS}, got {group!r}")

    def wrap(fn: Callable[[int, int, int], nn.Module]):
        if name in _FAMILIES:
            raise ValueError(f"zoo family {name!r} is registered twice")
        _FAMILIES[name] = Family(
            name=name, builder=fn, description=description, paper=paper, label=label,
            color=color, mixing_kind=mixing_kind, group=group, gradcam_layer=gradcam_layer,
            rollout=rollout, epochs=epochs, lr=lr, weight_decay=weight_decay,
            batch_size=batch_size, augment=augment, timm_match=timm_match, gradcam=gradcam,
            reparameterize=reparameterize)
        return fn

    return wrap


def names() -> List[str]:
    """The shipped zoo family names, in registry order."""
    return list(_FAMILIES)


def families() -> Dict[str, Family]:
    """Registry of zoo families (name -> :class:`Family`)."""
    return dict(_FAMILIES)


def family_of(model: nn.Module) -> Optional[Family]:
    """The registration of ``model``'s family (zoo models and recognised timm models), else ``None``."""
    return _FAMILIES.get(getattr(model, "family", None))


def timm_family(net: nn.Module) -> str:
    """The family of a timm network: the first registered family whose ``timm_match`` accepts it.

    Families are asked in registry order, so the token-mixer families (whose timm models
    also hold convolutions, in their patch embedding) answer before the ``cnn`` family's
    "purely convolutional" match. ``"timm"`` when none does (the tools then use their
    generic paths: Grad-CAM on the last block or stage, no rollout).
    """
    for name, family in _FAMILIES.items():
        if family.timm_match is not None and family.timm_match(net):
            return name
    return "timm"


def _unknown_model(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}, "
                      f"or timm:<arch> for any timm architecture (e.g. timm:resnet50)")


def check_name(name: str) -> None:
    """Raise ``ValueError`` (with the valid names) unless ``name`` is a zoo family or a timm arch."""
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    if name.startswith(TIMM_PREFIX):
        import timm
        arch = name[len(TIMM_PREFIX):]
        if not timm.is_model(arch):
            close = timm.list_models(f"*{arch.split('_')[0]}*")[:8] if arch else []
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise ValueError(f"unknown timm architecture {arch!r}{hint}; see timm.list_models()")
    elif name not in _FAMILIES:
        raise _unknown_model(name)
