"""Figures and tables of robustness results (shared by the CLI, the app and the analyses).

Every function takes result dicts as written by :mod:`probe.robustness`
(``robustness.json``), one per model, so several models come out side by side.
Figures use the object-oriented Matplotlib API on their own Agg canvas (no
pyplot, no backend switch), so they can be drawn from any thread. Every title
names the weights of its models (``[RANDOM init]``, ``[pretrained]``, ``[shipped]``,
``[file ckpt.safetensors]``), so a random model is never shown as a trained one.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .provenance import weights_tag

__all__ = ["robust_accuracy_figure", "corruption_figure", "heatmap_figure",
           "robustness_figures", "figure_paths", "summary_table", "FIGURES"]

FIGURES = ("robust_accuracy.pdf", "corruption_error.pdf", "fourier_heatmap.pdf")
_NORM_LABEL = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$"}


def _colors(n: int):
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _label(r: dict) -> str:
    """``"<model> [<weights>]"`` (just the model for results without weights information)."""
    tag = weights_tag(r)
    return f"{r['model']} [{tag}]" if tag else r["model"]


def _weights_suffix(results: Sequence[dict]) -> str:
    """`` [RANDOM init]`` when every model shares one kind of weights, else each model's."""
    tags = [weights_tag(r) for r in results]
    if not any(tags):
        return ""
    if len(set(tags)) == 1:
        return f" [{tags[0]}]"
    return " [" + ", ".join(f"{r['model']}: {t or 'weights unknown'}" for r, t in zip(results, tags)) + "]"


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (pyplot's default layout, without pyplot)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def robust_accuracy_figure(results: Sequence[dict]) -> Figure:
    """Robust accuracy vs epsilon: one panel per attack, one line (with 95% CI band) per model."""
    attacks = []
    for r in results:
        for row in r["adversarial"]:
            if row["attack"] not in attacks:
                attacks.append(row["attack"])
    cols = min(3, max(1, len(attacks)))
    rows = max(1, int(np.ceil(len(attacks) / cols)))
    fig = _figure(4.2 * cols, 3.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    colors = _colors(len(results))
    for ax, attack in zip(axes.flat, attacks):
        norm = ""
        for color, r in zip(colors, results):
            pts = sorted((row["epsilon"], row["robust_accuracy"], row["ci_low"], row["ci_high"])
                         for row in r["adversarial"] if row["attack"] == attack)
            if not pts:
                continue
            norm = next(row["norm"] for row in r["adversarial"] if row["attack"] == attack)
            eps, acc, lo, hi = map(np.array, zip(*pts))
            ax.plot(eps, acc, "o-", color=color, label=_label(r), lw=1.8, ms=4)
            ax.fill_between(eps, lo, hi, color=color, alpha=0.18, lw=0)
        ax.set_title(f"{attack} ({_NORM_LABEL.get(norm, norm)})")
        ax.set_xlabel(f"epsilon ({_NORM_LABEL.get(norm, norm)}, images in [0, 1])")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    if attacks:
        axes.flat[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Robust accuracy vs perturbation budget ({results[0]['data']}, "
                 f"n={results[0]['n_attack']}, shaded: 95% CI){_weights_suffix(results)}",
                 fontsize=11)
    fig.tight_layout()
    return fig


def corruption_figure(results: Sequence[dict]) -> Figure:
    """Corruption error (%) per corruption x severity: one annotated heat map per model."""
    fig = _figure(3.6 * len(results) + 0.8, 6.2)
    axes = fig.subplots(1, len(results), squeeze=False)
    im = None
    for ax, r in zip(axes.flat, results):
        names = list(dict.fromkeys(row["corruption"] for row in r["corruptions"]))
        sev = sorted({row["severity"] for row in r["corruptions"]})
        err = np.full((len(names), len(sev)), np.nan)
        for row in r["corruptions"]:
            err[names.index(row["corruption"]), sev.index(row["severity"])] = 100 * (1 - row["accuracy"])
        im = ax.imshow(err, cmap="magma_r", vmin=0, vmax=100, aspect="auto")
        for i in range(len(names)):
            for j in range(len(sev)):
                if not np.isnan(err[i, j]):
                    ax.text(j, i, f"{err[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if err[i, j] > 55 else "black")
        ax.set_xticks(range(len(sev)), [str(s) for s in sev])
        ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax.set_xlabel("severity")
        mce = f"mCE {r['mce']:.1f}%" if r.get("mce") is not None else "mCE n/a"
        rel = f", rel. {r['relative_mce']:.1f}%" if r.get("relative_mce") is not None else ""
        ax.set_title(f"{_label(r)}\nclean err {100 * (1 - r['clean_accuracy']):.1f}%, {mce}{rel}",
                     fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label="error (%)")
    fig.suptitle(f"Corruption error ({results[0]['data']}, n={results[0]['n']}; mCE relative to "
                 f"{results[0].get('baseline', 'baseline')}){_weights_suffix(results)}", fontsize=10)
    return fig


def heatmap_figure(results: Sequence[dict]) -> Figure:
    """Fourier heat maps (Yin et al. 2019): error per frequency, zero frequency at the centre."""
    have = [r for r in results if r.get("fourier_heatmap")]
    fig = _figure(3.6 * max(1, len(have)) + 0.8, 3.6)
    axes = fig.subplots(1, max(1, len(have)), squeeze=False)
    im = None
    for ax, r in zip(axes.flat, have):
        hm = r["fourier_heatmap"]
        grid = np.array(hm["error"])
        h, w = grid.shape
        extent = (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, extent=extent)
        ax.set_title(f"{_label(r)} (eps={hm['epsilon']:g}, n={hm['n']})", fontsize=9)
        ax.set_xlabel("horizontal frequency")
        ax.set_ylabel("vertical frequency")
    if not have:
        axes.flat[0].text(0.5, 0.5, "no Fourier heat map in these results", ha="center")
        axes.flat[0].axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.85, label="error rate")
    fig.suptitle("Fourier heat map: error under single-frequency perturbations"
                 f"{_weights_suffix(have or results)}", fontsize=10)
    return fig


def figure_paths(folder: Path) -> List[Path]:
    return [Path(folder) / f for f in FIGURES if (Path(folder) / f).is_file()]


def robustness_figures(results: Sequence[dict], folder: Path) -> List[Path]:
    """Write the three robustness PDFs for ``results`` into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    makers = [("robust_accuracy.pdf", robust_accuracy_figure, any(r["adversarial"] for r in results)),
              ("corruption_error.pdf", corruption_figure, any(r["corruptions"] for r in results)),
              ("fourier_heatmap.pdf", heatmap_figure, any(r.get("fourier_heatmap") for r in results))]
    for name, maker, wanted in makers:
        if not wanted:
            continue
        maker(results).savefig(folder / name)
        paths.append(folder / name)
    return paths


def summary_table(results: Sequence[dict]) -> str:
    """Plain-text summary: clean accuracy, mCE and weights per model, robust accuracy per epsilon."""
    lines = []
    header = f"{'model':16s} {'clean':>7s} {'mCE %':>7s} {'rel mCE %':>9s}  weights"
    lines.append(header)
    for r in results:
        mce = f"{r['mce']:.1f}" if r.get("mce") is not None else "-"
        rel = f"{r['relative_mce']:.1f}" if r.get("relative_mce") is not None else "-"
        lines.append(f"{r['model']:16s} {r['clean_accuracy']:7.3f} {mce:>7s} {rel:>9s}  "
                     f"{weights_tag(r) or '-'}")
    attack_rows = {}
    for r in results:
        for row in r["adversarial"]:
            attack_rows.setdefault((row["attack"], row["norm"]), {}).setdefault(row["epsilon"], {})[
                r["model"]] = row["robust_accuracy"]
    if attack_rows:
        lines.append("")
        lines.append(f"{'robust accuracy':22s}" + " ".join(f"{r['model']:>10s}" for r in results))
        for (attack, norm), by_eps in attack_rows.items():
            for eps in sorted(by_eps):
                vals = " ".join(f"{by_eps[eps].get(r['model'], float('nan')):10.3f}" for r in results)
                lines.append(f"{attack + ' ' + norm + ' ' + format(eps, 'g'):22s}{vals}")
    return "\n".join(lines)
