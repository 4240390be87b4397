"""Are MLPs less interpretable than CNNs and Transformers?

Evaluates pixel attributions of every zoo family, several training seeds each,
on the same Fashion-MNIST test images with :mod:`probe.attribution`, for the
methods that apply to all six families (saliency, integrated gradients,
occlusion, Grad-CAM), on three axes:

- faithfulness: deletion and insertion curves (Petsiuk et al. 2018,
  arXiv:1806.07421) of the predicted class's probability; the score is
  insertion AUC minus deletion AUC (higher = the map ranks pixels by what the
  model uses). That difference also grows with how much probability a model
  keeps when random pixels turn grey, so the deletion AUC relative to the
  random-order deletion AUC (scale-free) is reported beside it (figure row 2,
  claim details). Removed pixels take the training-set mean intensity (grey,
  ``baseline="mean"``), not black: Fashion-MNIST's background is black, so with
  a black baseline a background pixel can never be "removed" and maps that
  point at the garment's outline (saliency does) score worse than a random
  order although the model does use those pixels. Integrated gradients and
  occlusion use the same grey baseline so that their maps are not forced to
  zero on the background. For saliency the black-baseline AUCs are kept as a
  secondary number (``deletion_auc_black``...).
- sanity: the cascading model-parameter randomisation check (Adebayo et al.
  2018, arXiv:1810.03292): Spearman rank correlation of ``|map|`` before and
  after re-drawing the weights from the top layer down; a map that still
  correlates once *all* layers are random does not explain the trained model
  (higher = worse). A randomised map that is constant (e.g. Grad-CAM all zero
  after ReLU) counts as correlation 0.
- localisation: share of the positive attribution mass inside the garment's
  silhouette (pixels above a small threshold, holes filled) and the
  pointing-game hit rate; Fashion-MNIST has no boxes, and the models of the
  full scale are the Fashion-MNIST data-efficiency models, so the silhouette is
  the only ground truth they share. The silhouette covers about half the image
  (``chance`` in the results), so this is a weak localisation test.

The claims average each score over the methods, per model, and compare the CNN
with the mean of the MLP families (Mixer, ResMLP, gMLP, FNet) paired by seed;
per-method and against-ViT numbers are in each claim's ``details``.

    python -m analyses.interpretability_comparison            # full scale (see --help)
    python -m analyses.interpretability_comparison --quick    # seconds, into runs/analyses_quick/

Full scale reuses the data-efficiency models (30k images, 1 epoch, seeds 0-2).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from analyses import common
from analyses.common import COLORS, LABELS, Claim
from probe import attribution, data

NAME = "interpretability_comparison"

# The full scale's sizes keep all 18 models under 8 min on 2 CPU cores: per-model cost
# measured with these settings on the quick-scale models (same architectures, so the same
# cost); each row of the results records its ``eval_time_s`` and per-method ``timing_s``.
# The quick scale keeps three families (an MLP, the ViT and the CNN) to stay a ~20 s smoke run;
# tests/test_attribution.py runs every method on every family.
SCALES = {
    "full": {"seeds": [0, 1, 2], "families": list(common.FAMILIES), "n_train": 30000, "epochs": 1,
             "test_n": None, "n_images": 48, "n_sanity": 8,
             "methods": ["saliency", "integrated_gradients", "occlusion", "grad_cam"],
             "ig_steps": 8, "occlusion_window": 4, "occlusion_stride": 4, "curve_steps": 10,
             "baseline": "mean", "secondary_baseline": "black", "secondary_methods": ["saliency"],
             "silhouette_threshold": 0.05, "n_examples": 4,
             "example_method": "integrated_gradients", "eval_seed": 0},
    "quick": {"seeds": [0, 1], "families": ["mixer", "vit", "cnn"], "n_train": 100, "epochs": 1,
              "test_n": 100, "n_images": 3, "n_sanity": 1,
              "methods": ["saliency", "integrated_gradients", "occlusion", "grad_cam"],
              "ig_steps": 2, "occlusion_window": 14, "occlusion_stride": 14, "curve_steps": 3,
              "baseline": "mean", "secondary_baseline": "black", "secondary_methods": ["saliency"],
              "silhouette_threshold": 0.05, "n_examples": 2,
              "example_method": "integrated_gradients", "eval_seed": 0},
}

METRICS = ("faithfulness", "relative_deletion", "sanity", "localization")
METRIC_LABELS = {
    "faithfulness": "insertion - deletion AUC\n(higher = more faithful)",
    "relative_deletion": "deletion AUC / random-order\ndeletion AUC (lower = better)",
    "sanity": "rank corr. after full\nrandomisation (lower = better)",
    "localization": "attribution mass in\nsilhouette (higher = better)",
}
MEAN = "mean"           # pseudo-method: the mean over methods (what the claims test)


# ----------------------------------------------------------------------------- compute


def method_options(method: str, scale: dict) -> dict:
    """Keyword options of ``method`` at ``scale`` (baselines, path steps, windows)."""
    if method == "integrated_gradients":
        return {"n_steps": scale["ig_steps"], "baselines": scale["baseline"],
                "internal_batch_size": 512}
    if method == "occlusion":
        return {"window": scale["occlusion_window"], "stride": scale["occlusion_stride"],
                "baselines": scale["baseline"], "perturbations_per_eval": 32}
    return {}


def silhouettes(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``[B, H, W]`` bool garment masks: pixels above ``threshold`` with enclosed holes filled."""
    from scipy.ndimage import binary_fill_holes
    fg = (x.mean(1) > threshold).numpy()
    return torch.from_numpy(np.stack([binary_fill_holes(m) for m in fg]))


def _r(v: float, digits: int = 6) -> float:
    v = float(v)
    return v if math.isnan(v) else round(v, digits)


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _sanity(model, x, target, method, options, maps, seed) -> dict:
    """Cascading randomisation; constant randomised maps count as correlation 0."""
    res = attribution.randomization_check(model, x, target, method, seed=seed, **options)
    corr = res.correlations.clone()                                     # [L, B]
    flat = maps.abs().reshape(maps.shape[0], -1)
    original_varies = (flat.max(1).values > flat.min(1).values)         # [B]
    corr = torch.where(torch.isnan(corr) & original_varies[None], torch.zeros_like(corr), corr)
    by_layer = [_r(_nanmean(row)) for row in corr.numpy()]
    return {"layers": res.layers, "correlation_by_layer": by_layer, "final": by_layer[-1]}


def evaluate_model(model, x: torch.Tensor, masks: torch.Tensor, scale: dict, *, seed: int,
                   keep_maps: int = 0) -> dict:
    """All metrics of one model on images ``x`` ``[B, C, H, W]`` with silhouettes ``masks``.

    ``keep_maps``: store the first that many maps of ``scale["example_method"]`` (for the figure).
    """
    with torch.no_grad():
        target = model(x).argmax(1)
    row: dict = {"methods": {}, "timing_s": {}}
    n_sanity = min(scale["n_sanity"], len(x))
    for method in scale["methods"]:
        start = time.perf_counter()
        options = method_options(method, scale)
        maps = attribution.attribute(model, x, target, method, **options)
        curve = {"steps": scale["curve_steps"], "seed": scale["eval_seed"],
                 "baseline": scale["baseline"]}
        dele = attribution.deletion_curve(model, x, target, maps, **curve)
        ins = attribution.insertion_curve(model, x, target, maps, **curve)
        rec = {"deletion_auc": _r(dele.auc.mean()), "insertion_auc": _r(ins.auc.mean()),
               "deletion_random_auc": _r(dele.random_auc.mean()),
               "insertion_random_auc": _r(ins.random_auc.mean()),
               "deletion_beats_random": _r(dele.summary()["beats_random_fraction"]),
               "insertion_beats_random": _r(ins.summary()["beats_random_fraction"]),
               "deletion_curve": [_r(v, 4) for v in dele.scores.mean(0)],
               "insertion_curve": [_r(v, 4) for v in ins.scores.mean(0)]}
        if scale.get("secondary_baseline") is not None and method in scale["secondary_methods"]:
            b = scale["secondary_baseline"]
            d2 = attribution.deletion_curve(model, x, target, maps, **{**curve, "baseline": b})
            i2 = attribution.insertion_curve(model, x, target, maps, **{**curve, "baseline": b})
            rec.update({f"deletion_auc_{b}": _r(d2.auc.mean()),
                        f"insertion_auc_{b}": _r(i2.auc.mean()),
                        f"deletion_random_auc_{b}": _r(d2.random_auc.mean()),
                        f"insertion_random_auc_{b}": _r(i2.random_auc.mean())})
        loc = attribution.localization(maps, masks, mass="positive").summary()
        rec["localization"] = {k: (_r(v) if isinstance(v, float) else v) for k, v in loc.items()}
        rec["sanity"] = _sanity(model, x[:n_sanity], target[:n_sanity], method, options,
                                maps[:n_sanity], seed)
        if keep_maps and method == scale["example_method"]:
            rec["example_maps"] = [[[_r(v, 4) for v in line] for line in m]
                                   for m in maps[:keep_maps].tolist()]
        row["methods"][method] = rec
        row["timing_s"][method] = round(time.perf_counter() - start, 2)
    row["predicted"] = target.tolist()
    return row


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    unknown = [m for m in scale["methods"] if attribution.METHODS.get(m) is None]
    if unknown:
        raise ValueError(f"unknown attribution method {unknown[0]!r}")
    x, y = common.test_set(scale["n_images"])
    masks = silhouettes(x, scale["silhouette_threshold"])
    jobs = [(seed, fam) for seed in scale["seeds"] for fam in scale["families"]]
    rows = []
    bar = tqdm(jobs, desc="interpretability", unit="model", disable=not progress)
    for seed, fam in bar:
        bar.set_postfix(model=fam, seed=seed)
        model, rec = common.trained(fam, n_train=scale["n_train"], seed=seed,
                                    epochs=scale["epochs"], test_n=scale["test_n"],
                                    cache=paths.cache)
        start = time.perf_counter()
        keep = scale["n_examples"] if seed == scale["seeds"][0] else 0
        row = evaluate_model(model, x, masks, scale, seed=seed, keep_maps=keep)
        correct = [int(p == int(t)) for p, t in zip(row["predicted"], y.tolist())]
        rows.append({"family": fam, "seed": seed, "test_accuracy": rec["test_accuracy"],
                     "accuracy_on_images": _r(float(np.mean(correct))), **row,
                     "eval_time_s": round(time.perf_counter() - start, 2)})
    k = scale["n_examples"]
    return {"rows": rows,
            "images": {"n": len(x), "mask_fraction": _r(masks.float().mean()),
                       "labels": y.tolist(), "classes": list(data.FASHION_MNIST_CLASSES),
                       "examples": [[[_r(v, 4) for v in line] for line in img[0]]
                                    for img in x[:k].tolist()]}}


# ----------------------------------------------------------------------------- tables


def _value(rec: dict, metric: str) -> float:
    if metric == "faithfulness":
        return rec["insertion_auc"] - rec["deletion_auc"]
    if metric == "relative_deletion":
        return rec["deletion_auc"] / rec["deletion_random_auc"] if rec["deletion_random_auc"] > 0 \
            else float("nan")
    if metric == "sanity":
        return rec["sanity"]["final"]
    if metric == "localization":
        return rec["localization"]["mass_inside"]
    raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")


def table(results: dict, metric: str) -> Dict[str, Dict[str, Dict[int, float]]]:
    """``{family: {method or "mean": {seed: value}}}``; "mean" averages the methods.

    NaN values (e.g. a map without positive mass) are skipped in the mean.
    """
    out: Dict[str, Dict[str, Dict[int, float]]] = {}
    for row in results["rows"]:
        per = out.setdefault(row["family"], {})
        values = []
        for method, rec in row["methods"].items():
            v = float(_value(rec, metric))
            per.setdefault(method, {})[int(row["seed"])] = v
            values.append(v)
        per.setdefault(MEAN, {})[int(row["seed"])] = _nanmean(values)
    return out


def paired_gap(t: dict, method: str, better: str, worse: Sequence[str], *, sign: float = 1.0
               ) -> List[float]:
    """Per seed (present for every family): ``sign * (t[better] - mean of t[worse])``."""
    seeds = sorted(set.intersection(*(set(t[f][method]) for f in [better, *worse])))
    gaps = []
    for s in seeds:
        mlps = _nanmean([t[f][method][s] for f in worse])
        gaps.append(sign * (t[better][method][s] - mlps))
    return [g for g in gaps if np.isfinite(g)]


def _ci(values: Sequence[float], margin: float) -> dict:
    if not values:
        return {"estimate": float("nan"), "low": float("nan"), "high": float("nan"),
                "verdict": "inconclusive", "n_seeds": 0}
    est, lo, hi = common.mean_ci(values)
    return {"estimate": _r(est), "low": _r(lo), "high": _r(hi),
            "verdict": common.verdict(lo, hi, margin=margin), "n_seeds": len(values)}


WHO = ("a worry of the 2021 debate on MLP-Mixer, ResMLP, gMLP and FNet: without convolution's "
       "locality or attention maps to inspect, MLP models may be less interpretable than CNNs "
       "and Transformers")

# (key, metric, margin, sign): sign orients the effect so that > 0 = MLPs less interpretable
_CLAIMS = (
    ("mlps_less_faithful", "faithfulness", 0.02, 1.0),
    ("mlp_maps_fail_sanity_check", "sanity", 0.05, -1.0),
    ("mlp_maps_localise_worse", "localization", 0.02, 1.0),
)
_TEXT = {
    "faithfulness": (
        "MLPs are less interpretable: their attribution maps are less faithful to what the "
        "model uses than a CNN's",
        "(CNN - mean MLP) of insertion AUC - deletion AUC (grey baseline), averaged over the "
        "methods, paired by seed: > 0 means the MLPs' maps are less faithful"),
    "sanity": (
        "MLPs are less interpretable: their attribution maps depend less on the learned "
        "weights (fail the model-randomisation sanity check more) than a CNN's",
        "(mean MLP - CNN) Spearman correlation of |map| before vs after randomising all "
        "layers, averaged over the methods, paired by seed: > 0 means the MLPs' maps are "
        "less sensitive to the weights"),
    "localization": (
        "MLPs are less interpretable: their attribution maps fall less on the object than "
        "a CNN's",
        "(CNN - mean MLP) share of positive attribution mass inside the garment silhouette, "
        "averaged over the methods, paired by seed: > 0 means the MLPs' maps localise worse"),
}


def claims(results: dict) -> List[Claim]:
    fams = {row["family"] for row in results["rows"]}
    mlps = [f for f in common.MLP_FAMILIES if f in fams]
    methods = list(results["rows"][0]["methods"])
    settings = results.get("settings", {})
    n_seeds = len({row["seed"] for row in results["rows"]})
    out = []
    for key, metric, margin, sign in _CLAIMS:
        t = table(results, metric)
        gaps = paired_gap(t, MEAN, "cnn", mlps, sign=sign)
        est, lo, hi = common.mean_ci(gaps) if gaps else (float("nan"),) * 3
        details = {
            "per_method": {m: _ci(paired_gap(t, m, "cnn", mlps, sign=sign), margin)
                           for m in methods},
            "vs_vit": ({m: _ci(paired_gap(t, m, "vit", mlps, sign=sign), margin)
                        for m in [MEAN, *methods]} if "vit" in t else {}),
            "family_mean": {f: {m: _r(_nanmean(list(v.values()))) for m, v in t[f].items()}
                            for f in t},
            "per_seed_effect": [_r(g) for g in gaps],
        }
        if metric == "faithfulness":
            # insertion - deletion scales with how much probability the model keeps under a
            # random grey-pixel order; the deletion AUC relative to that order is scale-free
            rel = table(results, "relative_deletion")
            details["relative_deletion"] = {
                "effect": "(mean MLP - CNN) of deletion AUC / random-order deletion AUC, "
                          "paired by seed: > 0 means the MLPs' maps are less faithful",
                "margin": 0.05,
                **{m: _ci(paired_gap(rel, m, "cnn", mlps, sign=-1.0), 0.05)
                   for m in [MEAN, *methods]}}
        if metric == "localization":
            details["chance_mask_fraction"] = results.get("images", {}).get("mask_fraction")
        claim, effect = _TEXT[metric]
        out.append(Claim(
            key=key, claim=claim,
            who=WHO,
            experiment=f"{', '.join(methods)} maps of {', '.join(LABELS[f] for f in _order(t))} "
                       f"on the same {results.get('images', {}).get('n', '?')} Fashion-MNIST test "
                       f"images (predicted class), {n_seeds} seeds, models trained on "
                       f"{settings.get('n_train', '?')} images",
            figure="interpretability_comparison.pdf", effect=effect,
            estimate=est, low=lo, high=hi, margin=margin,
            rule=common.RULE + f" (margin: {margin})", details=details))
    return out


# ----------------------------------------------------------------------------- figures


def _order(fams) -> List[str]:
    return [f for f in common.FAMILIES if f in fams]


def _panel(ax, t: dict, method: str, fams: List[str]) -> None:
    for i, f in enumerate(fams):
        vals = [v for _, v in sorted(t[f][method].items()) if np.isfinite(v)]
        if not vals:
            continue
        m, lo, hi = common.mean_ci(vals)
        ax.bar(i, m, color=COLORS[f], alpha=0.85, width=0.75,
               hatch=None if f in common.MLP_FAMILIES else "//", edgecolor="white")
        ax.errorbar(i, m, yerr=[[m - lo], [hi - m]], color="k", capsize=2, lw=0.8)
        ax.plot([i] * len(vals), vals, "o", color="k", ms=2, alpha=0.6)
    ax.set_xticks(range(len(fams)))
    ax.set_xticklabels([LABELS[f] for f in fams], rotation=45, fontsize=7)


def _random_gap(results: dict, method: str) -> float:
    """Mean insertion - deletion AUC of the random pixel order (the reference of faithfulness)."""
    v = [r["methods"][method]["insertion_random_auc"] - r["methods"][method]["deletion_random_auc"]
         for r in results["rows"] if method in r["methods"]]
    return float(np.mean(v)) if v else float("nan")


def plot_comparison(results: dict, paths: common.Paths) -> Path:
    import matplotlib.pyplot as plt
    methods = list(results["rows"][0]["methods"])
    cols = methods + [MEAN]
    fams = _order({r["family"] for r in results["rows"]})
    tables = {m: table(results, m) for m in METRICS}
    fig, axes = plt.subplots(len(METRICS) + 1, len(cols), figsize=(2.3 * len(cols), 13),
                             squeeze=False)
    for c, method in enumerate(cols):
        for r, metric in enumerate(METRICS):
            ax = axes[r][c]
            _panel(ax, tables[metric], method, fams)
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
                 f"CI over seeds, dots: seeds; hatched: non-MLP)\nremoved pixels = "
                 f"{s.get('baseline', 'mean')} intensity; dashed lines: random pixel order (rows "
                 f"1-2), chance = silhouette's share of the image (row 4)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return common.savefig(fig, paths, "interpretability_comparison")


def plot_examples(results: dict, paths: common.Paths) -> Path:
    method = results.get("settings", {}).get("example_method", "integrated_gradients")
    seed = min(r["seed"] for r in results["rows"])
    rows = {r["family"]: r for r in results["rows"] if r["seed"] == seed}
    fams = [f for f in _order(rows) if "example_maps" in rows[f]["methods"].get(method, {})]
    images = torch.tensor(results["images"]["examples"], dtype=torch.float32)[:, None]
    maps = {(LABELS[f], method): torch.tensor(rows[f]["methods"][method]["example_maps"])
            for f in fams}
    classes = results["images"]["classes"]
    labels = [classes[int(v)] for v in results["images"]["labels"][:len(images)]]
    fig = attribution.plot_grid(images, maps, row_labels=labels)
    signed = attribution.METHODS[method].signed
    colours = ("red = for the predicted class, blue = against" if signed
               else "bright = large attribution")
    fig.suptitle(f"{method} maps, seed {seed} ({colours}; each map scaled to its own maximum)",
                 fontsize=8)
    return common.savefig(fig, paths, "attribution_examples")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    return [plot_comparison(results, paths), plot_examples(results, paths)]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv)


if __name__ == "__main__":
    sys.exit(main())
