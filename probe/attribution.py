"""Pixel attributions for every zoo family, and their evaluation.

``attribute(model, x, target, method)`` returns one map per image, ``[B, H, W]``
at the input resolution, for any family (mixer, resmlp, gmlp, vit, fnet, cnn).
Methods live in the :data:`METHODS` registry (add one with
:func:`register_method`):

- ``saliency``: |d logit / d x| (Simonyan et al. 2014, arXiv:1312.6034), captum ``Saliency``.
- ``input_x_gradient``: x * d logit / d x (Shrikumar et al. 2016), captum ``InputXGradient``.
- ``integrated_gradients`` (alias ``ig``): Sundararajan et al. 2017, "Axiomatic
  Attribution for Deep Networks" (arXiv:1703.01365), captum ``IntegratedGradients``
  (Gauss-Legendre path); :func:`integrated_gradients` also reports the
  completeness error (sum of attributions vs ``f(x) - f(baseline)``).
- ``gradient_shap``: Lundberg & Lee 2017 (expected gradients), captum ``GradientShap``.
- ``occlusion``: Zeiler & Fergus 2014 sliding-window occlusion, captum ``Occlusion``.
- ``grad_cam``: Selvaraju et al. 2017, "Grad-CAM" (arXiv:1610.02391) on the last
  spatial grid: the last stage of the CNN, or the output tokens ``[B, T, C]`` of
  the last block of a token model, prefix (class) tokens dropped and the rest
  reshaped to the 7x7 token grid automatically; bilinearly upsampled to the input.
  For ViT (class-token pooling) the last block's output patch tokens never reach
  the head, so its ``norm1`` output (the tokens the last attention reads) is used.
- ``attention_rollout``: Abnar & Zuidema 2020, "Quantifying Attention Flow in
  Transformers" (arXiv:2005.00928): heads fused (mean/max/min), ``0.5 I + 0.5 A``,
  rows renormalised, multiplied over layers; the class token's row over the patch
  tokens. ViT only; correct with fused attention (probabilities via
  :func:`probe.hooks.capture_attention`).
- ``grad_rollout``: Chefer et al. 2021, "Generic Attention-model Explainability
  for Interpreting Bi-Modal and Encoder-Decoder Transformers" (arXiv:2103.15679):
  ``A_bar = fuse_heads((dy_t/dA * A)^+)``, ``R <- R + A_bar R`` from ``R = I``;
  class-specific. ViT only.

Channel reduction: captum methods give ``[B, C, H, W]``; the map is the sum over
channels (``channel_reduction="sum"``, default: keeps the sign of signed methods,
so an IG map still sums to the completeness total) or the sum of absolute values
(``"abs_sum"``). Saliency is already non-negative; Grad-CAM and the rollouts are
computed on the token grid and are non-negative.

Evaluation:

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

CLI: ``python -m probe.attribution --model mixer --model vit --method ig
--method grad_cam --n 4 --out runs/`` writes a PDF grid and a metrics JSON.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import math
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import hooks
from .zoo import family_of, last_child

__all__ = [
    "Method", "METHODS", "ALIASES", "register_method", "method_names", "attribute",
    "integrated_gradients", "ig_completeness", "Completeness", "grad_cam_layer",
    "PerturbationCurve", "deletion_curve", "insertion_curve", "perturbation_curve",
    "RandomizationResult", "randomization_check", "cascading_layers",
    "Localization", "localization", "plot_grid", "main",
]

Target = Union[None, int, Sequence[int], torch.Tensor]
Baseline = Union[float, str, torch.Tensor]


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Method:
    """One attribution method of the registry.

    Attributes:
        name: registry key (``"integrated_gradients"``).
        fn: ``fn(model, x, target, **options) -> Tensor`` giving ``[B, C, H, W]``
            (reduced over channels by :func:`attribute`) or ``[B, H, W]``.
        signed: whether maps take both signs.
        families: model families it applies to (``None``: all).
        description: one line for ``--help`` and tables.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    signed: bool
    families: Optional[Tuple[str, ...]]
    description: str

    @property
    def options(self) -> List[str]:
        """The keyword options ``fn`` accepts."""
        params = list(inspect.signature(self.fn).parameters.values())[3:]
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


METHODS: Dict[str, Method] = {}
ALIASES: Dict[str, str] = {"ig": "integrated_gradients"}


def register_method(name: str, *, signed: bool, description: str,
                    families: Optional[Sequence[str]] = None):
    """Decorator adding ``fn(model, x, target, *, options...)`` to :data:`METHODS`."""

    def wrap(fn):
        if name in METHODS:
            raise ValueError(f"attribution method {name!r} is registered twice")
        METHODS[name] = Method(name, fn, signed, tuple(families) if families else None, description)
        return fn

    return wrap


def method_names() -> List[str]:
    """Registered method names, then the aliases."""
    return list(METHODS) + list(ALIASES)


def _method(name: str) -> Method:
    if not isinstance(name, str) or ALIASES.get(name, name) not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}; valid: {', '.join(method_names())}")
    return METHODS[ALIASES.get(name, name)]


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


def _to_grid(model: nn.Module, a: torch.Tensor, prefix: int) -> torch.Tensor:
    """Activations ``[B, C, h, w]`` or tokens ``[B, T, C]`` -> ``[B, C, h, w]`` (prefix dropped)."""
    if a.ndim == 4:
        return a
    if a.ndim == 3:
        a = a[:, prefix:]
        h, w = _token_grid(model, a.shape[1])
        return a.reshape(a.shape[0], h, w, a.shape[2]).permute(0, 3, 1, 2)
    raise ValueError(f"Grad-CAM needs a layer output of shape [B, C, h, w] or [B, T, C], "
                     f"got {tuple(a.shape)}")


def _forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ValueError("the model must return logits of shape [B, classes]")
    return out


# ----------------------------------------------------------------------------- captum methods


@register_method("saliency", signed=False, description="|gradient| of the target logit "
                 "(Simonyan et al. 2014)")
def _saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum.attr import Saliency
    return Saliency(model).attribute(x, target=target, abs=True)


@register_method("input_x_gradient", signed=True, description="input * gradient "
                 "(Shrikumar et al. 2016)")
def _input_x_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum.attr import InputXGradient
    return InputXGradient(model).attribute(x, target=target)


def _ig_raw(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, baselines: Baseline,
            n_steps: int, integration: str, internal_batch_size: Optional[int]) -> torch.Tensor:
    from captum.attr import IntegratedGradients
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    base = _baseline(model, x, baselines)
    return IntegratedGradients(model).attribute(
        x, baselines=base, target=target, n_steps=n_steps, method=integration,
        internal_batch_size=internal_batch_size)


@register_method("integrated_gradients", signed=True, description="integrated gradients "
                 "from a baseline (Sundararajan et al. 2017)")
def _integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                          baselines: Baseline = 0.0, n_steps: int = 32,
                          integration: str = "gausslegendre",
                          internal_batch_size: Optional[int] = None) -> torch.Tensor:
    """``integration``: captum's path rule (``"gausslegendre"``, ``"riemann_trapezoid"``, ...)."""
    return _ig_raw(model, x, target, baselines=baselines, n_steps=n_steps, integration=integration,
                   internal_batch_size=internal_batch_size)


@register_method("gradient_shap", signed=True, description="expected gradients over "
                 "baselines with noise (Lundberg & Lee 2017)")
def _gradient_shap(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                   baselines: Union[None, Baseline] = None, n_samples: int = 16,
                   stdevs: float = 0.0, seed: int = 0) -> torch.Tensor:
    """``baselines``: a ``[N, C, H, W]`` distribution, one baseline value, or ``None`` for
    the black and white images. Random draws are seeded by ``seed``."""
    from captum.attr import GradientShap
    if baselines is None:
        base = torch.stack([torch.zeros_like(x[0]), torch.ones_like(x[0])])
    elif isinstance(baselines, torch.Tensor) and baselines.ndim == 4 and baselines.shape[0] != x.shape[0]:
        base = baselines.to(x)
    else:
        base = _baseline(model, x, baselines)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return GradientShap(model).attribute(x, baselines=base, target=target,
                                             n_samples=n_samples, stdevs=stdevs)


@register_method("occlusion", signed=True, description="drop in the target logit when a "
                 "sliding window is occluded (Zeiler & Fergus 2014)")
def _occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, window: int = 4,
               stride: int = 2, baselines: Baseline = 0.0,
               perturbations_per_eval: int = 64) -> torch.Tensor:
    from captum.attr import Occlusion
    c = x.shape[1]
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window}, {stride}")
    base = _baseline(model, x, baselines)
    return Occlusion(model).attribute(x, sliding_window_shapes=(c, window, window),
                                      strides=(c, stride, stride), baselines=base, target=target,
                                      perturbations_per_eval=perturbations_per_eval)


# ----------------------------------------------------------------------------- Grad-CAM


_CAM_FALLBACKS = ("net.blocks", "net.stages", "net.layer4", "net.features", "blocks", "stages")


def grad_cam_layer(model: nn.Module) -> str:
    """Path of the module whose output Grad-CAM uses.

    The last stage (cnn) or last block (token models); for ViT the last block's
    ``norm1`` (see the module docstring). Other models: the last child of the
    first of ``net.blocks``, ``net.stages``, ``net.layer4``, ``net.features``.
    """
    family = family_of(model)
    if family is not None:
        layer = family.gradcam_layer(model)
        if layer is not None:
            return layer
    for path in _CAM_FALLBACKS:
        layer = last_child(path)(model)
        if layer is not None:
            return layer
    raise ValueError(f"no Grad-CAM layer known for {getattr(model, 'name', type(model).__name__)!r}; pass layer='<module path>' "
                     f"(a module whose output is [B, C, h, w] or [B, T, C])")


@register_method("grad_cam", signed=False, description="gradient-weighted class activation "
                 "map of the last block/stage (Selvaraju et al. 2017)")
def _grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
              layer: Optional[str] = None, prefix_tokens: Optional[int] = None,
              relu: bool = True) -> torch.Tensor:
    """``layer``: module path (default :func:`grad_cam_layer`); ``prefix_tokens``: leading
    non-spatial tokens of a token layer (default ``net.num_prefix_tokens``)."""
    path = layer if layer is not None else grad_cam_layer(model)
    module = hooks._resolve(model, [path])[path]
    prefix = _prefix_tokens(model) if prefix_tokens is None else int(prefix_tokens)
    store: Dict[str, torch.Tensor] = {}

    def keep(mod, args, out):
        store["activation"] = out

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = _forward_logits(model, x.detach().clone().requires_grad_(True))
    finally:
        handle.remove()
    act = store.get("activation")
    if not isinstance(act, torch.Tensor):
        raise ValueError(f"layer {path!r} did not produce a tensor in the forward pass")
    score = logits.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(score, act)
    act, grad = _to_grid(model, act.detach(), prefix), _to_grid(model, grad, prefix)
    weights = grad.mean(dim=(2, 3), keepdim=True)          # [B, C, 1, 1]
    cam = (weights * act).sum(1)                            # [B, h, w]
    if relu:
        cam = cam.clamp(min=0)
    return _upsample(cam, tuple(x.shape[-2:]))


# ----------------------------------------------------------------------------- rollouts


_HEAD_FUSIONS = {
    "mean": lambda a: a.mean(1),
    "max": lambda a: a.amax(1),
    "min": lambda a: a.amin(1),
}


def _fuse_heads(a: torch.Tensor, how: str) -> torch.Tensor:
    if how not in _HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(_HEAD_FUSIONS)}, got {how!r}")
    return _HEAD_FUSIONS[how](a)


def _class_row_map(model: nn.Module, relevance: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Row of the class token (mean of rows if none) over the patch tokens -> ``[B, H, W]``."""
    prefix = _prefix_tokens(model)
    row = relevance[:, 0] if prefix > 0 else relevance.mean(1)
    row = row[:, prefix:]
    h, w = _token_grid(model, row.shape[1])
    return _upsample(row.reshape(-1, h, w), size)


@register_method("attention_rollout", signed=False, families=("vit",),
                 description="attention rollout with residual 0.5 I + 0.5 A (Abnar & Zuidema 2020)")
def _attention_rollout(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                       head_fusion: str = "mean") -> torch.Tensor:
    """Class-agnostic: ``target`` is not used."""
    _fuse_heads(torch.zeros(1, 1, 1, 1), head_fusion)
    names = list(hooks.attention_modules(model))
    with hooks.capture_attention(model) as probs, torch.no_grad():
        _forward_logits(model, x)
    missing = [n for n in names if n not in probs]
    if missing:
        raise ValueError(f"attention module {missing[0]!r} did not run in the forward pass")
    rollout = None
    for name in names:
        a = _fuse_heads(probs[name].float(), head_fusion)           # [B, T, T]
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = 0.5 * eye + 0.5 * a
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return _class_row_map(model, rollout, tuple(x.shape[-2:]))


@contextmanager
def _attention_with_grad(model: nn.Module) -> Iterator[Dict[str, torch.Tensor]]:
    """Like :func:`probe.hooks.capture_attention` but keeps the probabilities in the graph."""
    targets = hooks.attention_modules(model)
    probs: Dict[str, torch.Tensor] = {}
    handles = []
    with hooks.unfused_attention(model):
        try:
            for name, module in targets.items():
                if not isinstance(getattr(module, "attn_drop", None), nn.Module):
                    raise ValueError(f"attention module {name!r} has no attn_drop submodule")

                def keep(mod, args, out, name=name):
                    probs[name] = out
                handles.append(module.attn_drop.register_forward_hook(keep))
            yield probs
        finally:
            for h in handles:
                h.remove()


@register_method("grad_rollout", signed=False, families=("vit",),
                 description="gradient-weighted attention rollout, R <- R + mean_h((dA * A)^+) R "
                             "(Chefer et al. 2021)")
def _grad_rollout(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                  head_fusion: str = "mean") -> torch.Tensor:
    _fuse_heads(torch.zeros(1, 1, 1, 1), head_fusion)
    names = list(hooks.attention_modules(model))
    if not names:
        raise ValueError(f"{type(model).__name__} has no timm Attention module; grad_rollout "
                         f"needs a ViT/DeiT-style model")
    with _attention_with_grad(model) as probs, torch.enable_grad():
        logits = _forward_logits(model, x.detach().clone().requires_grad_(True))
        missing = [n for n in names if n not in probs]
        if missing:
            raise ValueError(f"attention module {missing[0]!r} did not run in the forward pass")
        attn = [probs[n] for n in names]
        score = logits.gather(1, target[:, None]).sum()
        grads = torch.autograd.grad(score, attn)
    relevance = None
    for a, g in zip(attn, grads):
        cam = _fuse_heads((g * a.detach()).clamp(min=0).float(), head_fusion)   # [B, T, T]
        if relevance is None:
            relevance = torch.eye(cam.shape[-1], dtype=cam.dtype, device=cam.device).expand_as(cam)
        relevance = relevance + cam @ relevance
    return _class_row_map(model, relevance, tuple(x.shape[-2:]))


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
    family = getattr(model, "family", None)
    if m.families is not None and family not in m.families:
        raise ValueError(f"method {m.name!r} applies only to the families {', '.join(m.families)}; "
                         f"{getattr(model, 'name', type(model).__name__)!r} is family {family!r}")
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
    b, c, h, w = x.shape
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
    flat = lambda m: (m.abs() if absolute else m).reshape(m.shape[0], -1)
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


# ----------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m probe.attribution",
                description="Attribution maps of zoo models on test images: a PDF grid (images x "
                            "models x methods, maps over the images) and deletion/insertion AUCs "
                            "beside a random pixel order (JSON).")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="zoo family (repeatable; default mixer)")
    p.add_argument("--method", action="append", metavar="NAME",
                   help=f"attribution method (repeatable; default ig); one of "
                        f"{', '.join(method_names())}")
    p.add_argument("--n", type=int, default=4, help="images in the grid (default 4)")
    p.add_argument("--n-eval", type=int, default=None,
                   help="images for the deletion/insertion metrics (default: --n)")
    p.add_argument("--steps", type=int, default=28,
                   help="steps of the deletion/insertion curves (default 28)")
    p.add_argument("--baseline", default="0.0",
                   help="value of removed pixels: a float or 'mean' (default 0.0 = black)")
    p.add_argument("--weights", default="shipped", help="shipped | random | PATH (default shipped)")
    p.add_argument("--data", default="fashion-mnist", help="dataset (default fashion-mnist)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset and random orders")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs", help="results folder (default runs/)")
    return p


def _overlay(ax, image: torch.Tensor, amap: torch.Tensor, signed: bool) -> None:
    ax.imshow(image.mean(0).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    a = amap.cpu().numpy()
    if signed:  # blue (negative) to red (positive); transparent where the map is ~0
        from matplotlib import colormaps
        lim = float(abs(a).max()) or 1.0
        rgba = colormaps["bwr"](0.5 + 0.5 * a / lim)
        rgba[..., 3] = 0.9 * abs(a) / lim
        ax.imshow(rgba)
    else:
        ax.imshow(a, cmap="inferno", vmin=0, vmax=float(a.max()) or 1.0, alpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_grid(images: torch.Tensor, maps: Dict[Tuple[str, str], torch.Tensor], *,
              row_labels: Optional[Sequence[str]] = None, path: Optional[Union[str, Path]] = None):
    """Images x (model, method) grid of maps drawn over the images.

    Args:
        images: ``[N, C, H, W]`` in ``[0, 1]`` (first column).
        maps: ``{(model, method): [N, H, W]}``, one column each, in dict order;
            signed methods in a symmetric blue-white-red scale, others in inferno.
        row_labels: one label per image (e.g. the class).
        path: write the figure there (PDF by extension).

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    from . import plots
    n = images.shape[0]
    cols = list(maps)
    fig = plots.new_figure(1.5 * (len(cols) + 1), 1.5 * n + 0.5)
    axes = fig.subplots(n, len(cols) + 1, squeeze=False)
    for r in range(n):
        axes[r][0].imshow(images[r].mean(0).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_xticks([])
        axes[r][0].set_yticks([])
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=7)
        for c, (name, meth) in enumerate(cols, start=1):
            method = METHODS.get(ALIASES.get(meth, meth))
            _overlay(axes[r][c], images[r], maps[name, meth][r], bool(method and method.signed))
            if r == 0:
                axes[r][c].set_title(f"{name}\n{meth}", fontsize=7)
    axes[0][0].set_title("image", fontsize=7)
    plots.save(fig, path)
    return fig


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import data, plots, zoo
    from .results import atomic_write_json, check_writable

    models = args.model or ["mixer"]
    methods = list(dict.fromkeys(_method(m).name for m in (args.method or ["integrated_gradients"])))
    for name in models:
        if name not in zoo.names():
            raise ValueError(f"unknown model {name!r}; valid: {', '.join(zoo.names())}")
    for opt in ("n", "steps"):
        if getattr(args, opt) <= 0:
            raise ValueError(f"--{opt} must be positive")
    if args.n_eval is not None and args.n_eval <= 0:
        raise ValueError("--n-eval must be positive")
    try:
        baseline: Baseline = float(args.baseline)
    except ValueError:
        if args.baseline != "mean":
            raise ValueError(f"--baseline must be a float or 'mean', got {args.baseline!r}") from None
        baseline = "mean"
    if args.weights not in ("shipped", "random"):
        if len(models) > 1:
            raise ValueError("--weights PATH applies to a single --model")
        if not Path(args.weights).is_file():
            raise FileNotFoundError(f"weights file {args.weights} does not exist")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for but no CUDA device is available")
    out = check_writable(Path(args.out) / args.data)
    n_eval = args.n_eval or args.n
    ds = data.load(args.data, "test", root=args.data_root, n=max(args.n, n_eval), seed=args.seed)
    x_all, y_all = data.as_tensors(ds)
    x_all = x_all.to(args.device)
    loaded = {name: zoo.load(name, weights=args.weights, device=args.device) for name in models}
    for name, model in loaded.items():
        for meth in methods:
            fam = METHODS[meth].families
            if fam is not None and model.family not in fam:
                raise ValueError(f"method {meth!r} applies only to the families {', '.join(fam)}; "
                                 f"drop --model {name} or --method {meth}")

    grid: Dict[Tuple[str, str], torch.Tensor] = {}
    written: List[Tuple[Path, dict]] = []
    for name, model in loaded.items():
        record = {"schema_version": 1, "analysis": "attribution", "model": name, "data": args.data,
                  "weights": args.weights, "n": n_eval, "seed": args.seed, "steps": args.steps,
                  "baseline": baseline, "target": "predicted class", "methods": {}}
        for meth in tqdm(methods, desc=f"attribution {name}", unit="method"):
            maps = torch.cat([attribute(model, x_all[i:i + 32], None, meth)
                              for i in range(0, len(x_all), 32)])
            grid[name, meth] = maps[:args.n]
            dele = deletion_curve(model, x_all[:n_eval], None, maps[:n_eval], steps=args.steps,
                                  baseline=baseline, seed=args.seed)
            ins = insertion_curve(model, x_all[:n_eval], None, maps[:n_eval], steps=args.steps,
                                  baseline=baseline, seed=args.seed)
            record["methods"][meth] = {"deletion": dele.summary(), "insertion": ins.summary()}
        written.append((atomic_write_json(out / name / "attribution.json", record), record))

    labels = [ds.classes[int(v)] for v in y_all[:args.n]]
    fig = plot_grid(x_all[:args.n], grid, row_labels=labels)
    pdf = plots.save(fig, out / "attribution_grid.pdf")

    print(f"\n{'model':8s} {'method':22s} {'deletion AUC':>12s} {'random':>8s} "
          f"{'insertion AUC':>13s} {'random':>8s}")
    for _, rec in written:
        for meth, s in rec["methods"].items():
            print(f"{rec['model']:8s} {meth:22s} {s['deletion']['auc']:12.4f} "
                  f"{s['deletion']['random_auc']:8.4f} {s['insertion']['auc']:13.4f} "
                  f"{s['insertion']['random_auc']:8.4f}")
    print(f"\nfigure written to {pdf}")
    for path, _ in written:
        print(f"metrics written to {path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probe.attribution``; returns the exit code (2 on bad input)."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        with warnings.catch_warnings():
            # timm/captum imports trip torch.jit deprecation notices; keep stderr to our lines
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            return _run(args)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
