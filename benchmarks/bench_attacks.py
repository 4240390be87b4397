"""Attack and end-to-end robustness-run speed, as ratios against bare model compute.

- PGD-k: our Linf PGD (and foolbox's LinfPGD) vs k bare forward+backward passes
  (gradient w.r.t. the input) of the same model on the same batch, timed
  interleaved with :func:`benchmarks.paired_ratio`.
- End to end: the default ``python -m probe.robustness --model mixer`` run vs its
  model-compute floor: every forward pass the run made (recorded by a hook,
  with its batch size and whether gradients were on) replayed alone, forward
  only or forward + backward, on random inputs of the same shape.
"""
from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks import Row, median_time, paired_ratio, register


def _model(name: str):
    from probe import zoo
    try:
        return zoo.load(name)
    except (FileNotFoundError, ValueError):
        return zoo.load(name, weights="random")


@register("attacks")
def attacks_speed(quick: bool = False):
    import foolbox as fb
    from probe import attacks
    rows = []
    batch, k = (64, 5) if quick else (256, 10)
    repeats = 3 if quick else 5
    for name in ("mixer", "cnn"):
        model = _model(name)
        x = torch.rand(batch, *model.input_size)
        y = torch.randint(0, 10, (batch,))

        def bare():
            for _ in range(k):
                xi = x.clone().requires_grad_(True)
                loss = F.cross_entropy(model(xi), y, reduction="sum")
                torch.autograd.grad(loss, xi)

        def ours():
            attacks.pgd_linf(model, x, y, 0.03, steps=k)

        fmodel = fb.PyTorchModel(model, bounds=(0, 1))
        foolbox_attack = fb.attacks.LinfPGD(steps=k, abs_stepsize=2.5 * 0.03 / k)

        def foolbox_pgd():
            foolbox_attack(fmodel, x, y, epsilons=0.03)

        _, t_ours, r_ours = paired_ratio(ours, bare, rounds=repeats)
        _, t_fb, r_fb = paired_ratio(foolbox_pgd, bare, rounds=repeats)
        rows.append(Row(f"{name}: our PGD-{k}, batch {batch}", f"{k} bare forward+backward",
                        r_ours, f"{t_ours * 1e3:.0f} ms", repeats))
        rows.append(Row(f"{name}: foolbox LinfPGD-{k}, batch {batch}", f"{k} bare forward+backward",
                        r_fb, f"{t_fb * 1e3:.0f} ms", repeats))
    return rows


@register("robustness-run")
def end_to_end(quick: bool = False):
    from probe import robustness
    records = collections.Counter()
    models = {}
    handles = []
    real_load = robustness._load_model

    def counting_load(name, device, weights="shipped"):
        try:
            model = real_load(name, device, weights)
        except (FileNotFoundError, ValueError):
            model = real_load(name, device, "random")
        models[name] = model
        handles.append(model.register_forward_hook(
            lambda mod, inp, out, name=name: records.update(
                [(name, inp[0].shape[0], torch.is_grad_enabled())])))
        return model

    cfg = robustness.RunConfig(model="mixer")
    if quick:
        cfg = robustness.RunConfig(model="mixer", n=100, n_attack=20, n_heatmap=10,
                                   corruptions=["gaussian_noise", "fog", "contrast"], steps=5)
    else:
        from probe.corruptions import COMMON
        cfg.corruptions = list(COMMON)
    robustness._load_model = counting_load
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            robustness.run(cfg, out=Path(out), progress=False)
            total = time.perf_counter() - start
    finally:
        robustness._load_model = real_load
        for handle in handles:          # the replay below must not be counted
            handle.remove()
    floor = 0.0
    for (name, batch, grad), count in records.items():
        model = models[name]
        x = torch.rand(batch, *model.input_size)
        if grad:
            def step():
                xi = x.clone().requires_grad_(True)
                model(xi).logsumexp(1).sum().backward()
        else:
            def step():
                with torch.no_grad():
                    model(x)
        floor += count * median_time(step, repeats=3)
    passes = sum(records.values())
    return [Row("default `probe.robustness --model mixer` run" + (" (quick config)" if quick else ""),
                f"model-compute floor ({passes} forward passes replayed alone)", total / floor,
                f"{total:.0f} s total, floor {floor:.0f} s", 1)]
