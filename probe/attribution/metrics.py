"""Evaluation of attribution maps: IG completeness, deletion/insertion, randomisation, localisation.

- :func:`integrated_gradients` / :func:`ig_completeness`: the completeness axiom of
  Sundararajan et al. 2017 (arXiv:1703.01365): IG attributions sum to
  ``f(x) - f(baseline)``; the error of the path quadrature is reported.
- :func:`deletion_curve` / :func:`insertion_curve`: Petsiuk et al. 2018, "RISE"
  (arXiv:1806.07421). Pixels are removed from the image (deletion) or added to a
  baseline image (insertion) in decreasing attribution order in ``steps`` equal
  steps; the curve is the softmax probability of the target class; AUC by the
  trapezoid rule over the removed fraction in [0, 1]. Every curve comes with the
  same curve for a seeded random pixel order. Lower deletion AUC and higher
  insertion AUC are better. Removed pixels take the ``baseline`` value: ``0.0``
  (black, default), any float, or ``"mean"`` (the model's normalisation mean =
  the training set's mean intensity).
- :func:`randomization_check`: Adebayo et al. 2018, "Sanity Checks for Saliency
  Maps" (arXiv:1810.03292): cascading randomisation of layers from the top on a
  deep copy, Spearman rank correlation between original and randomised maps.
- :func:`localization`: fraction of positive (or absolute) attribution mass inside
  a ground-truth mask and pointing-game accuracy (Zhang et al. 2016, "Top-down
  Neural Attention by Excitation Backprop", arXiv:1608.00507), e.g. on the
  ``synthetic`` dataset whose class evidence sits in a known square.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .. import hooks
from .api import Baseline, Target, _baseline, _check_input, _method, _targets, attribute

__all__ = [
    "Completeness", "integrated_gradients", "ig_completeness",
    "PerturbationCurve", "perturbation_curve", "deletion_curve", "insertion_curve",
    "RandomizationResult", "randomization_check", "cascading_layers",
    "Localization", "localization",
]


# ----------------------------------------------------------------------------- IG completeness


@dataclass
class Completeness:
    """IG completeness check: attributions should sum to ``f(x) - f(baseline)``.

    Attributes (all ``[B]``):
        attribution_sum: sum of the attributions over channels and pixels.
        output_difference: target logit at ``x`` minus at the baseline.
        absolute_error: ``|attribution_sum - output_difference|``.
        relative_error: ``absolute_error / |output_difference|``.
    """

    attribution_sum: torch.Tensor
    output_difference: torch.Tensor

    @property
    def absolute_error(self) -> torch.Tensor:
        return (self.attribution_sum - self.output_difference).abs()

    @property
    def relative_error(self) -> torch.Tensor:
        return self.absolute_error / self.output_difference.abs().clamp(min=1e-12)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: Target = None, *,
                         baselines: Baseline = 0.0, n_steps: int = 32,
                         integration: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                         channel_reduction: str = "sum", return_convergence: bool = False
                         ) -> Union[torch.Tensor, Tuple[torch.Tensor, Completeness]]:
    """Integrated Gradients maps ``[B, H, W]`` (Sundararajan et al. 2017), via captum.

    Args:
        baselines: ``0.0`` (black), any float, ``"mean"`` or a tensor broadcastable to ``x``.
        n_steps: points on the straight path.
        integration: captum's quadrature (``"gausslegendre"`` default, ``"riemann_trapezoid"``...).
        internal_batch_size: most path points per forward/backward pass (bounds memory);
            ``None`` runs all ``n_steps * B`` at once.
        return_convergence: also return a :class:`Completeness` of the target logit.
    """
    if return_convergence and channel_reduction != "sum":
        raise ValueError("the completeness check needs channel_reduction='sum'")
    maps = attribute(model, x, target, "integrated_gradients", baselines=baselines,
                     n_steps=n_steps, integration=integration, internal_batch_size=internal_batch_size,
                     channel_reduction=channel_reduction)
    if not return_convergence:
        return maps
    with hooks.evaluating(model), torch.no_grad():
        t = _targets(model, x, target)
        base = _baseline(model, x, baselines)
        diff = (model(x).gather(1, t[:, None]) - model(base).gather(1, t[:, None]))[:, 0]
    return maps, Completeness(maps.sum(dim=(1, 2)).float(), diff.float())


def ig_completeness(model: nn.Module, x: torch.Tensor, target: Target = None, **options
                    ) -> Completeness:
    """The :class:`Completeness` of IG with ``options`` (see :func:`integrated_gradients`)."""
    return integrated_gradients(model, x, target, return_convergence=True, **options)[1]


# ----------------------------------------------------------------------------- deletion / insertion


@dataclass
class PerturbationCurve:
    """Deletion or insertion curves (Petsiuk et al. 2018) beside a random pixel order.

    Attributes:
        mode: ``"deletion"`` or ``"insertion"``.
        fractions: ``[S + 1]`` fraction of pixels removed (deletion) or inserted, 0..1.
        scores: ``[B, S + 1]`` softmax probability of the target class, attribution order.
        random_scores: ``[B, S + 1]`` the same for a seeded random pixel order.
        baseline: the value removed pixels take (``0.0`` = black, ``"mean"``, ...).
    """

    mode: str
    fractions: torch.Tensor
    scores: torch.Tensor
    random_scores: torch.Tensor
    baseline: Union[float, str]

    @property
    def auc(self) -> torch.Tensor:
        """``[B]`` area under the attribution-order curve (trapezoid rule)."""
        return torch.trapezoid(self.scores, self.fractions, dim=-1)

    @property
    def random_auc(self) -> torch.Tensor:
        """``[B]`` area under the random-order curve."""
        return torch.trapezoid(self.random_scores, self.fractions, dim=-1)

    def summary(self) -> dict:
        """Mean AUCs and how often the attribution order beats random (JSON-ready)."""
        better = self.auc < self.random_auc if self.mode == "deletion" else self.auc > self.random_auc
        return {"mode": self.mode, "auc": float(self.auc.mean()),
                "random_auc": float(self.random_auc.mean()),
                "beats_random_fraction": float(better.float().mean()),
                "n": int(self.scores.shape[0]), "steps": int(self.fractions.numel() - 1),
                "baseline": self.baseline if isinstance(self.baseline, (int, float, str)) else "tensor",
                "better": "lower" if self.mode == "deletion" else "higher"}


def _scores_along(model: nn.Module, x: torch.Tensor, base: torch.Tensor, target: torch.Tensor,
                  rank: torch.Tensor, counts: torch.Tensor, deletion: bool,
                  batch_size: int) -> torch.Tensor:
    """Target probabilities ``[B, S + 1]`` with the ``counts[k]`` top-ranked pixels perturbed."""
    b, _, h, w = x.shape
    steps = counts.numel()
    out = torch.empty(b, steps, device=x.device)
    pairs = torch.arange(b * steps, device=x.device)
    for chunk in pairs.split(batch_size):
        bi, ki = chunk // steps, chunk % steps
        chosen = (rank[bi] < counts[ki][:, None]).view(-1, 1, h, w)        # [n, 1, H, W]
        keep, fill = (base[bi], x[bi]) if deletion else (x[bi], base[bi])
        images = torch.where(chosen, keep, fill)
        probs = model(images).softmax(-1).gather(1, target[bi][:, None])[:, 0]
        out[bi, ki] = probs.float()
    return out


def perturbation_curve(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor, *,
                       mode: str = "deletion", steps: int = 28, baseline: Baseline = 0.0,
                       batch_size: int = 256, seed: int = 0) -> PerturbationCurve:
    """Deletion or insertion curve of ``maps`` ``[B, H, W]`` on images ``x`` ``[B, C, H, W]``.

    Pixels (all channels at once) are ranked by decreasing attribution; in
    ``steps`` equal steps that many more are set to ``baseline`` (deletion,
    starting from ``x``) or copied from ``x`` into the baseline image (insertion).
    The random-order curve uses ``torch.Generator().manual_seed(seed)``.
    ``batch_size`` bounds the images per forward pass.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    _check_input(model, x)
    b, _, h, w = x.shape
    if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != (b, h, w):
        got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be [B, H, W] = {(b, h, w)} to match the images, got {got}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    pixels = h * w
    base = _baseline(model, x, baseline)
    counts = torch.linspace(0, pixels, steps + 1, device=x.device).round().long()
    positions = torch.arange(pixels, device=x.device).expand(b, pixels)

    def ranks(order: torch.Tensor) -> torch.Tensor:
        r = torch.empty_like(order)
        return r.scatter_(1, order, positions)

    order = maps.detach().reshape(b, pixels).to(x.device).float().argsort(dim=1, descending=True,
                                                                          stable=True)
    g = torch.Generator().manual_seed(seed)
    random_order = torch.rand(b, pixels, generator=g).argsort(dim=1).to(x.device)
    with hooks.evaluating(model), torch.no_grad():
        t = _targets(model, x, target)
        deletion = mode == "deletion"
        scores = _scores_along(model, x, base, t, ranks(order), counts, deletion, batch_size)
        random_scores = _scores_along(model, x, base, t, ranks(random_order), counts, deletion,
                                      batch_size)
    fractions = (counts.float() / pixels).cpu()
    return PerturbationCurve(mode, fractions, scores.cpu(), random_scores.cpu(),
                             baseline if isinstance(baseline, (int, float, str)) else "tensor")


def deletion_curve(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor,
                   **options) -> PerturbationCurve:
    """Deletion curve (lower AUC = better attribution); see :func:`perturbation_curve`."""
    return perturbation_curve(model, x, target, maps, mode="deletion", **options)


def insertion_curve(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor,
                    **options) -> PerturbationCurve:
    """Insertion curve (higher AUC = better attribution); see :func:`perturbation_curve`."""
    return perturbation_curve(model, x, target, maps, mode="insertion", **options)


# ----------------------------------------------------------------------------- randomisation


_CONTAINERS = (nn.Sequential, nn.ModuleList)


def cascading_layers(model: nn.Module) -> List[str]:
    """Module paths with parameters, from the output back to the input (top first).

    The children of ``model.net`` (or ``model``) in reverse order, with
    ``Sequential``/``ModuleList`` containers (blocks, stages) expanded in reverse;
    the root's own parameters (e.g. ViT's ``cls_token``, ``pos_embed``) come last
    under the root's path.
    """
    root_name = "net" if isinstance(getattr(model, "net", None), nn.Module) else ""
    root = model.net if root_name else model

    def walk(module: nn.Module, prefix: str) -> List[str]:
        out = []
        for name, child in reversed(list(module.named_children())):
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, _CONTAINERS):
                out += walk(child, path)
            elif any(True for _ in child.parameters()):
                out.append(path)
        return out

    layers = walk(root, root_name)
    if any(True for _ in root.parameters(recurse=False)):
        layers.append(root_name)
    return layers


def _randomize(module: nn.Module, generator: torch.Generator, *, own_only: bool) -> None:
    """Weights (ndim >= 2) ~ N(0, 1/fan_in); other parameters ~ N(0, 0.1^2). Buffers kept."""
    params = module.parameters(recurse=not own_only)
    with torch.no_grad():
        for p in params:
            if p.ndim >= 2:
                std = 1.0 / math.sqrt(max(1, p[0].numel()))
            else:
                std = 0.1
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p) * std)


@dataclass
class RandomizationResult:
    """Cascading model-randomisation sanity check (Adebayo et al. 2018).

    Attributes:
        method: the attribution method.
        layers: ``[L]`` module paths randomised cumulatively, top (output) first.
        correlations: ``[L, B]`` Spearman rank correlation between the original
            map and the map after randomising ``layers[: i + 1]`` (NaN for a constant map).
        absolute: whether the maps' absolute values were compared.
    """

    method: str
    layers: List[str]
    correlations: torch.Tensor
    absolute: bool

    def mean(self) -> List[float]:
        """Mean correlation per layer (NaNs ignored)."""
        return [float(v) for v in torch.nanmean(self.correlations, dim=1)]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Spearman correlation of ``[B, N]`` arrays (scipy, ties averaged)."""
    from scipy.stats import spearmanr
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for u, v in zip(a.double().cpu().numpy(), b.double().cpu().numpy()):
            out.append(float(spearmanr(u, v)[0]))
    return torch.tensor(out)


def randomization_check(model: nn.Module, x: torch.Tensor, target: Target = None,
                        method: str = "saliency", *, layers: Optional[Sequence[str]] = None,
                        seed: int = 0, absolute: bool = True, **options) -> RandomizationResult:
    """Cascading randomisation from the top; the model itself is not modified (deep copy).

    Args:
        model, x, target, method, **options: as for :func:`attribute`; the target is
            fixed to the original model's (predicted) class throughout.
        layers: paths to randomise in this order (default :func:`cascading_layers`); the
            root's path (``"net"`` of a ``ProbeModel``) stands for the root's own parameters.
        seed: seed of the ``torch.Generator`` drawing the new weights.
        absolute: compare ``|map|`` (Adebayo et al. report both; absolute is the default there).
    """
    _method(method)
    _check_input(model, x)
    with hooks.evaluating(model):
        t = _targets(model, x, target)
    original = attribute(model, x, t, method, **options)
    layers = list(cascading_layers(model) if layers is None else layers)
    copy_model = copy.deepcopy(model)
    modules = hooks._resolve(copy_model, [p for p in layers if p])
    root_own = {p for p in layers if not p}
    generator = torch.Generator().manual_seed(seed)

    def flat(m: torch.Tensor) -> torch.Tensor:
        return (m.abs() if absolute else m).reshape(m.shape[0], -1)

    rows = []
    for path in layers:
        module = copy_model if path in root_own else modules[path]
        _randomize(module, generator, own_only=path in root_own or path == "net")
        maps = attribute(copy_model, x, t, method, **options)
        rows.append(_spearman(flat(original), flat(maps)))
    return RandomizationResult(_method(method).name, layers, torch.stack(rows), absolute)


# ----------------------------------------------------------------------------- localisation


@dataclass
class Localization:
    """How well maps point at a ground-truth region.

    Attributes (all ``[B]``):
        mass_inside: fraction of the (positive or absolute) attribution mass inside the mask
            (NaN if a map has no mass).
        pointing_hit: whether the map's argmax pixel lies in the mask (pointing game).
        mask_fraction: the mask's share of the image = the chance level of both.
    """

    mass_inside: torch.Tensor
    pointing_hit: torch.Tensor
    mask_fraction: torch.Tensor
    mass: str = "positive"

    def summary(self) -> dict:
        return {"mass_inside": float(torch.nanmean(self.mass_inside)),
                "pointing_accuracy": float(self.pointing_hit.float().mean()),
                "chance": float(self.mask_fraction.mean()), "mass": self.mass,
                "n": int(self.mass_inside.numel())}


def localization(maps: torch.Tensor, masks: torch.Tensor, *, mass: str = "positive"
                 ) -> Localization:
    """Attribution mass inside ``masks`` and pointing-game hits.

    Args:
        maps: ``[B, H, W]`` attributions.
        masks: ``[B, H, W]`` or ``[B, 1, H, W]`` bool ground truth (e.g. ``ds.masks``).
        mass: ``"positive"`` (negative attributions count as zero) or ``"absolute"``.
    """
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if maps.ndim != 3 or tuple(masks.shape) != tuple(maps.shape):
        raise ValueError(f"maps [B, H, W] and masks [B, (1,) H, W] must match; got "
                         f"{tuple(maps.shape)} and {tuple(masks.shape)}")
    if mass not in ("positive", "absolute"):
        raise ValueError(f"mass must be 'positive' or 'absolute', got {mass!r}")
    masks = masks.bool().to(maps.device)
    weights = maps.clamp(min=0) if mass == "positive" else maps.abs()
    total = weights.sum(dim=(1, 2))
    inside = (weights * masks).sum(dim=(1, 2))
    frac = torch.where(total > 0, inside / total.clamp(min=1e-30), torch.full_like(total, float("nan")))
    flat = maps.reshape(maps.shape[0], -1)
    hit = masks.reshape(masks.shape[0], -1).gather(1, flat.argmax(1, keepdim=True))[:, 0]
    return Localization(frac.cpu(), hit.cpu(), masks.float().mean(dim=(1, 2)).cpu(), mass)
