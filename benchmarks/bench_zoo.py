"""Training and inference throughput per zoo family.

Inference: ``ProbeModel`` (shape check + normalisation inside) vs the bare
architecture on pre-normalised input. Training: one ``probe.train`` step
(batched augmentation, forward, backward, AdamW) vs a bare forward + backward +
AdamW step on the same batch. Both ratios are ours / baseline wall time, timed
interleaved (baseline, ours, baseline, ours ...) with :func:`benchmarks.paired_ratio`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks import Row, paired_ratio, register


@register("zoo-throughput")
def zoo_throughput(quick: bool = False):
    from probe import zoo
    from probe.train import augment

    rounds = 3 if quick else 7
    batch = 64 if quick else 256
    rows = []
    for name in zoo.names():
        model = zoo.build(name).eval()
        x = torch.rand(batch, 1, 28, 28)
        y = torch.randint(0, 10, (batch,))
        xn = model.normalize(x)
        with torch.no_grad():
            _, ours, ratio = paired_ratio(lambda: model(x), lambda: model.net(xn), rounds=rounds)
        rows.append(Row(f"{name}: inference, batch {batch}", "bare net forward", ratio,
                        f"{batch / ours:,.0f} img/s", rounds))

        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)

        def ours_step():
            logits = model(augment(x, gen))
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def bare_step():
            loss = F.cross_entropy(model.net(xn), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        _, ours, ratio = paired_ratio(ours_step, bare_step, rounds=rounds)
        rows.append(Row(f"{name}: training step, batch {batch}", "bare forward+backward+AdamW",
                        ratio, f"{batch / ours:,.0f} img/s", rounds))
    return rows
