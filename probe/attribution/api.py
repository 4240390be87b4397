"""The attribution method registry, :func:`attribute`, and target/baseline handling.

Methods register with :func:`register_method` (the method modules import it from
here); :func:`attribute` looks the method up, checks that it applies to the model
(through the zoo family registry, :func:`probe.zoo.family_of`), validates the
images, targets and options, runs the method in eval mode and reduces channels.
The shared helpers (baselines, token grids, upsampling) live here too.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import MISSING, dataclass, fields
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import hooks
from ..zoo import Family, families, family_of

__all__ = ["Target", "Baseline", "Method", "METHODS", "ALIASES", "register_method",
           "method_names", "attribute"]

Target = Union[None, int, Sequence[int], torch.Tensor]
Baseline = Union[float, str, torch.Tensor]

_FAMILY_FLAGS = tuple(f.name for f in fields(Family) if f.type in (bool, "bool"))
# a model outside the registry (an unrecognised timm network) gets the flag's default, False for
# a flag every family must set: Grad-CAM applies (it has fallback layers), rollout does not
_FLAG_DEFAULTS = {f.name: f.default is not MISSING and bool(f.default) for f in fields(Family)
                  if f.name in _FAMILY_FLAGS}


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Method:
    """One attribution method of the registry.

    Attributes:
        name: registry key (``"integrated_gradients"``).
        fn: ``fn(model, x, target, **options) -> Tensor`` giving ``[B, C, H, W]``
            (reduced over channels by :func:`attribute`) or ``[B, H, W]``.
        signed: whether maps take both signs.
        requires: a boolean flag of :class:`probe.zoo.Family` (e.g. ``"rollout"``,
            ``"gradcam"``) that the model's family must set for the method to apply (a model
            of no registered family: the flag's default); ``None``: every model.
        description: one line for ``--help`` and tables.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    signed: bool
    requires: Optional[str]
    description: str

    @property
    def options(self) -> List[str]:
        """The keyword options ``fn`` accepts."""
        params = list(inspect.signature(self.fn).parameters.values())[3:]
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

    @property
    def families(self) -> Optional[Tuple[str, ...]]:
        """The zoo families it applies to (``None``: all models)."""
        if self.requires is None:
            return None
        return tuple(name for name, fam in families().items() if getattr(fam, self.requires))

    def applies(self, model: nn.Module) -> bool:
        """Whether the method applies to ``model`` (its family from :func:`probe.zoo.family_of`;
        a model of no registered family gets the flag's default)."""
        if self.requires is None:
            return True
        family = family_of(model)
        if family is None:
            return bool(_FLAG_DEFAULTS[self.requires])
        return bool(getattr(family, self.requires))

    def why_not(self, model: nn.Module) -> Optional[str]:
        """Why the method does not apply to ``model`` (one sentence), ``None`` when it does."""
        if self.applies(model):
            return None
        return (f"method {self.name!r} applies only to the families "
                f"{', '.join(self.families or ())} (registered with {self.requires}=True); "
                f"{getattr(model, 'name', type(model).__name__)!r} is family "
                f"{getattr(model, 'family', None)!r}")


METHODS: Dict[str, Method] = {}
ALIASES: Dict[str, str] = {"ig": "integrated_gradients"}


def register_method(name: str, *, signed: bool, description: str,
                    requires: Optional[str] = None) -> Callable[[Callable], Callable]:
    """Decorator adding ``fn(model, x, target, *, options...)`` to :data:`METHODS`.

    ``requires``: a boolean flag of :class:`probe.zoo.Family` the model's family must set
    (``"rollout"`` for methods that read attention weights); ``None`` for every model.
    """
    if requires is not None and requires not in _FAMILY_FLAGS:
        raise ValueError(f"requires must name a boolean flag of probe.zoo.Family "
                         f"({', '.join(_FAMILY_FLAGS)}), got {requires!r}")

    def wrap(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"attribution method {name!r} is registered twice; pick another name")
        METHODS[name] = Method(name, fn, signed, requires, description)
        return fn

    return wrap


def method_names() -> List[str]:
    """Registered method names, then the aliases."""
    return list(METHODS) + list(ALIASES)


def _method(name: str) -> Method:
    if not isinstance(name, str) or ALIASES.get(name, name) not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}; valid: {', '.join(method_names())}")
    return METHODS[ALIASES.get(name, name)]


def _check_applies(m: Method, model: nn.Module) -> None:
    reason = m.why_not(model)
    if reason is not None:
        raise ValueError(f"{reason}; pick another method")


# ----------------------------------------------------------------------------- helpers


def _check_input(model: nn.Module, x: torch.Tensor) -> None:
    if hasattr(model, "check_input"):
        model.check_input(x)
    elif not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be a [B, C, H, W] tensor, got {got}")
    if not x.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got dtype {x.dtype}")


def _num_classes(model: nn.Module, logits: Optional[torch.Tensor] = None) -> Optional[int]:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    return None if logits is None else logits.shape[1]


def _targets(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``[B]`` long class indices; ``None`` means the predicted class."""
    b = x.shape[0]
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1)
    t = torch.as_tensor(target, device=x.device)
    if t.is_floating_point() or t.is_complex():
        raise ValueError(f"target must hold class indices (integers), got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise ValueError(f"target needs one class per image ({b}), got {t.numel()}")
    n = _num_classes(model)
    if n is not None and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"target classes must lie in [0, {n - 1}], got {t.tolist()}")
    return t.contiguous()


def _baseline(model: nn.Module, x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """A baseline image batch shaped like ``x``: float, ``"black"`` (0), ``"mean"``, or a tensor."""
    if isinstance(baseline, str):
        if baseline == "black":
            return torch.zeros_like(x)
        if baseline == "mean":
            mean = getattr(model, "mean", None)
            if not isinstance(mean, torch.Tensor):
                raise ValueError("baseline 'mean' needs a model with a normalisation mean "
                                 "(a zoo ProbeModel)")
            return mean.to(x).expand_as(x).clone()
        raise ValueError(f"baseline must be a float, 'black', 'mean' or a tensor, got {baseline!r}")
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(x).expand_as(x).clone()
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to the "
                             f"images {tuple(x.shape)}") from None
    raise ValueError(f"baseline must be a float, 'black', 'mean' or a tensor, got "
                     f"{type(baseline).__name__}")


def _reduce_channels(maps: torch.Tensor, how: str) -> torch.Tensor:
    if how == "sum":
        return maps.sum(1)
    if how == "abs_sum":
        return maps.abs().sum(1)
    raise ValueError(f"channel_reduction must be 'sum' or 'abs_sum', got {how!r}")


def _upsample(grid_map: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``[B, h, w]`` -> ``[B, H, W]`` (bilinear)."""
    if tuple(grid_map.shape[-2:]) == tuple(size):
        return grid_map
    return F.interpolate(grid_map[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _prefix_tokens(model: nn.Module) -> int:
    net = getattr(model, "net", model)
    return int(getattr(net, "num_prefix_tokens", 0) or 0)


def _token_grid(model: nn.Module, tokens: int) -> Tuple[int, int]:
    """The ``(h, w)`` grid of ``tokens`` spatial tokens (from the patch embedding, else square)."""
    net = getattr(model, "net", model)
    for name in ("patch_embed", "stem"):
        grid = getattr(getattr(net, name, None), "grid_size", None)
        if grid is not None and int(grid[0]) * int(grid[1]) == tokens:
            return int(grid[0]), int(grid[1])
    side = int(round(math.sqrt(tokens)))
    if side * side != tokens:
        raise ValueError(f"cannot map {tokens} tokens to a spatial grid; pass layer= a module "
                         f"with a square token grid")
    return side, side


def _forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ValueError("the model must return logits of shape [B, classes]")
    return out


# ----------------------------------------------------------------------------- entry point


def attribute(model: nn.Module, x: torch.Tensor, target: Target = None,
              method: str = "integrated_gradients", *, channel_reduction: str = "sum",
              **options) -> torch.Tensor:
    """Pixel attribution maps.

    Args:
        model: a zoo ``ProbeModel`` (any family) or a classifier taking ``[B, C, H, W]``.
        x: images ``[B, C, H, W]`` in ``[0, 1]``.
        target: class per image (int, ``[B]``), or ``None`` for the predicted class.
        method: a name of :data:`METHODS` or an alias (``"ig"``).
        channel_reduction: ``"sum"`` (keeps the sign) or ``"abs_sum"`` over channels.
        **options: keyword options of the method (e.g. ``n_steps``, ``baselines``,
            ``internal_batch_size``, ``window``, ``head_fusion``, ``layer``).

    Returns:
        ``[B, H, W]`` float maps, detached, on ``x``'s device. The model runs in
        eval mode; its training flags are restored afterwards.

    Raises:
        ValueError: unknown method or option, a method that does not apply to the
            model's family, a wrong image shape, or a bad target.
    """
    m = _method(method)
    _check_applies(m, model)
    unknown = sorted(set(options) - set(m.options))
    if unknown:
        raise ValueError(f"method {m.name!r} has no option {unknown[0]!r}; its options: "
                         f"{', '.join(m.options + ['channel_reduction']) or 'none'}")
    _check_input(model, x)
    if channel_reduction not in ("sum", "abs_sum"):
        raise ValueError(f"channel_reduction must be 'sum' or 'abs_sum', got {channel_reduction!r}")
    with hooks.evaluating(model):
        t = _targets(model, x, target)
        maps = m.fn(model, x.detach().clone().requires_grad_(True), t, **options)
    if maps.ndim == 4:
        maps = _reduce_channels(maps, channel_reduction)
    return maps.detach().float()
