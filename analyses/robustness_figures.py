"""Figures of ``analyses.robustness_comparison``: robustness by family (with each claim's
per-family forest panel), effective robustness, and the Fourier heat maps."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Mapping, Optional

import numpy as np

from analyses import common
from analyses.common import COLORS, LABELS
from analyses.robustness_comparison import (ADV, CHANCE, COR, ER_KINDS, LOW_FREQUENCY, _num,
                                            band_errors, by_family, claims, effective_robustness,
                                            metric, middle_epsilon, paired_seeds, summary)




def _bars(ax, fams, stats, *, offset=0.0, width=0.8, hatch=None, label=None):
    for i, f in enumerate(fams):
        m, lo, hi = (_num(stats[f][k]) for k in ("effect", "ci_low", "ci_high"))
        ax.bar(i + offset, m, width, color=COLORS[f], alpha=0.85, hatch=hatch, edgecolor="k",
               lw=0.4, label=label if i == 0 else None)
        if not (math.isnan(lo) or lo == hi):
            ax.errorbar(i + offset, m, yerr=[[m - lo], [hi - m]], color="k", capsize=2, lw=0.8)


def _forest(ax, claim: Optional[Mapping], xlabel: str) -> None:
    """Each family's effect and interval, the MLP group's, the margin band and the verdict."""
    if claim is None:
        ax.set_axis_off()
        return
    rows = [(LABELS[f], v, COLORS[f]) for f, v in claim["per_family"].items()]
    rows.append(("MLP group", {"effect": claim["effect"], "ci_low": claim["ci_low"],
                               "ci_high": claim["ci_high"]}, "k"))
    for i, (label, v, color) in enumerate(rows):
        e = v["effect"]
        ax.errorbar(e, i, xerr=[[e - v["ci_low"]], [v["ci_high"] - e]],
                    fmt="D" if label == "MLP group" else "o", color=color, capsize=3)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvspan(-claim["margin"], claim["margin"], color="0.85", lw=0, label="+-margin")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(f"{claim['claim']}\nverdict: {claim['verdict']} "
                 f"({100 * claim.get('confidence', 0.95):.0f}% CI over seeds)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    rows = results["rows"]
    t = by_family(rows)
    ti = by_family(results.get("init_rows", []))
    fams = list(t)
    n_seeds = len(paired_seeds(t, fams))
    s = results["settings"]
    eps_all = sorted({a["epsilon"] for r in rows for a in r["adversarial"]})
    mid = middle_epsilon(results)
    xt = [LABELS[f] for f in fams]
    found = {c["id"]: c for c in results.get("claims", [])}
    if not found:
        found = {c.key: c.as_result() for c in claims(results)}

    fig = plt.figure(figsize=(16, 7.6))
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 0.85])
    ax = fig.add_subplot(grid[0, 0])
    _bars(ax, fams, summary(rows, "clean"))
    for i, f in enumerate(fams):
        ax.plot([i] * len(t[f]), [metric(r, "clean") for r in t[f].values()], "k.", ms=3)
        if f in ti:
            ax.plot([i] * len(ti[f]), [metric(r, "clean") for r in ti[f].values()], "x",
                    color="0.4", ms=4, label="initialisation" if i == 0 else None)
    ax.axhline(CHANCE, color="0.5", lw=0.6, ls=":")
    ax.set_xticks(range(len(fams)), xt, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_ylabel("clean accuracy")
    ax.set_title(f"Clean accuracy (n={s['n_clean']}; x: same-seed init)")
    if ti:
        ax.legend(fontsize=7, loc="lower right")

    ax = fig.add_subplot(grid[0, 1])
    for f in fams:
        # eps 0: clean accuracy on the attacked images
        pts = [(0.0, summary([t[f][k] for k in t[f]], "clean_on_attack")[f])]
        pts += [(e, summary(list(t[f].values()), "robust", e)[f]) for e in eps_all]
        e_ = [p[0] for p in pts]
        m, lo, hi = (np.array([_num(p[1][k]) for p in pts])
                     for k in ("effect", "ci_low", "ci_high"))
        ls = "-" if f in common.MLP_FAMILIES else "--"
        ax.plot(e_, m, ls, marker="o", ms=3, color=COLORS[f], label=LABELS[f])
        ax.fill_between(e_, lo, hi, color=COLORS[f], alpha=0.12, lw=0)
    ax.axvline(mid, color="k", lw=0.6, ls=":")
    ax.set_xlabel(r"PGD $\ell_\infty$ epsilon (images in [0, 1])")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"PGD-{s['steps']} (n={s['n_attack']}; dotted: claim's eps)")
    ax.legend(fontsize=7, ncol=2)

    ax = fig.add_subplot(grid[0, 2])
    _bars(ax, fams, summary(rows, "mce"), offset=-0.2, width=0.4, label="mCE")
    _bars(ax, fams, summary(rows, "relative_mce"), offset=0.2, width=0.4, hatch="//",
          label="relative mCE")
    ax.axhline(100, color="k", lw=0.8)
    ax.set_xticks(range(len(fams)), xt, rotation=30)
    ax.set_ylabel("% of the same-seed CNN (CNN = 100)")
    ax.set_title(f"Corruptions: {len(s['corruptions'])} x {len(s['severities'])} sev. "
                 f"(n={s['n_corrupt']})")
    ax.legend(fontsize=7)

    ax = fig.add_subplot(grid[0, 3])
    _bars(ax, fams, summary(rows, "heat_low"), offset=-0.2, width=0.4, label="low freq.")
    _bars(ax, fams, summary(rows, "heat_high"), offset=0.2, width=0.4, hatch="//",
          label="high freq.")
    ax.set_xticks(range(len(fams)), xt, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_ylabel("error rate under the perturbation")
    ax.set_title(f"Fourier heat map, eps={s['heatmap_epsilon']:g} (n={s['n_heatmap']})")
    ax.legend(fontsize=7)

    _forest(fig.add_subplot(grid[1, 0:2]), found.get(ADV),
            f"CNN minus family PGD survival rate at eps {mid:g} (> 0: less robust than the CNN)")
    _forest(fig.add_subplot(grid[1, 2:4]), found.get(COR),
            "family mCE minus 100 (the same-seed CNN) (> 0: less robust than the CNN)")
    fig.suptitle(f"Robustness by family: mean and 95% CI over {n_seeds} seeds "
                 f"(paired: same images, attacks and corruptions)", fontsize=10)
    fig.tight_layout()
    written = [common.savefig(fig, paths, "robustness_comparison")]
    written.append(common.savefig(_heatmap_figure(results, t, fams), paths, "fourier_heatmaps"))
    er = results.get("effective_robustness") or {k: effective_robustness(results, k)
                                                 for k in ER_KINDS}
    written.append(common.savefig(_effective_robustness_figure(er, t), paths,
                                  "effective_robustness"))
    return written


def _effective_robustness_figure(er: Mapping, t: Mapping):
    """Top: every model/seed's robust vs clean accuracy, coloured by family, with the line fitted
    in logit space (initialisations as x, not fitted); bottom: each family's residuals."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), gridspec_kw={"height_ratios": [1.2, 1]})
    for col, kind in enumerate(ER_KINDS):
        e = er[kind]
        ax = axes[0, col]
        for m in e["models"]:
            ax.plot(m["clean"], m["robust"], "o", color=COLORS[m["family"]], ms=5, alpha=0.85)
            ax.plot([m["clean"]] * 2, [m["robust"], m["predicted"]], color=COLORS[m["family"]],
                    lw=0.7, alpha=0.6)
        for m in e.get("init", []):
            ax.plot(m["clean"], m["robust"], "x", color=COLORS[m["family"]], ms=5)
        cleans = [m["clean"] for m in e["models"] + e.get("init", [])]
        lo_x, hi_x = max(1e-3, min(cleans) - 0.02), min(1 - 1e-3, max(cleans) + 0.02)
        xs = np.linspace(lo_x, hi_x, 200)
        fit = e["fit"]
        ax.plot(xs, 1 / (1 + np.exp(-(fit["intercept"] + fit["slope"] * np.log(xs / (1 - xs))))),
                "k-", lw=1, label=f"fit in logit space: slope {fit['slope']:.2f}, "
                                  f"intercept {fit['intercept']:.2f}, R2 {_num(fit['r2']):.2f}")
        for f in e["by_family"]:
            ax.plot([], [], "o", color=COLORS[f], label=LABELS[f])
        ax.set_xlabel(e["x"])
        ax.set_ylabel(e["y"])
        ax.set_title(f"{kind}: {fit['n_models']} models (dots; x: initialisations, not fitted)",
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper left")

        ax = axes[1, col]
        fams = list(e["by_family"])
        for i, f in enumerate(fams):
            vals = [m["effective_robustness"] for m in e["models"] if m["family"] == f]
            ax.plot([i] * len(vals), vals, ".", color=COLORS[f], ms=6, alpha=0.6)
            st = e["by_family"][f]
            ax.errorbar(i + 0.15, st["effect"], yerr=[[st["effect"] - st["ci_low"]],
                                                      [st["ci_high"] - st["effect"]]],
                        fmt="D", color=COLORS[f], capsize=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(fams)), [LABELS[f] for f in fams], rotation=30)
        ax.set_ylabel("effective robustness\n(robust acc. minus the line's prediction)")
        ax.set_title("residuals: dots = seeds, diamond = mean and 95% CI over seeds", fontsize=9)
    fig.suptitle("Effective robustness (Taori et al. 2020): robustness beyond what clean accuracy "
                 "predicts, line fitted over every model and seed", fontsize=10)
    fig.tight_layout()
    return fig


def _heatmap_figure(results: dict, t: dict, fams: List[str]):
    """One row: each family's Fourier heat map averaged over seeds, one shared colour scale."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle
    s = results["settings"]
    grids = {f: np.mean([np.asarray(r["fourier_heatmap"]["error"], dtype=float)
                         for r in t[f].values()], 0) for f in fams}
    vmax = max(0.1, math.ceil(10 * max(float(g.max()) for g in grids.values())) / 10)
    fig, axes = plt.subplots(1, len(fams), figsize=(2.3 * len(fams) + 1.0, 2.9), squeeze=False,
                             sharey=True)
    im = None
    for ax, f in zip(axes.flat, fams):
        g = grids[f]
        h, w = g.shape
        extent = (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)
        im = ax.imshow(g, cmap="viridis", vmin=0, vmax=vmax, extent=extent)
        cut = LOW_FREQUENCY * min(h, w) / 2
        ax.add_patch(Circle((0, 0), cut, fill=False, ls="--", lw=0.7, color="w"))
        b = band_errors(g)
        ax.set_title(f"{LABELS[f]}\nlow {b['low']:.2f} | high {b['high']:.2f}", fontsize=9,
                     color=COLORS[f])
        ax.grid(False)
        ax.set_xlabel("horizontal frequency")
    axes.flat[0].set_ylabel("vertical frequency")
    fig.subplots_adjust(left=0.06, right=0.92, top=0.68, bottom=0.17, wspace=0.08)
    cax = fig.add_axes([0.935, 0.17, 0.01, 0.51])
    fig.colorbar(im, cax=cax, label="error rate")
    n_seeds = len(paired_seeds(t, fams))
    fig.suptitle(f"Fourier heat maps (Yin et al. 2019): error under each single-frequency "
                 f"perturbation (L2 eps={s['heatmap_epsilon']:g})\nn={s['n_heatmap']} images, mean "
                 f"of {n_seeds} seeds; zero frequency at the centre; dashed: low/high band limit "
                 f"(half Nyquist)", fontsize=9)
    return fig


