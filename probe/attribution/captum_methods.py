"""Gradient and perturbation attributions through captum, registered in :data:`METHODS`.

- ``saliency``: |d logit / d x| (Simonyan et al. 2014, arXiv:1312.6034), captum ``Saliency``.
- ``input_x_gradient``: x * d logit / d x (Shrikumar et al. 2016), captum ``InputXGradient``.
- ``integrated_gradients`` (alias ``ig``): Sundararajan et al. 2017, "Axiomatic
  Attribution for Deep Networks" (arXiv:1703.01365), captum ``IntegratedGradients``
  (Gauss-Legendre path).
- ``gradient_shap``: Lundberg & Lee 2017 (expected gradients), captum ``GradientShap``.
- ``occlusion``: Zeiler & Fergus 2014 sliding-window occlusion, captum ``Occlusion``.

They return ``[B, C, H, W]``; :func:`probe.attribution.attribute` reduces the channels.
captum is imported when a method runs (its import is slow and trips torch.jit notices).
"""
from __future__ import annotations

from typing import List, Optional, Union

import torch
import torch.nn as nn

from .api import Baseline, _baseline, register_method

__all__: List[str] = []


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


@register_method("integrated_gradients", signed=True, description="integrated gradients "
                 "from a baseline (Sundararajan et al. 2017)")
def _integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                          baselines: Baseline = 0.0, n_steps: int = 32,
                          integration: str = "gausslegendre",
                          internal_batch_size: Optional[int] = None) -> torch.Tensor:
    """``integration``: captum's path rule (``"gausslegendre"``, ``"riemann_trapezoid"``, ...)."""
    from captum.attr import IntegratedGradients
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    base = _baseline(model, x, baselines)
    return IntegratedGradients(model).attribute(
        x, baselines=base, target=target, n_steps=n_steps, method=integration,
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
