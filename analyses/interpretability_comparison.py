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
  pointing-game hit rate; Fashion-MNIST has no boxes, so the silhouette is the
  only ground truth. The silhouette covers about half the image (``chance`` in
  the results), so this is a weak localisation test.

Models: the converged full-data models of every family (``analyses.converged``: one
recipe, seeds 0-2); every metric is also measured on the same-seed random
initialisation (``zoo.build(family, seed=seed)``, the rows' ``init``), so a score can be
read against what an untrained network of the same architecture gives.

The claims average each score over the methods, per model. Each family's effect is the
CNN's score minus the family's (oriented so that > 0 = the family is less
interpretable), paired by seed; the claim's effect is that of the MLP group (the mean of
Mixer, ResMLP, gMLP and FNet per seed, :func:`analyses.verdicts.group_effect`), and every
family's own effect and interval, ViT included, is in ``per_family``. Per-method numbers,
the initialisation's effect and the deletion AUC relative to a random order are in each
claim's ``details`` / ``reference``.

    python -m analyses.interpretability_comparison            # full scale (see --help)
    python -m analyses.interpretability_comparison --quick    # seconds, into runs/analyses_quick/
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from analyses import common, converged
from analyses.common import COLORS, LABELS, Check, Claim
from analyses.verdicts import margin_of
from probe import attribution, data, zoo

NAME = "interpretability_comparison"

# The full scale's sizes keep the 18 models and their 18 initialisations near 10 min on 2 CPU
# cores (the cost depends on the architecture, not on the training: about 16 s per model);
# each row of the results records its ``eval_time_s`` and per-method ``timing_s``.
# The quick scale keeps three families (an MLP, the ViT and the CNN) and two seeds, the fewest
# that give an interval, to stay a ~30 s smoke run; tests/test_attribution.py runs every method
# on every family.
SCALES = {
    "full": {"quick": False, "seeds": [0, 1, 2], "families": list(common.FAMILIES),
             "n_images": 48, "n_sanity": 8,
             "methods": ["saliency", "integrated_gradients", "occlusion", "grad_cam"],
             "ig_steps": 8, "occlusion_window": 4, "occlusion_stride": 4, "curve_steps": 10,
             "baseline": "mean", "secondary_baseline": "black", "secondary_methods": ["saliency"],
             "silhouette_threshold": 0.05, "n_examples": 4,
             "example_method": "integrated_gradients", "eval_seed": 0},
    "quick": {"quick": True, "seeds": [0, 1], "families": ["mixer", "vit", "cnn"],
              "n_images": 3, "n_sanity": 1,
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
    if "cnn" not in scale["families"]:
        raise ValueError("interpretability_comparison compares every family with the CNN: "
                         "include 'cnn'")
    seeds = list(scale["seeds"])
    loaded = converged.models(scale["families"], seeds, quick=bool(scale["quick"]),
                              progress=progress)
    x, y = common.test_set(scale["n_images"])
    masks = silhouettes(x, scale["silhouette_threshold"])
    rows, models = [], []
    bar = tqdm(loaded, desc="interpretability", unit="model", disable=not progress)
    for model, mrow in bar:
        fam, seed = mrow["family"], int(mrow["seed"])
        bar.set_postfix(model=fam, seed=seed)
        start = time.perf_counter()
        keep = scale["n_examples"] if seed == seeds[0] else 0
        row = evaluate_model(model, x, masks, scale, seed=seed, keep_maps=keep)
        init = evaluate_model(zoo.build(fam, seed=seed).eval(), x, masks, scale, seed=seed)
        models.append(mrow)
        rows.append({"family": fam, "seed": seed, "test_accuracy": mrow["test_accuracy"],
                     "accuracy_on_images": _on_images(row["predicted"], y), **row,
                     "init": {"methods": init["methods"], "timing_s": init["timing_s"],
                              "accuracy_on_images": _on_images(init["predicted"], y)},
                     "eval_time_s": round(time.perf_counter() - start, 2)})
    k = scale["n_examples"]
    return {"models": models, "rows": rows,
            "images": {"n": len(x), "mask_fraction": _r(masks.float().mean()),
                       "labels": y.tolist(), "classes": list(data.FASHION_MNIST_CLASSES),
                       "examples": [[[_r(v, 4) for v in line] for line in img[0]]
                                    for img in x[:k].tolist()]},
            "reference": {"init": "rows[*].init: the same metrics on the same-seed random "
                                  "initialisation (zoo.build)",
                          "random_pixel_order": "deletion/insertion_random_auc of each method",
                          "chance_localization": "images.mask_fraction"}}


def _on_images(predicted: Sequence[int], labels: torch.Tensor) -> float:
    return _r(float(np.mean([int(p == int(t)) for p, t in zip(predicted, labels.tolist())])))


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


STATES = ("trained", "init")


def table(results: dict, metric: str, state: str = "trained") -> Dict[str, Dict[str, Dict[int, float]]]:
    """``{family: {method or "mean": {seed: value}}}`` of the trained models (``state="trained"``)
    or of their same-seed initialisations (``"init"``); "mean" averages the methods.

    NaN values (e.g. a map without positive mass) are skipped in the mean.
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    out: Dict[str, Dict[str, Dict[int, float]]] = {}
    for row in results["rows"]:
        per = out.setdefault(row["family"], {})
        values = []
        methods = row["methods"] if state == "trained" else row["init"]["methods"]
        for method, rec in methods.items():
            v = float(_value(rec, metric))
            per.setdefault(method, {})[int(row["seed"])] = v
            values.append(v)
        per.setdefault(MEAN, {})[int(row["seed"])] = _nanmean(values)
    return out


def family_effects(t: dict, method: str, *, sign: float) -> Tuple[Dict[str, List[float]], List[int]]:
    """``({family: per-seed effects}, seeds)``: ``sign * (CNN - family)`` for every non-CNN
    family, over the seeds where the CNN and every MLP family have a finite value (the same
    seeds for the group, as :func:`common.group_effect` needs); another family (ViT) keeps
    those of these seeds where its own value is finite."""
    if "cnn" not in t:
        raise ValueError("the results hold no CNN rows; every effect is relative to the CNN")
    others = [f for f in _order(t) if f != "cnn"]
    mlps = [f for f in others if f in common.MLP_FAMILIES]
    finite = lambda f, s: s in t[f][method] and np.isfinite(t[f][method][s])   # noqa: E731
    seeds = sorted(s for s in t["cnn"][method] if all(finite(f, s) for f in ["cnn", *mlps]))
    effects = {f: [sign * (t["cnn"][method][s] - t[f][method][s]) for s in seeds if finite(f, s)]
               for f in others}
    return {f: v for f, v in effects.items() if v}, seeds


def effect_of(t: dict, method: str, *, sign: float, confidence: float) -> dict:
    """The MLP group's effect ``{"effect", "ci_low", "ci_high", "n"}`` and ``"per_family"``."""
    effects, seeds = family_effects(t, method, sign=sign)
    mlps = [f for f in common.MLP_FAMILIES if f in effects]
    if not mlps or not seeds:
        raise ValueError(f"no seed with a finite {method!r} score for the CNN and every MLP family")
    est, lo, hi, per_family = common.group_effect(effects, mlps, confidence=confidence)
    return {"effect": _r(est), "ci_low": _r(lo), "ci_high": _r(hi), "n": len(seeds),
            "seeds": seeds, "group": mlps, "per_family": per_family}


WHO = ("a worry of the 2021 debate on MLP-Mixer, ResMLP, gMLP and FNet: without convolution's "
       "locality or attention maps to inspect, MLP models may be less interpretable than CNNs "
       "and Transformers")

# (key, metric, sign): sign orients the effect so that > 0 = the family less interpretable
_CLAIMS = (
    ("mlps_less_faithful", "faithfulness", 1.0),
    ("mlp_maps_fail_sanity_check", "sanity", -1.0),
    ("mlp_maps_localise_worse", "localization", 1.0),
)
_TEXT = {
    "faithfulness": (
        "MLPs are less interpretable: their attribution maps are less faithful to what the "
        "model uses than a CNN's",
        "CNN minus family of insertion AUC - deletion AUC (grey baseline), averaged over the "
        "methods, paired by seed; MLP group = mean over its families per seed. > 0: the "
        "family's maps are less faithful"),
    "sanity": (
        "MLPs are less interpretable: their attribution maps depend less on the learned "
        "weights (fail the model-randomisation sanity check more) than a CNN's",
        "family minus CNN Spearman correlation of |map| before vs after randomising all "
        "layers, averaged over the methods, paired by seed; MLP group = mean over its families "
        "per seed. > 0: the family's maps are less sensitive to the weights"),
    "localization": (
        "MLPs are less interpretable: their attribution maps fall less on the object than "
        "a CNN's",
        "CNN minus family share of positive attribution mass inside the garment silhouette, "
        "averaged over the methods, paired by seed; MLP group = mean over its families per "
        "seed. > 0: the family's maps localise worse"),
}


def _levels(t: dict, t0: dict) -> Dict[str, dict]:
    """Each family's mean-over-methods score, trained and at initialisation (95% intervals)."""
    out = {}
    for f in _order(t):
        entry = {}
        for state, tab in (("trained", t), ("init", t0)):
            if f not in tab:
                continue
            vals = [v for v in tab[f][MEAN].values() if np.isfinite(v)]
            if vals:
                m, lo, hi = common.mean_ci(vals)
                entry[state] = {"value": _r(m), "ci_low": _r(lo), "ci_high": _r(hi), "n": len(vals)}
            else:
                entry[state] = {"value": None, "note": "no finite value on any seed (all-zero maps)"}
        out[f] = entry
    return out


def _strip(effect: dict) -> dict:
    return {k: v for k, v in effect.items() if k != "per_family"}


def _init_reference(t0: dict, *, sign: float, confidence: float) -> dict:
    """The claim's effect between the same-seed initialisations, or, where some family has no
    finite score there, each family's effect where it has one and the families that have none.

    A family whose initial output does not depend on the input (timm zero-initialises the
    classifier head of Mixer, gMLP and FNet, and ResMLP's output is constant too) has
    all-zero maps at initialisation: faithfulness 0, sanity and localisation undefined.
    """
    about = "the same effect between the same-seed random initialisations (zoo.build)"
    try:
        init = effect_of(t0, MEAN, sign=sign, confidence=confidence)
        return {**_strip(init), "per_family": init["per_family"], "about": about}
    except ValueError:
        pass
    undefined = [f for f in _order(t0)
                 if not any(np.isfinite(v) for v in t0[f][MEAN].values())]
    per_family = {}
    if "cnn" in t0:
        for f in _order(t0):
            if f == "cnn" or f in undefined:
                continue
            pair = [sign * (t0["cnn"][MEAN][s] - v) for s, v in t0[f][MEAN].items()
                    if s in t0["cnn"][MEAN] and np.isfinite(v) and np.isfinite(t0["cnn"][MEAN][s])]
            if pair:
                per_family.update(common.family_effects({f: pair}, confidence=confidence))
    return {"about": about, "per_family": per_family, "undefined_for": undefined,
            "why": "no finite score at initialisation for " + ", ".join(undefined) + ": their "
                   "initial output does not depend on the input (zero-initialised classifier "
                   "head), so every attribution map is 0"}


def claims(results: dict) -> List[Claim]:
    fams = {row["family"] for row in results["rows"]}
    if "cnn" not in fams or not fams & set(common.MLP_FAMILIES):
        raise ValueError("the results need CNN rows and at least one MLP family's rows")
    methods = list(results["rows"][0]["methods"])
    n_seeds = len({row["seed"] for row in results["rows"]})
    has_init = all("init" in row for row in results["rows"])
    out = []
    for key, metric, sign in _CLAIMS:
        confidence = common.CONFIDENCE[margin_of(key)["test"]]
        t = table(results, metric)
        main = effect_of(t, MEAN, sign=sign, confidence=confidence)
        details = {
            "seeds": main["seeds"], "group": main["group"],
            "per_method": {m: _strip(effect_of(t, m, sign=sign, confidence=confidence))
                           for m in methods},
            "per_method_per_family": {m: effect_of(t, m, sign=sign, confidence=confidence)["per_family"]
                                      for m in methods},
        }
        reference: Dict[str, object] = {}
        if has_init:
            t0 = table(results, metric, "init")
            reference["initialisation"] = _init_reference(t0, sign=sign, confidence=confidence)
            reference["levels"] = _levels(t, t0)
        else:
            reference["levels"] = _levels(t, {})
        if metric == "faithfulness":
            # insertion - deletion scales with how much probability the model keeps under a
            # random grey-pixel order; the deletion AUC relative to that order is scale-free
            rel = table(results, "relative_deletion")
            details["relative_deletion"] = {
                "effect": "family minus CNN of deletion AUC / random-order deletion AUC, paired "
                          "by seed: > 0 means the family's maps are less faithful (no verdict: "
                          "a secondary, scale-free reading)",
                **{m: effect_of(rel, m, sign=-1.0, confidence=confidence) for m in [MEAN, *methods]}}
            reference["random_pixel_order_gap"] = _r(np.mean([_random_gap(results, m)
                                                              for m in methods]))
        if metric == "localization":
            reference["chance_mask_fraction"] = results.get("images", {}).get("mask_fraction")
        claim, effect = _TEXT[metric]
        out.append(Claim(
            key=key, claim=claim,
            who=WHO,
            experiment=f"{', '.join(methods)} maps of {', '.join(LABELS[f] for f in _order(t))} "
                       f"on the same {results.get('images', {}).get('n', '?')} Fashion-MNIST test "
                       f"images (predicted class), the converged full-data models (one recipe), "
                       f"{n_seeds} seeds, each beside its same-seed random initialisation",
            figure="interpretability_effects.pdf", effect=effect,
            estimate=main["effect"], low=main["ci_low"], high=main["ci_high"],
            per_family=main["per_family"], reference=reference, details=details))
    return out


def checks(results: dict) -> List[Check]:
    """None: this analysis measures trained models only (no identity holds by construction)."""
    return []


# ----------------------------------------------------------------------------- figures


def _order(fams) -> List[str]:
    return [f for f in common.FAMILIES if f in fams]


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


_AXIS = {"mlps_less_faithful": "CNN - family, insertion - deletion AUC",
         "mlp_maps_fail_sanity_check": "family - CNN, rank corr. after randomisation",
         "mlp_maps_localise_worse": "CNN - family, attribution mass in silhouette"}


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


def plot(results: dict, paths: common.Paths) -> List[Path]:
    return [plot_comparison(results, paths), plot_effects(results, paths),
            plot_examples(results, paths)]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
