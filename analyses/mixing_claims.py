"""Claims and checks of ``analyses.mixing_patterns``, computed from its results file:
per-seed values by layer, their intervals (log or logit scale, so levels stay in range),
the same-seed initialisation and reference controls, the three claims and the checks that
hold by construction.

With a ``finegrid`` block (14x14 tokens, patch 2: where locality and reach can differ from
uniform, random and Fourier mixing), each claim's effect and verdict come from that grid
(:func:`finegrid_view`), and the 7x7 measurement of the converged full-data models is kept
beside it (``details["grid_7x7"]``, with its own verdict at the same margin)."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from analyses import common
from analyses.common import LABELS, Check, Claim
from analyses.verdicts import CONFIDENCE, margin_of

WEIGHTS = ("trained", "init")
METRICS = ("mean_mixing_distance_px", "locality", "translation_equivariance")
TOKEN_GRID = (7, 7)          # the zoo's token models: 28 px images, 4 px patches
# families whose token mixing is fixed by construction (FNet: the DFT), so training cannot
# change their reach: shown per family, kept out of group effects about what is learned
FIXED_MIXING = ("fnet",)
RECEPTIVE_FIELD_TOLERANCE = 1e-6    # share of |mixing| beyond a CNN stage's receptive field
FIXED_MIXING_TOLERANCE = 1e-4       # metric difference between FNet and the DFT reference


def token_families(families: Sequence[str]) -> List[str]:
    """The families that mix tokens globally (every zoo family but the convolutional ones)."""
    from probe import zoo
    fams = zoo.families()
    return [f for f in families if f in fams and fams[f].group != "conv"]


# ----------------------------------------------------------------------------- intervals


def level_ci(values: Sequence[float], *, confidence: float = 0.95) -> Tuple[float, float, float]:
    """Interval over seeds of a non-negative level (a distance), staying >= 0.

    Positive values: :func:`analyses.verdicts.positive_ci` (log scale, geometric mean).
    Equal values (e.g. an identity map's exact 0): zero width. Exact zeros among
    positive values (no geometric mean): the t interval with its low end clipped at 0.
    """
    v = np.asarray(values, dtype=float)
    if np.all(v == v[0]):
        return float(v[0]), float(v[0]), float(v[0])
    if (v > 0).all():
        return common.positive_ci(v, confidence=confidence)
    m, lo, hi = common.mean_ci(v, confidence=confidence)
    return m, max(lo, 0.0), hi


def share_ci(values: Sequence[float], *, confidence: float = 0.95) -> Tuple[float, float, float]:
    """Interval over seeds of a share in ``[0, 1]`` (locality, equivariance): a t interval on
    the logit scale, mapped back, so it stays inside ``[0, 1]`` (equal values: zero width)."""
    v = np.asarray(values, dtype=float)
    if np.all(v == v[0]):
        return float(v[0]), float(v[0]), float(v[0])
    p = np.clip(v, 1e-9, 1 - 1e-9)
    m, lo, hi = common.mean_ci(np.log(p / (1 - p)), confidence=confidence)
    return _expit(m), _expit(lo), _expit(hi)


def _expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def interval(triple: Tuple[float, float, float]) -> Dict[str, float]:
    """``{"value", "ci_low", "ci_high"}`` of an ``(estimate, low, high)`` triple."""
    return {"value": float(triple[0]), "ci_low": float(triple[1]), "ci_high": float(triple[2])}


def metric_ci(metric: str, values: Sequence[float], *, confidence: float = 0.95) -> dict:
    """The in-range level interval of ``metric`` (distance: log scale; shares: logit)."""
    rule = level_ci if metric.startswith("mean_mixing_distance") else share_ci
    return interval(rule(values, confidence=confidence))


# ----------------------------------------------------------------------------- values


def values(results: dict, family: str, which: str, metric: str,
           depth: Optional[int] = None) -> List[float]:
    """Per seed (seed order): ``metric`` at layer ``depth``, or averaged over layers if ``None``."""
    recs = sorted(results["mixing"][family][which], key=lambda r: r["seed"])
    out = []
    for r in recs:
        layers = r["layers"]
        out.append(float(np.mean([lay[metric] for lay in layers])) if depth is None
                   else float(layers[depth][metric]))
    return out


def by_depth(results: dict, family: str, which: str, metric: str) -> np.ndarray:
    """``[seeds, depth]`` array of ``metric``."""
    recs = sorted(results["mixing"][family][which], key=lambda r: r["seed"])
    return np.array([[lay[metric] for lay in r["layers"]] for r in recs], dtype=float)


def _minus(a: Sequence[float], b: Sequence[float]) -> List[float]:
    return [float(x - y) for x, y in zip(a, b)]


def _ref(results: dict, metric: str) -> Dict[str, float]:
    """``{reference: its value of metric}`` on the results' token grid (uniform, random, DFT,
    local, identity; keys ``<name>_<h>x<w>``)."""
    return {name: ref[metric] for name, ref in results["references"].items()}


CONTROLS_TEXT = ("the same seed at initialisation and reference matrices on each layer's own "
                 "grid (uniform, Gaussian random at the trained map's norm, the DFT, a local "
                 "Gaussian of sigma = 1 token)")


def layer_references(results: dict, family: str, metric: str, depth: int) -> Dict[str, object]:
    """``{reference: value}`` of ``metric`` at layer ``depth`` of ``family``: the references of
    :func:`layer_controls` (mean over seeds; ``None`` where one does not exist on the grid)."""
    recs = sorted(results["mixing"][family]["trained"], key=lambda r: r["seed"])
    ctrl = [r["layers"][depth]["controls"][metric] for r in recs]
    out: Dict[str, object] = {}
    for key in ctrl[0]:
        if key in ("trained", "init"):
            continue
        vals = [c[key] for c in ctrl]
        out[key] = None if any(v is None for v in vals) else float(np.mean(vals))
    return out


def _trained_minus_reference(results: dict, family: str, metric: str, depth: int,
                             reference: str, confidence: float) -> dict:
    """Interval over seeds of the trained value minus the layer's ``reference`` value."""
    recs = sorted(results["mixing"][family]["trained"], key=lambda r: r["seed"])
    diffs = [r["layers"][depth][metric] - r["layers"][depth]["controls"][metric][reference]
             for r in recs]
    return interval(common.mean_ci(diffs, confidence=confidence))


def template_summary(results: dict, confidence: float) -> Optional[dict]:
    """Mixer's first-layer template locality: the distribution across templates (all seeds
    pooled) trained and at init, the per-seed median change with its interval, and the
    reference templates' scores; ``None`` without Mixer templates."""
    tpl = results.get("templates")
    if not tpl or not tpl.get("trained"):
        return None
    pooled = {w: [v for r in tpl[w] for v in r["locality"]] for w in WEIGHTS}
    medians = {w: {r["seed"]: float(np.median(r["locality"])) for r in tpl[w]} for w in WEIGHTS}
    seeds = sorted(set(medians["trained"]) & set(medians["init"]))
    change = [medians["trained"][s] - medians["init"][s] for s in seeds]
    out = {"radius_px": tpl["radius_px"], "score": "share of a template's energy (|w|^2) within "
           "radius_px of its peak",
           "distribution": {w: {k: float(v) for k, v in zip(
               ("q05", "q25", "q50", "q75", "q95"),
               np.quantile(pooled[w], [0.05, 0.25, 0.5, 0.75, 0.95]))} for w in WEIGHTS},
           "median_per_seed": {w: [medians[w][s] for s in seeds] for w in WEIGHTS},
           "references": tpl.get("references", {})}
    if len(change) >= 2:
        out["median_change"] = interval(common.mean_ci(change, confidence=confidence))
    return out


def _confidence(key: str) -> float:
    return CONFIDENCE[margin_of(key)["test"]]


def _levels(results: dict, families: Sequence[str], metric: str, depth: Optional[int],
            confidence: float) -> Dict[str, dict]:
    """``{family: {"trained": interval, "init": interval}}`` of a metric's level."""
    return {f: {w: metric_ci(metric, values(results, f, w, metric, depth), confidence=confidence)
                for w in WEIGHTS} for f in families}


# ----------------------------------------------------------------------------- grids


def finegrid_view(results: dict) -> Optional[dict]:
    """The ``finegrid`` block (14x14-token models, the CNN on the same images) as a results
    dict the claim and check builders read, or ``None`` without one."""
    fg = results.get("finegrid")
    if not fg:
        return None
    return {**results, "mixing": fg["mixing"], "references": fg["references"], "maps": fg["maps"],
            "image_size": fg["image_size"], "radius_px": fg["radius_px"],
            "templates": fg.get("templates"), "token_grid": list(fg["grid"]),
            "grid_text": f"{fg['grid'][0]}x{fg['grid'][1]} tokens ({fg['patch_px']:g}-px patches) "
                         f"of the finegrid plan's models ({fg['n_train']} training images)"}


def grid_text(results: dict) -> str:
    """Which grid and models a results dict (or :func:`finegrid_view`) measures."""
    return results.get("grid_text", f"{TOKEN_GRID[0]}x{TOKEN_GRID[1]} tokens (4-px patches) of "
                                    f"the converged full-data models")


def figure_suffix(results: dict) -> str:
    """Figure-name suffix of a grid: ``"_14x14"`` for the finer grid, ``""`` for 7x7."""
    grid = tuple(results.get("token_grid", TOKEN_GRID))
    return "" if grid == TOKEN_GRID else f"_{grid[0]}x{grid[1]}"


def _tokens(results: dict, radius_px: float) -> str:
    """``radius_px`` in tokens of the results' grid (28-px images)."""
    grid = results.get("token_grid", TOKEN_GRID)
    tokens = radius_px * grid[0] / results["image_size"]
    return f"{tokens:g} token" + ("" if tokens == 1 else "s")


def grid_change(block: dict, metric: str, depth: Optional[int], confidence: float
                ) -> Dict[str, dict]:
    """Per family of a ``finegrid`` block: ``metric`` of the trained 14x14 model, of the 7x7
    model trained on the same images and seed, and 14x14 minus 7x7 (intervals over seeds)."""
    out = {}
    for fam in block["coarse"]:
        if fam not in block["mixing"]:
            continue
        fine = values(block, fam, "trained", metric, depth)
        coarse = values({"mixing": block["coarse"]}, fam, "trained", metric, depth)
        out[fam] = {"14x14": metric_ci(metric, fine, confidence=confidence),
                    "7x7": metric_ci(metric, coarse, confidence=confidence),
                    "difference": interval(common.mean_ci(_minus(fine, coarse),
                                                          confidence=confidence))}
    return out


# the layer and metric each claim reads (for the same-data grid comparison)
CLAIM_LAYER = {"mixer_mixing_is_local": ("locality", None),
               "cnn_reaches_less_far": ("mean_mixing_distance_px", -1),
               "attention_reaches_far": ("mean_mixing_distance_px", 0)}


def _on_finegrid(fine: Claim, coarse: Claim, block: dict) -> Claim:
    """The finer grid's claim (its effect and interval decide the verdict), with the 7x7
    full-data measurement (``grid_7x7``: effect, interval, verdict at the same margin, per
    family) and the same-data grid comparison (``grid_14x14_minus_7x7_same_data``) beside it."""
    metric, depth = CLAIM_LAYER[fine.key]
    row = coarse.as_result()
    seven = {k: row[k] for k in ("verdict", "effect", "ci_low", "ci_high", "sensitivity",
                                 "per_family", "experiment", "figure", "reference", "details")}
    return Claim(
        key=fine.key, claim=fine.claim, who=fine.who,
        experiment=f"{fine.experiment} ({fine.figure}). Also on {grid_text({})}: effect "
                   f"{coarse.estimate:.3g} [{coarse.low:.3g}, {coarse.high:.3g}], "
                   f"{coarse.verdict} (details.grid_7x7, {coarse.figure})",
        figure="mixing_grids.pdf", effect=fine.effect,
        estimate=fine.estimate, low=fine.low, high=fine.high, per_family=fine.per_family,
        reference=fine.reference,
        details={**fine.details, "grid": {"tokens": block["grid"], "patch_px": block["patch_px"],
                                          "n_train": block["n_train"]},
                 "grid_7x7": seven,
                 "grid_14x14_minus_7x7_same_data": {
                     "metric": metric, "layer": "mean over layers" if depth is None else depth,
                     "per_family": {f: v for f, v in grid_change(block, metric, depth,
                                                                 fine.confidence).items()
                                    if f in fine.per_family}}})


# ----------------------------------------------------------------------------- claims


def _mixer_local(results: dict) -> Claim:
    key = "mixer_mixing_is_local"
    conf = _confidence(key)
    radius = results["radius_px"]
    tokens = token_families(results["mixing"])
    gains = {f: _minus(values(results, f, "trained", "locality"),
                       values(results, f, "init", "locality")) for f in tokens}
    est, lo, hi = common.mean_ci(gains["mixer"], confidence=conf)
    n = len(gains["mixer"])
    depth = len(results["mixing"]["mixer"]["trained"][0]["layers"])

    def change(metric: str, depth: Optional[int] = None) -> dict:
        return interval(common.mean_ci(_minus(values(results, "mixer", "trained", metric, depth),
                                              values(results, "mixer", "init", metric, depth)),
                                       confidence=conf))

    return Claim(
        key=key,
        claim="Mixer's learned token mixing is local and conv-like, so it has an inductive "
              "bias after all",
        who="critics of the MLP-Mixer paper, citing its own Fig. 5 (Tolstikhin et al. 2021: "
            "first-layer token-mixing templates look like local, conv-like filters) and the "
            "'MLP, conv and attention are nearly equivalent' argument",
        experiment=f"effective token mixing (channel-averaged Jacobian of the token MLP, "
                   f"{results['settings']['images']} Fashion-MNIST test images) of Mixer on "
                   f"{grid_text(results)}, {n} seeds, beside {CONTROLS_TEXT}; its first-layer "
                   f"templates (Fig. 5) scored one by one against uniform, DFT, local and "
                   f"peak-centred random templates (mixer_templates{figure_suffix(results)}.pdf)",
        figure=f"mixing_distance_by_depth{figure_suffix(results)}.pdf",
        effect=f"share of the mixing mass within {radius:g} px ({_tokens(results, radius)}), "
               f"mean over the "
               f"token-mixing layers, trained minus the same seed's initialisation: > 0 means "
               f"training made the mixing more local (per family: the same change for every "
               f"token model; FNet's is 0 by construction)",
        estimate=est, low=lo, high=hi,
        per_family=common.family_effects(gains, confidence=conf),
        reference={"locality": {"mixer": _levels(results, ["mixer"], "locality", None,
                                                 conf)["mixer"],
                                **_ref(results, "locality")},
                   "locality_by_layer": [layer_references(results, "mixer", "locality", d)
                                         for d in range(depth)],
                   "first_layer_templates": template_summary(results, conf)},
        details={"locality_change_first_layer": change("locality", 0),
                 "first_layer_minus_local_reference": _trained_minus_reference(
                     results, "mixer", "locality", 0, "local", conf),
                 "first_layer_minus_uniform_reference": _trained_minus_reference(
                     results, "mixer", "locality", 0, "uniform", conf),
                 "translation_equivariance_change": change("translation_equivariance"),
                 "mean_mixing_distance_px_change": change("mean_mixing_distance_px"),
                 "translation_equivariance": {
                     "mixer": _levels(results, ["mixer"], "translation_equivariance", None,
                                      conf)["mixer"],
                     **_ref(results, "translation_equivariance")},
                 "mean_mixing_distance_px": {
                     "mixer": _levels(results, ["mixer"], "mean_mixing_distance_px", None,
                                      conf)["mixer"],
                     **_ref(results, "mean_mixing_distance_px")},
                 "locality_by_depth": {w: by_depth(results, "mixer", w, "locality").mean(0).tolist()
                                       for w in WEIGHTS}})


def _reach_controls(results: dict, families: Sequence[str], depth: int, conf: float) -> dict:
    """At layer ``depth`` of each family and of the CNN: the trained and init distances in
    pixels and as a fraction of the image side, the layer's reference matrices (pixels and
    fraction), and trained minus the uniform and the local reference (intervals over seeds)."""
    dist, frac = "mean_mixing_distance_px", "mean_mixing_distance_fraction"
    fams = [*families, "cnn"]
    return {
        "depth": depth,
        "px": {f: {**_levels(results, [f], dist, depth, conf)[f],
                   "references": layer_references(results, f, dist, depth)} for f in fams},
        "fraction_of_image_side": {
            f: {**_levels(results, [f], frac, depth, conf)[f],
                "references": layer_references(results, f, frac, depth)} for f in fams},
        "trained_minus_uniform_px": {
            f: _trained_minus_reference(results, f, dist, depth, "uniform", conf) for f in fams},
        "trained_minus_local_px": {
            f: _trained_minus_reference(results, f, dist, depth, "local", conf) for f in fams},
    }


def _reach_details(results: dict, families: Sequence[str], conf: float, depth: int) -> dict:
    """First-layer distances beside their initialisation, the init gap to the CNN (a check)
    and how much of the gap training changed, per family; the claim's layer (``depth``) beside
    its initialisation and reference matrices (:func:`_reach_controls`)."""
    dist = "mean_mixing_distance_px"
    cnn = {w: values(results, "cnn", w, dist, 0) for w in WEIGHTS}
    gap = {w: {f: _minus(values(results, f, w, dist, 0), cnn[w]) for f in families}
           for w in WEIGHTS}
    return {
        "first_layer_px": {**_levels(results, families, dist, 0, conf),
                           **_levels(results, ["cnn"], dist, 0, conf)},
        "reference_px": _ref(results, dist),
        "gap_at_init_px": {f: interval(common.mean_ci(v, confidence=conf))
                           for f, v in gap["init"].items()},
        "gap_change_by_training_px": {
            f: interval(common.mean_ci(_minus(gap["trained"][f], gap["init"][f]),
                                       confidence=conf)) for f in families},
        "last_layer_minus_cnn_last_stage_px": {
            f: interval(common.diff_ci(values(results, f, "trained", dist, -1),
                                       values(results, "cnn", "trained", dist, -1),
                                       confidence=conf)) for f in families},
        "controls": _reach_controls(results, families, depth, conf),
    }


def _cnn_reach(results: dict) -> Claim:
    key = "cnn_reaches_less_far"
    conf = _confidence(key)
    dist = "mean_mixing_distance_px"
    tokens = token_families(results["mixing"])
    learned = [f for f in tokens if f not in FIXED_MIXING]
    # the network's deepest mixing on both sides: a CNN's reach grows with depth, so only the
    # last stage can say whether it "cannot reach far" (its first stage reaches less far by
    # construction: the check cnn_first_stage_reaches_less_far_at_init)
    cnn = values(results, "cnn", "trained", dist, -1)
    effects = {f: _minus(values(results, f, "trained", dist, -1), cnn) for f in tokens}
    est, lo, hi, per_family = common.group_effect(effects, learned, confidence=conf)
    n = len(cnn)
    return Claim(
        key=key,
        claim="CNNs cannot capture long-range dependencies: even their deepest stage reaches "
              "less far than token mixers'",
        who="MLP-Mixer, gMLP and ViT authors (Tolstikhin et al., Liu et al., Dosovitskiy et "
            "al. 2021) motivating global token mixing against local convolutions",
        experiment=f"mean mixing distance (pixels and fraction of the {results['image_size']}"
                   f"-px image side) of the last token-mixing layer of "
                   f"{', '.join(LABELS[f] for f in tokens)} on {grid_text(results)} vs the "
                   f"last stage of the CNN trained on the same images (whose receptive field "
                   f"spans the image), {n} seeds, each beside {CONTROLS_TEXT}; the first stage "
                   f"reaches less far by construction (a check, not evidence)",
        figure=f"mixing_distance_by_depth{figure_suffix(results)}.pdf",
        effect=f"last-layer mean mixing distance (pixels) of the trained token model minus the "
               f"trained CNN's last stage, per seed; group: mean over the token models whose "
               f"mixing is learned ({', '.join(LABELS[f] for f in learned)}; FNet's fixed DFT "
               f"is shown per family only), interval over seeds: > 0 means the CNN reaches "
               f"less far",
        estimate=est, low=lo, high=hi, per_family=per_family,
        reference=_reach_details(results, tokens, conf, -1),
        details={"group": learned, "fixed_mixing": [f for f in tokens if f in FIXED_MIXING]})


def _attention_reach(results: dict) -> Claim:
    key = "attention_reaches_far"
    conf = _confidence(key)
    dist = "mean_mixing_distance_px"
    effects = {"vit": _minus(values(results, "vit", "trained", dist, 0),
                             values(results, "cnn", "trained", dist, 0))}
    est, lo, hi, per_family = common.group_effect(effects, ["vit"], confidence=conf)
    per_head = {w: [float(np.mean(h)) for h in zip(*[
        r["layers"][0]["mean_mixing_distance_px_per_head"]
        for r in results["mixing"]["vit"][w]])] for w in WEIGHTS}
    n = len(effects["vit"])
    return Claim(
        key=key,
        claim="Attention captures long-range dependencies in one step, convolution only locally",
        who="Dosovitskiy et al. 2021 (ViT: some heads attend globally already in the lowest "
            "layers, Fig. 7) and the attention side of the MLP debate",
        experiment=f"mean attention distance (pixels and fraction of the "
                   f"{results['image_size']}-px image side) of ViT's first layer on "
                   f"{grid_text(results)} vs the first stage of the CNN trained on the same "
                   f"images, {n} seeds, each beside {CONTROLS_TEXT}; at initialisation ViT's "
                   f"near-uniform attention reaches farther by construction (a check)",
        figure=f"mixing_distance_by_depth{figure_suffix(results)}.pdf",
        effect="ViT first-layer mean mixing distance (pixels, mean over heads) minus the CNN's "
               "first stage, trained models, interval over seeds: > 0 means attention reaches "
               "farther in one step",
        estimate=est, low=lo, high=hi, per_family=per_family,
        reference=_reach_details(results, ["vit"], conf, 0),
        details={"vit_first_layer_px_per_head": per_head,
                 "vit_trained_minus_init_px": interval(common.mean_ci(
                     _minus(values(results, "vit", "trained", dist, 0),
                            values(results, "vit", "init", dist, 0)), confidence=conf))})


def claims(results: dict) -> List[Claim]:
    """Mixer's locality gain, and the CNN's / attention's reach, on the trained models: on the
    14x14 grid when the results hold a ``finegrid`` block (the 7x7 measurement kept in each
    claim's ``details["grid_7x7"]``), else on the 7x7 grid."""
    coarse = _claims_on(results)
    view = finegrid_view(results)
    if view is None:
        return coarse
    fine = {c.key: c for c in _claims_on(view)}
    return [_on_finegrid(fine[c.key], c, results["finegrid"]) if c.key in fine else c
            for c in coarse]


def _claims_on(results: dict) -> List[Claim]:
    """The claims measured on one grid's models (the top level, or :func:`finegrid_view`)."""
    fams = list(results["mixing"])
    learned = [f for f in token_families(fams) if f not in FIXED_MIXING]
    out: List[Claim] = []
    if "mixer" in fams:
        out.append(_mixer_local(results))
    if "cnn" in fams and learned:
        out.append(_cnn_reach(results))
    if "cnn" in fams and "vit" in fams:
        out.append(_attention_reach(results))
    return out


# ----------------------------------------------------------------------------- checks


def checks(results: dict) -> List[Check]:
    """What holds by construction: receptive fields, the reach gap at init, FNet's fixed DFT;
    the same for the ``finegrid`` block's models (ids ending ``_finegrid``)."""
    out = _checks_on(results)
    view = finegrid_view(results)
    if view is not None:
        out += [Check(key=f"{c.key}_finegrid", what=f"{c.what} [{grid_text(view)}; the CNN "
                      f"trained on the same images]", max_abs_error=c.max_abs_error,
                      tolerance=c.tolerance, details=c.details) for c in _checks_on(view)]
    return out


def _checks_on(results: dict) -> List[Check]:
    """The checks of one grid's models (the top level, or :func:`finegrid_view`)."""
    fams = list(results["mixing"])
    tokens = token_families(fams)
    dist = "mean_mixing_distance_px"
    out: List[Check] = []
    if "cnn" in fams:
        beyond = {f"{w} seed {r['seed']} {lay['layer']}": lay["beyond_receptive_field"]
                  for w in WEIGHTS for r in results["mixing"]["cnn"][w] for lay in r["layers"]
                  if "beyond_receptive_field" in lay}
        if beyond:
            worst = max(beyond, key=beyond.get)
            out.append(Check(
                key="cnn_mixing_within_receptive_field",
                what="every CNN stage mixes only inside its receptive field (share of its "
                     "|mixing| beyond the receptive radius plus the strided half-cell, trained "
                     "and at initialisation): a stage of 3x3 convolutions cannot reach far",
                max_abs_error=float(beyond[worst]), tolerance=RECEPTIVE_FIELD_TOLERANCE,
                details={"worst": worst, "receptive_bound_px": {
                    lay["layer"]: lay["receptive_bound_px"]
                    for lay in results["mixing"]["cnn"]["init"][0]["layers"]}}))
        if tokens:
            cnn = values(results, "cnn", "init", dist, 0)
            gaps = {f: _minus(values(results, f, "init", dist, 0), cnn) for f in tokens}
            shortfall = max(max(0.0, -g) for v in gaps.values() for g in v)
            out.append(Check(
                key="cnn_first_stage_reaches_less_far_at_init",
                what="at initialisation the CNN's first stage (zero-initialised residual branch: "
                     "a 1x1 strided shortcut) reaches less far than every token model's first "
                     "layer (random global mixing); error: pixels by which a CNN first stage "
                     "reaches farther, worst seed and family",
                max_abs_error=float(shortfall), tolerance=0.0,
                details={"cnn_first_stage_init_px": cnn,
                         "smallest_gap_px": {f: min(v) for f, v in gaps.items()},
                         "token_first_layer_init_px": {
                             f: values(results, f, "init", dist, 0) for f in tokens}}))
    for fam in (f for f in FIXED_MIXING if f in fams):
        grid = results.get("token_grid", TOKEN_GRID)
        ref = results["references"][f"dft_{grid[0]}x{grid[1]}"]
        errors = {f"{w} seed {r['seed']} {lay['layer']} {m}": abs(lay[m] - ref[m])
                  for w in WEIGHTS for r in results["mixing"][fam][w] for lay in r["layers"]
                  for m in METRICS}
        worst = max(errors, key=errors.get)
        out.append(Check(
            key=f"{fam}_mixing_is_fixed_dft",
            what=f"{LABELS[fam]}'s token mixing is the fixed real 2-D DFT, trained or not: every "
                 f"layer's metrics equal the DFT reference's",
            max_abs_error=float(errors[worst]), tolerance=FIXED_MIXING_TOLERANCE,
            details={"worst": worst}))
    return out

