"""Attribution: Integrated Gradients through ``probe.attribution`` vs captum directly.

- ``attribute(model, x, t, "ig", n_steps=N)`` vs captum's ``IntegratedGradients``
  at the same ``n_steps`` and Gauss-Legendre path (target: ratio <= 1.0, maps
  allclose). Ours *is* captum plus input checks, eval mode, channel reduction
  and detaching, so the honest expectation is a ratio of about 1.0.
- Memory bound: with ``internal_batch_size=K`` the model never sees a batch of
  more than ``K`` path points (counted with a forward pre-hook, removed after),
  instead of ``n_steps * B`` at once; ratio = largest batch / K (target <= 1.0).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks import Row, one_thread, paired_ratio, register

__all__ = ["bench_attribution"]


@register("attribution")
def bench_attribution(quick: bool = False) -> List[Row]:
    """Runs with one intra-op thread (restored after), like the other ratio benchmarks."""
    with one_thread():
        return _bench(quick)


def _bench(quick: bool) -> List[Row]:
    from captum.attr import IntegratedGradients

    from probe import attribution, zoo
    rounds = 3 if quick else 5
    batch = 4 if quick else 8
    n_steps = 16 if quick else 32
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    rows: List[Row] = []
    for family in ["cnn", "mixer", "vit"]:
        model = zoo.build(family).eval()
        target = torch.arange(batch) % 10
        captum_ig = IntegratedGradients(model)

        def ours():
            return attribution.attribute(model, x, target, "ig", n_steps=n_steps)

        def theirs():
            return captum_ig.attribute(x.clone().requires_grad_(True), baselines=torch.zeros_like(x),
                                       target=target, n_steps=n_steps,
                                       method="gausslegendre").sum(1).detach()

        a, b = ours(), theirs()
        close = torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        base, mine, ratio = paired_ratio(ours, theirs, rounds=rounds)
        rows.append(Row(what=f"IG maps ({family}, batch {batch}, n_steps {n_steps}, 1 thread)",
                        baseline="captum IntegratedGradients, same n_steps", ratio=ratio,
                        value=f"{mine * 1e3:.1f} ms vs {base * 1e3:.1f} ms; maps allclose: {close}",
                        repeats=rounds))

    model = zoo.build("mixer").eval()
    internal = 16
    seen: List[int] = []
    handle = model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    try:
        bounded = attribution.attribute(model, x, 0, "ig", n_steps=n_steps,
                                        internal_batch_size=internal)
        largest_bounded = max(seen)
        seen.clear()
        unbounded = attribution.attribute(model, x, 0, "ig", n_steps=n_steps)
        largest_unbounded = max(seen)
    finally:
        handle.remove()
    close = torch.allclose(bounded, unbounded, rtol=1e-4, atol=1e-6)
    rows.append(Row(what=f"largest forward batch with internal_batch_size={internal} (mixer, "
                         f"batch {batch}, n_steps {n_steps}) / internal_batch_size",
                    baseline=f"no internal_batch_size: {largest_unbounded} path points at once",
                    ratio=largest_bounded / internal,
                    value=f"{largest_bounded} vs {largest_unbounded} images per pass; maps allclose: {close}",
                    repeats=1))
    return rows
