"""Figures of ``analyses.mixing_patterns``: mixing maps, metrics by depth against the
init and reference controls, and Mixer's first-layer templates (the paper's Fig. 5); each
also on the finer 14x14 token grid (``*_14x14.pdf``) when the results hold a ``finegrid`` block."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np

from analyses import common
from analyses.common import COLORS, LABELS
from analyses.mixing_claims import (METRICS, WEIGHTS, by_depth, figure_suffix, finegrid_view,
                                    grid_text, metric_ci, values)


def _plot_maps(results: dict, paths: common.Paths) -> Path:
    import matplotlib.pyplot as plt
    maps = results["maps"]
    size = results["image_size"]
    fams = [f for f in results["mixing"] if f in maps]
    ncol = max(len(maps[f]["panels"]) for f in fams)
    fig, axes = plt.subplots(len(fams), ncol, figsize=(1.35 * ncol + 1.3, 1.45 * len(fams) + 0.6),
                             squeeze=False)
    for r, fam in enumerate(fams):
        info = maps[fam]
        hi, wi = info["input_grid"]
        for c in range(ncol):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c >= len(info["panels"]):
                ax.axis("off")
                continue
            p = info["panels"][c]
            v = np.asarray(p["values"], dtype=float)
            lim = float(np.abs(v).max()) or 1.0
            ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=(0, size, size, 0),
                      interpolation="nearest")
            if p["query_px"] is not None:
                ax.plot(p["query_px"][1], p["query_px"][0], marker="+", color="k", ms=5, mew=0.8,
                        alpha=0.8)
            ax.set_title(p["title"], fontsize=6.5)
            if c == 0:
                ax.set_ylabel(f"{LABELS[fam]}\n{info['kind']}\n{hi}x{wi} grid, "
                              f"{info['px_per_unit']:g} px/cell", fontsize=7, color=COLORS[fam])
    fig.suptitle(f"First token-mixing layer of each family (trained, seed "
                 f"{results['settings']['seeds'][0]}), drawn on the {size}x{size} pixel image; "
                 f"+ = query token; blue < 0 < red, own scale per panel\n{grid_text(results)}",
                 fontsize=8)
    fig.tight_layout()
    return common.savefig(fig, paths, f"mixing_patterns{figure_suffix(results)}")


def _band(ax, xs, arr: np.ndarray, metric: str, color: str, ls: str, label: Optional[str]) -> None:
    stats = [metric_ci(metric, arr[:, i]) for i in range(arr.shape[1])]
    ax.plot(xs, [s["value"] for s in stats], ls, marker="o", ms=3, color=color, label=label)
    ax.fill_between(xs, [s["ci_low"] for s in stats], [s["ci_high"] for s in stats], color=color,
                    alpha=0.15, lw=0)


# reference -> (label, line style) drawn on every panel of the depth figure (on the token grid)
REFERENCE_LINES = {"uniform": ("uniform", ":"), "dft": ("DFT (FNet)", "-."),
                   "random": ("random", (0, (1, 3))),
                   "local": ("local Gaussian, sigma 1 token", "--")}


def _reference_lines(results: dict) -> List[tuple]:
    """``(key in results["references"], legend text, line style)`` on the results' token grid."""
    h, w = results.get("token_grid", (7, 7))
    return [(f"{name}_{h}x{w}", f"{text} {h}x{w}", ls)
            for name, (text, ls) in REFERENCE_LINES.items()
            if f"{name}_{h}x{w}" in results["references"]]


def _plot_depth(results: dict, paths: common.Paths) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fams = list(results["mixing"])
    radius = results["radius_px"]
    titles = {"mean_mixing_distance_px": "Mean mixing distance",
              "locality": f"Locality (mass within {radius:g} px)",
              "translation_equivariance": "Translation equivariance"}
    ylabels = {"mean_mixing_distance_px": "mean mixing distance (pixels)",
               "locality": f"share of |mixing| within {radius:g} px",
               "translation_equivariance": "share explained by relative offset"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, metric in zip(axes, METRICS):
        for fam in fams:
            for which, ls in (("trained", "-"), ("init", "--")):
                arr = by_depth(results, fam, which, metric)
                _band(ax, np.arange(arr.shape[1]), arr, metric, COLORS[fam], ls,
                      LABELS[fam] if which == "trained" else None)
        for key, _, ls in _reference_lines(results):
            ax.axhline(results["references"][key][metric], color="k", lw=0.8, ls=ls, alpha=0.7)
        ax.set_xlabel("token-mixing layer (CNN: stage), 0 = first")
        ax.set_ylabel(ylabels[metric])
        ax.set_title(titles[metric])
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axes[0].set_ylim(bottom=0)
    side = float(results["image_size"])
    frac = axes[0].secondary_yaxis("right", functions=(lambda v: v / side, lambda f: f * side))
    frac.set_ylabel("fraction of the image side", fontsize=8)
    for ax in axes[1:]:
        ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="k", ls="-"), Line2D([], [], color="k", ls="--")]
    labels += ["trained (converged)", "same seed at initialisation"]
    for _, text, ls in _reference_lines(results):
        handles.append(Line2D([], [], color="k", lw=0.8, ls=ls, alpha=0.7))
        labels.append(f"reference: {text}")
    fig.legend(handles, labels, loc="center right", fontsize=7)
    n = len(results["mixing"][fams[0]]["trained"])
    fig.suptitle(f"Token mixing by depth: mean and 95% interval over {n} seeds (trained solid, "
                 f"same networks at initialisation dashed; black: reference matrices)\n"
                 f"{grid_text(results)}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    return common.savefig(fig, paths, f"mixing_distance_by_depth{figure_suffix(results)}")


def _plot_templates(results: dict, paths: common.Paths) -> Path:
    """Mixer's first-layer token templates (Fig. 5 of the paper), trained vs init (first seed),
    each titled with its locality score, and the score's distribution across templates."""
    import matplotlib.pyplot as plt
    tpl = results["templates"]
    radius = tpl["radius_px"]
    size = results["image_size"]
    ncol = max(len(tpl["panels"].get(w, [])) for w in WEIGHTS)
    fig = plt.figure(figsize=(1.3 * ncol + 4.5, 3.6))
    gs = fig.add_gridspec(2, ncol + 3)
    seed = tpl["trained"][0]["seed"]
    for r, which in enumerate(WEIGHTS):
        scores = {rec["seed"]: rec["locality"] for rec in tpl[which]}[seed]
        for c, panel in enumerate(tpl["panels"].get(which, [])):
            ax = fig.add_subplot(gs[r, c])
            v = np.asarray(panel["values"], dtype=float)
            lim = float(np.abs(v).max()) or 1.0
            ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=(0, size, size, 0),
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_title(f"unit {panel['unit']}: {scores[panel['unit']]:.2f}", fontsize=6.5)
            if c == 0:
                ax.set_ylabel("trained" if which == "trained" else "initialisation", fontsize=8)
    ax = fig.add_subplot(gs[:, ncol:])
    pooled = [[v for rec in tpl[w] for v in rec["locality"]] for w in WEIGHTS]
    parts = ax.violinplot(pooled, positions=[0, 1], showmedians=True, showextrema=False)
    for body, alpha in zip(parts["bodies"], (0.6, 0.25)):
        body.set_facecolor(COLORS["mixer"])
        body.set_alpha(alpha)
    for i, vals in enumerate(pooled):
        q = np.quantile(vals, [0.05, 0.25, 0.5, 0.75, 0.95])
        ax.vlines(i, q[1], q[3], color="k", lw=3)
        ax.vlines(i, q[0], q[4], color="k", lw=0.8)
        ax.text(i + 0.08, q[2], f"median {q[2]:.2f}", fontsize=7, va="center")
    styles = {"uniform": ":", "dft": "-.", "local": "--", "random_peak_centred": (0, (1, 3))}
    for name, ls in styles.items():
        if name in tpl.get("references", {}):
            ax.axhline(tpl["references"][name], color="k", lw=0.8, ls=ls,
                       label=f"{name.replace('_', ' ')} template")
    ax.set_xticks([0, 1], ["trained", "initialisation"])
    ax.set_ylim(-0.02, 1.02)
    tokens = f" = {tpl['radius_tokens']:g} token(s)" if "radius_tokens" in tpl else ""
    ax.set_ylabel(f"share of template energy\nwithin {radius:g} px{tokens} of its peak",
                  fontsize=8)
    ax.legend(fontsize=6.5, loc="upper right")
    n_seeds = len(tpl["trained"])
    ax.set_title(f"per-template locality, {n_seeds} seed(s) pooled\n(bar: 25-75%, line: 5-95%)",
                 fontsize=8)
    fig.suptitle(f"Mixer's first-layer token-mixing templates ({tpl['grid'][0]}x{tpl['grid'][1]} "
                 f"tokens; evenly spaced hidden units, seed {seed}; blue < 0 < red, own scale; "
                 f"title: locality score)\n{grid_text(results)}", fontsize=8)
    fig.tight_layout()
    return common.savefig(fig, paths, f"mixer_templates{figure_suffix(results)}")


def _plot_grids(results: dict, paths: common.Paths) -> Path:
    """7x7 vs 14x14 tokens on the same training images and seeds: first- and last-layer reach
    (fraction of the image side) and locality, trained and at initialisation, beside each
    grid's uniform and local references (the CNN trained on the same images for scale)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fg = results["finegrid"]
    fams = [f for f in fg["coarse"] if f in fg["mixing"]]
    cols = fams + (["cnn"] if "cnn" in fg["mixing"] else [])
    fine_tag, side = f"{fg['grid'][0]}x{fg['grid'][1]}", float(fg["image_size"])
    panels = (("mean_mixing_distance_px", 0, "first layer: mean mixing distance"),
              ("mean_mixing_distance_px", -1, "last layer: mean mixing distance"),
              ("locality", None,
               f"locality (mass within {fg['radius_px']:g} px), mean over layers"))
    series = (("coarse", "trained", "7x7, trained", "o", "none"),
              ("mixing", "init", f"{fine_tag}, initialisation", "x", None),
              ("mixing", "trained", f"{fine_tag}, trained", "o", None))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9))
    for ax, (metric, depth, title) in zip(axes, panels):
        scale = side if metric.startswith("mean") else 1.0
        for i, fam in enumerate(cols):
            for k, (where, which, _, marker, face) in enumerate(series):
                if fam not in fg[where] or (fam == "cnn" and which == "init"):
                    continue
                ci = metric_ci(metric, values({"mixing": fg[where]}, fam, which, metric, depth))
                x = i + (k - 1) * 0.22
                ax.errorbar(x, ci["value"] / scale, yerr=[[(ci["value"] - ci["ci_low"]) / scale],
                                                          [(ci["ci_high"] - ci["value"]) / scale]],
                            fmt=marker, color=COLORS[fam], mfc=face or COLORS[fam], ms=5, capsize=2)
        for refs, tag, color in ((results["references"], "7x7", "0.6"),
                                 (fg["references"], fine_tag, "k")):
            for name, ls in (("uniform", ":"), ("local", "--")):
                key = f"{name}_{tag}"
                if key in refs:
                    ax.axhline(refs[key][metric] / scale, color=color, lw=0.8, ls=ls)
        ax.set_xticks(range(len(cols)), [LABELS[f] for f in cols])
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("fraction of the image side" if scale != 1.0 else "share of |mixing|")
        if scale != 1.0:
            px = ax.secondary_yaxis("right", functions=(lambda v: v * side, lambda v: v / side))
            px.set_ylabel("pixels", fontsize=8)
    handles = [Line2D([], [], color="k", marker=m, mfc=f or "k", ls="none") for *_, m, f in series]
    labels = [text for _, _, text, _, _ in series]
    for tag, color in (("7x7", "0.6"), (fine_tag, "k")):
        for name, ls in (("uniform", ":"), ("local Gaussian sigma 1 token", "--")):
            handles.append(Line2D([], [], color=color, lw=0.8, ls=ls))
            labels.append(f"{name}, {tag}")
    fig.legend(handles, labels, loc="center right", fontsize=7)
    n = len(next(iter(fg["mixing"].values()))["trained"])
    fig.suptitle(f"Token grids on the same {fg['n_train']} training images: 7x7 (4-px patches) vs "
                 f"{fine_tag} ({fg['patch_px']:g}-px patches), mean and 95% interval over {n} "
                 f"seeds; CNN: its first / last stage", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    return common.savefig(fig, paths, "mixing_grids")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    out = []
    for view in (results, finegrid_view(results)):
        if view is None:
            continue
        out += [_plot_maps(view, paths), _plot_depth(view, paths)]
        if (view.get("templates") or {}).get("trained"):
            out.append(_plot_templates(view, paths))
    if results.get("finegrid"):
        out.append(_plot_grids(results, paths))
    return out


