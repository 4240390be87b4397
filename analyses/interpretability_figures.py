"""Figures of ``analyses.interpretability_comparison``: the Fashion-MNIST scores by family and
method (faithfulness, sanity, silhouette localisation), the synthetic-data chance-corrected
localisation, each claim's per-family forest plot, and example maps on both datasets."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from analyses import common
from analyses.common import COLORS, LABELS
from analyses.interpretability_comparison import (MEAN, METRICS, SYNTHETIC_METRICS, _order,
                                                  _random_gap, claims, table)
from probe import attribution

__all__ = ["plot", "plot_comparison", "plot_synthetic", "plot_effects", "plot_examples",
           "plot_synthetic_examples"]

METRIC_LABELS = {
    "faithfulness": "insertion - deletion AUC\n(higher = more faithful)",
    "relative_deletion": "deletion AUC / random-order\ndeletion AUC (lower = better)",
    "sanity": "rank corr. after full\nrandomisation (lower = better)",
    "localization": "attribution mass in\nsilhouette (higher = better)",
    "mask_mass_excess": "mass in mask - mask's\narea share (higher = better)",
    "pointing_excess": "pointing game - mask's\narea share (higher = better)",
}


def _panel(ax, t: dict, method: str, fams: List[str], t0: Optional[dict] = None) -> None:
    """Bars: trained mean and 95% CI over seeds, dots: seeds; crosses: the initialisations' mean."""
    for i, f in enumerate(fams):
        vals = [v for _, v in sorted(t[f][method].items()) if np.isfinite(v)]
        if not vals:
            continue
        m, lo, hi = common.mean_ci(vals)
        ax.bar(i, m, color=COLORS[f], alpha=0.85, width=0.75,
               hatch=None if f in common.MLP_FAMILIES else "//", edgecolor="white")
        ax.errorbar(i, m, yerr=[[m - lo], [hi - m]], color="k", capsize=2, lw=0.8)
        ax.plot([i] * len(vals), vals, "o", color="k", ms=2, alpha=0.6)
        init = [v for v in (t0 or {}).get(f, {}).get(method, {}).values() if np.isfinite(v)]
        if init:
            ax.plot(i, np.mean(init), "x", color="k", ms=5, mew=1.2)
    ax.set_xticks(range(len(fams)))
    ax.set_xticklabels([LABELS[f] for f in fams], rotation=45, fontsize=7)
def plot_comparison(results: dict, paths: common.Paths) -> Path:
    import matplotlib.pyplot as plt
    methods = list(results["rows"][0]["methods"])
    cols = methods + [MEAN]
    fams = _order({r["family"] for r in results["rows"]})
    tables = {m: table(results, m) for m in METRICS}
    has_init = all("init" in r for r in results["rows"])
    inits = {m: table(results, m, "init") for m in METRICS} if has_init else {}
    fig, axes = plt.subplots(len(METRICS) + 1, len(cols), figsize=(2.3 * len(cols), 13),
                             squeeze=False)
    for c, method in enumerate(cols):
        for r, metric in enumerate(METRICS):
            ax = axes[r][c]
            _panel(ax, tables[metric], method, fams, inits.get(metric))
            if metric == "faithfulness":
                ref = (np.mean([_random_gap(results, m) for m in methods]) if method == MEAN
                       else _random_gap(results, method))
                ax.axhline(ref, color="k", ls="--", lw=0.8, label="random pixel order")
            elif metric == "relative_deletion":
                ax.axhline(1.0, color="k", ls="--", lw=0.8, label="random pixel order")
            elif metric == "localization":
                ax.axhline(results["images"]["mask_fraction"], color="k", ls="--", lw=0.8,
                           label="chance (silhouette area)")
            else:
                ax.axhline(0, color="k", lw=0.8)
            if c == 0:
                ax.set_ylabel(METRIC_LABELS[metric], fontsize=8)
            if r == 0:
                ax.set_title("mean over methods (claims)" if method == MEAN else method, fontsize=9)
        ax = axes[len(METRICS)][c]
        for f in fams:
            curves = [row["methods"][m]["sanity"]["correlation_by_layer"]
                      for row in results["rows"] if row["family"] == f
                      for m in (methods if method == MEAN else [method])]
            if not curves:
                continue
            k = max(len(cv) for cv in curves)
            curves = [cv for cv in curves if len(cv) == k]
            mean = np.nanmean(np.array(curves, dtype=float), axis=0)
            ax.plot(np.arange(1, k + 1) / k, mean, "-" if f in common.MLP_FAMILIES else "--",
                    marker="o", ms=2, color=COLORS[f], label=LABELS[f])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("fraction of layers randomised\n(from the output down)", fontsize=7)
        if c == 0:
            ax.set_ylabel("rank corr. with the trained\nmodel's map (cascade)", fontsize=8)
            ax.legend(fontsize=6, ncol=2)
    s = results.get("settings", {})
    fig.suptitle(f"Attributions of each family on {results['images']['n']} Fashion-MNIST test "
                 f"images ({len({r['seed'] for r in results['rows']})} seeds; bars: mean and 95% "
                 f"CI over seeds, dots: seeds; hatched: non-MLP; x: the same-seed random "
                 f"initialisations' mean)\nremoved pixels = {s.get('baseline', 'mean')} intensity; "
                 f"dashed lines: random pixel order (rows 1-2), chance = silhouette's share of the "
                 f"image (row 4)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return common.savefig(fig, paths, "interpretability_comparison")




_AXIS = {"mlps_less_faithful": "CNN - family, insertion - deletion AUC",
         "mlp_maps_fail_sanity_check": "family - CNN, rank corr. after randomisation",
         "mlp_maps_localise_worse": "CNN - family, (mass in mask - area share), synthetic"}


def plot_effects(results: dict, paths: common.Paths) -> Path:
    """Forest plot per claim: each family's effect (> 0: less interpretable than the CNN) with its
    interval, the MLP group's, the same effect between the initialisations, and +-margin."""
    import matplotlib.pyplot as plt
    rows = results.get("claims") or [c.as_result() for c in claims(results)]
    fig, axes = plt.subplots(1, len(rows), figsize=(4.4 * len(rows), 4.2), squeeze=False)
    for ax, c in zip(axes[0], rows):
        init = c.get("reference", {}).get("initialisation", {})
        entries = [(LABELS[f], v, COLORS[f], init.get("per_family", {}).get(f))
                   for f, v in c["per_family"].items()]
        entries.append(("MLP group", {"effect": c["effect"], "ci_low": c["ci_low"],
                                      "ci_high": c["ci_high"]}, "k", init if "effect" in init else None))
        for i, (label, v, color, v0) in enumerate(entries):
            ax.errorbar(v["effect"], i, xerr=[[v["effect"] - v["ci_low"]], [v["ci_high"] - v["effect"]]],
                        fmt="D" if label == "MLP group" else "o", color=color, capsize=3)
            if v0:
                ax.plot(v0["effect"], i, "x", color=color, ms=6, mew=1.2)
        ax.plot([], [], "kx", label="same effect at initialisation")
        if init.get("undefined_for"):
            ax.plot([], [], " ", label="undefined at init: " + ", ".join(
                LABELS[f] for f in init["undefined_for"]) + " (all-zero maps)")
        ax.axvspan(-c["margin"], c["margin"], color="0.88", lw=0, label=f"+-margin ({c['margin']:g})")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(entries)))
        ax.set_yticklabels([e[0] for e in entries], fontsize=8)
        ax.set_xlabel(f"{_AXIS.get(c['id'], 'effect')}\n(> 0: the family less interpretable; "
                      f"{round(100 * c.get('confidence', 0.95))}% CI)", fontsize=8)
        ax.set_title(f"{c['id']}: {c['verdict']}\n(half margin: {c['sensitivity']['half']}, "
                     f"double: {c['sensitivity']['double']})", fontsize=8)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2)
    fig.tight_layout()
    return common.savefig(fig, paths, "interpretability_effects")




def plot_synthetic(results: dict, paths: common.Paths) -> Path:
    """Chance-corrected localisation on the synthetic images, per method and family: bars =
    trained models (mean, 95% CI over seeds, dots = seeds), x = same-seed initialisations,
    0 = chance (the mask's area share), dashed = a position-blind map of where masks fall."""
    import matplotlib.pyplot as plt
    syn = results["synthetic"]
    methods = list(syn["rows"][0]["methods"])
    cols = methods + [MEAN]
    fams = _order({r["family"] for r in syn["rows"]})
    fig, axes = plt.subplots(len(SYNTHETIC_METRICS), len(cols), figsize=(2.3 * len(cols), 6.4),
                             squeeze=False)
    prior = syn.get("controls", {}).get("prior_map", {})
    for r, metric in enumerate(SYNTHETIC_METRICS):
        t, t0 = table(results, metric), table(results, metric, "init")
        for c, method in enumerate(cols):
            ax = axes[r][c]
            _panel(ax, t, method, fams, t0)
            ax.axhline(0, color="k", lw=0.8)
            if metric in prior:
                ax.axhline(prior[metric], color="k", ls="--", lw=0.8)
            if c == 0:
                ax.set_ylabel(METRIC_LABELS[metric], fontsize=8)
            if r == 0:
                ax.set_title("mean over methods (claim)" if method == MEAN else method, fontsize=9)
    imgs = syn["images"]
    fig.suptitle(f"Localisation on {imgs['n']} synthetic test images (class evidence = a grating "
                 f"in a square covering {100 * imgs['mask_fraction']:.1f}% of the image), models "
                 f"trained on synthetic data ({len({r['seed'] for r in syn['rows']})} seeds)\n0 = "
                 f"chance (the area share); x: same-seed random initialisation; dashed: a "
                 f"position-blind map of where the squares fall (the dataset's mask frequency)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return common.savefig(fig, paths, "interpretability_synthetic")


def _examples(images: torch.Tensor, maps: dict, labels: List[str], title: str,
              masks: Optional[torch.Tensor] = None):
    fig = attribution.plot_grid(images, maps, row_labels=labels)
    if masks is not None:
        axes = np.array(fig.axes).reshape(len(images), -1)
        for r, row in enumerate(axes):
            for ax in row:
                ax.contour(masks[r].numpy().astype(float), levels=[0.5], colors="lime",
                           linewidths=0.7)
    fig.suptitle(title, fontsize=8)
    return fig


def _example_figure(rows: List[dict], images: dict, method: str, what: str,
                    masks: bool = False):
    seed = min(r["seed"] for r in rows)
    first = {r["family"]: r for r in rows if r["seed"] == seed}
    fams = [f for f in _order(first) if "example_maps" in first[f]["methods"].get(method, {})]
    x = torch.tensor(images["examples"], dtype=torch.float32)[:, None]
    maps = {(LABELS[f], method): torch.tensor(first[f]["methods"][method]["example_maps"])
            for f in fams}
    labels = [images["classes"][int(v)] for v in images["labels"][:len(x)]]
    colours = ("red = for the class, blue = against" if attribution.METHODS[method].signed
               else "bright = large attribution")
    title = (f"{method} maps on {what}, seed {seed}\n({colours}; each map scaled to its own "
             f"maximum" + ("; green: the class evidence's square" if masks else "") + ")")
    return _examples(x, maps, labels, title,
                     torch.tensor(images["example_masks"]) if masks else None)


def plot_examples(results: dict, paths: common.Paths) -> Path:
    method = results.get("settings", {}).get("example_method", "integrated_gradients")
    fig = _example_figure(results["rows"], results["images"], method,
                          "Fashion-MNIST (predicted class)")
    return common.savefig(fig, paths, "attribution_examples")


def plot_synthetic_examples(results: dict, paths: common.Paths) -> Path:
    method = results.get("settings", {}).get("example_method", "integrated_gradients")
    syn = results["synthetic"]
    fig = _example_figure(syn["rows"], syn["images"], method, "synthetic images (true class)",
                          masks=True)
    return common.savefig(fig, paths, "attribution_examples_synthetic")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    return [plot_comparison(results, paths), plot_synthetic(results, paths),
            plot_effects(results, paths), plot_examples(results, paths),
            plot_synthetic_examples(results, paths)]
