"""Effective (Jacobian) token mixing: channel Jacobians, uniform-shift Jacobians, conv stages.

The effective view of a token mixer ``y = f(z)`` is

    E[t, s] = (1 / C_out) * sum_{c, c'} d y[t, c] / d z[s, c']

the channel-mean response of output token ``t`` to a unit shift of every
channel of input token ``s``. For channel-wise token mixers (Mixer, ResMLP,
gMLP's gate, FNet) the Jacobian is block diagonal over channels and ``E`` is
the channel-averaged Jacobian ``(1/C) sum_c d y[t, c] / d z[s, c]``
(:func:`channel_jacobian`, :func:`mlp_effective`); attention uses
:func:`uniform_shift_jacobian`; conv stages :func:`conv_effective`.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
from timm.layers import Mlp
from torch.func import jacrev, jvp, vmap

__all__ = ["channel_jacobian", "uniform_shift_jacobian", "mlp_effective", "receptive_radius",
           "conv_effective"]

Tensor = torch.Tensor


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


def conv_effective(stage: nn.Module, z: Tensor) -> Tensor:
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
        reach = receptive_radius(stage) + stride
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
