"""Are MLPs cheaper than CNNs and ViTs for similar accuracy?

For every family: parameters, FLOPs per image (``probe.zoo.count_flops``),
measured CPU latency (batch 1) and throughput (batch 256), and test accuracy
of the data-efficiency models on the largest subset (several seeds). Timing
rounds interleave the models so that machine drift hits all of them alike;
the interval of a latency is over rounds.

    python -m analyses.cost_accuracy            # full scale (see --help); run on an idle machine
    python -m analyses.cost_accuracy --quick    # seconds, into runs/analyses_quick/
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import torch

from analyses import common
from analyses.common import COLORS, LABELS, Claim

NAME = "cost_accuracy"
SCALES = {
    "full": {"families": list(common.FAMILIES), "seeds": [0, 1, 2], "n_train": 30000, "epochs": 1,
             "test_n": None, "rounds": 7, "batch": 256, "reps_batch1": 50},
    "quick": {"families": list(common.FAMILIES), "seeds": [0, 1], "n_train": 200, "epochs": 1,
              "test_n": 200, "rounds": 3, "batch": 32, "reps_batch1": 5},
}


def _time(model, x, reps: int) -> float:
    """Seconds per call of ``model(x)`` (median of ``reps`` calls after one warm-up)."""
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import zoo
    fams = scale["families"]
    acc = {f: [] for f in fams}
    for seed in scale["seeds"]:
        for f in tqdm(fams, desc=f"accuracy (seed {seed})", unit="model", disable=not progress):
            _, rec = common.trained(f, n_train=scale["n_train"], seed=seed, epochs=scale["epochs"],
                                    test_n=scale["test_n"], cache=paths.cache)
            acc[f].append(rec["test_accuracy"])
    models = {f: common.build(f, seed=0).eval() for f in fams}
    g = torch.Generator().manual_seed(0)
    xb = torch.rand(scale["batch"], 1, 28, 28, generator=g)
    x1 = xb[:1]
    lat = {f: [] for f in fams}
    thr = {f: [] for f in fams}
    for _ in tqdm(range(scale["rounds"]), desc="timing rounds", disable=not progress):
        for f in fams:
            lat[f].append(_time(models[f], x1, scale["reps_batch1"]) * 1e3)
            thr[f].append(scale["batch"] / _time(models[f], xb, 3))
    rows = []
    for f in fams:
        rows.append({"name": f, "params": zoo.count_params(models[f]),
                     "flops_per_image": zoo.count_flops(models[f]),
                     "accuracy": acc[f], "latency_ms_batch1": lat[f],
                     "throughput_img_s": thr[f]})
    return {"rows": rows}


def _row(results: dict, f: str) -> dict:
    return next(r for r in results["rows"] if r["name"] == f)


def claims(results: dict) -> List[Claim]:
    fams = [r["name"] for r in results["rows"]]
    mlps = [f for f in common.MLP_FAMILIES if f in fams]
    cnn = _row(results, "cnn")
    # per timing round: relative throughput gain of the MLPs over the CNN (paired by round)
    gains = [float(np.mean([_row(results, f)["throughput_img_s"][i] for f in mlps])) / t - 1.0
             for i, t in enumerate(cnn["throughput_img_s"])]
    e1, l1, h1 = common.mean_ci(gains)
    gaps = [c - float(np.mean([_row(results, f)["accuracy"][i] for f in mlps]))
            for i, c in enumerate(cnn["accuracy"])]
    e2, l2, h2 = common.mean_ci(gaps)
    details = {f: {"params": _row(results, f)["params"],
                   "mflops": _row(results, f)["flops_per_image"] / 1e6,
                   "accuracy": common.mean_ci(_row(results, f)["accuracy"]),
                   "latency_ms_batch1": common.mean_ci(_row(results, f)["latency_ms_batch1"]),
                   "throughput_img_s": common.mean_ci(_row(results, f)["throughput_img_s"])}
               for f in fams}
    n_seeds = len(cnn["accuracy"])
    return [
        Claim(key="mlps_cheaper",
              claim="MLP models are cheaper to run than CNNs of similar size",
              who="Tolstikhin et al. (MLP-Mixer: 'competitive ... with less compute'), Touvron "
                  "et al. (ResMLP: simple, fast on hardware)",
              experiment=f"CPU throughput at batch {results['settings']['batch']} of the MLP "
                         f"families vs the CNN at ~0.5M parameters, "
                         f"{len(cnn['throughput_img_s'])} interleaved timing rounds",
              figure="cost_accuracy.pdf",
              effect="MLPs' mean throughput / CNN throughput - 1, paired by timing round "
                     "(> 0: MLPs faster)",
              estimate=e1, low=l1, high=h1, margin=0.10, rule=common.RULE + " (margin 10%)",
              details=details),
        Claim(key="mlps_similar_accuracy",
              claim="... at similar accuracy",
              who="same papers: MLPs 'attain competitive scores' at matched cost",
              experiment=f"test accuracy of the same models (data-efficiency models on the largest "
                         f"subset), {n_seeds} seeds",
              figure="cost_accuracy.pdf",
              effect="CNN accuracy minus the MLPs' mean accuracy, paired by seed",
              estimate=e2, low=l2, high=h2, margin=0.01, test="equivalence",
              rule=common.EQUIVALENCE_RULE + " (margin 1 point)", details=details),
    ]


def _pareto(points):
    """Indices of points not dominated (lower cost and higher accuracy)."""
    keep = []
    for i, (c, a) in enumerate(points):
        if not any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points)
                   if j != i):
            keep.append(i)
    return keep


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    rows = results["rows"]
    costs = [("params", lambda r: r["params"] / 1e3, "parameters (thousands)"),
             ("flops", lambda r: r["flops_per_image"] / 1e6, "MFLOPs / image"),
             ("latency", lambda r: float(np.median(r["latency_ms_batch1"])),
              "CPU latency, batch 1 (ms)"),
             ("throughput", lambda r: 1e3 / float(np.median(r["throughput_img_s"])),
              f"CPU time per image at batch {results['settings']['batch']} (ms)")]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), sharey=True)
    for ax, (_, cost, label) in zip(axes, costs):
        pts = []
        for r in rows:
            m, lo, hi = common.mean_ci(r["accuracy"])
            c = cost(r)
            pts.append((c, m))
            ax.errorbar(c, m, yerr=[[m - lo], [hi - m]], fmt="o", color=COLORS[r["name"]],
                        capsize=3, label=LABELS[r["name"]])
            ax.annotate(LABELS[r["name"]], (c, m), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
        front = sorted(_pareto(pts), key=lambda i: pts[i][0])
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=0.8,
                label="Pareto front")
        ax.set_xlabel(label)
    axes[0].set_ylabel("test accuracy (mean, 95% CI over seeds)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Cost vs accuracy (Fashion-MNIST, ~0.5M-parameter models, CPU)")
    fig.tight_layout()
    return [common.savefig(fig, paths, "cost_accuracy")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv)


if __name__ == "__main__":
    sys.exit(main())
