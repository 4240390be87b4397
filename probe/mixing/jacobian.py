"""Effective (Jacobian) token mixing: channel Jacobians, uniform-shift Jacobians, conv stages.

The effective view of a token mixer ``y = f(z)`` is

    E[t, s] = (1 / C_out) * sum_{c, c'} d y[t, c] / d z[s, c']

the channel-mean response of output token ``t`` to a unit shift of every
channel of input token ``s``. For channel-wise token mixers (Mixer, ResMLP,
gMLP's gate, FNet) the Jacobian is block diagonal over channels and ``E`` is
the channel-averaged Jacobian ``(1/C) sum_c d y[t, c] / d z[s, c]``
(:func:`channel_jacobian`, :func:`mlp_effective`); attention uses
:func:`uniform_shift_jacobian`; conv stages :func:`conv_effective`, in chunks of
cotangents sized to a memory budget that is checked before computing
(:func:`conv_memory`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import Mlp
from torch.func import jacrev, jvp, vmap

__all__ = ["channel_jacobian", "uniform_shift_jacobian", "mlp_effective", "channel_groups",
           "group_mean", "mlp_channel_jacobians", "receptive_radius",
           "DEFAULT_MEMORY_BUDGET", "ConvMemory", "conv_memory", "conv_effective"]

Tensor = torch.Tensor
DEFAULT_MEMORY_BUDGET = 2 * 2**30   # bytes a conv stage's Jacobian may use (2 GiB)


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
    return vmap(jacrev(fn, argnums=0))(rows, *extra)


def uniform_shift_jacobian(fn: Callable[[Tensor], Tensor], z: Tensor, *, chunk: int = 64
                           ) -> Tensor:
    """``E[t, s] = (1/C_out) sum_{c,c'} dy[t,c]/dz[s,c']`` for ``fn: [T_in, C] -> [T_out, C']``.

    One forward-mode product per input token, batched with ``vmap(jvp)``.
    Returns ``[T_out, T_in]``.
    """
    t_in = z.shape[0]
    cols = []
    for start in range(0, t_in, chunk):
        idx = torch.arange(start, min(t_in, start + chunk), device=z.device)
        tangents = torch.zeros(len(idx), *z.shape, dtype=z.dtype, device=z.device)
        tangents[torch.arange(len(idx)), idx] = 1.0
        _, dy = vmap(lambda v: jvp(fn, (z,), (v,)))(tangents)
        cols.append(dy.mean(-1))                   # [n, T_out]
    return torch.cat(cols).transpose(0, 1)


def mlp_effective(mlp: nn.Module, z: Tensor) -> Optional[Tensor]:
    """Channel-averaged Jacobian of a timm ``Mlp`` over tokens, analytically.

    ``J_c = W2 diag(act'(W1 z_c + b1)) W1``, so the channel mean is
    ``W2 diag(mean_c act') W1``: one matrix product per image.
    ``z``: ``[B, C, T]``. Returns ``[B, T, T]`` or ``None`` for other MLPs.
    """
    plain = (isinstance(mlp, Mlp) and isinstance(mlp.fc1, nn.Linear)
             and isinstance(mlp.fc2, nn.Linear) and isinstance(mlp.norm, nn.Identity)
             and not mlp.training)
    if not plain:
        return None
    h = mlp.fc1(z)
    _, slope = jvp(mlp.act, (h,), (torch.ones_like(h),))   # elementwise act'(h)
    gain = slope.mean(1)                                    # [B, hidden]
    return torch.einsum("th,bh,hs->bts", mlp.fc2.weight, gain, mlp.fc1.weight)


def channel_groups(channels: int, per_channel: object) -> int:
    """Number of channel groups ``G`` for ``per_channel`` (``True``: every channel; ``int``: ``G``).

    Raises:
        ValueError: ``G`` is not a positive divisor of ``channels``.
    """
    if per_channel is True:
        return channels
    if isinstance(per_channel, bool) or not isinstance(per_channel, int):
        raise ValueError(f"per_channel must be True or a number of channel groups, "
                         f"got {per_channel!r}")
    if per_channel < 1 or channels % per_channel:
        raise ValueError(f"per_channel={per_channel} groups must divide the {channels} channels "
                         f"into equal groups of consecutive channels; choose a divisor of {channels}")
    return per_channel


def group_mean(x: Tensor, groups: int, dim: int) -> Tensor:
    """Mean over ``groups`` equal blocks of consecutive entries along ``dim``."""
    dim = dim % x.ndim
    c = x.shape[dim]
    return x.reshape(*x.shape[:dim], groups, c // groups, *x.shape[dim + 1:]).mean(dim + 1)


def mlp_channel_jacobians(mlp: nn.Module, z: Tensor, *, groups: Optional[int] = None) -> Tensor:
    """Token Jacobian of a token-mixing MLP for every channel (or channel group) of every image.

    ``J[b, c] = d y[b, c, :] / d z[b, c, :]`` (the MLP acts on each channel row of
    tokens separately). For a plain timm ``Mlp`` it is analytic,
    ``J[b, c] = W2 diag(act'(W1 z[b, c] + b1)) W1``; otherwise ``vmap(jacrev)`` over
    rows. A group's Jacobian is the mean of its channels' (for the analytic form, the
    same product with the group-mean slope), so the mean over groups equals
    :func:`mlp_effective`.

    Args:
        mlp: the token-mixing module, acting on ``[.., T]``.
        z: ``[B, C, T]`` its input.
        groups: ``G`` groups of ``C / G`` consecutive channels (default: every channel).

    Returns:
        ``[B, G, T, T]``; memory ``B * G * T^2`` floats.
    """
    b, c, t = z.shape
    groups = c if groups is None else groups
    plain = mlp_effective(mlp, z[:1, :1]) is not None
    if plain:
        h = mlp.fc1(z)
        _, slope = jvp(mlp.act, (h,), (torch.ones_like(h),))    # [B, C, hidden]
        gain = group_mean(slope, groups, 1)                      # [B, G, hidden]
        return (mlp.fc2.weight * gain[..., None, :]) @ mlp.fc1.weight
    jac = channel_jacobian(lambda v: mlp(v[None])[0], z.reshape(b * c, t))
    return group_mean(jac.reshape(b, c, *jac.shape[1:]), groups, 1)


def receptive_radius(stage: nn.Module) -> int:
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


@dataclass(frozen=True)
class ConvMemory:
    """Memory estimate of a conv stage's effective mixing (:func:`conv_memory`), in bytes.

    Attributes:
        colours: vector-Jacobian products needed (cotangents of the graph colouring).
        per_colour: one cotangent's backward pass: the stage's saved activations plus the
            cotangent and the input gradient (an upper estimate).
        fixed: the result ``[B, T_out, T_in]`` plus the forward graph, whatever the chunking.
    """

    colours: int
    per_colour: int
    fixed: int

    def need(self, chunk: int) -> int:
        """Bytes for ``chunk`` cotangents at a time."""
        return self.fixed + chunk * self.per_colour

    def chunk(self, budget: int) -> int:
        """Most cotangents per backward pass within ``budget`` (0: not even one fits)."""
        return max(0, min(self.colours, (budget - self.fixed) // max(1, self.per_colour)))


def _colouring(stage: nn.Module, hi: int, wi: int, ho: int, wo: int) -> Tuple[int, int, int]:
    """``(stride, period, colours)``: output tokens ``period`` apart share a cotangent."""
    stride = max(hi // ho, wi // wo, 1)
    reach = receptive_radius(stage) + stride
    period = min(2 * reach // stride + 1, max(ho, wo))
    return stride, period, min(period, ho) * min(period, wo)


def _forward(stage: nn.Module, z: Tensor) -> Tuple[Tensor, Tensor, int]:
    """``(input with grad, output, bytes of activations saved for backward)``."""
    params = {p.data_ptr() for p in stage.parameters()}
    saved = {}

    def pack(t: Tensor) -> Tensor:
        if t.data_ptr() not in params:
            saved[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
        return t

    zz = z.detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = stage(zz)
    return zz, y, sum(saved.values())


def _estimate(stage: nn.Module, z: Tensor, y: Tensor, saved: int) -> ConvMemory:
    b, _, hi, wi = z.shape
    ho, wo = y.shape[-2:]
    _, _, colours = _colouring(stage, hi, wi, ho, wo)
    item = z.element_size()
    per_colour = saved + (z.numel() + y.numel()) * item
    fixed = saved + b * ho * wo * hi * wi * item
    return ConvMemory(colours, per_colour, fixed)


def conv_memory(stage: nn.Module, z: Tensor) -> ConvMemory:
    """How much memory :func:`conv_effective` of ``stage`` at ``z`` needs (one forward pass)."""
    with torch.enable_grad():
        zz, y, saved = _forward(stage, z)
    return _estimate(stage, zz, y, saved)


def conv_effective(stage: nn.Module, z: Tensor, *, memory_budget: Optional[int] = None,
                   chunk: Optional[int] = None, layer: str = "conv stage") -> Tensor:
    """Effective mixing ``[B, T_out, T_in]`` of a conv stage at ``z`` ``[B, C, H, W]``.

    Exact Jacobian, computed with few batched vector-Jacobian products: output
    tokens farther apart than twice the receptive field share one cotangent
    (graph colouring of the Jacobian's sparsity pattern). The cotangents go through
    backward ``chunk`` at a time, as many as :func:`conv_memory` says fit in
    ``memory_budget`` (default :data:`DEFAULT_MEMORY_BUDGET`); the result does not depend
    on the chunking.

    Args:
        stage: the conv stage (e.g. a ResNet ``layer1``).
        z: its input ``[B, C, H, W]``.
        memory_budget: bytes the computation may use.
        chunk: cotangents per backward pass (default and at most: what the budget allows).
        layer: the stage's name, for the error message.

    Raises:
        ValueError: the estimate for one cotangent at a time exceeds ``memory_budget``; the
            message gives the layer, the estimate and how to proceed.
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    b, _, hi, wi = z.shape
    with torch.enable_grad():
        zz, y, saved = _forward(stage, z)
        _, co, ho, wo = y.shape
        need = _estimate(stage, zz, y, saved)
        fits = need.chunk(budget)
        if fits == 0:
            raise ValueError(
                f"effective mixing of {layer} at input {tuple(z.shape)} needs about "
                f"{need.need(1) / 2**30:.2f} GiB even one of its {need.colours} cotangents at a "
                f"time ({need.colours} x {need.per_colour / 2**20:.0f} MiB in all), over the "
                f"memory budget of {budget / 2**30:.2f} GiB; use a smaller input or fewer images, "
                f"or pass a larger memory_budget (bytes)")
        step = fits if chunk is None else max(1, min(int(chunk), fits))
        stride, period, _ = _colouring(stage, hi, wi, ho, wo)
        ii = torch.arange(ho, device=z.device) % period
        jj = torch.arange(wo, device=z.device) % period
        colours = [(ci, cj) for ci in range(min(period, ho)) for cj in range(min(period, wo))]
        out = torch.zeros(b, ho * wo, hi * wi, dtype=z.dtype, device=z.device)
        for start in range(0, len(colours), step):
            chunk_colours = colours[start:start + step]
            cot = torch.stack([((ii[:, None] == ci) & (jj[None, :] == cj)).to(y.dtype)
                               for ci, cj in chunk_colours])                    # [k, ho, wo]
            cot = cot[:, None, None].expand(-1, b, co, -1, -1) / co
            (g,) = torch.autograd.grad(y, zz, cot, is_grads_batched=True,
                                       retain_graph=start + step < len(colours))
            _scatter(out, g.detach().sum(2), chunk_colours, stride, period, ho, wo)
    return out


def _scatter(out: Tensor, g: Tensor, colours, stride: int, period: int, ho: int, wo: int) -> None:
    """Write colour gradients ``g`` ``[k, B, hi, wi]`` into ``out`` ``[B, T_out, T_in]``: input
    pixel ``s`` of colour ``(ci, cj)`` belongs to the output token of that colour nearest it."""
    hi, wi = g.shape[-2:]
    si = torch.arange(hi, device=g.device).float()
    sj = torch.arange(wi, device=g.device).float()
    s_idx = torch.arange(hi * wi, device=g.device).view(hi, wi)
    for k, (ci, cj) in enumerate(colours):
        ti = ci + period * torch.round((si / stride - ci) / period).long()
        tj = cj + period * torch.round((sj / stride - cj) / period).long()
        ok = ((ti >= 0) & (ti < ho))[:, None] & ((tj >= 0) & (tj < wo))[None, :]
        t_idx = (ti.clamp(0, ho - 1)[:, None] * wo + tj.clamp(0, wo - 1)[None, :])
        out[:, t_idx[ok], s_idx[ok]] = g[k][:, ok]
