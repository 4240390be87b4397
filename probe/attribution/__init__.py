"""Pixel attributions for every zoo family and timm model, and their evaluation.

``attribute(model, x, target, method)`` returns one map per image, ``[B, H, W]``
at the input resolution, for any zoo family (``probe.zoo.names()``) and ``timm:<arch>``
models, with the methods that apply to it (below). Methods live in the :data:`METHODS` registry (add one
with :func:`register_method`):

- :mod:`.captum_methods`: ``saliency`` (Simonyan et al. 2014), ``input_x_gradient``
  (Shrikumar et al. 2016), ``integrated_gradients`` / ``ig`` (Sundararajan et al.
  2017), ``gradient_shap`` (Lundberg & Lee 2017), ``occlusion`` (Zeiler & Fergus 2014).
- :mod:`.gradcam`: ``grad_cam`` (Selvaraju et al. 2017) on the layer of the family
  registry (:func:`grad_cam_layer`), for families registered with ``gradcam=True``
  (all but the pure ``mlp``, whose hidden units have no spatial grid) and models outside
  the registry. A method that does not apply raises a ``ValueError`` saying so; the CLI
  skips such (model, method) pairs with a note.
- :mod:`.rollout`: ``attention_rollout`` (Abnar & Zuidema 2020) and ``grad_rollout``
  (Chefer et al. 2021), for families registered with ``rollout=True`` (ViT, and
  timm ViT/DeiT models).

Channel reduction: captum methods give ``[B, C, H, W]``; the map is the sum over
channels (``channel_reduction="sum"``, default: keeps the sign of signed methods,
so an IG map still sums to the completeness total) or the sum of absolute values
(``"abs_sum"``). Saliency is already non-negative; Grad-CAM and the rollouts are
computed on the token grid and are non-negative.

Evaluation (:mod:`.metrics`): IG completeness, deletion/insertion curves (Petsiuk
et al. 2018), the cascading randomisation check (Adebayo et al. 2018) and
localisation in a ground-truth mask.

CLI (:mod:`.command`): ``python -m probe.attribution --model mixer --model vit
--method ig --method grad_cam --n 4 --out runs/`` writes a PDF grid and a metrics JSON.
"""
from . import captum_methods, gradcam, rollout  # noqa: F401  (importing them registers the methods)
from .api import (ALIASES, METHODS, Baseline, Method, Target, attribute, method_names,
                  register_method)
from .command import main, plot_grid
from .gradcam import grad_cam_layer
from .metrics import (Completeness, Localization, PerturbationCurve, RandomizationResult,
                      cascading_layers, deletion_curve, ig_completeness, insertion_curve,
                      integrated_gradients, localization, perturbation_curve, randomization_check)

__all__ = [
    "Method", "METHODS", "ALIASES", "register_method", "method_names", "attribute",
    "Target", "Baseline",
    "integrated_gradients", "ig_completeness", "Completeness", "grad_cam_layer",
    "PerturbationCurve", "deletion_curve", "insertion_curve", "perturbation_curve",
    "RandomizationResult", "randomization_check", "cascading_layers",
    "Localization", "localization", "plot_grid", "main",
]
