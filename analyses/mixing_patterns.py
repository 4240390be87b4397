"""How far and how locally does each architecture mix, and is that learned?

Extracts the token mixing of every layer (:func:`probe.mixing.extract`: Mixer's
channel-averaged token-MLP Jacobian, ResMLP/gMLP token weights, ViT attention,
FNet's Fourier matrix, the CNN stages' effective Jacobian) on a fixed batch of
Fashion-MNIST test images, for the trained data-efficiency models (several
seeds) and for the same architectures at their seeded random initialisation
(the starting point of each trained model), and reports by depth:

- mean mixing distance in PIXELS (probe.mixing measures it in units of each
  layer's input grid: 28x28 pixels for the CNN's first stage, 14x14 and 7x7
  for its later stages, 7x7 tokens of 4x4 pixels for the token models; the
  distances are rescaled by ``image size / grid side``);
- locality: the share of the mixing mass within ``radius_px`` pixels (one
  token, 4 px, by default; the radius is also converted per grid);
- translation equivariance: the share of the map explained by a function of
  the relative offset (1 for a convolution).

    python -m analyses.mixing_patterns            # full scale (see --help)
    python -m analyses.mixing_patterns --quick    # seconds, into runs/analyses_quick/

Mixing templates follow Tolstikhin et al. 2021 (MLP-Mixer, Fig. 5); the mean
mixing distance generalises the ViT paper's mean attention distance
(Dosovitskiy et al. 2021, Fig. 7).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from analyses import common
from analyses.common import COLORS, LABELS, Claim

NAME = "mixing_patterns"
SCALES = {
    "full": {"families": list(common.FAMILIES), "seeds": [0, 1, 2], "n_train": 30000,
             "epochs": 1, "test_n": None, "images": 64, "radius_px": 4.0},
    "quick": {"families": list(common.FAMILIES), "seeds": [0, 1], "n_train": 100,
              "epochs": 1, "test_n": 100, "images": 4, "radius_px": 4.0},
}
WEIGHTS = ("trained", "random")
METRICS = ("mean_mixing_distance_px", "locality", "translation_equivariance")
# query tokens (row, col) on the 7x7 token grid whose mixing rows the map figure shows
QUERIES = ((3, 3), (1, 1), (1, 5), (5, 1), (5, 5), (0, 3))
PANELS = 6
LOCALITY_MARGIN = 0.05     # 5 points of mixing mass: negligible change of locality
DISTANCE_MARGIN_PX = 1.0   # 1 pixel: negligible difference of reach


# ----------------------------------------------------------------------------- compute


def _px_per_unit(m, image_size: int) -> float:
    """Pixels per cell of the layer's INPUT grid (the grid its distances are measured on)."""
    hi, wi = m.in_grid
    if hi != wi:
        raise ValueError(f"{m.layer}: non-square input grid {m.in_grid}")
    return float(m.px_per_token[1])


def layer_metrics(maps, image_size: int, radius_px: float) -> List[dict]:
    """Per layer: distance (grid units and pixels), locality within ``radius_px``, equivariance.

    Pixel distances and locality come from :mod:`probe.mixing.metrics` (``unit="px"``).
    Every metric is averaged over images and heads; ViT keeps its per-head distances.
    """
    from probe import mixing
    rows = []
    for m in maps:
        if tuple(m.image_size) != (image_size, image_size):
            raise ValueError(f"{m.layer}: maps of {m.image_size} images, expected {image_size} px")
        px = _px_per_unit(m, image_size)
        dist = mixing.mean_mixing_distance(m).double()                    # [B, H], grid units
        dist_px = mixing.mean_mixing_distance(m, unit="px").double()      # [B, H], pixels
        loc = mixing.locality(m, radius=radius_px, unit="px").double()
        equi = mixing.translation_equivariance(m).double()
        rows.append({
            "layer": m.layer, "kind": m.kind, "depth": m.depth, "grid": list(m.grid),
            "input_grid": list(m.in_grid), "px_per_unit": px,
            "mean_mixing_distance_units": float(dist.mean()),
            "mean_mixing_distance_px": float(dist_px.mean()),
            "mean_mixing_distance_px_per_head": [float(v) for v in dist_px.mean(0)],
            "locality": float(loc.mean()),
            "translation_equivariance": float(equi.mean()),
            "input_dependence": float(mixing.input_dependence(m).mean()),
        })
    return rows


def _round(t: torch.Tensor, digits: int = 5) -> list:
    return [[float(f"{v:.{digits}g}") for v in row] for row in t.double().tolist()]


def _query_index(q: Tuple[int, int], grid: Tuple[int, int], image_size: int) -> Tuple[int, int]:
    """The output cell of ``grid`` under token ``q`` of the 7x7 token grid (same pixel position)."""
    cy, cx = (np.array(q) + 0.5) * image_size / 7
    h, w = grid
    return (min(int(cy * h / image_size), h - 1), min(int(cx * w / image_size), w - 1))


def panels(family: str, m, image_size: int) -> dict:
    """The first-layer maps the figure shows for one family (JSON-ready).

    Mixer: hidden units of the token-mixing MLP (evenly spaced, not selected)
    and the effective map of the centre token; ViT: the centre token's attention
    per head, the head mean and the class token's attention; others: the mixing
    row of query tokens spread over the image (mean over images).
    """
    from probe.spectra import templates
    px = _px_per_unit(m, image_size)
    p = m.prefix_tokens
    rows = m.matrix[..., p:, p:].double().mean(0)                      # [H, T_out, T_in]
    hi, wi = m.in_grid
    out = []

    def row_panel(mat: torch.Tensor, q: Tuple[int, int], title: str) -> dict:
        i, j = _query_index(q, m.grid, image_size)
        sh, sw = hi / m.grid[0], wi / m.grid[1]
        centre = [((i + 0.5) * sh) * px, ((j + 0.5) * sw) * px]
        return {"title": title, "values": _round(mat[i * m.grid[1] + j].reshape(hi, wi)),
                "query_px": centre}

    if m.kind == "token-mlp" and isinstance(m.native, dict) and "fc1" in m.native:
        units = templates(m)                                             # [hidden, h, w]
        k = units.shape[0]
        for u in [round(i * (k - 1) / (PANELS - 2)) for i in range(PANELS - 1)]:
            out.append({"title": f"hidden unit {u}", "values": _round(units[u]), "query_px": None})
        out.append(row_panel(rows.mean(0), QUERIES[0], "effective, token (3,3)"))
    elif m.kind == "attention":
        for h in range(min(m.heads, PANELS - 2)):
            out.append(row_panel(rows[h], QUERIES[0], f"head {h}, token (3,3)"))
        out.append(row_panel(rows.mean(0), QUERIES[0], "head mean, token (3,3)"))
        if p:
            cls = m.matrix[..., 0, p:].double().mean((0, 1)).reshape(hi, wi)
            out.append({"title": "class token, head mean", "values": _round(cls),
                        "query_px": None})
    else:
        for q in QUERIES[:PANELS]:
            out.append(row_panel(rows.mean(0), q, f"token ({q[0]},{q[1]})"))
    return {"layer": m.layer, "kind": m.kind, "input_grid": [hi, wi], "px_per_unit": px,
            "panels": out}


def uniform_distance_px(grid: int = 7, image_size: int = 28) -> float:
    """Mean mixing distance (pixels) of uniform mixing over a ``grid x grid`` token grid."""
    from probe import mixing
    ones = torch.ones(grid * grid, grid * grid)
    return float(mixing.mean_mixing_distance(ones, (grid, grid), unit="px",
                                             image_size=(image_size, image_size)))


def conv3x3_distance_px() -> float:
    """Mean mixing distance (pixels) of a uniform 3x3 kernel on the pixel grid (8 neighbours)."""
    return (4 * 1.0 + 4 * float(np.sqrt(2.0))) / 9


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm

    from probe import mixing
    x, _ = common.test_set(scale["images"])
    image_size = int(x.shape[-1])
    jobs = [(fam, s, w) for fam in scale["families"] for s in scale["seeds"] for w in WEIGHTS]
    models: Dict[str, Dict[str, list]] = {f: {w: [] for w in WEIGHTS} for f in scale["families"]}
    maps_out: Dict[str, dict] = {}
    bar = tqdm(jobs, desc="mixing patterns", unit="model", disable=not progress)
    for fam, seed, which in bar:
        bar.set_postfix(model=fam, seed=seed, weights=which)
        record = {"seed": seed}
        if which == "trained":
            model, rec = common.trained(fam, n_train=scale["n_train"], seed=seed,
                                        epochs=scale["epochs"], test_n=scale["test_n"],
                                        cache=paths.cache)
            record["test_accuracy"] = rec["test_accuracy"]
        else:
            model = common.build(fam, seed=seed).eval()
        maps = mixing.extract(model, x)
        record["layers"] = layer_metrics(maps, image_size, scale["radius_px"])
        models[fam][which].append(record)
        if which == "trained" and seed == scale["seeds"][0]:
            maps_out[fam] = panels(fam, maps[0], image_size)
    return {"image_size": image_size, "radius_px": scale["radius_px"], "models": models,
            "maps": maps_out,
            "references": {"uniform_7x7_tokens_px": uniform_distance_px(7, image_size),
                           "conv3x3_px": conv3x3_distance_px()}}


# ----------------------------------------------------------------------------- claims


def values(results: dict, family: str, which: str, metric: str,
           depth: Optional[int] = None) -> List[float]:
    """Per seed (seed order): ``metric`` at layer ``depth``, or averaged over layers if ``None``."""
    recs = sorted(results["models"][family][which], key=lambda r: r["seed"])
    out = []
    for r in recs:
        layers = r["layers"]
        out.append(float(np.mean([l[metric] for l in layers])) if depth is None
                   else float(layers[depth][metric]))
    return out


def by_depth(results: dict, family: str, which: str, metric: str) -> np.ndarray:
    """``[seeds, depth]`` array of ``metric``."""
    recs = sorted(results["models"][family][which], key=lambda r: r["seed"])
    return np.array([[l[metric] for l in r["layers"]] for r in recs], dtype=float)


def claims(results: dict) -> List[Claim]:
    fams = list(results["models"])
    seeds = sorted(r["seed"] for r in results["models"][fams[0]]["trained"])
    n = len(seeds)
    radius = results["radius_px"]
    out: List[Claim] = []

    # a. Mixer's token mixing becomes local through training
    if "mixer" in fams:
        tr = values(results, "mixer", "trained", "locality")
        rd = values(results, "mixer", "random", "locality")
        est, lo, hi = common.mean_ci([a - b for a, b in zip(tr, rd)])
        eq_gain = [a - b for a, b in zip(values(results, "mixer", "trained",
                                                "translation_equivariance"),
                                         values(results, "mixer", "random",
                                                "translation_equivariance"))]
        d_gain = [a - b for a, b in zip(values(results, "mixer", "trained",
                                               "mean_mixing_distance_px"),
                                        values(results, "mixer", "random",
                                               "mean_mixing_distance_px"))]
        details = {
            "locality_trained": common.mean_ci(tr), "locality_random_init": common.mean_ci(rd),
            "locality_gain_first_layer": common.mean_ci(
                [a - b for a, b in zip(values(results, "mixer", "trained", "locality", 0),
                                       values(results, "mixer", "random", "locality", 0))]),
            "translation_equivariance_gain": common.mean_ci(eq_gain),
            "distance_change_px": common.mean_ci(d_gain),
            "locality_by_depth_trained": by_depth(results, "mixer", "trained",
                                                  "locality").mean(0).tolist(),
            "locality_by_depth_random": by_depth(results, "mixer", "random",
                                                 "locality").mean(0).tolist(),
        }
        out.append(Claim(
            key="mixer_mixing_is_local",
            claim="Mixer's learned token mixing is local and conv-like, so it has an inductive "
                  "bias after all",
            who="critics of the MLP-Mixer paper, citing its own Fig. 5 (Tolstikhin et al. 2021: "
                "first-layer token-mixing templates look like local, conv-like filters) and the "
                "'MLP, conv and attention are nearly equivalent' argument",
            experiment=f"effective token mixing (channel-averaged Jacobian of the token MLP, "
                       f"{results['settings']['images']} Fashion-MNIST test images) of Mixer "
                       f"trained on {results['settings']['n_train']} images vs the same "
                       f"network at its initialisation, {n} seeds",
            figure="mixing_distance_by_depth.pdf",
            effect=f"share of the mixing mass within {radius:g} px (one token), mean over the "
                   f"token-mixing layers, trained minus the same seed's initialisation: > 0 "
                   f"means training made the mixing more local",
            estimate=est, low=lo, high=hi, margin=LOCALITY_MARGIN,
            rule=common.RULE + f" (margin: {LOCALITY_MARGIN:g} of the mixing mass)",
            details=details))

    tokens = [f for f in fams if f != "cnn"]
    if "cnn" in fams and tokens:
        cnn = values(results, "cnn", "trained", "mean_mixing_distance_px", 0)
        # b. CNNs reach less far than token mixers (first layer, in pixels)
        per_fam = {f: values(results, f, "trained", "mean_mixing_distance_px", 0) for f in tokens}
        tok = [float(np.mean([per_fam[f][i] for f in tokens])) for i in range(n)]
        est, lo, hi = common.diff_ci(tok, cnn)
        last = {f: common.diff_ci(values(results, f, "trained", "mean_mixing_distance_px", -1),
                                  values(results, "cnn", "trained", "mean_mixing_distance_px", -1))
                for f in tokens}
        out.append(Claim(
            key="cnn_reaches_less_far",
            claim="CNNs cannot capture long-range dependencies: their layers reach less far "
                  "than token mixers'",
            who="MLP-Mixer, gMLP and ViT authors (Tolstikhin et al., Liu et al., Dosovitskiy et "
                "al. 2021) motivating global token mixing against local convolutions",
            experiment=f"mean mixing distance in pixels of the first token-mixing layer of "
                       f"{', '.join(LABELS[f] for f in tokens)} vs the CNN's first stage, "
                       f"trained models, {n} seeds",
            figure="mixing_distance_by_depth.pdf",
            effect="first-layer mean mixing distance (pixels), mean over the token models minus "
                   "the CNN's first stage (both after their stem: patch embedding / 3x3 stem "
                   "conv), Welch interval over seeds: > 0 means the CNN reaches less far",
            estimate=est, low=lo, high=hi, margin=DISTANCE_MARGIN_PX,
            rule=common.RULE + f" (margin: {DISTANCE_MARGIN_PX:g} pixel)",
            details={"cnn_first_stage_px": common.mean_ci(cnn),
                     "first_layer_px": {f: common.mean_ci(v) for f, v in per_fam.items()},
                     "minus_cnn_first_stage_px": {f: common.diff_ci(v, cnn)
                                                  for f, v in per_fam.items()},
                     "last_layer_minus_cnn_last_stage_px": last}))

        # c. attention reaches far in one step
        if "vit" in fams:
            vit = values(results, "vit", "trained", "mean_mixing_distance_px", 0)
            vit_rand = values(results, "vit", "random", "mean_mixing_distance_px", 0)
            est, lo, hi = common.diff_ci(vit, cnn)
            conv3 = results["references"]["conv3x3_px"]
            out.append(Claim(
                key="attention_reaches_far",
                claim="Attention captures long-range dependencies in one step, convolution "
                      "only locally",
                who="Dosovitskiy et al. 2021 (ViT: some heads attend globally already in the "
                    "lowest layers, Fig. 7) and the attention side of the MLP debate",
                experiment=f"mean attention distance in pixels of ViT's first layer vs the "
                           f"CNN's first stage, trained models, {n} seeds",
                figure="mixing_distance_by_depth.pdf",
                effect="ViT first-layer mean mixing distance (pixels) minus the CNN's first "
                       "stage, Welch interval over seeds: > 0 means attention reaches farther "
                       "in one step",
                estimate=est, low=lo, high=hi, margin=DISTANCE_MARGIN_PX,
                rule=common.RULE + f" (margin: {DISTANCE_MARGIN_PX:g} pixel)",
                details={"vit_first_layer_px": common.mean_ci(vit),
                         "cnn_first_stage_px": common.mean_ci(cnn),
                         "vit_minus_conv3x3_px": common.mean_ci([v - conv3 for v in vit]),
                         "vit_trained_minus_random_init_px": common.diff_ci(vit, vit_rand),
                         "vit_first_layer_px_per_head": [
                             float(np.mean(h)) for h in zip(*[
                                 r["layers"][0]["mean_mixing_distance_px_per_head"]
                                 for r in results["models"]["vit"]["trained"]])],
                         "uniform_7x7_tokens_px":
                             results["references"]["uniform_7x7_tokens_px"]}))
    return out


# ----------------------------------------------------------------------------- figures


def _plot_maps(results: dict, paths: common.Paths) -> Path:
    import matplotlib.pyplot as plt
    maps = results["maps"]
    size = results["image_size"]
    fams = [f for f in results["models"] if f in maps]
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
                 f"+ = query token; blue < 0 < red, own scale per panel", fontsize=8)
    fig.tight_layout()
    return common.savefig(fig, paths, "mixing_patterns")


def _band(ax, xs, arr: np.ndarray, color: str, ls: str, label: Optional[str]) -> None:
    stats = [common.mean_ci(arr[:, i]) for i in range(arr.shape[1])]
    m = np.array([s[0] for s in stats])
    ax.plot(xs, m, ls, marker="o", ms=3, color=color, label=label)
    ax.fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], color=color, alpha=0.15,
                    lw=0)


def _plot_depth(results: dict, paths: common.Paths) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fams = list(results["models"])
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
            for which, ls in (("trained", "-"), ("random", "--")):
                arr = by_depth(results, fam, which, metric)
                _band(ax, np.arange(arr.shape[1]), arr, COLORS[fam], ls,
                      LABELS[fam] if which == "trained" else None)
        ax.set_xlabel("token-mixing layer (CNN: stage), 0 = first")
        ax.set_ylabel(ylabels[metric])
        ax.set_title(titles[metric])
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ref = results["references"]
    for key, text in (("uniform_7x7_tokens_px", "uniform over 7x7 tokens"),
                      ("conv3x3_px", "one 3x3 conv")):
        axes[0].axhline(ref[key], color="k", lw=0.7, ls=":")
        axes[0].text(0.5, ref[key], text, fontsize=7, va="bottom", ha="center",
                     transform=axes[0].get_yaxis_transform(),
                     bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})
    axes[0].set_ylim(bottom=0)
    for ax in axes[1:]:
        ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="k", ls="-"), Line2D([], [], color="k", ls="--")]
    labels += ["trained", "random init"]
    fig.legend(handles, labels, loc="center right", fontsize=7)
    n = len(results["models"][fams[0]]["trained"])
    fig.suptitle(f"Token mixing by depth: mean and 95% CI over {n} seeds "
                 f"(trained solid, same networks at initialisation dashed)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return common.savefig(fig, paths, "mixing_distance_by_depth")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    return [_plot_maps(results, paths), _plot_depth(results, paths)]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv)


if __name__ == "__main__":
    sys.exit(main())
