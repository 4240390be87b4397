"""Mixing probes: cost of extracting every layer's map, and the batched Jacobian.

- Extraction of all token-mixing maps for a batch vs a plain forward pass
  (targets: <= 1.3x for the static and attention kinds).
- Channel-averaged Jacobian of Mixer's token MLP with ``vmap(jacrev)`` vs a
  row-by-row autograd loop (target: >= 5x faster, results allclose), and the
  analytic ``W2 diag(mean act') W1`` used by :func:`probe.mixing.extract`.
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks import Row, median_time, one_thread, paired_ratio, register

__all__ = ["bench_mixing"]


def _loop_jacobian(mlp, rows: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(rows.shape[0], rows.shape[1], rows.shape[1])
    for n in range(rows.shape[0]):
        v = rows[n].clone().requires_grad_(True)
        y = mlp(v[None])[0]
        for t in range(y.shape[0]):
            (g,) = torch.autograd.grad(y[t], v, retain_graph=True)
            out[n, t] = g
    return out


@register("mixing")
def bench_mixing(quick: bool = False) -> List[Row]:
    """Runs with one intra-op thread (restored after): small tensors, and the
    shared 2-core machines make multi-threaded timings of them mostly noise."""
    with one_thread():
        return _bench(quick)


def _bench(quick: bool) -> List[Row]:
    from probe import hooks, mixing, zoo
    repeats = 3 if quick else 7
    batch = 8 if quick else 32
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    rows: List[Row] = []
    for family in ["resmlp", "gmlp", "fnet", "vit", "mixer"]:
        model = zoo.build(family).eval()

        def forward():
            with torch.no_grad():
                model(x)

        def extract():
            mixing.extract(model, x)

        base, ours, ratio = paired_ratio(extract, forward, rounds=repeats)
        kind = mixing.layers(model)[0].kind
        rows.append(Row(what=f"extract all {kind} maps ({family}, batch {batch}, 1 thread)",
                        baseline="plain forward, no grad", ratio=ratio,
                        value=f"{ours * 1e3:.1f} ms vs {base * 1e3:.1f} ms", repeats=repeats))

    model = zoo.build("mixer").eval()
    layer = "net.blocks.1.mlp_tokens"
    with hooks.capture(model, [layer]) as rec, torch.no_grad():
        model(x[:2])
    mlp = dict(model.named_modules())[layer]
    n_rows = 8 if quick else 32
    z = rec[layer].input.reshape(-1, 49)[:n_rows]
    fn = lambda v: mlp(v[None])[0]                          # noqa: E731
    ref = _loop_jacobian(mlp, z)
    got = mixing.channel_jacobian(fn, z)
    if not torch.allclose(got, ref, atol=1e-5, rtol=1e-4):
        raise AssertionError("vmap Jacobian differs from the autograd loop")
    loop = median_time(lambda: _loop_jacobian(mlp, z), repeats=max(2, repeats // 2))
    vm = median_time(lambda: mixing.channel_jacobian(fn, z), repeats=repeats)
    rows.append(Row(what=f"vmap(jacrev) token-MLP Jacobian, {n_rows} channel rows x 49 tokens "
                         f"(allclose)", baseline="row-by-row autograd loop", ratio=vm / loop,
                    value=f"{loop / vm:.0f}x faster", repeats=repeats))
    full = rec[layer].input                                  # [2, C, T]
    b, c, t = full.shape
    vm_all = median_time(lambda: mixing.channel_jacobian(fn, full.reshape(-1, t)), repeats=repeats)
    with torch.no_grad():
        analytic = median_time(lambda: mixing._mlp_effective(mlp, full), repeats=repeats)
    rows.append(Row(what=f"analytic W2 diag(mean act') W1 channel-mean Jacobian ({b} images)",
                    baseline="vmap(jacrev) over all channel rows", ratio=analytic / vm_all,
                    value=f"{vm_all / analytic:.0f}x faster", repeats=repeats))
    return rows
