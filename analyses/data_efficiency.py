"""Do MLPs need more data than architectures with inductive bias?

Trains every zoo family on seeded Fashion-MNIST subsets of increasing size at
an equal training budget (about the same number of samples seen per run, at
least one pass), several seeds each, and records test accuracy.

    python -m analyses.data_efficiency            # full scale (see --help)
    python -m analyses.data_efficiency --quick    # seconds, into runs/analyses_quick/

The models trained on the largest subset are reused by the robustness,
interpretability and cost analyses (shared cache, see ``analyses.common``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import numpy as np

from analyses import common
from analyses.common import LABELS, COLORS, Claim

NAME = "data_efficiency"
SCALES = {
    "full": {"sizes": [1000, 10000, 30000], "seeds": [0, 1, 2], "budget": 20000,
             "test_n": None, "families": list(common.FAMILIES)},
    # the largest quick subset matches the other analyses' quick models (n_train 200, 1 epoch)
    "quick": {"sizes": [64, 200], "seeds": [0, 1], "budget": 200, "test_n": 200,
              "families": list(common.FAMILIES)},
}


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    jobs = [(seed, n, fam) for seed in scale["seeds"] for n in scale["sizes"]
            for fam in scale["families"]]
    rows = []
    bar = tqdm(jobs, desc="data efficiency", unit="model", disable=not progress)
    for seed, n, fam in bar:
        bar.set_postfix(model=fam, n=n, seed=seed)
        _, rec = common.trained(fam, n_train=n, seed=seed, epochs=common.epochs_for(n, scale["budget"]),
                                test_n=scale["test_n"], cache=paths.cache)
        rows.append({k: rec[k] for k in ("name", "n_train", "seed", "epochs", "params",
                                         "test_accuracy", "test_n", "train_time_s")})
    return {"rows": rows}


def table(results: dict) -> dict:
    """``{family: {n_train: [accuracy per seed, in seed order]}}``."""
    out: dict = {}
    for r in sorted(results["rows"], key=lambda r: r["seed"]):
        out.setdefault(r["name"], {}).setdefault(int(r["n_train"]), []).append(r["test_accuracy"])
    return out


def _gap_per_seed(results: dict, n: int, mlps) -> List[float]:
    """Per seed: CNN accuracy minus the mean accuracy of the MLP families at size ``n``."""
    t = table(results)
    seeds = sorted({r["seed"] for r in results["rows"]})
    gaps = []
    for i, _ in enumerate(seeds):
        cnn = t["cnn"][n][i]
        gaps.append(cnn - float(np.mean([t[f][n][i] for f in mlps])))
    return gaps


def claims(results: dict) -> List[Claim]:
    t = table(results)
    sizes = sorted(next(iter(t.values())))
    mlps = [f for f in common.MLP_FAMILIES if f in t]
    small, large = sizes[0], sizes[-1]
    g_small = _gap_per_seed(results, small, mlps)
    g_large = _gap_per_seed(results, large, mlps)
    shrink = [a - b for a, b in zip(g_small, g_large)]
    est, lo, hi = common.mean_ci(shrink)
    details = {f"gap_cnn_minus_mlps_at_{small}": common.mean_ci(g_small),
               f"gap_cnn_minus_mlps_at_{large}": common.mean_ci(g_large),
               "accuracy_mean": {f: {str(n): float(np.mean(v)) for n, v in d.items()}
                                 for f, d in t.items()}}
    return [Claim(
        key="mlps_need_more_data",
        claim="MLPs lack inductive bias and need more data than CNNs to reach the same accuracy",
        who="Tolstikhin et al. (MLP-Mixer) and Touvron et al. (ResMLP) report MLPs lagging "
            "without large pre-training; Liu et al. (gMLP) and Zhao et al. attribute it to "
            "missing inductive bias",
        experiment=f"test accuracy of {', '.join(LABELS[f] for f in t)} trained on "
                   f"{', '.join(str(s) for s in sizes)} Fashion-MNIST images at an equal budget "
                   f"of ~{results['settings']['budget']} samples, {len(g_small)} seeds",
        figure="data_efficiency.pdf",
        effect=f"(CNN - mean MLP accuracy) at {small} images minus the same gap at {large} "
               f"images, paired by seed: > 0 means the MLPs' deficit shrinks with more data",
        estimate=est, low=lo, high=hi, margin=0.01, rule=common.RULE + " (margin: 1 point)",
        details=details)]


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    t = table(results)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    mlps = [f for f in common.MLP_FAMILIES if f in t]
    for fam, by_n in t.items():
        ns = sorted(by_n)
        m = np.array([np.mean(by_n[n]) for n in ns])
        s = np.array([np.std(by_n[n]) for n in ns])
        ls = "-" if fam in mlps else "--"
        ax.plot(ns, m, ls, marker="o", ms=3, color=COLORS[fam], label=LABELS[fam])
        ax.fill_between(ns, m - s, m + s, color=COLORS[fam], alpha=0.15, lw=0)
        if fam != "cnn":
            gap = np.array([[t["cnn"][n][i] - by_n[n][i] for i in range(len(by_n[n]))] for n in ns])
            ax2.errorbar(ns, gap.mean(1), yerr=gap.std(1), fmt=ls, marker="o", ms=3, capsize=2,
                         color=COLORS[fam], label=LABELS[fam])
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xlabel("training images (Fashion-MNIST)")
    ax.set_ylabel("test accuracy (mean +- std over seeds)")
    ax.set_title("Accuracy vs data at equal training budget")
    ax.legend(fontsize=7, ncol=2)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("CNN accuracy minus model's")
    ax2.set_title("Deficit to the CNN (> 0: CNN better)")
    fig.tight_layout()
    return [common.savefig(fig, paths, "data_efficiency")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv)


if __name__ == "__main__":
    sys.exit(main())
