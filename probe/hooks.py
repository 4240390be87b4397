"""Context-managed capture of module inputs, outputs and attention probabilities.

Every hook is registered inside ``try`` and removed in ``finally``, so no hook
survives a ``with`` block, also when the forward pass raises (the pattern of
captum's ``_forward_layer_eval``). Attention probabilities of timm
``Attention`` modules are captured by switching the module to its unfused path
(``fused_attn = False``) for the duration of the block only and hooking its
``attn_drop`` (which receives the softmax probabilities); the flag is restored
in ``finally``. Captured tensors are detached.

Example::

    with hooks.capture(model, ["net.blocks.0.mlp_tokens"]) as cap:
        model(x)
    z = cap["net.blocks.0.mlp_tokens"].input      # [B, C, T]

    with hooks.capture_attention(model) as probs:
        model(x)
    probs["net.blocks.0.attn"]                    # [B, heads, T, T]
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn

__all__ = ["Record", "capture", "capture_attention", "attention_modules", "evaluating",
           "is_attention", "unfused_attention"]


@dataclass
class Record:
    """What one module saw in the last forward pass inside :func:`capture`.

    Attributes:
        input: the first positional input (detached), e.g. ``[B, T, C]``.
        args: all positional inputs (detached where tensors).
        kwargs: keyword inputs (e.g. ``attn_mask``).
        output: the output (detached), or ``None`` before the module ran.
        calls: how many times the module ran inside the block (the last call is kept).
    """

    input: Optional[torch.Tensor] = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    output: Optional[torch.Tensor] = None
    calls: int = 0


def _detach(v):
    if isinstance(v, torch.Tensor):
        return v.detach()
    if isinstance(v, (tuple, list)):
        return type(v)(_detach(e) for e in v)
    return v


def _resolve(model: nn.Module, module_names: Sequence[str]) -> Dict[str, nn.Module]:
    modules = dict(model.named_modules())
    missing = [n for n in module_names if n not in modules]
    if missing:
        some = [n for n in modules if n][:6]
        raise ValueError(f"no module named {missing[0]!r} in {type(model).__name__}; use a path "
                         f"from model.named_modules(), e.g. {', '.join(map(repr, some))}")
    return {n: modules[n] for n in module_names}


@contextmanager
def capture(model: nn.Module, module_names: Sequence[str], *, inputs: bool = True,
            outputs: bool = True) -> Iterator[Dict[str, Record]]:
    """Record inputs and/or outputs of the named modules during the ``with`` block.

    Args:
        model: any module.
        module_names: paths from ``model.named_modules()``.
        inputs: record the inputs (forward pre-hook).
        outputs: record the outputs (forward hook).

    Yields:
        ``{name: Record}``, filled as the model runs.

    Raises:
        ValueError: a name is not a module of ``model``.
    """
    targets = _resolve(model, list(module_names))
    records = {n: Record() for n in targets}
    handles: List[torch.utils.hooks.RemovableHandle] = []
    try:
        for name, module in targets.items():
            rec = records[name]
            if inputs:
                def pre(mod, args, kwargs, rec=rec):
                    rec.args = _detach(tuple(args))
                    rec.kwargs = _detach(dict(kwargs))
                    rec.input = rec.args[0] if rec.args else next(iter(rec.kwargs.values()), None)
                    rec.calls += 1
                handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            if outputs:
                def post(mod, args, out, rec=rec):
                    rec.output = _detach(out)
                    if not inputs:
                        rec.calls += 1
                handles.append(module.register_forward_hook(post))
        yield records
    finally:
        for h in handles:
            h.remove()


def is_attention(module: nn.Module) -> bool:
    """True for timm ``Attention`` (the ViT/DeiT multi-head self-attention)."""
    from timm.layers import Attention
    return isinstance(module, Attention)


def attention_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """``{path: module}`` of every timm ``Attention`` in ``model``, by depth."""
    return {n: m for n, m in model.named_modules() if is_attention(m)}


@contextmanager
def capture_attention(model: nn.Module, module_names: Optional[Sequence[str]] = None
                      ) -> Iterator[Dict[str, torch.Tensor]]:
    """Record softmax attention probabilities ``[B, heads, T, T]`` of timm ``Attention``.

    Works with timm's fused attention (``F.scaled_dot_product_attention``): for
    the duration of the block each module runs its mathematically identical
    unfused path (``fused_attn = False``), and its ``attn_drop`` (which receives
    the probabilities) is hooked. ``fused_attn`` and the hooks are restored in
    ``finally``, also when the forward pass raises.

    Args:
        model: a model holding timm ``Attention`` modules.
        module_names: which ones (default: all).

    Yields:
        ``{name: probabilities}``, rows = queries (output tokens), columns = keys.
        In training mode with attention dropout the recorded tensor is after dropout.

    Raises:
        ValueError: no attention module found, or a named module is not one.
    """
    found = attention_modules(model)
    if module_names is None:
        targets = found
    else:
        targets = _resolve(model, list(module_names))
        bad = [n for n, m in targets.items() if not is_attention(m)]
        if bad:
            raise ValueError(f"{bad[0]!r} is a {type(targets[bad[0]]).__name__}, not a timm "
                             f"Attention; attention modules here: {list(found)[:4]}")
    if not targets:
        raise ValueError(f"{type(model).__name__} has no timm Attention module; attention "
                         f"probabilities exist only for ViT/DeiT-style models")
    probs: Dict[str, torch.Tensor] = {}
    saved: Dict[str, object] = {}
    handles: List[torch.utils.hooks.RemovableHandle] = []
    try:
        for name, module in targets.items():
            if not isinstance(getattr(module, "attn_drop", None), nn.Module):
                raise ValueError(f"attention module {name!r} has no attn_drop submodule to "
                                 f"hook; it is not a standard timm Attention")
            saved[name] = module.__dict__.get("fused_attn", None)
            module.fused_attn = False

            def post(mod, args, out, name=name):
                probs[name] = out.detach()
            handles.append(module.attn_drop.register_forward_hook(post))
        yield probs
    finally:
        for h in handles:
            h.remove()
        for name, value in saved.items():
            module = targets[name]
            if value is None:
                module.__dict__.pop("fused_attn", None)
            else:
                module.fused_attn = value


@contextmanager
def unfused_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Run every timm ``Attention`` in ``model`` on its unfused (explicit softmax) path.

    Needed for forward-mode AD (``torch.func.jvp``), which fused
    ``scaled_dot_product_attention`` kernels do not support. ``fused_attn`` is
    restored in ``finally``.
    """
    targets = attention_modules(model)
    saved = {n: m.__dict__.get("fused_attn", None) for n, m in targets.items()}
    try:
        for m in targets.values():
            m.fused_attn = False
        yield model
    finally:
        for n, value in saved.items():
            if value is None:
                targets[n].__dict__.pop("fused_attn", None)
            else:
                targets[n].fused_attn = value


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; restore every module's mode in ``finally``."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode
