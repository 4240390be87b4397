"""Attention rollout and gradient-weighted rollout for ViT/DeiT-style models.

- ``attention_rollout``: Abnar & Zuidema 2020, "Quantifying Attention Flow in
  Transformers" (arXiv:2005.00928): heads fused (mean/max/min), ``0.5 I + 0.5 A``,
  rows renormalised, multiplied over layers; the row of the token the classifier
  reads (class token; class and distillation tokens for distilled DeiT; the mean of
  the patch-token rows for average-pooled models) over the patch tokens, every
  prefix (class, distillation, register) token dropped. Class-agnostic.
- ``grad_rollout``: Chefer et al. 2021, "Generic Attention-model Explainability
  for Interpreting Bi-Modal and Encoder-Decoder Transformers" (arXiv:2103.15679):
  ``A_bar = fuse_heads((dy_t/dA * A)^+)``, ``R <- R + A_bar R`` from ``R = I``;
  class-specific.

Both apply to the models whose zoo family is registered with ``rollout=True``
(:func:`probe.zoo.family_of`; timm ViT/DeiT models resolve to the ``vit`` family).
The attention probabilities come from :func:`probe.hooks.capture_attention`, which
runs timm's fused attention on its unfused path for the duration of the pass; the
gradients w.r.t. them come from backward pre-hooks on the same ``attn_drop`` modules.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import torch
import torch.nn as nn

from .. import hooks
from .api import _forward_logits, _prefix_tokens, _token_grid, _upsample, register_method

__all__: List[str] = []

_HEAD_FUSIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda a: a.mean(1),
    "max": lambda a: a.amax(1),
    "min": lambda a: a.amin(1),
}


def _fuse_heads(a: torch.Tensor, how: str) -> torch.Tensor:
    """``[B, heads, T, T]`` -> ``[B, T, T]``."""
    if how not in _HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(_HEAD_FUSIONS)}, got {how!r}")
    return _HEAD_FUSIONS[how](a)


def _readout_rows(model: nn.Module, prefix: int) -> slice:
    """The rows (tokens) the classifier reads, as a slice of the token sequence.

    timm ``global_pool="token"``: the class token (row 0) and, for distilled DeiT,
    the distillation token (row 1), whose two heads are averaged. Otherwise (average
    pooling, as in the ``*_gap`` register models, or no class token) the patch
    tokens, after all ``prefix`` class/register tokens.
    """
    net = getattr(model, "net", model)
    if prefix > 0 and getattr(net, "global_pool", "token") == "token" \
            and getattr(net, "cls_token", None) is not None:
        return slice(0, 2 if getattr(net, "dist_token", None) is not None else 1)
    return slice(prefix, None)


def _class_row_map(model: nn.Module, relevance: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Mean of the rows the classifier reads (:func:`_readout_rows`) over the patch tokens
    (every prefix token dropped) -> ``[B, H, W]``."""
    prefix = _prefix_tokens(model)
    row = relevance[:, _readout_rows(model, prefix)].mean(1)
    row = row[:, prefix:]
    h, w = _token_grid(model, row.shape[1])
    return _upsample(row.reshape(-1, h, w), size)


def _check_ran(names: Sequence[str], recorded: Dict[str, torch.Tensor], *,
               what: str = "did not run in the forward pass") -> None:
    missing = [n for n in names if n not in recorded]
    if missing:
        raise ValueError(f"attention module {missing[0]!r} {what}; rollouts need every "
                         f"attention module on the path to the logits")


@register_method("attention_rollout", signed=False, requires="rollout",
                 description="attention rollout with residual 0.5 I + 0.5 A (Abnar & Zuidema 2020)")
def _attention_rollout(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                       head_fusion: str = "mean") -> torch.Tensor:
    """Class-agnostic: ``target`` is not used."""
    _fuse_heads(torch.zeros(1, 1, 1, 1), head_fusion)
    names = list(hooks.attention_modules(model))
    with hooks.capture_attention(model) as probs, torch.no_grad():
        _forward_logits(model, x)
    _check_ran(names, probs)
    rollout = None
    for name in names:
        a = _fuse_heads(probs[name].float(), head_fusion)           # [B, T, T]
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = 0.5 * eye + 0.5 * a
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return _class_row_map(model, rollout, tuple(x.shape[-2:]))


@contextmanager
def _attention_gradients(model: nn.Module, names: Sequence[str]) -> Iterator[Dict[str, torch.Tensor]]:
    """Record d(score)/d(attention probabilities) ``[B, heads, T, T]`` in the backward pass.

    A backward pre-hook on each named module's ``attn_drop`` (whose output is the
    probabilities :func:`probe.hooks.capture_attention` records) keeps the gradient
    w.r.t. that output; the hooks are removed in ``finally``.
    """
    grads: Dict[str, torch.Tensor] = {}
    handles: List[torch.utils.hooks.RemovableHandle] = []
    try:
        for name, module in hooks._resolve(model, list(names)).items():
            def keep(mod: nn.Module, grad_output: tuple, name: str = name) -> None:
                grads[name] = grad_output[0]
            handles.append(module.attn_drop.register_full_backward_pre_hook(keep))
        yield grads
    finally:
        for h in handles:
            h.remove()


@register_method("grad_rollout", signed=False, requires="rollout",
                 description="gradient-weighted attention rollout, R <- R + mean_h((dA * A)^+) R "
                             "(Chefer et al. 2021)")
def _grad_rollout(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                  head_fusion: str = "mean") -> torch.Tensor:
    _fuse_heads(torch.zeros(1, 1, 1, 1), head_fusion)
    names = list(hooks.attention_modules(model))
    x_in = x.detach().clone().requires_grad_(True)
    with hooks.capture_attention(model) as probs, _attention_gradients(model, names) as grads, \
            torch.enable_grad():
        logits = _forward_logits(model, x_in)
        _check_ran(names, probs)
        score = logits.gather(1, target[:, None]).sum()
        torch.autograd.grad(score, x_in)
    _check_ran(names, grads, what="received no gradient from the target logit")
    relevance = None
    for name in names:
        cam = _fuse_heads((grads[name] * probs[name]).clamp(min=0).float(), head_fusion)  # [B, T, T]
        if relevance is None:
            relevance = torch.eye(cam.shape[-1], dtype=cam.dtype, device=cam.device).expand_as(cam)
        relevance = relevance + cam @ relevance
    return _class_row_map(model, relevance, tuple(x.shape[-2:]))
