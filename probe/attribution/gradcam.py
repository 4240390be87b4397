"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM", arXiv:1610.02391) for every zoo family.

The map is computed on the last spatial grid: the output of the layer given by the
family registry (:func:`probe.zoo.family_of` ``(model).gradcam_layer(model)``: the
last stage of the CNN (``net.stages.<last>``; ``net.layer4`` of a timm ResNet), the
last block of a token model: Mixer, ResMLP, gMLP, ViT/DeiT, ...), every prefix token (class,
distillation, register: ``net.num_prefix_tokens``) dropped and the tokens ``[B, T, C]``
reshaped to the patch grid (``patch_embed``/``stem.grid_size``) automatically, then
bilinearly upsampled to the input. For ViT (class-token pooling) the last block's
output patch tokens never reach the head, so its ``norm1`` output (the tokens the
last attention reads) is used. Models outside the registry fall back to the last
child of ``net.blocks``, ``net.stages``, ``net.layer4``, ``net.features``. Grad-CAM does
not apply to a family registered with ``gradcam=False`` (the pure MLP: no layer keeps the
spatial grid); :func:`grad_cam_layer` and :func:`probe.attribution.attribute` say so.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn

from .. import hooks
from ..zoo import family_of, last_child
from .api import _forward_logits, _prefix_tokens, _token_grid, _upsample, register_method

__all__ = ["grad_cam_layer"]

_CAM_FALLBACKS = ("net.blocks", "net.stages", "net.layer4", "net.features", "blocks", "stages")


def grad_cam_layer(model: nn.Module) -> str:
    """Path of the module whose output Grad-CAM uses.

    The family's ``gradcam_layer`` resolver (:class:`probe.zoo.Family`): the last
    stage (cnn) or last block (token models); for ViT the last block's ``norm1``
    (see the module docstring). Other models: the last child of the first of
    ``net.blocks``, ``net.stages``, ``net.layer4``, ``net.features``.
    """
    family = family_of(model)
    if family is not None and not family.gradcam:
        raise ValueError(f"Grad-CAM does not apply to {family.name!r}: no layer of it keeps the "
                         f"spatial grid (registered with gradcam=False); pick another method")
    if family is not None:
        layer = family.gradcam_layer(model)
        if layer is not None:
            return layer
    for path in _CAM_FALLBACKS:
        layer = last_child(path)(model)
        if layer is not None:
            return layer
    raise ValueError(f"no Grad-CAM layer known for {getattr(model, 'name', type(model).__name__)!r}; "
                     f"pass layer='<module path>' (a module whose output is [B, C, h, w] or [B, T, C])")


def _to_grid(model: nn.Module, a: torch.Tensor, prefix: int) -> torch.Tensor:
    """Activations ``[B, C, h, w]`` or tokens ``[B, T, C]`` -> ``[B, C, h, w]`` (prefix dropped)."""
    if a.ndim == 4:
        return a
    if a.ndim == 3:
        a = a[:, prefix:]
        h, w = _token_grid(model, a.shape[1])
        return a.reshape(a.shape[0], h, w, a.shape[2]).permute(0, 3, 1, 2)
    raise ValueError(f"Grad-CAM needs a layer output of shape [B, C, h, w] or [B, T, C], "
                     f"got {tuple(a.shape)}; pass layer= such a module")


@register_method("grad_cam", signed=False, description="gradient-weighted class activation "
                 "map of the last block/stage (Selvaraju et al. 2017)", requires="gradcam")
def _grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
              layer: Optional[str] = None, prefix_tokens: Optional[int] = None,
              relu: bool = True) -> torch.Tensor:
    """``layer``: module path (default :func:`grad_cam_layer`); ``prefix_tokens``: leading
    non-spatial tokens of a token layer (default ``net.num_prefix_tokens``); ``relu``:
    keep only the positive evidence (the paper's ReLU)."""
    path = layer if layer is not None else grad_cam_layer(model)
    module = hooks._resolve(model, [path])[path]
    prefix = _prefix_tokens(model) if prefix_tokens is None else int(prefix_tokens)
    store: Dict[str, torch.Tensor] = {}

    def keep(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        store["activation"] = out

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = _forward_logits(model, x.detach().clone().requires_grad_(True))
    finally:
        handle.remove()
    act = store.get("activation")
    if not isinstance(act, torch.Tensor):
        raise ValueError(f"layer {path!r} did not produce a tensor in the forward pass; "
                         f"pass layer= a module that returns one tensor")
    score = logits.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(score, act)
    act, grad = _to_grid(model, act.detach(), prefix), _to_grid(model, grad, prefix)
    weights = grad.mean(dim=(2, 3), keepdim=True)          # [B, C, 1, 1]
    cam = (weights * act).sum(1)                            # [B, h, w]
    if relu:
        cam = cam.clamp(min=0)
    return _upsample(cam, tuple(x.shape[-2:]))
