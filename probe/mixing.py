"""Token-mixing extraction: how every architecture mixes information across tokens.

Each token-mixing layer is summarised as a matrix ``[B, H, T_out, T_in]``
(row = output token, column = input token) on the spatial token grid:

- ``token-mlp``      MLP-Mixer (Tolstikhin et al. 2021, arXiv:2105.01601): the
  channel-averaged Jacobian of the token-mixing MLP at the input,
  ``(1/C) sum_c d y[t, c] / d z[s, c]`` (input dependent, one per image).
- ``token-linear``   ResMLP (Touvron et al. 2021, arXiv:2105.03404): the
  ``linear_tokens`` weight (static, ``B = 1``).
- ``spatial-gating`` gMLP (Liu et al. 2021, arXiv:2105.08050): the spatial gating
  unit's token projection ``proj`` (static, ``B = 1``), applied to ``norm(v)``.
- ``attention``      ViT / DeiT (Dosovitskiy et al. 2021, arXiv:2010.11929): softmax
  probabilities per head ``[B, heads, T, T]``, prefix (class/register) tokens included.
- ``fourier``        FNet (Lee-Thorp et al. 2021, arXiv:2105.03824): ``Re(F_2d)``.
- ``conv``           ResNet stages (He et al. 2016): the effective Jacobian mixing of
  the stage on its spatial grid (``T_out`` may be smaller than ``T_in`` with stride).

Mixer's token MLP as "input-independent attention" follows the Synthesizer view
(Tay et al. 2021, arXiv:2005.00743); the mean mixing distance generalises the
ViT paper's mean attention distance (Dosovitskiy et al. 2021, Fig. 7); the
effective rank is Roy & Vetterli 2007.

Layers are found by a registry keyed by module TYPE (:func:`register_extractor`),
not by model name, so the same code covers the zoo and timm ImageNet models.

The effective (Jacobian) view used by :func:`effective` for every kind is

    E[t, s] = (1 / C_out) * sum_{c, c'} d y[t, c] / d z[s, c']

i.e. the channel-mean response of output token ``t`` to a unit shift of every
channel of input token ``s``. For channel-wise token mixers (Mixer, ResMLP,
gMLP's gate, FNet) the Jacobian is block diagonal over channels and ``E`` is
exactly the channel-averaged Jacobian ``(1/C) sum_c d y[t, c] / d z[s, c]``;
for the static kinds it equals the mixing matrix (times the gate for gMLP).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from . import hooks

__all__ = [
    "KINDS", "STATIC_KINDS", "MixingMap", "LayerInfo", "register_extractor", "layers", "extract",
    "effective", "channel_jacobian", "token_positions", "mean_mixing_distance", "locality",
    "input_dependence", "translation_equivariance", "entropy", "effective_rank", "summarize",
    "run", "main",
]

KINDS = ("token-mlp", "token-linear", "spatial-gating", "attention", "fourier", "conv")
STATIC_KINDS = ("token-linear", "spatial-gating", "fourier")
Tensor = torch.Tensor


# ----------------------------------------------------------------------------- data


@dataclass
class MixingMap:
    """The token mixing of one layer.

    Attributes:
        layer: module path inside the model given to :func:`extract`;
            ``dict(model.named_modules())[layer]`` is the token-mixing module.
        kind: one of :data:`KINDS`.
        matrix: ``[B, H, T_out, T_in]``, row = output token, column = input token,
            tokens in row-major grid order after ``prefix_tokens`` leading
            non-spatial tokens. ``B = 1`` for input-independent maps, ``H = 1``
            unless attention heads.
        grid: ``(h, w)`` spatial grid of the output tokens.
        prefix_tokens: leading non-spatial tokens (class/register), included in ``matrix``.
        native: the family's own object (Mixer: ``fc1``/``fc2`` token templates
            ``[hidden, h, w]``; ResMLP/gMLP: weight and bias; attention: heads and
            scale; FNet: the complex DFT matrix; CNN: the stage's conv kernels).
        depth: index of the layer among the model's token-mixing layers.
        bias: ``[T_out]`` per-token constant the linear kinds add (``None`` if none).
        input_grid: ``(h, w)`` grid of the input tokens when it differs from
            ``grid`` (strided conv stages); ``None`` means the same grid.
        block: path of the enclosing residual block (whose output :mod:`probe.spectra` reads).
    """

    layer: str
    kind: str
    matrix: Tensor
    grid: Tuple[int, int]
    prefix_tokens: int = 0
    native: object = None
    depth: int = 0
    bias: Optional[Tensor] = None
    input_grid: Optional[Tuple[int, int]] = None
    block: str = ""

    @property
    def static(self) -> bool:
        """True when the map does not depend on the input."""
        return self.kind in STATIC_KINDS

    @property
    def heads(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def in_grid(self) -> Tuple[int, int]:
        return tuple(self.input_grid or self.grid)

    def apply(self, tokens: Tensor) -> Tensor:
        """Mix ``tokens`` with this map: ``matrix @ tokens (+ bias)``.

        Args:
            tokens: ``[B, T_in, C]`` (``H = 1``) or ``[B, H, T_in, D]`` (per head).
                ``B`` must match ``matrix``'s or the map be static (``B = 1``).

        Returns:
            ``[B, T_out, C]`` or ``[B, H, T_out, D]``. For the linear kinds
            (token-linear, spatial-gating's projection, attention given its
            probabilities, fourier) this reproduces the sublayer's token mixing.
        """
        m = self.matrix.to(tokens.dtype)
        if tokens.ndim == 3:
            if m.shape[1] != 1:
                raise ValueError(f"{self.layer} has {m.shape[1]} heads; pass tokens as "
                                 f"[B, H, T, D]")
            out = m[:, 0] @ tokens
            if self.bias is not None:
                out = out + self.bias.to(tokens.dtype)[:, None]
            return out
        if tokens.ndim == 4:
            out = m @ tokens
            if self.bias is not None:
                out = out + self.bias.to(tokens.dtype)[:, None]
            return out
        raise ValueError(f"tokens must be [B, T, C] or [B, H, T, D], got {tuple(tokens.shape)}")

    def summary(self) -> dict:
        """Metrics of this map as plain floats (JSON-ready), per head and overall."""
        return summarize([self])[0]


@dataclass(frozen=True)
class LayerInfo:
    """A token-mixing layer found in a model (see :func:`layers`)."""

    layer: str
    kind: str
    block: str
    depth: int


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Extractor:
    kind: str
    match: Callable[[nn.Module], bool]
    sublayer: str                 # path of the token-mixing module relative to the match
    block_up: int                 # levels from the matched module up to its residual block
    compute: Callable             # compute(ctx, info, module, record) -> MixingMap


_EXTRACTORS: List[_Extractor] = []


def register_extractor(match: Union[type, Tuple[type, ...], Callable[[nn.Module], bool]], *,
                       kind: str, sublayer: str = "", block_up: int = 0):
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

    def wrap(fn):
        _EXTRACTORS.append(_Extractor(kind, pred, sublayer, block_up, fn))
        return fn

    return wrap


def _supported() -> str:
    return ("timm MixerBlock (token-mlp), ResBlock (token-linear), SpatialGatingUnit "
            "(spatial-gating), Attention (attention), probe FNetBlock (fourier), and conv stages "
            "(nn.Sequential of ResNet BasicBlock/Bottleneck: conv)")


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _parent(path: str, levels: int) -> str:
    parts = path.split(".") if path else []
    return ".".join(parts[:max(0, len(parts) - levels)])


def _find(model: nn.Module) -> List[Tuple[LayerInfo, _Extractor]]:
    found: List[Tuple[LayerInfo, _Extractor]] = []
    taken: List[str] = []
    for name, module in model.named_modules():
        if any(name == t or name.startswith(t + ".") for t in taken):
            continue
        for ex in _EXTRACTORS:
            if ex.match(module):
                info = LayerInfo(_join(name, ex.sublayer), ex.kind, _parent(name, ex.block_up),
                                 len(found))
                found.append((info, ex))
                taken.append(name)
                break
    return found


def layers(model: nn.Module) -> List[LayerInfo]:
    """The token-mixing layers of ``model`` by depth, without running it."""
    return [info for info, _ in _find(model)]


class _Context:
    """What the extractors need to know about the whole model."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.patch_grid: Optional[Tuple[int, int]] = None
        for m in model.modules():
            g = getattr(m, "grid_size", None)
            if isinstance(g, (tuple, list)) and len(g) == 2:
                self.patch_grid = (int(g[0]), int(g[1]))
                break

    def grid(self, tokens: int) -> Tuple[Tuple[int, int], int]:
        """``((h, w), prefix_tokens)`` for a sequence of ``tokens`` tokens."""
        if self.patch_grid is not None:
            h, w = self.patch_grid
            if h * w <= tokens:
                return (h, w), tokens - h * w
        for prefix in range(0, 9):
            side = int(round(math.sqrt(tokens - prefix))) if tokens > prefix else 0
            if side > 0 and side * side == tokens - prefix:
                return (side, side), prefix
        raise ValueError(f"cannot place {tokens} tokens on a spatial grid; the model needs a "
                         f"patch embedding with grid_size")


# ----------------------------------------------------------------------------- Jacobians


def channel_jacobian(fn: Callable[..., Tensor], rows: Tensor, *extra: Tensor) -> Tensor:
    """Jacobians of a token function applied independently to every channel row.

    Batched with ``torch.func.vmap(jacrev(fn))``.

    Args:
        fn: ``fn(row [T_in], *extra_rows) -> [T_out]``, one channel of one image.
        rows: ``[N, T_in]`` (N = images x channels).
        extra: further per-row inputs ``[N, ...]`` held fixed (e.g. the gate).

    Returns:
        ``[N, T_out, T_in]``.
    """
    from torch.func import jacrev, vmap
    return vmap(jacrev(fn, argnums=0))(rows, *extra)


def _uniform_shift_jacobian(fn: Callable[[Tensor], Tensor], z: Tensor, *, chunk: int = 64
                            ) -> Tensor:
    """``E[t, s] = (1/C_out) sum_{c,c'} dy[t,c]/dz[s,c']`` for ``fn: [T_in, C] -> [T_out, C']``.

    One forward-mode product per input token, batched with ``vmap(jvp)``.
    Returns ``[T_out, T_in]``.
    """
    from torch.func import jvp, vmap
    t_in = z.shape[0]
    cols = []
    for start in range(0, t_in, chunk):
        idx = torch.arange(start, min(t_in, start + chunk), device=z.device)
        tangents = torch.zeros(len(idx), *z.shape, dtype=z.dtype, device=z.device)
        tangents[torch.arange(len(idx)), idx] = 1.0
        _, dy = vmap(lambda v: jvp(fn, (z,), (v,)))(tangents)
        cols.append(dy.mean(-1))                   # [n, T_out]
    return torch.cat(cols).transpose(0, 1)


def _mlp_effective(mlp: nn.Module, z: Tensor) -> Optional[Tensor]:
    """Channel-averaged Jacobian of a timm ``Mlp`` over tokens, analytically.

    ``J_c = W2 diag(act'(W1 z_c + b1)) W1``, so the channel mean is
    ``W2 diag(mean_c act') W1``: one matrix product per image.
    ``z``: ``[B, C, T]``. Returns ``[B, T, T]`` or ``None`` for other MLPs.
    """
    from timm.layers import Mlp
    from torch.func import jvp
    plain = (isinstance(mlp, Mlp) and isinstance(mlp.fc1, nn.Linear)
             and isinstance(mlp.fc2, nn.Linear) and isinstance(mlp.norm, nn.Identity)
             and not mlp.training)
    if not plain:
        return None
    h = mlp.fc1(z)
    _, slope = jvp(mlp.act, (h,), (torch.ones_like(h),))   # elementwise act'(h)
    gain = slope.mean(1)                                    # [B, hidden]
    return torch.einsum("th,bh,hs->bts", mlp.fc2.weight, gain, mlp.fc1.weight)


def _rows_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    return lambda v: module(v[None])[0]


# ----------------------------------------------------------------------------- extractors


def _is_type(name: str) -> Callable[[nn.Module], bool]:
    def match(m: nn.Module) -> bool:
        import timm.models.mlp_mixer as mm
        return isinstance(m, getattr(mm, name))
    return match


@register_extractor(_is_type("MixerBlock"), kind="token-mlp", sublayer="mlp_tokens")
def _token_mlp(ctx: _Context, info: LayerInfo, module: nn.Module, rec: hooks.Record) -> MixingMap:
    z = rec.input                                           # [B, C, T]
    b, c, t = z.shape
    grid, prefix = ctx.grid(t)
    matrix = _mlp_effective(module, z)
    if matrix is None:
        matrix = channel_jacobian(_rows_fn(module), z.reshape(b * c, t)).reshape(b, c, t, t).mean(1)
    native = None
    if hasattr(module, "fc1") and hasattr(module, "fc2") and prefix == 0:
        w1, w2 = module.fc1.weight.detach(), module.fc2.weight.detach()
        native = {"fc1": w1.reshape(-1, *grid).clone(), "fc2": w2.t().reshape(-1, *grid).clone()}
    return MixingMap(info.layer, info.kind, matrix[:, None].detach(), grid, prefix, native,
                     info.depth, block=info.block)


def _linear_map(ctx: _Context, info: LayerInfo, linear: nn.Linear, extra: dict) -> MixingMap:
    w = linear.weight.detach()
    grid, prefix = ctx.grid(w.shape[1])
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    native = {"weight": w.clone(), "bias": bias, **extra}
    if prefix == 0:
        native["templates"] = w.reshape(-1, *grid).clone()
    return MixingMap(info.layer, info.kind, w.clone()[None, None], grid, prefix, native,
                     info.depth, bias=bias, block=info.block)


@register_extractor(_is_type("ResBlock"), kind="token-linear", sublayer="linear_tokens")
def _token_linear(ctx, info, module, rec) -> MixingMap:
    return _linear_map(ctx, info, module, {})


@register_extractor(_is_type("SpatialGatingUnit"), kind="spatial-gating", block_up=2)
def _spatial_gating(ctx, info, module, rec) -> MixingMap:
    return _linear_map(ctx, info, module.proj, {"applies_to": "norm(v), v = second half of "
                                                              "the channels"})


def _is_attention(m: nn.Module) -> bool:
    return hooks.is_attention(m)


@register_extractor(_is_attention, kind="attention", block_up=1)
def _attention(ctx, info, module, rec, probs: Optional[Tensor] = None) -> MixingMap:
    if probs is None:
        raise ValueError(f"no attention probabilities were captured for {info.layer}")
    grid, prefix = ctx.grid(probs.shape[-1])
    native = {"num_heads": int(module.num_heads), "scale": float(module.scale)}
    return MixingMap(info.layer, info.kind, probs, grid, prefix, native, info.depth,
                     block=info.block)


def _is_fnet_block(m: nn.Module) -> bool:
    from .models.fnet import FNetBlock
    return isinstance(m, FNetBlock)


@register_extractor(_is_fnet_block, kind="fourier", sublayer="mixing")
def _fourier(ctx, info, module, rec) -> MixingMap:
    from .models.fnet import fourier_mixing_matrix
    grid = tuple(module.grid)
    t = grid[0] * grid[1]
    _, prefix = ctx.grid(t)
    matrix = fourier_mixing_matrix(grid)
    h, w = grid

    def dft(n: int) -> Tensor:
        k = torch.arange(n, dtype=torch.float64)
        return torch.exp(-2j * math.pi * torch.outer(k, k) / n) / math.sqrt(n)

    native = {"dft": torch.kron(dft(h), dft(w))}
    return MixingMap(info.layer, info.kind, matrix[None, None], grid, prefix, native, info.depth,
                     block=info.block)


def _conv_block_types() -> tuple:
    from timm.models.resnet import BasicBlock as TimmBasic, Bottleneck
    from .models.cnn import BasicBlock
    return (BasicBlock, TimmBasic, Bottleneck)


def _is_conv_stage(m: nn.Module) -> bool:
    if not isinstance(m, nn.Sequential) or len(m) == 0:
        return False
    types = _conv_block_types()
    return all(isinstance(c, types) for c in m)


def _receptive_radius(stage: nn.Module) -> int:
    """Upper bound on the stage's receptive-field radius in input pixels."""
    radius, jump = 0, 1
    for name, m in stage.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
            d = getattr(m, "dilation", 1)
            d = d if isinstance(d, tuple) else (d, d)
            s = m.stride if isinstance(m.stride, tuple) else (m.stride,) * 2
            radius += max((k[0] - 1) * d[0], (k[1] - 1) * d[1]) // 2 * jump
            if "downsample" not in name:
                jump *= max(s)
    return radius


def _conv_effective(stage: nn.Module, z: Tensor) -> Tensor:
    """Effective mixing ``[B, T_out, T_in]`` of a conv stage at ``z`` ``[B, C, H, W]``.

    Exact Jacobian, computed with few batched vector-Jacobian products: output
    tokens farther apart than twice the receptive field share one cotangent
    (graph colouring of the Jacobian's sparsity pattern).
    """
    b, _, hi, wi = z.shape
    with torch.enable_grad():
        zz = z.detach().clone().requires_grad_(True)
        y = stage(zz)
        _, co, ho, wo = y.shape
        stride = max(hi // ho, wi // wo, 1)
        reach = _receptive_radius(stage) + stride
        period = min(2 * reach // stride + 1, max(ho, wo))
        ii = torch.arange(ho, device=z.device) % period
        jj = torch.arange(wo, device=z.device) % period
        colours = [(ci, cj) for ci in range(min(period, ho)) for cj in range(min(period, wo))]
        cot = torch.stack([((ii[:, None] == ci) & (jj[None, :] == cj)).to(y.dtype)
                           for ci, cj in colours])            # [K, ho, wo]
        cot = cot[:, None, None].expand(-1, b, co, -1, -1) / co
        try:
            (g,) = torch.autograd.grad(y, zz, cot, is_grads_batched=True)
        except RuntimeError:
            g = torch.stack([torch.autograd.grad(y, zz, c, retain_graph=True)[0] for c in cot])
    g = g.sum(2)                                              # [K, B, hi, wi]
    out = torch.zeros(b, ho * wo, hi * wi, dtype=z.dtype, device=z.device)
    si = torch.arange(hi, device=z.device).float()
    sj = torch.arange(wi, device=z.device).float()
    s_idx = torch.arange(hi * wi, device=z.device).view(hi, wi)
    for k, (ci, cj) in enumerate(colours):
        ti = ci + period * torch.round((si / stride - ci) / period).long()
        tj = cj + period * torch.round((sj / stride - cj) / period).long()
        ok = ((ti >= 0) & (ti < ho))[:, None] & ((tj >= 0) & (tj < wo))[None, :]
        t_idx = (ti.clamp(0, ho - 1)[:, None] * wo + tj.clamp(0, wo - 1)[None, :])
        out[:, t_idx[ok], s_idx[ok]] = g[k][:, ok]
    return out.detach()


@register_extractor(_is_conv_stage, kind="conv")
def _conv(ctx, info, module, rec) -> MixingMap:
    z = rec.input
    matrix = _conv_effective(module, z)
    ho, wo = rec.output.shape[-2:]
    hi, wi = z.shape[-2:]
    kernels = {n: m.weight.detach().clone() for n, m in module.named_modules()
               if isinstance(m, nn.Conv2d)}
    return MixingMap(info.layer, info.kind, matrix[:, None], (int(ho), int(wo)), 0, kernels,
                     info.depth, input_grid=None if (ho, wo) == (hi, wi) else (int(hi), int(wi)),
                     block=info.block)


# ----------------------------------------------------------------------------- extraction


def _check(model: nn.Module, x: Tensor) -> None:
    if hasattr(model, "check_input"):
        model.check_input(x)
    elif not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")


def _found_or_raise(model: nn.Module) -> List[Tuple[LayerInfo, _Extractor]]:
    found = _find(model)
    if not found:
        raise ValueError(f"{type(getattr(model, 'net', model)).__name__} has no token-mixing "
                         f"layer this probe knows; supported: {_supported()}. Register more "
                         f"with mixing.register_extractor")
    return found


def _select(found, which: Optional[Sequence[Union[str, int]]]):
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


def extract(model: nn.Module, x: Tensor, *, layers: Optional[Sequence[Union[str, int]]] = None
            ) -> List[MixingMap]:
    """One :class:`MixingMap` per token-mixing layer of ``model``, by depth.

    Runs one forward pass (no gradient; eval mode for the pass, restored after)
    with hooks on the token-mixing modules; attention probabilities are taken
    from the unfused attention path (see :func:`probe.hooks.capture_attention`).

    Args:
        model: a :class:`probe.zoo.ProbeModel` or any module holding registered
            token-mixing layers.
        x: ``[B, C, H, W]`` images (in ``[0, 1]`` for a ProbeModel).
        layers: restrict to these layer paths or depth indices.

    Returns:
        ``list[MixingMap]``; ``matrix`` is ``[B, H, T_out, T_in]`` (``B = 1`` for static maps).

    Raises:
        ValueError: wrong input shape, or no supported token-mixing layer.
    """
    _check(model, x)
    found = _select(_found_or_raise(model), layers)
    ctx = _Context(model)
    attn = [info.layer for info, ex in found if ex.kind == "attention"]
    inputs = [info.layer for info, ex in found
              if ex.kind not in STATIC_KINDS and ex.kind != "attention"]
    with hooks.evaluating(model), torch.no_grad():
        recs: Dict[str, hooks.Record] = {}
        probs: Dict[str, Tensor] = {}
        if inputs or attn:
            from contextlib import ExitStack
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
            else:
                maps.append(ex.compute(ctx, info, module, rec))
    return maps


def effective(model: nn.Module, x: Tensor, layer: Union[str, int]) -> Tensor:
    """Effective (Jacobian) mixing of one layer at ``x``, for every kind.

    ``E[b, t, s] = (1 / C_out) sum_{c, c'} d y_b[t, c] / d z_b[s, c']`` where
    ``z`` is the token-mixing module's token input and ``y`` its output. For the
    channel-wise kinds this is the channel-averaged Jacobian, computed with
    ``vmap(jacrev)`` over channel rows; attention uses ``vmap(jvp)`` over input
    tokens; conv stages a coloured batched VJP.

    Args:
        model: as for :func:`extract`.
        x: ``[B, C, H, W]``.
        layer: a layer path (``"net.blocks.0.mlp_tokens"``) or depth index.

    Returns:
        ``[B, 1, T_out, T_in]``.
    """
    _check(model, x)
    ((info, ex),) = _select(_found_or_raise(model), [layer])
    module = dict(model.named_modules())[info.layer]
    with hooks.evaluating(model), torch.no_grad():
        with hooks.capture(model, [info.layer]) as recs:
            model(x)
    z = recs[info.layer].input
    if ex.kind in ("token-mlp", "token-linear"):          # module acts on [.., T], z [B, C, T]
        b, c, t = z.shape
        jac = channel_jacobian(_rows_fn(module), z.reshape(b * c, t))
        out = jac.reshape(b, c, t, t).mean(1)
    elif ex.kind == "fourier":                             # z [B, T, C]
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
        out = _conv_effective(module, z)
    else:
        with hooks.evaluating(model), hooks.unfused_attention(model):
            out = torch.stack([_uniform_shift_jacobian(lambda v: module(v[None])[0], zb)
                               for zb in z])
    return out[:, None].detach()


# ----------------------------------------------------------------------------- metrics


def _unpack(m, grid, prefix_tokens, input_grid):
    if isinstance(m, MixingMap):
        return m.matrix, tuple(m.grid), m.prefix_tokens, m.in_grid
    if not isinstance(m, torch.Tensor):
        raise ValueError(f"expected a MixingMap or a matrix tensor, got {type(m).__name__}")
    if grid is None:
        raise ValueError("pass grid=(h, w) with a raw matrix")
    return m, tuple(grid), int(prefix_tokens), tuple(input_grid or grid)


def token_positions(grid: Tuple[int, int], input_grid: Optional[Tuple[int, int]] = None
                    ) -> Tuple[Tensor, Tensor]:
    """Positions of output and input tokens in input-grid units.

    Returns ``(out [T_out, 2], in [T_in, 2])`` as (row, col); output token ``i``
    of a grid ``s`` times coarser sits at the centre of its cell, ``i * s + (s - 1) / 2``.
    """
    h, w = grid
    hi, wi = input_grid or grid
    sh, sw = hi / h, wi / w
    oi, oj = torch.meshgrid(torch.arange(h) * sh + (sh - 1) / 2,
                            torch.arange(w) * sw + (sw - 1) / 2, indexing="ij")
    ii, jj = torch.meshgrid(torch.arange(hi).double(), torch.arange(wi).double(), indexing="ij")
    return (torch.stack([oi.reshape(-1), oj.reshape(-1)], 1).double(),
            torch.stack([ii.reshape(-1), jj.reshape(-1)], 1))


def _spatial(matrix: Tensor, grid, prefix: int, input_grid) -> Tensor:
    t_out, t_in = grid[0] * grid[1], input_grid[0] * input_grid[1]
    if matrix.shape[-2] != t_out + prefix or matrix.shape[-1] != t_in + prefix:
        raise ValueError(f"matrix {tuple(matrix.shape)} does not fit grid {grid} (input grid "
                         f"{input_grid}) with {prefix} prefix tokens")
    return matrix[..., prefix:, prefix:]


def _distances(grid, input_grid) -> Tensor:
    out, inp = token_positions(grid, input_grid)
    return torch.cdist(out, inp)                                   # [T_out, T_in]


def mean_mixing_distance(m: Union[MixingMap, Tensor], grid: Optional[Tuple[int, int]] = None, *,
                         prefix_tokens: int = 0, input_grid: Optional[Tuple[int, int]] = None
                         ) -> Tensor:
    """Mean mixing distance in token-grid units, per map and head.

    The ViT paper's mean attention distance generalised to signed maps:
    ``sum_{t,s} |w_ts| d(t, s) / sum_{t,s} |w_ts|`` over spatial tokens (prefix
    rows and columns dropped), ``d`` the Euclidean distance on the grid.

    Args:
        m: a :class:`MixingMap`, or a matrix ``[..., T_out, T_in]`` with ``grid``.

    Returns:
        ``[...]`` (``[B, H]`` for a MixingMap). Identity -> 0.
    """
    matrix, grid, prefix, input_grid = _unpack(m, grid, prefix_tokens, input_grid)
    w = _spatial(matrix, grid, prefix, input_grid).abs().double()
    d = _distances(grid, input_grid)
    return ((w * d).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1e-30)).float()


def locality(m: Union[MixingMap, Tensor], grid: Optional[Tuple[int, int]] = None, *,
             radius: float = 1.0, prefix_tokens: int = 0,
             input_grid: Optional[Tuple[int, int]] = None) -> Tensor:
    """Fraction of the spatial mixing mass ``|w|`` within ``radius`` grid units.

    Returns ``[...]`` in ``[0, 1]`` (``[B, H]`` for a MixingMap). Identity -> 1.
    """
    matrix, grid, prefix, input_grid = _unpack(m, grid, prefix_tokens, input_grid)
    w = _spatial(matrix, grid, prefix, input_grid).abs().double()
    near = (_distances(grid, input_grid) <= radius + 1e-9).double()
    return ((w * near).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1e-30)).float()


def input_dependence(m: Union[MixingMap, Tensor]) -> Tensor:
    """How much the map varies across inputs, per head.

    ``sum_b ||M_b - mean_b M||^2 / sum_b ||M_b||^2``: the share of the map's
    energy not explained by one input-independent map. 0 for static maps (or
    ``B = 1``), approaching 1 when maps are unrelated across images.

    Args:
        m: a MixingMap or a matrix ``[B, H, T_out, T_in]``.

    Returns:
        ``[H]``.
    """
    matrix = m.matrix if isinstance(m, MixingMap) else m
    if matrix.ndim != 4:
        raise ValueError(f"input_dependence needs [B, H, T, T], got {tuple(matrix.shape)}")
    mat = matrix.double()
    if mat.shape[0] == 1:
        return torch.zeros(mat.shape[1])
    dev = (mat - mat.mean(0, keepdim=True)).pow(2).sum((0, 2, 3))
    return (dev / mat.pow(2).sum((0, 2, 3)).clamp_min(1e-30)).float()


def translation_equivariance(m: Union[MixingMap, Tensor], grid: Optional[Tuple[int, int]] = None,
                             *, prefix_tokens: int = 0,
                             input_grid: Optional[Tuple[int, int]] = None) -> Tensor:
    """Fraction of the spatial map's energy explained by a function of relative offset.

    The map is projected onto matrices ``R[t, s] = k(pos(t) - pos(s))`` (the
    Toeplitz / convolution matrices, borders included) by averaging entries
    with equal offset; the score is ``||R||^2 / ||M||^2`` in ``[0, 1]``:
    1 for a convolution (zero padded or circular), low for position-specific maps.

    Returns ``[...]`` (``[B, H]`` for a MixingMap).
    """
    matrix, grid, prefix, input_grid = _unpack(m, grid, prefix_tokens, input_grid)
    w = _spatial(matrix, grid, prefix, input_grid).double()
    out, inp = token_positions(grid, input_grid)
    off = torch.round(2 * (out[:, None, :] - inp[None, :, :])).long()     # [To, Ti, 2]
    off = off - off.reshape(-1, 2).min(0).values
    key = (off[..., 0] * (int(off[..., 1].max()) + 1) + off[..., 1]).reshape(-1)
    groups = int(key.max()) + 1
    flat = w.reshape(*w.shape[:-2], -1)
    sums = torch.zeros(*flat.shape[:-1], groups, dtype=flat.dtype).index_add_(-1, key, flat)
    ones = torch.ones(key.shape, dtype=flat.dtype)
    counts = torch.zeros(groups, dtype=flat.dtype).index_add_(0, key, ones)
    proj = (sums / counts.clamp_min(1))[..., key]
    return (proj.pow(2).sum(-1) / flat.pow(2).sum(-1).clamp_min(1e-30)).float()


def entropy(m: Union[MixingMap, Tensor], *, normalized: bool = False) -> Tensor:
    """Mean row entropy (nats) of ``p = |w| / sum |w|`` over input tokens, per map and head.

    Uses every row and column (prefix tokens included): for attention the rows
    are the softmax probabilities. Uniform rows -> ``log T_in`` (the maximum);
    ``normalized=True`` divides by ``log T_in``.

    Returns ``[...]`` (``[B, H]`` for a MixingMap).
    """
    matrix = m.matrix if isinstance(m, MixingMap) else m
    w = matrix.abs().double()
    p = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1).mean(-1)
    if normalized:
        h = h / math.log(matrix.shape[-1])
    return h.float()


def effective_rank(m: Union[MixingMap, Tensor]) -> Tensor:
    """Effective rank (Roy & Vetterli 2007): ``exp(H(sigma / sum sigma))`` of the singular values.

    Identity of size T -> T; rank-one -> 1. Returns ``[...]`` (``[B, H]`` for a MixingMap).
    """
    matrix = m.matrix if isinstance(m, MixingMap) else m
    s = torch.linalg.svdvals(matrix.double())
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-30)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum(-1)).float()


def summarize(maps: Sequence[MixingMap], *, radius: float = 1.0) -> List[dict]:
    """Every metric for every map, per head (mean over images) and overall, as floats."""
    rows = []
    for m in maps:
        per = {
            "mean_mixing_distance": mean_mixing_distance(m),
            f"locality_r{radius:g}": locality(m, radius=radius),
            "translation_equivariance": translation_equivariance(m),
            "entropy": entropy(m),
            "entropy_normalized": entropy(m, normalized=True),
            "effective_rank": effective_rank(m),
        }
        row = {"layer": m.layer, "kind": m.kind, "depth": m.depth, "grid": list(m.grid),
               "input_grid": list(m.in_grid), "prefix_tokens": m.prefix_tokens,
               "heads": m.heads, "images": int(m.matrix.shape[0])}
        for k, v in per.items():
            head = v.mean(0)
            row[k] = float(head.mean())
            row[k + "_per_head"] = [float(e) for e in head]
        dep = input_dependence(m)
        row["input_dependence"] = float(dep.mean())
        row["input_dependence_per_head"] = [float(e) for e in dep]
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- CLI

SCHEMA_VERSION = 1


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``error: ...`` line and exit code 2."""

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    from . import zoo
    p = _OneLineParser(
        prog="python -m probe.mixing",
        description="Extract how each model mixes tokens; write metrics (JSON) and figures (PDF).",
        epilog="Writes <out>/<dataset>/<model>/mixing.json, mixing_templates.pdf, "
               "mixing_over_image.pdf, log_amplitude.pdf, and the cross-model plots "
               "<out>/<dataset>/mixing_distance.pdf and relative_log_amplitude.pdf.")
    p.add_argument("--model", action="append", metavar="NAME",
                   help=f"zoo family ({', '.join(zoo.names())}) or timm:<arch>; repeatable "
                        f"(default: every zoo family)")
    p.add_argument("--n", type=int, default=8, help="images to probe (default 8)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the image subset and of random weights")
    p.add_argument("--weights", choices=["shipped", "random"], default="shipped",
                   help="shipped Fashion-MNIST weights or a seeded random init")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset name (see probe.data)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--radius", type=float, default=1.0, help="locality radius in grid units")
    p.add_argument("--out", default="runs", help="output folder (default runs/)")
    return p


def _fit_images(x: Tensor, input_size: Tuple[int, int, int]) -> Tensor:
    """Resize images and match channels to a model's ``(C, H, W)`` (e.g. 28x28 gray -> 224 RGB)."""
    import torch.nn.functional as F
    c, h, w = input_size
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1).contiguous()
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise ValueError(f"cannot map {x.shape[1]}-channel images to {c} channels")
    return x


def _safe(name: str) -> str:
    return name.replace(":", "_").replace("/", "_")


def run(args: argparse.Namespace) -> List[Path]:
    """Run the mixing probe for ``args`` (see :func:`_parser`); returns the written files."""
    from tqdm import tqdm
    from . import data, plots, spectra, zoo
    from .results import atomic_write_json, check_writable
    if args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    names = args.model or zoo.names()
    out = check_writable(Path(args.out) / _safe(args.dataset))
    ds = data.load(args.dataset, "test", n=args.n, seed=args.seed, root=args.data_root)
    images, labels = data.as_tensors(ds)
    written: List[Path] = []
    distances: Dict[str, List[float]] = {}
    amplitudes: Dict[str, List[float]] = {}
    loaded = [(name, zoo.load(name, weights=None if args.weights == "random" else "shipped",
                              seed=args.seed)) for name in names]   # fail before any work
    for name, model in tqdm(loaded, desc="mixing", unit="model", file=sys.stderr, leave=False):
        x = _fit_images(images, model.input_size)
        maps = extract(model, x)
        rows = summarize(maps, radius=args.radius)
        amp = spectra.relative_log_amplitudes(model, x)
        folder = Path(out) / _safe(name)
        record = {"schema_version": SCHEMA_VERSION, "analysis": "mixing", "model": name,
                  "family": getattr(model, "family", ""), "weights": args.weights,
                  "dataset": args.dataset, "n": int(len(x)), "seed": args.seed,
                  "radius": args.radius, "layers": rows, "relative_log_amplitude": amp}
        written.append(atomic_write_json(folder / "mixing.json", record))
        written.append(plots.save(plots.plot_templates(maps,
                                                       title=f"{name}: token-mixing templates"),
                                  folder / "mixing_templates.pdf"))
        written.append(plots.save(plots.plot_maps_over_image(x[0], maps,
                                                             title=f"{name}: mixing of one token"),
                                  folder / "mixing_over_image.pdf"))
        written.append(plots.save(plots.plot_profiles([r["profile"] for r in amp],
                                                      title=f"{name}: feature-map spectra"),
                                  folder / "log_amplitude.pdf"))
        distances[name] = [r["mean_mixing_distance"] for r in rows]
        amplitudes[name] = [r["delta_log_amplitude"] for r in amp]
    written.append(plots.save(plots.plot_by_depth(distances, ylabel="mean mixing distance (tokens)",
                                                  title="mean mixing distance vs depth"),
                              Path(out) / "mixing_distance.pdf"))
    written.append(plots.save(plots.plot_by_depth(amplitudes, ylabel="relative log amplitude",
                                                  title="high-frequency log amplitude vs depth"),
                              Path(out) / "relative_log_amplitude.pdf"))
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probe.mixing``: see ``--help``. Bad input: one ``error:`` line, exit 2."""
    args = _parser().parse_args(argv)
    try:
        written = run(args)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("wrote:")
    for path in written:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
