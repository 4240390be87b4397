"""How far and how locally does each architecture mix, and is that learned?

Extracts the token mixing of every layer (:func:`probe.mixing.extract`: Mixer's
channel-averaged token-MLP Jacobian, ResMLP/gMLP token weights, ViT attention,
FNet's Fourier matrix, the CNN stages' effective Jacobian) on a fixed batch of
Fashion-MNIST test images, for the converged full-data models of the one recipe
(:mod:`analyses.converged`, several seeds) and for the same architectures at their
same-seed random initialisation (:func:`probe.zoo.build`, the starting point of each
trained model), and reports by depth:

- mean mixing distance in PIXELS (probe.mixing measures it in units of each
  layer's input grid: 28x28 pixels for the CNN's first stage, 14x14 and 7x7
  for its later stages, 7x7 tokens of 4x4 pixels for the token models; the
  distances are rescaled by ``image size / grid side``);
- locality: the share of the mixing mass within ``radius_px`` pixels (one
  token, 4 px, by default; the radius is also converted per grid);
- translation equivariance: the share of the map explained by a function of
  the relative offset (1 for a convolution).

Every metric is given beside its initialisation value and beside the reference
matrices of :func:`probe.mixing.references` built on each layer's own grid by
:func:`probe.mixing.controls` (uniform mixing, a Gaussian random matrix at the trained
map's norm, the real 2-D DFT that FNet applies, a local Gaussian of sigma = 1 token);
distances are in pixels AND as a fraction of the image side. The 7x7 token grid's
reference values (plus the identity) are ``results["references"]``. Mixer's first-layer
token-mixing templates (``fc1``, the paper's Fig. 5) are scored one by one
(:func:`probe.mixing.template_locality`: the share of a template's energy within
``radius_px`` of its peak), trained vs init, with the distribution across templates and
the same score of reference templates (``results["templates"]``, ``mixer_templates.pdf``).
Levels get intervals that stay in range (distances on a log scale, shares on a logit
scale); claims are differences over seeds.

Facts that hold by construction are checks, not evidence (``results["checks"]``): a
CNN stage mixes only inside its receptive field; at initialisation the CNN's first
stage (zero-initialised residual branch: a 1x1 strided shortcut) reaches less far
than every token model's first layer (random global mixing); FNet's mixing is the
fixed DFT, trained or not. The claims keep what training decides.

    python -m analyses.mixing_patterns            # full scale (see --help)
    python -m analyses.mixing_patterns --quick    # seconds, into runs/analyses_quick/

Mixing templates follow Tolstikhin et al. 2021 (MLP-Mixer, Fig. 5); the mean
mixing distance generalises the ViT paper's mean attention distance
(Dosovitskiy et al. 2021, Fig. 7).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from analyses import common
from analyses.common import LABELS, Check, Claim
from analyses.verdicts import CONFIDENCE, margin_of

NAME = "mixing_patterns"
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES), "seeds": [0, 1, 2],
             "images": 64, "radius_px": 4.0},
    "quick": {"quick": True, "families": ["mixer", "vit", "fnet", "cnn"], "seeds": [0, 1],
              "images": 4, "radius_px": 4.0},
}
WEIGHTS = ("trained", "init")
METRICS = ("mean_mixing_distance_px", "locality", "translation_equivariance")
# query tokens (row, col) on the 7x7 token grid whose mixing rows the map figure shows
QUERIES = ((3, 3), (1, 1), (1, 5), (5, 1), (5, 5), (0, 3))
PANELS = 6
TOKEN_GRID = (7, 7)          # the zoo's token models: 28 px images, 4 px patches
REFERENCE_SEED = 0           # seed of the "random" reference matrix (probe.mixing.references)
# analysis metric -> (probe.mixing.controls metric, needs the locality radius)
CONTROL_METRICS = {"mean_mixing_distance_px": ("mean_mixing_distance", False),
                   "locality": ("locality", True),
                   "translation_equivariance": ("translation_equivariance", False)}
TEMPLATE_PANELS = 8          # Mixer first-layer templates drawn per row (evenly spaced, not picked)
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


# ----------------------------------------------------------------------------- compute


def _px_per_unit(m, image_size: int) -> float:
    """Pixels per cell of the layer's INPUT grid (the grid its distances are measured on)."""
    hi, wi = m.in_grid
    if hi != wi:
        raise ValueError(f"{m.layer}: non-square input grid {m.in_grid}")
    return float(m.px_per_token[1])


def receptive_bound(stage: torch.nn.Module, m) -> float:
    """Largest distance (input-grid cells) from an output cell's centre to an input cell that
    the conv ``stage`` can mix in: its receptive radius plus the half-cell offset of a
    strided output's centre, along both axes."""
    from probe.mixing.jacobian import receptive_radius
    stride = m.in_grid[0] / m.grid[0]
    return math.sqrt(2.0) * (receptive_radius(stage) + (stride - 1) / 2)


def layer_metrics(maps, image_size: int, radius_px: float,
                  model: Optional[torch.nn.Module] = None) -> List[dict]:
    """Per layer: distance (grid units and pixels), locality within ``radius_px``, equivariance.

    Pixel distances and locality come from :mod:`probe.mixing.metrics` (``unit="px"``).
    Every metric is averaged over images and heads; ViT keeps its per-head distances.
    Conv stages (given ``model``) also get the share of their mixing mass beyond their
    receptive field (0 by construction).
    """
    from probe import mixing
    modules = dict(model.named_modules()) if model is not None else {}
    rows = []
    for m in maps:
        if tuple(m.image_size) != (image_size, image_size):
            raise ValueError(f"{m.layer}: maps of {m.image_size} images, expected {image_size} px")
        px = _px_per_unit(m, image_size)
        dist = mixing.mean_mixing_distance(m).double()                    # [B, H], grid units
        dist_px = mixing.mean_mixing_distance(m, unit="px").double()      # [B, H], pixels
        loc = mixing.locality(m, radius=radius_px, unit="px").double()
        equi = mixing.translation_equivariance(m).double()
        row = {
            "layer": m.layer, "kind": m.kind, "depth": m.depth, "grid": list(m.grid),
            "input_grid": list(m.in_grid), "px_per_unit": px,
            "mean_mixing_distance_units": float(dist.mean()),
            "mean_mixing_distance_px": float(dist_px.mean()),
            "mean_mixing_distance_px_per_head": [float(v) for v in dist_px.mean(0)],
            "locality": float(loc.mean()),
            "translation_equivariance": float(equi.mean()),
            "input_dependence": float(mixing.input_dependence(m).mean()),
        }
        if m.kind == "conv" and m.layer in modules:
            bound = receptive_bound(modules[m.layer], m)
            inside = mixing.locality(m, radius=bound).double()
            row["receptive_bound_px"] = bound * px
            row["beyond_receptive_field"] = float((1.0 - inside).max())
        rows.append(row)
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


def _metric_values(m, image_size: int, radius_px: float) -> dict:
    """The analysis metrics of one map (mean over images, heads), px distance also as a
    fraction of the image side."""
    from probe import mixing
    dist = float(mixing.mean_mixing_distance(m, unit="px").double().mean())
    return {"mean_mixing_distance_px": dist,
            "mean_mixing_distance_fraction": dist / image_size,
            "locality": float(mixing.locality(m, radius=radius_px, unit="px").double().mean()),
            "translation_equivariance": float(
                mixing.translation_equivariance(m).double().mean())}


def references(image_size: int = 28, radius_px: float = 4.0,
               grid: Tuple[int, int] = TOKEN_GRID) -> Dict[str, dict]:
    """Every metric of the reference matrices of :func:`probe.mixing.references` on the token
    ``grid`` (uniform, random, DFT, local Gaussian sigma = 1 token, identity), keyed
    ``"<name>_<h>x<w>"``. The metrics are scale free, so the random matrix's norm does not
    matter here; per layer, :func:`layer_controls` scales it to the trained map's norm."""
    from probe import mixing
    tag = f"{grid[0]}x{grid[1]}"
    what = {"uniform": f"uniform mixing over {tag} tokens",
            "random": f"i.i.d. Gaussian {tag} token matrix (seed {REFERENCE_SEED})",
            "dft": f"real 2-D DFT on {tag} tokens (FNet's fixed mixing)",
            "local": f"local Gaussian on {tag} tokens, sigma = 1 token, rows sum to 1",
            "identity": f"identity on {tag} tokens (no mixing)"}
    refs = mixing.references(grid, image_size=(image_size, image_size), seed=REFERENCE_SEED)
    return {f"{name}_{tag}": {"what": what[name], **_metric_values(m, image_size, radius_px)}
            for name, m in refs.items()}


def layer_controls(trained_maps, init_maps, radius_px: float) -> List[dict]:
    """Per layer, every metric of the reference matrices on that layer's own grid
    (:func:`probe.mixing.controls`: uniform, random at the trained map's norm, DFT, local;
    ``None`` where a reference does not exist, e.g. the DFT of a strided CNN stage), the
    distance also as a fraction of the image side, and the controls' own trained/init values
    (which equal :func:`layer_metrics`'s)."""
    from probe import mixing
    rows: List[dict] = [{} for _ in trained_maps]
    for metric, (name, radial) in CONTROL_METRICS.items():
        table = mixing.controls(trained_maps, init_maps, metric=name,
                                radius=radius_px if radial else None, unit="px",
                                seed=REFERENCE_SEED)
        for row, ctrl in zip(rows, table):
            row[metric] = {key: ctrl[key] for key in ("trained", "init", *mixing.CONTROLS)}
            if "side" in ctrl:
                row["side_px"] = ctrl["side"]
                row["mean_mixing_distance_fraction"] = {
                    key: ctrl[f"{key}_fraction"] for key in ("trained", "init", *mixing.CONTROLS)}
    return rows


def template_scores(m, radius_px: float) -> dict:
    """Mixer's first-layer token templates (``native["fc1"]``, Fig. 5 of the paper): each one's
    locality (share of its energy within ``radius_px`` of its peak) and their distribution."""
    from probe import mixing
    score = mixing.template_locality(m, radius_px, templates="fc1", unit="px")
    return {"locality": [round(float(v), 6) for v in score],
            "distribution": mixing.distribution(score)}


def template_references(m, radius_px: float) -> dict:
    """The template-locality score of reference templates on ``m``'s grid: the rows of the
    uniform, DFT and local matrices (centred on their own token) and of the random matrix,
    centred like Mixer's templates on their own peak (peak-centring alone raises a random
    template's score above the uniform row's)."""
    from probe import mixing
    refs = mixing.references(like=m, seed=REFERENCE_SEED)
    out = {}
    for name in ("uniform", "dft", "local"):
        if name in refs:
            out[name] = float(mixing.template_locality(refs[name], radius_px).double().mean())
    h, w = m.in_grid
    rand = refs["random"].matrix[0, 0].reshape(-1, h, w)
    score = mixing.template_locality(rand, radius_px, templates="fc1", unit="px",
                                     image_size=m.image_size)
    out["random_peak_centred"] = float(score.double().mean())
    out["random_peak_centred_distribution"] = mixing.distribution(score)
    return out


def _template_panels(m) -> List[dict]:
    """``TEMPLATE_PANELS`` evenly spaced first-layer templates ``[h][w]`` (not selected)."""
    units = m.native["fc1"].double()
    k = units.shape[0]
    picks = [round(i * (k - 1) / (TEMPLATE_PANELS - 1)) for i in range(TEMPLATE_PANELS)]
    return [{"unit": u, "values": _round(units[u])} for u in picks]


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm

    from analyses import converged
    from probe import mixing, zoo
    x, _ = common.test_set(scale["images"])
    image_size = int(x.shape[-1])
    radius = scale["radius_px"]
    trained = converged.models(scale["families"], scale["seeds"], quick=scale["quick"],
                               progress=progress)
    measured: Dict[str, Dict[str, list]] = {f: {w: [] for w in WEIGHTS} for f in scale["families"]}
    maps_out: Dict[str, dict] = {}
    templates: Dict[str, object] = {"radius_px": radius, "power": 2,
                                    "trained": [], "init": [], "panels": {}}
    bar = tqdm(trained, desc="mixing patterns", unit="model", disable=not progress)
    for model, row in bar:
        fam, seed = row["family"], row["seed"]
        bar.set_postfix(model=fam, seed=seed)
        start = zoo.build(fam, seed=seed).eval()
        maps = {"trained": mixing.extract(model, x), "init": mixing.extract(start, x)}
        ctrl = layer_controls(maps["trained"], maps["init"], radius)
        for which, net in (("trained", model), ("init", start)):
            layers = layer_metrics(maps[which], image_size, radius, net)
            for lay, c in zip(layers, ctrl):
                lay["mean_mixing_distance_fraction"] = lay["mean_mixing_distance_px"] / c["side_px"]
                if which == "trained":
                    lay["controls"] = c
            record = {"seed": seed, "layers": layers}
            if which == "trained":
                record["test_accuracy"] = row["test_accuracy"]
                if seed == scale["seeds"][0]:
                    maps_out[fam] = panels(fam, maps[which][0], image_size)
            measured[fam][which].append(record)
            first = maps[which][0]
            if isinstance(first.native, dict) and "fc1" in first.native and fam == "mixer":
                templates[which].append({"seed": seed, **template_scores(first, radius)})
                if seed == scale["seeds"][0]:
                    templates["panels"][which] = _template_panels(first)
                    templates["grid"] = list(first.in_grid)
                    templates["references"] = template_references(maps["trained"][0], radius)
    out = {"models": [row for _, row in trained], "image_size": image_size,
           "radius_px": radius, "mixing": measured, "maps": maps_out,
           "references": references(image_size, radius)}
    if templates["trained"]:
        out["templates"] = templates
    return out


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
    """``{reference: its value of metric}`` on the 7x7 token grid (uniform, random, DFT,
    local, identity)."""
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
                   f"{results['settings']['images']} Fashion-MNIST test images) of the converged "
                   f"full-data Mixer, {n} seeds, beside {CONTROLS_TEXT}; its first-layer "
                   f"templates (Fig. 5) scored one by one against uniform, DFT, local and "
                   f"peak-centred random templates (mixer_templates.pdf)",
        figure="mixing_distance_by_depth.pdf",
        effect=f"share of the mixing mass within {radius:g} px (one token), mean over the "
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
                   f"-px image side) of the last token-mixing layer of the converged "
                   f"{', '.join(LABELS[f] for f in tokens)} vs the converged CNN's last stage "
                   f"(whose receptive field spans the image), {n} seeds, each beside "
                   f"{CONTROLS_TEXT}; the first stage reaches less far by construction (a "
                   f"check, not evidence)",
        figure="mixing_distance_by_depth.pdf",
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
                   f"{results['image_size']}-px image side) of the converged ViT's first layer "
                   f"vs the converged CNN's first stage, {n} seeds, each beside {CONTROLS_TEXT}; "
                   f"at initialisation ViT's near-uniform attention reaches farther by "
                   f"construction (a check)",
        figure="mixing_distance_by_depth.pdf",
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
    """Mixer's locality gain, and the CNN's / attention's reach, on the trained models."""
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
    """What holds by construction: receptive fields, the reach gap at init, FNet's fixed DFT."""
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
        ref = results["references"][f"dft_{TOKEN_GRID[0]}x{TOKEN_GRID[1]}"]
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


# ----------------------------------------------------------------------------- figures


def plot(results: dict, paths: common.Paths) -> List[Path]:
    """The figures (analyses/mixing_figures.py)."""
    from analyses.mixing_figures import plot as draw
    return draw(results, paths)


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv,
                       claims=claims, checks=checks)


if __name__ == "__main__":
    sys.exit(main())
