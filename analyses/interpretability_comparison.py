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
- localisation with a known ground truth (issue 16): Fashion-MNIST garments fill about half
  the frame, so the share of attribution inside a garment's silhouette sits at chance for
  every family (kept as a secondary number, figure row 4). The claim instead uses the
  ``synthetic`` dataset (:func:`probe.data.synthetic`: a 10x10 grating whose orientation is
  the class, at a random position; its mask is that square, 12.8% of the image), every
  family trained on it under the same recipe (``python -m analyses.cells run --plan
  synthetic``, ``make cells-synthetic``), maps of the true class, chance-corrected: the
  share of positive attribution mass inside the mask minus the mask's area share, and the
  pointing game (the map's argmax inside the mask) minus the same share
  (:func:`chance_corrected_localization`; 0 = a map that ignores where the square is, e.g.
  a uniform map). A position-blind map of where squares fall (the dataset's mask
  frequency, which prefers the centre) is reported beside it, and the same-seed random
  initialisation of every model.

Models: the converged full-data models of every family (``analyses.converged``: one
recipe, seeds 0-2) on Fashion-MNIST, and the ``synthetic`` plan's cells (the same recipe and
learning rates, synthetic data) for localisation; every metric is also measured on the same-seed random
initialisation (``zoo.build(family, seed=seed)``, the rows' ``init``), so a score can be
read against what an untrained network of the same architecture gives.

The claims average each score over the methods, per model (localisation: the synthetic-data
models' chance-corrected mass in the mask; pointing game in the claim's details). Each family's effect is the
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
from analyses.cells import synthetic_cells
from analyses.common import COLORS, LABELS, Check, Claim
from analyses.verdicts import margin_of
from probe import attribution, data, zoo

NAME = "interpretability_comparison"

# The full scale's sizes keep the 18 models and their 18 initialisations near 10 min on 2 CPU
# cores (the cost depends on the architecture, not on the training: about 16 s per model), plus
# the localisation of the 18 synthetic-data models and their initialisations (a few s each);
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
             "example_method": "integrated_gradients", "eval_seed": 0,
             "n_synthetic": 64, "synthetic_seed": 0},
    "quick": {"quick": True, "seeds": [0, 1], "families": ["mixer", "vit", "cnn"],
              "n_images": 3, "n_sanity": 1,
              "methods": ["saliency", "integrated_gradients", "occlusion", "grad_cam"],
              "ig_steps": 2, "occlusion_window": 14, "occlusion_stride": 14, "curve_steps": 3,
              "baseline": "mean", "secondary_baseline": "black", "secondary_methods": ["saliency"],
              "silhouette_threshold": 0.05, "n_examples": 2,
              "example_method": "integrated_gradients", "eval_seed": 0,
              "n_synthetic": 6, "synthetic_seed": 0},
}

METRICS = ("faithfulness", "relative_deletion", "sanity", "localization")
SYNTHETIC_METRICS = ("mask_mass_excess", "pointing_excess")   # on the synthetic-data models
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


def chance_corrected_localization(maps: torch.Tensor, masks: torch.Tensor) -> dict:
    """Localisation of ``maps`` ``[B, H, W]`` against ``masks`` ``[B, (1,) H, W]``, chance-corrected.

    Returns means over the images: ``mass_inside`` (share of the positive attribution mass in
    the mask), ``pointing_accuracy`` (the map's argmax in the mask), ``chance`` (the mask's
    area share), ``mass_excess`` / ``pointing_excess`` (each image's score minus its mask's
    area share: 0 for a map that ignores where the mask is, ``1 - share`` for a map inside
    the mask), ``n`` and ``n_undefined`` (maps without positive mass, or constant maps for
    the pointing game, which have no argmax: left out of the means; NaN if all are).
    """
    loc = attribution.localization(maps, masks, mass="positive")
    share = loc.mask_fraction
    flat = maps.reshape(maps.shape[0], -1)
    varies = flat.max(1).values > flat.min(1).values
    hit = torch.where(varies, loc.pointing_hit.float(), torch.full_like(share, float("nan")))
    mean = lambda v: _r(_nanmean(v.numpy()))                                   # noqa: E731
    return {"mass_inside": mean(loc.mass_inside), "pointing_accuracy": mean(hit),
            "chance": mean(share), "mass_excess": mean(loc.mass_inside - share),
            "pointing_excess": mean(hit - share), "n": int(share.numel()),
            "n_undefined": int(torch.isnan(loc.mass_inside).sum()),
            "n_pointing_undefined": int((~varies).sum())}


def evaluate_localization(model, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor,
                          scale: dict, *, keep_maps: int = 0) -> dict:
    """Chance-corrected localisation of every method's maps of the true class ``y``."""
    row: dict = {"methods": {}, "timing_s": {}}
    for method in scale["methods"]:
        start = time.perf_counter()
        maps = attribution.attribute(model, x, y, method, **method_options(method, scale))
        rec = chance_corrected_localization(maps, masks)
        if keep_maps and method == scale["example_method"]:
            rec["example_maps"] = [[[_r(v, 4) for v in line] for line in m]
                                   for m in maps[:keep_maps].tolist()]
        row["methods"][method] = rec
        row["timing_s"][method] = round(time.perf_counter() - start, 2)
    with torch.no_grad():
        row["accuracy_on_images"] = _r((model(x).argmax(1) == y).float().mean())
    return row


def localization_controls(masks: torch.Tensor) -> dict:
    """The metric on maps whose scores are known: a uniform map (0 by construction), the mask
    itself (``1 - area share``), and the position-blind map of where masks fall (the mean
    mask over the images: what knowing only the dataset's layout scores)."""
    m = masks[:, 0] if masks.ndim == 4 else masks
    uniform = chance_corrected_localization(torch.ones(m.shape), m)
    itself = chance_corrected_localization(m.float(), m)
    prior = chance_corrected_localization(m.float().mean(0, keepdim=True).expand(m.shape), m)
    share = m.float().mean(dim=(1, 2))
    return {"uniform_map": {"mask_mass_excess": uniform["mass_excess"], "expected": 0.0},
            "mask_as_map": {"mask_mass_excess": itself["mass_excess"],
                            "pointing_excess": itself["pointing_excess"],
                            "expected": _r((1 - share).mean())},
            "prior_map": {"mask_mass_excess": prior["mass_excess"],
                          "pointing_excess": prior["pointing_excess"],
                          "about": "the mean mask of these images as every image's map: scores "
                                   "> 0 without looking at the image, because squares cover the "
                                   "centre more often than the border"}}


def synthetic_part(scale: dict, progress: bool) -> dict:
    """Localisation of the ``synthetic`` plan's models (and their initialisations) on
    ``n_synthetic`` synthetic test images with masks."""
    from tqdm import tqdm
    quick, fams, seeds = bool(scale["quick"]), list(scale["families"]), list(scale["seeds"])
    recipe, store = converged.recipe_and_store(quick)
    cells = synthetic_cells(recipe, converged.lrs(fams, quick=quick), families=fams, seeds=seeds)
    missing = [c for c in cells if not store.is_done(c)]
    if missing and not quick:
        raise ValueError(f"{len(missing)} synthetic-data model(s) not trained yet "
                         f"({', '.join(c.key for c in missing[:3])}{', ...' if len(missing) > 3 else ''}"
                         f"); run `make cells-synthetic` (python -m analyses.cells run --plan "
                         f"synthetic) first")
    ds = data.load("synthetic", "test", n=scale["n_synthetic"], seed=scale["synthetic_seed"])
    x, y = data.as_tensors(ds)
    masks = ds.masks[:, 0]
    rows, models = [], []
    k = scale["n_examples"]
    for cell in tqdm(cells, desc="localisation (synthetic)", unit="model", disable=not progress):
        start = time.perf_counter()
        model, mrow = converged.load(cell, quick=quick, progress=progress)
        row = evaluate_localization(model, x, y, masks, scale,
                                    keep_maps=k if cell.seed == seeds[0] else 0)
        init = evaluate_localization(zoo.build(cell.family, seed=cell.seed).eval(), x, y, masks,
                                     scale)
        models.append({**mrow, "dataset": "synthetic"})
        rows.append({"family": cell.family, "seed": cell.seed,
                     "test_accuracy": mrow["test_accuracy"], **row, "init": init,
                     "eval_time_s": round(time.perf_counter() - start, 2)})
    return {"models": models, "rows": rows, "controls": localization_controls(masks),
            "images": {"n": len(x), "mask_fraction": _r(masks.float().mean()),
                       "labels": y.tolist(), "classes": list(ds.classes), "target": "true class",
                       "examples": [[[_r(v, 4) for v in line] for line in img[0]]
                                    for img in x[:k].tolist()],
                       "example_masks": masks[:k].int().tolist()},
            "recipe": {"n_train": cells[0].n_train, "recipe_hash": cells[0].recipe.hash,
                       "steps": cells[0].steps, "lr": {c.family: c.lr for c in cells}}}


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
        models.append({**mrow, "dataset": "fashion-mnist"})
        rows.append({"family": fam, "seed": seed, "test_accuracy": mrow["test_accuracy"],
                     "accuracy_on_images": _on_images(row["predicted"], y), **row,
                     "init": {"methods": init["methods"], "timing_s": init["timing_s"],
                              "accuracy_on_images": _on_images(init["predicted"], y)},
                     "eval_time_s": round(time.perf_counter() - start, 2)})
    k = scale["n_examples"]
    synthetic = synthetic_part(scale, progress)
    models += synthetic.pop("models")
    return {"models": models, "rows": rows, "synthetic": synthetic,
            "images": {"n": len(x), "mask_fraction": _r(masks.float().mean()),
                       "labels": y.tolist(), "classes": list(data.FASHION_MNIST_CLASSES),
                       "examples": [[[_r(v, 4) for v in line] for line in img[0]]
                                    for img in x[:k].tolist()]},
            "reference": {"init": "rows[*].init: the same metrics on the same-seed random "
                                  "initialisation (zoo.build)",
                          "random_pixel_order": "deletion/insertion_random_auc of each method",
                          "chance_localization": "images.mask_fraction (Fashion-MNIST "
                                                 "silhouettes), synthetic.images.mask_fraction",
                          "localization_controls": "synthetic.controls"}}


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
    if metric == "mask_mass_excess":
        return rec["mass_excess"]
    if metric == "pointing_excess":
        return rec["pointing_excess"]
    raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS + SYNTHETIC_METRICS)}")


STATES = ("trained", "init")


def table(results: dict, metric: str, state: str = "trained") -> Dict[str, Dict[str, Dict[int, float]]]:
    """``{family: {method or "mean": {seed: value}}}`` of the trained models (``state="trained"``)
    or of their same-seed initialisations (``"init"``); "mean" averages the methods.
    :data:`METRICS` are read from the Fashion-MNIST rows, :data:`SYNTHETIC_METRICS` from the
    synthetic-data models' rows (``results["synthetic"]["rows"]``).

    NaN values (e.g. a map without positive mass) are skipped in the mean.
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    rows = results["synthetic"]["rows"] if metric in SYNTHETIC_METRICS else results["rows"]
    out: Dict[str, Dict[str, Dict[int, float]]] = {}
    for row in rows:
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
    ("mlp_maps_localise_worse", "mask_mass_excess", 1.0),
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
    "mask_mass_excess": (
        "MLPs are less interpretable: their attribution maps fall less on the object than "
        "a CNN's",
        "CNN minus family of the chance-corrected localisation on synthetic images (share of "
        "positive attribution mass inside the class evidence's square minus the square's area "
        "share), averaged over the methods, paired by seed; MLP group = mean over its families "
        "per seed. > 0: the family's maps localise worse"),
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


def _experiment(metric: str, results: dict, methods: List[str], fams: List[str]) -> str:
    names = ", ".join(LABELS[f] for f in fams)
    if metric in SYNTHETIC_METRICS:
        syn = results["synthetic"]
        img, rec = syn["images"], syn.get("recipe", {})
        n_seeds = len({row["seed"] for row in syn["rows"]})
        trained = (f"trained on {rec['n_train']} synthetic images under the recipe ({rec['steps']} "
                   f"steps, each family's Fashion-MNIST swept learning rate)" if rec else
                   "trained on synthetic images under the recipe")
        return (f"{', '.join(methods)} maps (true class) of {names} on {img['n']} synthetic test "
                f"images whose class evidence is a grating in a square at a random position "
                f"(the mask, {100 * img['mask_fraction']:.1f}% of the image), {trained}, "
                f"{n_seeds} seeds; controls: chance = the mask's area share (subtracted: a uniform "
                f"map scores 0), the same-seed random initialisation (zoo.build), a position-blind "
                f"map of where squares fall; pointing game minus chance in the details; the "
                f"Fashion-MNIST silhouette score (at chance) in the reference")
    n_seeds = len({row["seed"] for row in results["rows"]})
    return (f"{', '.join(methods)} maps of {names} on the same "
            f"{results.get('images', {}).get('n', '?')} Fashion-MNIST test images (predicted "
            f"class), the converged full-data models (one recipe), {n_seeds} seeds, each beside "
            f"its same-seed random initialisation")


def claims(results: dict) -> List[Claim]:
    for rows in (results["rows"], results["synthetic"]["rows"]):
        fams = {row["family"] for row in rows}
        if "cnn" not in fams or not fams & set(common.MLP_FAMILIES):
            raise ValueError("the results (Fashion-MNIST and synthetic rows) need CNN rows and "
                             "at least one MLP family's rows")
    out = []
    for key, metric, sign in _CLAIMS:
        rows = results["synthetic"]["rows"] if metric in SYNTHETIC_METRICS else results["rows"]
        methods = list(rows[0]["methods"])
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
        if all("init" in row for row in rows):
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
        if metric == "mask_mass_excess":
            point = table(results, "pointing_excess")
            details["pointing_game"] = {
                "effect": "CNN minus family of pointing-game hit rate minus the mask's area share "
                          "(constant maps left out), paired by seed (no verdict: the second "
                          "chance-corrected reading)",
                **{m: effect_of(point, m, sign=sign, confidence=confidence)
                   for m in [MEAN, *methods]}}
            if all("init" in row for row in rows):
                reference["pointing_levels"] = _levels(point, table(results, "pointing_excess", "init"))
            reference["chance_mask_fraction"] = results["synthetic"]["images"]["mask_fraction"]
            reference["controls"] = results["synthetic"].get("controls", {})
            fashion = table(results, "localization")
            reference["fashion_mnist_silhouette"] = {
                "about": "the earlier reading: CNN minus family share of positive attribution "
                         "mass inside the Fashion-MNIST garment silhouette (chance = "
                         f"{results.get('images', {}).get('mask_fraction')}, the silhouette's area "
                         "share; every family sits near it)",
                **effect_of(fashion, MEAN, sign=sign, confidence=confidence),
                "levels": _levels(fashion, {})}
        claim, effect = _TEXT[metric]
        out.append(Claim(
            key=key, claim=claim, who=WHO, experiment=_experiment(metric, results, methods, _order(t)),
            figure="interpretability_effects.pdf"
            + (", interpretability_synthetic.pdf" if metric in SYNTHETIC_METRICS else ""),
            effect=effect, estimate=main["effect"], low=main["ci_low"], high=main["ci_high"],
            per_family=main["per_family"], reference=reference, details=details))
    return out


def checks(results: dict) -> List[Check]:
    """The chance correction on maps whose localisation is known, on the synthetic images used:
    a uniform map scores 0 and the mask itself ``1 - area share`` (mass and pointing)."""
    c = results["synthetic"]["controls"]
    errors = [abs(c["uniform_map"]["mask_mass_excess"]),
              abs(c["mask_as_map"]["mask_mass_excess"] - c["mask_as_map"]["expected"]),
              abs(c["mask_as_map"]["pointing_excess"] - c["mask_as_map"]["expected"])]
    return [Check("localization_chance_correction",
                  "chance-corrected localisation (mass in mask and pointing game minus the mask's "
                  "area share): a uniform map scores 0, the mask itself 1 - area share",
                  max(errors), 1e-5, details=c)]


# ----------------------------------------------------------------------------- figures


def _order(fams) -> List[str]:
    return [f for f in common.FAMILIES if f in fams]


def _random_gap(results: dict, method: str) -> float:
    """Mean insertion - deletion AUC of the random pixel order (the reference of faithfulness)."""
    v = [r["methods"][method]["insertion_random_auc"] - r["methods"][method]["deletion_random_auc"]
         for r in results["rows"] if method in r["methods"]]
    return float(np.mean(v)) if v else float("nan")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    """The figures (analyses/interpretability_figures.py)."""
    from analyses.interpretability_figures import plot as draw
    return draw(results, paths)


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
