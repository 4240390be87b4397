"""Are MLPs cheaper than CNNs and ViTs for similar accuracy?

For every family: parameters, FLOPs per image (``probe.zoo.count_flops``), measured CPU
latency (batch 1) and throughput (batch 256), and the test accuracy of the converged
full-data models (the cells of ``analyses/recipe.json``, seeds ``plans.full``; ``make
cells-full``). Timing rounds interleave the families so that machine drift hits all of
them alike; a family's throughput is compared with the CNN's round by round, and the
interval is over rounds. Accuracy is compared seed by seed.

    python -m analyses.cost_accuracy            # full scale (see --help); run on an idle machine
    python -m analyses.cost_accuracy --quick    # seconds, the quick recipe's models
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping

import numpy as np
import torch

from analyses import common, converged, evaluation, verdicts
from analyses.common import COLORS, LABELS, Claim

NAME = "cost_accuracy"
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES), "rounds": 7, "batch": 256,
             "reps_batch1": 50},
    "quick": {"quick": True, "families": ["cnn", "mixer", "vit"], "rounds": 3, "batch": 32,
              "reps_batch1": 5},
}


def _time(model, x, reps: int) -> float:
    """Seconds per call of ``model(x)`` (median of ``reps`` calls after one warm-up)."""
    return evaluation.latency_ms(model, x, reps) / 1e3


def seeds(quick: bool) -> List[int]:
    """The full-data models' seeds: the recipe's ``plans.full``."""
    recipe, _ = converged.recipe_and_store(quick)
    return sorted(int(s) for s in recipe.plans["full"]["seeds"])


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import zoo
    from analyses.cells import accuracy, test_sets
    quick = bool(scale["quick"])
    fams = list(scale["families"])
    if "cnn" not in fams:
        raise ValueError("cost_accuracy compares every family with the CNN: include 'cnn'")
    plan_seeds = seeds(quick)
    loaded = converged.models(fams, plan_seeds, quick=quick, progress=progress)
    models = [row for _, row in loaded]
    timed = {}                                   # one trained model per family (the first seed)
    for model, row in loaded:
        timed.setdefault(row["family"], model)
    recipe, _ = converged.recipe_and_store(quick)
    _, (xs, ys) = test_sets(recipe)
    init = {f: {str(s): accuracy(zoo.build(f, seed=s).eval(), xs, ys) for s in plan_seeds}
            for f in fams}
    g = torch.Generator().manual_seed(0)
    xb = torch.rand(scale["batch"], 1, 28, 28, generator=g)
    x1 = xb[:1]
    lat: Dict[str, List[float]] = {f: [] for f in fams}
    thr: Dict[str, List[float]] = {f: [] for f in fams}
    for _ in tqdm(range(scale["rounds"]), desc="timing rounds", disable=not progress):
        for f in fams:
            lat[f].append(_time(timed[f], x1, scale["reps_batch1"]) * 1e3)
            thr[f].append(scale["batch"] / _time(timed[f], xb, 3))
    rows = []
    for f in fams:
        mine = sorted((r for r in models if r["family"] == f), key=lambda r: r["seed"])
        rows.append({"family": f, "params": zoo.count_params(timed[f]),
                     "flops_per_image": zoo.count_flops(timed[f]),
                     "seeds": [r["seed"] for r in mine],
                     "accuracy": [r["test_accuracy"] for r in mine],
                     "latency_ms_batch1": lat[f], "throughput_img_s": thr[f]})
    return {"models": models, "rows": rows, "initialisation": init,
            "reference": {"chance": 0.1,
                          "shipped_test_accuracy": {f: zoo.card(f)["test_accuracy"] for f in fams}},
            "recipe_hash": recipe.hash}


# ----------------------------------------------------------------------------- claims


def _rows(results: Mapping) -> Dict[str, dict]:
    return {r["family"]: r for r in results["rows"]}


def throughput_effects(results: Mapping) -> Dict[str, List[float]]:
    """Per non-CNN family, per timing round: throughput / CNN throughput - 1 (> 0: faster)."""
    rows = _rows(results)
    cnn = rows["cnn"]["throughput_img_s"]
    return {f: [t / c - 1.0 for t, c in zip(r["throughput_img_s"], cnn, strict=True)]
            for f, r in rows.items() if f != "cnn"}


def accuracy_effects(results: Mapping) -> Dict[str, List[float]]:
    """Per non-CNN family, per seed: CNN accuracy - family accuracy (paired by seed)."""
    rows = _rows(results)
    cnn = dict(zip(rows["cnn"]["seeds"], rows["cnn"]["accuracy"]))
    out = {}
    for f, r in rows.items():
        if f == "cnn":
            continue
        mine = dict(zip(r["seeds"], r["accuracy"]))
        if set(mine) != set(cnn):
            raise ValueError(f"{f} has seeds {sorted(mine)}, the CNN {sorted(cnn)}: accuracy is "
                             f"compared seed by seed")
        out[f] = [cnn[s] - mine[s] for s in sorted(cnn)]
    return out


def _confidence(key: str) -> float:
    return verdicts.CONFIDENCE[verdicts.margin_of(key)["test"]]


def claims(results: Mapping) -> List[Claim]:
    rows = _rows(results)
    fams = list(rows)
    mlps = [f for f in common.MLP_FAMILIES if f in rows]
    if not mlps:
        raise ValueError("the results hold no MLP family (mixer, resmlp, gmlp, fnet)")
    details = {f: {"params": r["params"], "mflops": r["flops_per_image"] / 1e6,
                   "accuracy": common.mean_ci(r["accuracy"]),
                   "latency_ms_batch1": common.positive_ci(r["latency_ms_batch1"]),
                   "throughput_img_s": common.positive_ci(r["throughput_img_s"])}
               for f, r in rows.items()}
    reference = {"initialisation_accuracy": {f: common.mean_ci(list(v.values()))
                                             for f, v in results.get("initialisation", {}).items()},
                 **results.get("reference", {})}
    e1, l1, h1, pf1 = common.group_effect(throughput_effects(results), mlps,
                                          confidence=_confidence("mlps_cheaper"))
    e2, l2, h2, pf2 = common.group_effect(accuracy_effects(results), mlps,
                                          confidence=_confidence("mlps_similar_accuracy"))
    n_rounds = len(rows["cnn"]["throughput_img_s"])
    n_seeds = len(rows["cnn"]["accuracy"])
    group = ", ".join(LABELS[f] for f in mlps)
    batch = results.get("settings", {}).get("batch", "?")
    return [
        Claim(key="mlps_cheaper",
              claim="MLP models are cheaper to run than CNNs of similar size",
              who="Tolstikhin et al. (MLP-Mixer: 'competitive ... with less compute'), Touvron "
                  "et al. (ResMLP: simple, fast on hardware)",
              experiment=f"CPU throughput at batch {batch} of {', '.join(LABELS[f] for f in fams)} "
                         f"(~0.5M parameters each, converged full-data weights), {n_rounds} "
                         f"interleaved timing rounds",
              figure="cost_accuracy.pdf",
              effect=f"family throughput / CNN throughput - 1, paired by timing round (> 0: faster "
                     f"than the CNN); MLP group = mean over {group} per round",
              estimate=e1, low=l1, high=h1, details=details, per_family=pf1, reference=reference),
        Claim(key="mlps_similar_accuracy",
              claim="... at similar accuracy",
              who="same papers: MLPs 'attain competitive scores' at matched cost",
              experiment=f"test accuracy of the converged full-data models (one recipe for every "
                         f"family), {n_seeds} seeds",
              figure="cost_accuracy.pdf",
              effect=f"CNN accuracy minus the family's, paired by seed; MLP group = mean over "
                     f"{group} per seed",
              estimate=e2, low=l2, high=h2, details=details, per_family=pf2, reference=reference),
    ]


# ----------------------------------------------------------------------------- figure


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
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.5), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.1]})
    shipped = results.get("reference", {}).get("shipped_test_accuracy", {})
    for ax, (_, cost, label) in zip(axes[:4], costs):
        pts = []
        for r in rows:
            f = r["family"]
            m, lo, hi = common.mean_ci(r["accuracy"])
            c = cost(r)
            pts.append((c, m))
            ax.errorbar(c, m, yerr=[[m - lo], [hi - m]], fmt="o", color=COLORS[f], capsize=3,
                        label=LABELS[f])
            if f in shipped:
                ax.plot(c, shipped[f], "x", color=COLORS[f], ms=5, alpha=0.7)
            ax.annotate(LABELS[f], (c, m), textcoords="offset points", xytext=(4, 4), fontsize=7)
        front = sorted(_pareto(pts), key=lambda i: pts[i][0])
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=0.8,
                label="Pareto front")
        ax.set_xlabel(label)
    axes[0].set_ylabel("test accuracy (mean, 95% CI over seeds)\nx: shipped zoo model")
    axes[0].legend(fontsize=7)
    for ax in axes[1:4]:
        ax.sharey(axes[0])
    _forest(axes[4], results)
    fig.suptitle("Cost vs accuracy (Fashion-MNIST, converged ~0.5M-parameter models, CPU)")
    fig.tight_layout()
    return [common.savefig(fig, paths, "cost_accuracy")]


def _forest(ax, results: Mapping) -> None:
    """Each family's throughput gain over the CNN (interval over timing rounds), MLP group last."""
    claim = next((c for c in results.get("claims", []) if c["id"] == "mlps_cheaper"), None)
    if claim is None:
        ax.set_axis_off()
        return
    items = [(LABELS[f], v, COLORS[f], "o") for f, v in claim["per_family"].items()]
    items.append(("MLP group", {"effect": claim["effect"], "ci_low": claim["ci_low"],
                                "ci_high": claim["ci_high"]}, "k", "D"))
    for i, (label, v, color, marker) in enumerate(items):
        ax.errorbar(v["effect"], i, xerr=[[v["effect"] - v["ci_low"]], [v["ci_high"] - v["effect"]]],
                    fmt=marker, color=color, capsize=3)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels([it[0] for it in items], fontsize=8)
    ax.axvspan(-claim["margin"], claim["margin"], color="0.85", lw=0)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("throughput / CNN throughput - 1")
    ax.set_title(f"Faster than the CNN? ({claim['verdict']})", fontsize=9)


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=lambda results: [])


if __name__ == "__main__":
    sys.exit(main())
