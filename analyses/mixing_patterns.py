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

The finer grid (``results["finegrid"]``, issue 16): on 7x7 tokens uniform, random and DFT
mixing all measure about 14.4 px, so the same measurements are repeated on 14x14 tokens
(patch 2: :data:`analyses.common.FINEGRID`, the ``finegrid`` plan's cells), each beside its
same-seed initialisation and the 14x14 references, with the 7x7 models and the CNN trained on
the same images and seeds (``coarse``; the data-efficiency cells of that size) and Mixer's
14x14 first-layer templates (radius ``radius_px`` = 2 tokens of 2 px). The claims then
take their effect from the finer grid and keep the 7x7 full-data measurement beside it
(:mod:`analyses.mixing_claims`); figures ``*_14x14.pdf`` and ``mixing_grids.pdf``.

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
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from analyses import common
from analyses.mixing_claims import (  # noqa: F401  (the claims' module; names re-exported here)
    FIXED_MIXING, FIXED_MIXING_TOLERANCE, METRICS, RECEPTIVE_FIELD_TOLERANCE, TOKEN_GRID,
    WEIGHTS, by_depth, checks, claims, interval, level_ci, metric_ci, share_ci, token_families,
    values)

NAME = "mixing_patterns"
# finegrid: the finer-grid variants (analyses.common.FINEGRID: patch 2, 14x14 tokens) and the
# 7x7 models and CNN trained on the same images and seeds ("coarse"), at the finegrid plan's size
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES), "seeds": [0, 1, 2],
             "images": 64, "radius_px": 4.0,
             "finegrid": {"variants": list(common.FINEGRID), "coarse": list(common.FAMILIES)}},
    "quick": {"quick": True, "families": ["mixer", "vit", "fnet", "cnn"], "seeds": [0, 1],
              "images": 4, "radius_px": 4.0,
              "finegrid": {"variants": ["mixer_p2", "vit_p2"], "coarse": ["mixer", "vit", "cnn"]}},
}
# query tokens (row, col) on the 7x7 token grid whose mixing rows the map figure shows (on
# another grid: the cell under the same pixel position, named by its own (row, col))
QUERIES = ((3, 3), (1, 1), (1, 5), (5, 1), (5, 5), (0, 3))
PANELS = 6
REFERENCE_SEED = 0           # seed of the "random" reference matrix (probe.mixing.references)
# analysis metric -> (probe.mixing.controls metric, needs the locality radius)
CONTROL_METRICS = {"mean_mixing_distance_px": ("mean_mixing_distance", False),
                   "locality": ("locality", True),
                   "translation_equivariance": ("translation_equivariance", False)}
TEMPLATE_PANELS = 8          # Mixer first-layer templates drawn per row (evenly spaced, not picked)


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
        title = f"{title}token ({i},{j})"                  # the query's cell on this layer's grid
        sh, sw = hi / m.grid[0], wi / m.grid[1]
        centre = [((i + 0.5) * sh) * px, ((j + 0.5) * sw) * px]
        return {"title": title, "values": _round(mat[i * m.grid[1] + j].reshape(hi, wi)),
                "query_px": centre}

    if m.kind == "token-mlp" and isinstance(m.native, dict) and "fc1" in m.native:
        units = templates(m)                                             # [hidden, h, w]
        k = units.shape[0]
        for u in [round(i * (k - 1) / (PANELS - 2)) for i in range(PANELS - 1)]:
            out.append({"title": f"hidden unit {u}", "values": _round(units[u]), "query_px": None})
        out.append(row_panel(rows.mean(0), QUERIES[0], "effective, "))
    elif m.kind == "attention":
        for h in range(min(m.heads, PANELS - 2)):
            out.append(row_panel(rows[h], QUERIES[0], f"head {h}, "))
        out.append(row_panel(rows.mean(0), QUERIES[0], "head mean, "))
        if p:
            cls = m.matrix[..., 0, p:].double().mean((0, 1)).reshape(hi, wi)
            out.append({"title": "class token, head mean", "values": _round(cls),
                        "query_px": None})
    else:
        for q in QUERIES[:PANELS]:
            out.append(row_panel(rows.mean(0), q, ""))
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


def _measure(trained, x, radius: float, first_seed: int, progress: bool, desc: str
             ) -> Tuple[Dict[str, Dict[str, list]], Dict[str, dict], Dict[str, object]]:
    """Every model of ``trained`` (``[(model, row)]``) beside its same-seed initialisation:
    ``(mixing, maps, templates)``: per family (a finer-grid variant under its zoo family's
    name) the trained and init metrics by layer, the trained layers with their controls; the
    first-layer panels of ``first_seed``; Mixer's first-layer template scores (empty if none)."""
    from tqdm import tqdm

    from probe import mixing
    image_size = int(x.shape[-1])
    measured: Dict[str, Dict[str, list]] = {}
    maps_out: Dict[str, dict] = {}
    templates: Dict[str, object] = {"radius_px": radius, "power": 2,
                                    "trained": [], "init": [], "panels": {}}
    bar = tqdm(trained, desc=desc, unit="model", disable=not progress)
    for model, row in bar:
        name, seed = row["family"], row["seed"]
        fam = common.FINEGRID.get(name, name)
        bar.set_postfix(model=name, seed=seed)
        start = common.build(name, seed=seed).eval()       # zoo.build for a zoo family
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
                if seed == first_seed:
                    maps_out[fam] = panels(fam, maps[which][0], image_size)
            measured.setdefault(fam, {w: [] for w in WEIGHTS})[which].append(record)
            first = maps[which][0]
            if isinstance(first.native, dict) and "fc1" in first.native and fam == "mixer":
                templates[which].append({"seed": seed, **template_scores(first, radius)})
                if seed == first_seed:
                    templates["panels"][which] = _template_panels(first)
                    templates["grid"] = list(first.in_grid)
                    templates["radius_tokens"] = radius / float(first.px_per_token[1])
                    templates["references"] = template_references(maps["trained"][0], radius)
    return measured, maps_out, templates


def finegrid(scale: dict, x: torch.Tensor, progress: bool) -> Tuple[dict, List[dict]]:
    """The finer token grid (issue 16): the ``finegrid`` plan's variants (patch 2, 14x14
    tokens) and, on the same training images and seeds (a data-efficiency size), the 7x7
    token models and the CNN, each beside its initialisation and its grid's references.

    Returns ``(block, model rows)``; the block is laid out like the results' top level
    (``mixing`` holds the 14x14 models under their zoo family's name, plus the CNN),
    with ``coarse``: the 7x7 token models of the same size and seeds."""
    from analyses import converged
    spec, quick, seeds = scale["finegrid"], scale["quick"], scale["seeds"]
    radius, image_size = scale["radius_px"], int(x.shape[-1])
    n = int(converged.plan_spec("finegrid", quick=quick)["n_train"])
    fine = converged.models(spec["variants"], seeds, n_train=n, quick=quick, progress=progress)
    coarse = converged.models(spec["coarse"], seeds, n_train=n, quick=quick, progress=progress)
    m_fine, maps_fine, tpl = _measure(fine, x, radius, seeds[0], progress, "mixing 14x14")
    m_coarse, maps_coarse, _ = _measure(coarse, x, radius, seeds[0], progress,
                                        "mixing 7x7, same data")
    first = m_fine[next(iter(m_fine))]["trained"][0]["layers"][0]
    grid = tuple(first["input_grid"])
    block = {"n_train": n, "grid": list(grid), "patch_px": first["px_per_unit"],
             "variants": {common.FINEGRID[v]: v for v in spec["variants"]},
             "image_size": image_size, "radius_px": radius,
             "radius_tokens": radius / first["px_per_unit"],
             "mixing": {**m_fine, **{f: v for f, v in m_coarse.items() if f == "cnn"}},
             "coarse": {f: v for f, v in m_coarse.items() if f != "cnn"},
             "maps": {**maps_fine, **{f: v for f, v in maps_coarse.items() if f == "cnn"}},
             "references": references(image_size, radius, grid=grid)}
    if tpl["trained"]:
        block["templates"] = tpl
    return block, [row for _, row in fine + coarse]


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from analyses import converged
    x, _ = common.test_set(scale["images"])
    image_size = int(x.shape[-1])
    radius = scale["radius_px"]
    trained = converged.models(scale["families"], scale["seeds"], quick=scale["quick"],
                               progress=progress)
    measured, maps_out, templates = _measure(trained, x, radius, scale["seeds"][0], progress,
                                             "mixing patterns")
    out = {"models": [row for _, row in trained], "image_size": image_size,
           "radius_px": radius, "mixing": measured, "maps": maps_out,
           "references": references(image_size, radius)}
    if templates["trained"]:
        out["templates"] = templates
    if scale.get("finegrid"):
        out["finegrid"], rows = finegrid(scale, x, progress)
        out["models"] += rows
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
