"""Token-mixing extraction: the type-keyed extractor registry and one extractor per kind.

Each token-mixing layer is summarised as a matrix ``[B, H, T_out, T_in]``
(row = output token, column = input token) on the spatial token grid:

- ``token-mlp``      MLP-Mixer (Tolstikhin et al. 2021, arXiv:2105.01601): the
  channel-averaged Jacobian of the token-mixing MLP at the input,
  ``(1/C) sum_c d y[t, c] / d z[s, c]`` (input dependent, one per image). The
  averaging hides how much single channels vary: ``per_channel=True`` keeps every
  channel's Jacobian in ``MixingMap.channels``.
- ``token-linear``   ResMLP (Touvron et al. 2021, arXiv:2105.03404): the
  ``linear_tokens`` weight (static, ``B = 1``).
- ``spatial-gating`` gMLP (Liu et al. 2021, arXiv:2105.08050): the spatial gating
  unit's token projection ``proj`` (static, ``B = 1``), applied to ``norm(v)``. With
  ``gated=True``, the gate is included: the unit computes ``y = u * (P norm(v) + b)``
  per channel, so its Jacobian with respect to the mixed input ``norm(v)`` is
  ``d y[t, c] / d norm(v)[s, c'] = delta_cc' u[t, c] P[t, s]`` (block diagonal over
  channels, exact); the map is its channel mean ``diag(mean_c u[t, c]) P`` per image.
- ``attention``      ViT / DeiT (Dosovitskiy et al. 2021, arXiv:2010.11929): softmax
  probabilities per head ``[B, heads, T, T]``, prefix (class/register) tokens included.
- ``fourier``        FNet (Lee-Thorp et al. 2021, arXiv:2105.03824): ``Re(F_2d)``; the published
  form over tokens and channels (``fnet2d``, :mod:`probe.models.fnet2d`), ``Re(F_s X F_h^T) =
  Re F_s X Re F_h^T - Im F_s X Im F_h^T``, is not one token matrix: its two token matrices
  ``Re F_s`` and ``Im F_s`` as two heads ``[1, 2, T, T]``.
- ``conv``           ResNet stages (He et al. 2016): the effective Jacobian mixing of
  the stage on its spatial grid (``T_out`` may be smaller than ``T_in`` with stride).
- ``dense``          the pure MLP on flattened pixels (:mod:`probe.models.mlp`): the pixel
  view ``J^T J / hidden`` of its first layer's Jacobian, per image, on the pixel grid.

The stack of feed-forward layers (``ffn``, :mod:`probe.models.ffn`) has a token MLP like
Mixer's (``token-mlp``); External Attention (``extattn``) and RepMLP (``repmlp``) describe
their own mixing (below).

Modules that describe their own token mixing (the Synthesizer ladder,
:mod:`probe.models.synth_ladder`; External Attention, RepMLP, the pure MLP's pixel layer)
are read through that description: a module with a ``token_mixing(x) -> [B or 1, H, T, T]``
method and a ``mixing_kind`` of ``"token-linear"`` (a fixed map, read from the parameters,
``B = 1``; per head where the module has heads) or ``"attention"`` / ``"dense"`` (computed
from the module's captured input ``x``). Optional: ``mixing_bias()`` (the ``[T]`` bias the
map adds) and ``mixing_native(x)`` (a dict added to ``MixingMap.native``).

Mixer's token MLP as "input-independent attention" follows the Synthesizer view
(Tay et al. 2021, arXiv:2005.00743).

Layers are found by a registry keyed by module TYPE (:func:`register_extractor`),
not by model name, so the same code covers the zoo and timm ImageNet models.
:func:`effective` gives the effective (Jacobian) view of every kind (see
:mod:`probe.mixing.jacobian`); for the static kinds it equals the mixing matrix
(times the gate for gMLP).
"""
from __future__ import annotations

import math
from contextlib import ExitStack
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.models.mlp_mixer import MixerBlock, ResBlock, SpatialGatingUnit
from timm.models.resnet import BasicBlock as TimmBasicBlock, Bottleneck

from .. import hooks
from ..models.cnn import BasicBlock
from ..models.ffn import FeedForwardBlock
from ..models.fnet import FNetBlock, FourierMixing, fourier_mixing_matrix
from ..models.fnet2d import FNet2dBlock
from .grid import (REGISTRY, Extractor, LayerInfo, TokenContext, check_input, find_layers,
                   find_or_raise)
from .jacobian import (channel_groups, channel_jacobian, conv_effective, group_mean,
                       mlp_channel_jacobians, mlp_effective, uniform_shift_jacobian)
from .maps import KINDS, STATIC_KINDS, MixingMap

__all__ = ["register_extractor", "layers", "extract", "effective", "CONV_BLOCK_TYPES",
           "describes_mixing"]

Tensor = torch.Tensor
Match = Union[type, Tuple[type, ...], Callable[[nn.Module], bool]]
LayerRef = Union[str, int]

# residual blocks whose nn.Sequential is one conv stage
CONV_BLOCK_TYPES = (BasicBlock, TimmBasicBlock, Bottleneck)


def register_extractor(match: Match, *, kind: str, sublayer: str = "", block_up: int = 0
                       ) -> Callable[[Callable], Callable]:
    """Decorator registering ``compute(ctx, info, module, record) -> MixingMap`` for a module type.

    Args:
        match: module type(s), or a predicate ``module -> bool``.
        kind: one of :data:`KINDS`.
        sublayer: path of the token-mixing module relative to the matched module
            (``"mlp_tokens"`` for a ``MixerBlock``; ``""`` for the module itself).
        block_up: how many levels above the matched module its residual block sits.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    pred = (lambda m, t=match: isinstance(m, t)) if isinstance(match, (type, tuple)) else match

    def wrap(fn: Callable) -> Callable:
        REGISTRY.append(Extractor(kind, pred, sublayer, block_up, fn))
        return fn

    return wrap


def layers(model: nn.Module) -> List[LayerInfo]:
    """The token-mixing layers of ``model`` by depth, without running it."""
    return [info for info, _ in find_layers(model)]


def _rows_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    return lambda v: module(v[None])[0]


# ----------------------------------------------------------------------------- extractors


@register_extractor(FeedForwardBlock, kind="token-mlp", sublayer="mlp_tokens")
@register_extractor(MixerBlock, kind="token-mlp", sublayer="mlp_tokens")
def _token_mlp(ctx: TokenContext, info: LayerInfo, module: nn.Module, rec: hooks.Record,
               per_channel: object = False) -> MixingMap:
    z = rec.input                                           # [B, C, T]
    b, c, t = z.shape
    grid, prefix = ctx.grid(t)
    matrix = mlp_effective(module, z)
    if matrix is None:
        matrix = channel_jacobian(_rows_fn(module), z.reshape(b * c, t)).reshape(b, c, t, t).mean(1)
    channels = None
    if per_channel:
        channels = mlp_channel_jacobians(module, z, groups=channel_groups(c, per_channel)).detach()
    native = None
    if hasattr(module, "fc1") and hasattr(module, "fc2") and prefix == 0:
        w1, w2 = module.fc1.weight.detach(), module.fc2.weight.detach()
        native = {"fc1": w1.reshape(-1, *grid).clone(), "fc2": w2.t().reshape(-1, *grid).clone()}
    return MixingMap(info.layer, info.kind, matrix[:, None].detach(), grid, prefix, native,
                     info.depth, block=info.block, channels=channels)


def _linear_map(ctx: TokenContext, info: LayerInfo, linear: nn.Linear, extra: dict) -> MixingMap:
    w = linear.weight.detach()
    grid, prefix = ctx.grid(w.shape[1])
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    native = {"weight": w.clone(), "bias": bias, **extra}
    if prefix == 0:
        native["templates"] = w.reshape(-1, *grid).clone()
    return MixingMap(info.layer, info.kind, w.clone()[None, None], grid, prefix, native,
                     info.depth, bias=bias, block=info.block)


@register_extractor(ResBlock, kind="token-linear", sublayer="linear_tokens")
def _token_linear(ctx: TokenContext, info: LayerInfo, module: nn.Module, rec: hooks.Record
                  ) -> MixingMap:
    return _linear_map(ctx, info, module, {})


@register_extractor(SpatialGatingUnit, kind="spatial-gating", block_up=2)
def _spatial_gating(ctx: TokenContext, info: LayerInfo, module: nn.Module, rec: hooks.Record,
                    gated: bool = False, per_channel: object = False) -> MixingMap:
    applies = {"applies_to": "norm(v), v = second half of the channels"}
    if not gated:
        return _linear_map(ctx, info, module.proj, applies)
    u, _ = rec.input.chunk(2, dim=-1)                        # gate [B, T, D]
    p = module.proj.weight.detach()                          # [T, T]
    grid, prefix = ctx.grid(p.shape[1])
    matrix = u.mean(-1)[:, :, None] * p                      # diag(mean_c u) P per image
    channels = None
    if per_channel:
        gate = group_mean(u, channel_groups(u.shape[-1], per_channel), -1)   # [B, T, G]
        channels = (gate.transpose(1, 2)[..., None] * p).detach()           # [B, G, T, T]
    bias = module.proj.bias.detach().clone() if module.proj.bias is not None else None
    native = {"projection": p.clone(), "bias": bias, **applies,
              "gated": "y = u * (P norm(v) + b): matrix = diag(mean_c u) P, the channel mean of "
                       "d y / d norm(v); the gated bias u * b is not in apply()"}
    return MixingMap(info.layer, info.kind, matrix[:, None].detach(), grid, prefix, native,
                     info.depth, block=info.block, channels=channels, gated=True)


@register_extractor(hooks.is_attention, kind="attention", block_up=1)
def _attention(ctx: TokenContext, info: LayerInfo, module: nn.Module, rec: hooks.Record,
               probs: Optional[Tensor] = None) -> MixingMap:
    if probs is None:
        raise ValueError(f"no attention probabilities were captured for {info.layer}")
    grid, prefix = ctx.grid(probs.shape[-1])
    native = {"num_heads": int(module.num_heads), "scale": float(module.scale)}
    return MixingMap(info.layer, info.kind, probs, grid, prefix, native, info.depth,
                     block=info.block)


def describes_mixing(kind: str) -> Callable[[nn.Module], bool]:
    """Predicate: a module with ``token_mixing(x)`` and ``mixing_kind == kind`` (module docstring)."""
    return lambda m: callable(getattr(m, "token_mixing", None)) and \
        getattr(m, "mixing_kind", None) == kind


def _described_map(ctx: TokenContext, info: LayerInfo, module: nn.Module, matrix: Tensor,
                   x: Optional[Tensor] = None) -> MixingMap:
    matrix = matrix.detach().float().clone()
    grid, prefix = ctx.grid(matrix.shape[-1])
    if callable(getattr(module, "mixing_bias", None)):
        bias = module.mixing_bias()
    else:
        bias = getattr(module, "bias", None)
    bias = bias.detach().clone() if isinstance(bias, Tensor) and bias.shape == matrix.shape[-2:-1] \
        else None
    native = {"module": type(module).__name__, "num_heads": int(matrix.shape[1])}
    if x is not None and callable(getattr(module, "mixing_native", None)):
        native.update({k: v.detach().float().clone() if isinstance(v, Tensor) else v
                       for k, v in module.mixing_native(x).items()})
    if matrix.shape[0] == 1 and prefix == 0:
        native["templates"] = matrix[0].reshape(matrix.shape[1], -1, *grid).clone()
    return MixingMap(info.layer, info.kind, matrix, grid, prefix, native, info.depth, bias=bias,
                     block=info.block)


@register_extractor(describes_mixing("token-linear"), kind="token-linear", block_up=1)
def _described_fixed(ctx: TokenContext, info: LayerInfo, module: nn.Module, rec: hooks.Record
                     ) -> MixingMap:
    return _described_map(ctx, info, module, module.token_mixing(None))


@register_extractor(describes_mixing("dense"), kind="dense")
@register_extractor(describes_mixing("attention"), kind="attention", block_up=1)
def _described_input_dependent(ctx: TokenContext, info: LayerInfo, module: nn.Module,
                               rec: hooks.Record, probs: Optional[Tensor] = None) -> MixingMap:
    if rec.input is None:
        raise ValueError(f"no input was captured for {info.layer}")
    return _described_map(ctx, info, module, module.token_mixing(rec.input), rec.input)


def _dft(n: int) -> Tensor:
    """Orthonormal complex DFT matrix ``[n, n]`` (float64)."""
    k = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * torch.outer(k, k) / n) / math.sqrt(n)


@register_extractor(FNetBlock, kind="fourier", sublayer="mixing")
def _fourier(ctx: TokenContext, info: LayerInfo, module: nn.Module, rec: hooks.Record
             ) -> MixingMap:
    grid = tuple(module.grid)
    h, w = grid
    _, prefix = ctx.grid(h * w)
    native = {"dft": torch.kron(_dft(h), _dft(w))}
    return MixingMap(info.layer, info.kind, fourier_mixing_matrix(grid)[None, None], grid, prefix,
                     native, info.depth, block=info.block)


@register_extractor(FNet2dBlock, kind="fourier", sublayer="mixing")
def _fourier_tokens_and_channels(ctx: TokenContext, info: LayerInfo, module: nn.Module,
                                 rec: hooks.Record) -> MixingMap:
    grid = tuple(module.grid)
    h, w = grid
    _, prefix = ctx.grid(h * w)
    dft = torch.kron(_dft(h), _dft(w))
    channels = ctx.modules[info.block].norm1.normalized_shape[0]
    native = {"dft": dft, "channel_dft": _dft(channels),
              "heads": "head 0: Re F_s, applied to X Re F_h^T; head 1: Im F_s, applied to "
                       "-X Im F_h^T; the sublayer's output is their sum (not one token matrix)"}
    matrix = torch.stack([dft.real, dft.imag]).float()[None]          # [1, 2, T, T]
    return MixingMap(info.layer, info.kind, matrix, grid, prefix, native, info.depth,
                     block=info.block)


def _is_conv_stage(m: nn.Module) -> bool:
    return (isinstance(m, nn.Sequential) and len(m) > 0
            and all(isinstance(c, CONV_BLOCK_TYPES) for c in m))


@register_extractor(_is_conv_stage, kind="conv")
def _conv(ctx: TokenContext, info: LayerInfo, module: nn.Module, rec: hooks.Record,
          memory_budget: Optional[int] = None) -> MixingMap:
    z = rec.input
    matrix = conv_effective(module, z, memory_budget=memory_budget, layer=info.layer)
    ho, wo = rec.output.shape[-2:]
    hi, wi = z.shape[-2:]
    kernels = {n: m.weight.detach().clone() for n, m in module.named_modules()
               if isinstance(m, nn.Conv2d)}
    return MixingMap(info.layer, info.kind, matrix[:, None], (int(ho), int(wo)), 0, kernels,
                     info.depth, input_grid=None if (ho, wo) == (hi, wi) else (int(hi), int(wi)),
                     block=info.block)


# ----------------------------------------------------------------------------- extraction


def _select(found: List[Tuple[LayerInfo, Extractor]], which: Optional[Sequence[LayerRef]]
            ) -> List[Tuple[LayerInfo, Extractor]]:
    if which is None:
        return found
    out = []
    names = [info.layer for info, _ in found]
    for w in which:
        if isinstance(w, int):
            if not -len(found) <= w < len(found):
                raise ValueError(f"layer index {w} out of range; the model has {len(found)} "
                                 f"token-mixing layers")
            out.append(found[w])
        elif w in names:
            out.append(found[names.index(w)])
        else:
            raise ValueError(f"{w!r} is not a token-mixing layer; choose from {names}")
    return out


def extract(model: nn.Module, x: Tensor, *, layers: Optional[Sequence[LayerRef]] = None,
            memory_budget: Optional[int] = None, gated: bool = False,
            per_channel: Union[bool, int] = False) -> List[MixingMap]:
    """One :class:`MixingMap` per token-mixing layer of ``model``, by depth.

    Runs one forward pass (no gradient; eval mode for the pass, restored after)
    with hooks on the token-mixing modules; attention probabilities are taken
    from the unfused attention path (see :func:`probe.hooks.capture_attention`).

    Args:
        model: a :class:`probe.zoo.ProbeModel` or any module holding registered
            token-mixing layers.
        x: ``[B, C, H, W]`` images (in ``[0, 1]`` for a ProbeModel).
        layers: restrict to these layer paths or depth indices.
        memory_budget: bytes a conv stage's Jacobian may use (default
            :data:`probe.mixing.jacobian.DEFAULT_MEMORY_BUDGET`, 2 GiB).
        gated: spatial-gating (gMLP) maps include the gate: per image
            ``diag(mean_c u) P``, the channel-mean Jacobian of ``u * (P norm(v) + b)``
            with respect to ``norm(v)`` (input dependent; ``MixingMap.gated``). Default:
            the static projection ``P``.
        per_channel: ``True`` (every channel) or ``G`` (groups of ``C / G`` consecutive
            channels): token-mlp maps, and gated spatial-gating maps, also hold the
            per-channel (group) token Jacobians in ``MixingMap.channels``
            ``[B, G, T, T]`` (``B * G * T^2`` floats per layer), whose mean over ``G`` is
            ``matrix``; see ``input_dependence(m, per_channel=True)``. Other kinds are
            unchanged (attention varies per head; static kinds are one matrix for
            every channel).

    Returns:
        ``list[MixingMap]``; ``matrix`` is ``[B, H, T_out, T_in]`` (``B = 1`` for
        static maps); ``image_size`` is ``(H, W)`` of ``x``.

    Raises:
        ValueError: wrong input shape, no supported token-mixing layer, or a conv stage
            whose Jacobian would need more than ``memory_budget`` (the message says how much).
    """
    check_input(model, x)
    found = _select(find_or_raise(model), layers)
    ctx = TokenContext(model)
    attn = [info.layer for info, ex in found
            if ex.kind == "attention" and hooks.is_attention(ctx.modules[info.layer])]
    inputs = [info.layer for info, ex in found
              if (ex.kind not in STATIC_KINDS and info.layer not in attn)
              or (gated and ex.kind == "spatial-gating")]
    with hooks.evaluating(model), torch.no_grad():
        recs: Dict[str, hooks.Record] = {}
        probs: Dict[str, Tensor] = {}
        if inputs or attn:
            with ExitStack() as stack:
                if inputs:
                    recs = stack.enter_context(hooks.capture(model, inputs))
                if attn:
                    probs = stack.enter_context(hooks.capture_attention(model, attn))
                model(x)
        maps = []
        for info, ex in found:
            module = ctx.modules[info.layer]
            rec = recs.get(info.layer, hooks.Record())
            if ex.kind == "attention":
                maps.append(ex.compute(ctx, info, module, rec, probs.get(info.layer)))
            elif ex.kind == "conv":
                maps.append(ex.compute(ctx, info, module, rec, memory_budget))
            elif ex.kind == "token-mlp" and per_channel:
                maps.append(ex.compute(ctx, info, module, rec, per_channel=per_channel))
            elif ex.kind == "spatial-gating" and gated:
                maps.append(ex.compute(ctx, info, module, rec, gated=True, per_channel=per_channel))
            else:
                maps.append(ex.compute(ctx, info, module, rec))
    size = (int(x.shape[-2]), int(x.shape[-1])) if x.ndim == 4 else None
    for m in maps:
        if m.image_size is None:
            m.image_size = size
    return maps


def effective(model: nn.Module, x: Tensor, layer: LayerRef, *,
              memory_budget: Optional[int] = None) -> Tensor:
    """Effective (Jacobian) mixing of one layer at ``x``, for every kind.

    ``E[b, t, s] = (1 / C_out) sum_{c, c'} d y_b[t, c] / d z_b[s, c']`` where
    ``z`` is the token-mixing module's token input and ``y`` its output. For the
    channel-wise kinds this is the channel-averaged Jacobian, computed with
    ``vmap(jacrev)`` over channel rows; attention (and the other modules acting on
    ``[B, T, C]``: External Attention, the token-and-channel Fourier mixing of ``fnet2d``,
    whose view is ``Re F_s / sqrt(C)``) uses ``vmap(jvp)`` over input tokens; conv stages a
    coloured batched VJP; the pure MLP's ``dense`` map is already its Jacobian's pixel view
    and is returned as it is.

    Args:
        model: as for :func:`extract`.
        x: ``[B, C, H, W]``.
        layer: a layer path (``"net.blocks.0.mlp_tokens"``) or depth index.
        memory_budget: bytes a conv stage's Jacobian may use (as for :func:`extract`).

    Returns:
        ``[B, 1, T_out, T_in]``.
    """
    check_input(model, x)
    ((info, ex),) = _select(find_or_raise(model), [layer])
    module = dict(model.named_modules())[info.layer]
    with hooks.evaluating(model), torch.no_grad():
        with hooks.capture(model, [info.layer]) as recs:
            model(x)
    z = recs[info.layer].input
    described = callable(getattr(module, "token_mixing", None))   # acts on [B, T, C]
    if ex.kind in ("token-mlp", "token-linear") and not described:   # on [.., T], z [B, C, T]
        b, c, t = z.shape
        jac = channel_jacobian(_rows_fn(module), z.reshape(b * c, t))
        out = jac.reshape(b, c, t, t).mean(1)
    elif ex.kind == "dense":                               # the map is the Jacobian's view
        out = module.token_mixing(z)[:, 0]
    elif ex.kind == "fourier" and isinstance(module, FourierMixing):   # z [B, T, C]
        b, t, c = z.shape
        rows = z.transpose(1, 2).reshape(b * c, t)
        jac = channel_jacobian(lambda v: module(v[None, :, None])[0, :, 0], rows)
        out = jac.reshape(b, c, t, t).mean(1)
    elif ex.kind == "spatial-gating":                      # z [B, T, 2D]: u * proj(norm(v))
        u, v = z.chunk(2, dim=-1)
        v = module.norm(v)
        b, t, c = u.shape
        rows_v = v.transpose(1, 2).reshape(b * c, t)
        rows_u = u.transpose(1, 2).reshape(b * c, t)
        jac = channel_jacobian(lambda vv, uu: uu * module.proj(vv), rows_v, rows_u)
        out = jac.reshape(b, c, t, t).mean(1)
    elif ex.kind == "conv":
        out = conv_effective(module, z, memory_budget=memory_budget, layer=info.layer)
    else:
        with hooks.evaluating(model), hooks.unfused_attention(model):
            out = torch.stack([uniform_shift_jacobian(_rows_fn(module), zb) for zb in z])
    return out[:, None].detach()
