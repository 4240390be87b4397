"""Is Mixer's token mixing a fixed, input-independent attention matrix?

Measures how much each family's token-mixing matrices vary across input images
(``probe.mixing.input_dependence``: the share of the maps' energy not explained by one
input-independent map; 0 = one fixed matrix) where the dependence lives, layer by layer, on
the converged full-data models of every zoo family (``analyses.converged``, 3 seeds) and on
Synthesizer-Random (``synth_random``, rung (d) of the Synthesizer ladder: the zoo Mixer with
each token-mixing MLP replaced by per-head ``softmax(R_h)`` over a value projection,
``probe/models/synth_ladder.py``), the exact-zero reference:

- Mixer: every channel's own token Jacobian ``W2 diag(GELU'(h_c)) W1``
  (``extract(..., per_channel=True)``), not only their channel average, which hides most
  of the variation (the average of many input-dependent maps is nearly fixed);
- gMLP: the spatial gating unit's effective token mixing INCLUDING its gate
  (``extract(..., gated=True)``: ``diag(u_c) P`` per channel), so it no longer reads 0 by
  omission;
- ViT: per head and per layer (attention has no per-channel token mixing);
- the CNN: each stage's (channel-averaged) Jacobian per image;
- Synthesizer-Random (per head), ResMLP and FNet: one fixed matrix, the zero-dependence
  reference (exactly 0: a check).

Each layer reports the distribution over its units (channels, heads or the one map:
median and quantiles, ``mixing.distribution``) trained and at the same-seed random
initialisation. The claim ``mixer_mixing_is_fixed`` uses the per-unit MEDIAN (for Mixer:
the median channel), mean over layers; the channel-averaged value stands beside it.
``synth_random`` is trained as a cell of the SAME recipe (``make cells-ladder``) at Mixer's
swept learning rate, since it is Mixer's body. Whether Mixer performs like
Synthesizer-Random, and whether generated attention adapts better, is tested on the whole
ladder by :mod:`analyses.synthesizer_ladder`.

Input dependence is non-negative and spans decades (about 1e-1 for attention, exactly 0
for a map that does not depend on the input), so its interval is a t interval on the
logarithm (:func:`analyses.verdicts.positive_ci`). Values below :data:`FLOOR` (a map that
is input-independent up to float round-off) are raised to it before the logarithm; a
family whose every seed is below it is reported as 0 with a zero-width interval. Both
rules are written into the claim's details.

Claim: ``mixer_mixing_is_fixed`` (equivalence: Mixer's per-channel input dependence within
the margin of 0). Check: ``synthesizer_random_input_dependence_is_zero``.

    python -m analyses.input_dependence            # full scale (see --help)
    python -m analyses.input_dependence --quick    # seconds, into runs/analyses_quick/
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from analyses import common, converged
from analyses.common import COLORS, LABELS, Check, Claim
from analyses.verdicts import margin_of
from probe import zoo

NAME = "input_dependence"
VARIANT = "synth_random"     # Synthesizer-Random as published (the ladder's rung (d))
MODELS = list(common.FAMILIES) + [VARIANT]
FLOOR = 1e-6     # input dependence below this is float round-off of an input-independent map
SCALES = {
    # the converged full-data models (3 seeds) of every family, plus synth_random trained the same way
    "full": {"quick": False, "families": list(common.FAMILIES), "variants": [VARIANT],
             "seeds": [0, 1, 2], "n_images": 64},
    "quick": {"quick": True, "families": ["mixer", "resmlp", "gmlp", "vit", "cnn"],
              "variants": [VARIANT], "seeds": [0, 1], "n_images": 8},
}
# which units a layer's input dependence is measured over, by mixing kind
UNITS = {"token-mlp": "channel", "spatial-gating": "channel", "attention": "head", "conv": "map",
         "token-linear": "map", "fourier": "map"}
ZERO_TOLERANCE = 0.0     # a fixed matrix's input dependence is exactly 0 (checked bitwise)


# ----------------------------------------------------------------------------- models


INIT_KEYS = ("input_dependence", "per_head", "median", "distribution", "values")


def dependence_beside_init(model, name: str, seed: int, x, keys: Sequence[str] = INIT_KEYS):
    """``(maps, layers, init model)``: :func:`layer_dependence` of the trained ``model`` with, in
    each layer row, ``init_<key>`` of the same-seed random initialisation for every key."""
    maps, layers = layer_dependence(model, x)
    init = common.build(name, seed=seed).eval()
    _, init_layers = layer_dependence(init, x)
    for layer, first in zip(layers, init_layers):
        for key in keys:
            layer[f"init_{key}"] = first[key]
    return maps, layers, init


def _centre_row(m, image: int = 0, head: int = 0) -> List[List[float]]:
    """The centre output token's mixing weights over the input grid, ``[h][w]``."""
    h, w = m.grid
    t = m.prefix_tokens + (h // 2) * w + w // 2
    row = m.matrix[image, head, t, m.prefix_tokens:].reshape(*m.in_grid)
    return [[round(float(v), 6) for v in r] for r in row]


def unit_values(m) -> Tuple[str, torch.Tensor]:
    """``(unit, values)``: the input dependence of each unit of a map: each channel's token
    Jacobian (maps extracted with ``per_channel``: Mixer, gated gMLP), each head (attention,
    static maps with heads: exactly 0), or the one map (conv stages: per-image Jacobians;
    static maps: exactly 0)."""
    from probe import mixing
    if m.channels is not None or m.static:
        unit = "channel" if m.channels is not None else ("head" if m.heads > 1 else "map")
        return unit, mixing.input_dependence(m, per_channel=True)
    return ("head" if m.kind == "attention" else "map"), mixing.input_dependence(m)


def layer_dependence(model, x: torch.Tensor) -> Tuple[list, List[dict]]:
    """``(maps, rows)``: per token-mixing layer, the channel-averaged input dependence (mean
    over heads), per head, and the distribution over the layer's units (:func:`unit_values`)
    with their values. gMLP's map includes its gate (``gated=True``). Layers are extracted one
    at a time with ``per_channel=True`` (``B * C * T^2`` floats each), keeping the
    channel-averaged maps only."""
    from probe import mixing
    with torch.no_grad():
        n_layers = len(mixing.layers(model))
        maps, rows = [], []
        for depth in range(n_layers):
            (m,) = mixing.extract(model, x, layers=[depth], gated=True, per_channel=True)
            unit, vals = unit_values(m)
            head = mixing.input_dependence(m)
            dist = mixing.distribution(vals)
            rows.append({"depth": m.depth, "kind": m.kind, "layer": m.layer, "unit": unit,
                         "gated": bool(m.gated),
                         "input_dependence": float(head.mean()),
                         "per_head": [float(v) for v in head],
                         "median": dist["q50"], "distribution": dist,
                         "values": [float(f"{float(v):.4g}") for v in vals]})
            m.channels = None
            maps.append(m)
    return maps, rows


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from analyses.cells import accuracy, test_sets
    quick = bool(scale["quick"])
    for need in ("mixer", "vit"):
        if need not in scale["families"]:
            raise ValueError(f"input_dependence compares Mixer, ViT and {VARIANT}: include {need!r}")
    seeds = list(scale["seeds"])
    loaded = converged.models(list(scale["families"]) + list(scale["variants"]), seeds,
                              quick=quick, progress=progress)
    recipe, _ = converged.recipe_and_store(quick)
    _, (sub_x, sub_y) = test_sets(recipe)
    x, _ = common.test_set(scale["n_images"])
    rows, examples, models = [], {}, []
    for model, mrow in tqdm(loaded, desc="input dependence", unit="model", disable=not progress):
        name, seed = mrow["family"], int(mrow["seed"])
        maps, layers, init = dependence_beside_init(model, name, seed, x)
        models.append(mrow)
        rows.append({"name": name, "seed": seed, "test_accuracy": mrow["test_accuracy"],
                     "init_accuracy": round(accuracy(init, sub_x, sub_y), 4),
                     "params": zoo.count_params(model), "layers": layers,
                     **{key: float(np.mean([l[key] for l in layers]))
                        for key in ("input_dependence", "init_input_dependence", "median",
                                    "init_median")}})
        if seed == seeds[0] and name in ("mixer", VARIANT, "vit"):
            first = maps[0]
            examples[name] = {"kind": first.kind,
                              "image_0": _centre_row(first, 0),
                              "image_1": _centre_row(first, min(1, first.matrix.shape[0] - 1))}
    return {"models": models, "rows": rows, "examples": examples, "floor": FLOOR,
            "init_accuracy_n": len(sub_y),
            "reference": {"fixed_map": 0.0, "chance_accuracy": 0.1,
                          "about": "input dependence 0 = one input-independent matrix (Synthesizer-"
                                   "Random, FNet's DFT, ResMLP's linear token mixing); median = "
                                   "the median over a layer's units (channels: Mixer, gated gMLP; "
                                   "heads: ViT; the map: CNN stages, fixed maps); "
                                   "input_dependence = the channel-averaged map's (mean over "
                                   "heads); init_* = the same-seed random initialisation"}}


# ----------------------------------------------------------------------------- tables


def per_seed(results: Mapping, name: str, key: str) -> Dict[int, float]:
    """``{seed: value}`` of model ``name``: ``median`` (the per-unit median input dependence,
    mean over layers), ``init_median``, ``input_dependence`` (the channel-averaged map's, mean
    over layers), ``init_input_dependence``, ``test_accuracy`` or ``init_accuracy``."""
    return {int(r["seed"]): float(r[key] if key in r else np.mean([l[key] for l in r["layers"]]))
            for r in results["rows"] if r["name"] == name}


def level(values: Sequence[float], *, confidence: float, floor: float = FLOOR) -> dict:
    """``{"effect", "ci_low", "ci_high", "n", "floored"}`` of input dependences (in [0, 1]):
    the geometric mean with a log-scale t interval (:func:`common.positive_ci`) after raising
    values below ``floor`` to it (``"floored"`` counts them), its upper end capped at 1 (the
    largest input dependence; ``"capped"`` says when); 0 with a zero-width interval when
    every value is below ``floor`` (``"note"`` says so)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        raise ValueError("level needs at least one value")
    if (v < 0).any() or (v > 1 + 1e-6).any():
        raise ValueError(f"input dependence lies in [0, 1], got {v.tolist()}")
    if (v < floor).all():
        return {"effect": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": len(v), "floored": len(v),
                "note": f"every seed below {floor:g}: input-independent up to float round-off"}
    est, lo, hi = common.positive_ci(np.maximum(v, floor), confidence=confidence)
    out = {"effect": est, "ci_low": lo, "ci_high": min(hi, 1.0), "n": len(v),
           "floored": int((v < floor).sum())}
    if hi > 1.0:
        out["capped"] = f"upper end {hi:.3g} capped at 1, the largest input dependence"
    return out


def _depths(results: Mapping, name: str) -> List[int]:
    return sorted({l["depth"] for r in results["rows"] if r["name"] == name for l in r["layers"]})


def _per_layer(results: Mapping, name: str, key: str) -> List[float]:
    """``key`` of model ``name`` per layer (depth order), mean over seeds."""
    return [float(np.mean([l[key] for r in results["rows"] if r["name"] == name
                           for l in r["layers"] if l["depth"] == d]))
            for d in _depths(results, name)]


def _distributions(results: Mapping, name: str) -> Dict[str, List[dict]]:
    """Per layer, the quantiles of the per-unit values of every seed pooled, trained and init."""
    out = {}
    for which, key in (("trained", "values"), ("init", "init_values")):
        out[which] = []
        for d in _depths(results, name):
            vals = [v for r in results["rows"] if r["name"] == name for l in r["layers"]
                    if l["depth"] == d for v in l.get(key, [l.get(
                        "median" if which == "trained" else "init_median", 0.0)])]
            q = np.quantile(vals, [0.05, 0.25, 0.5, 0.75, 0.95])
            out[which].append({"n": len(vals), **{f"q{p:02d}": float(v) for p, v in
                                                  zip((5, 25, 50, 75, 95), q)}})
    return out


def _vit_heads(results: Mapping, key: str) -> List[List[float]]:
    """ViT's ``[layer][head]`` input dependence, mean over seeds (empty without ViT rows)."""
    rows = [r for r in results["rows"] if r["name"] == "vit"]
    if not rows or key not in rows[0]["layers"][0]:
        return []
    return [np.mean([r["layers"][i][key] for r in rows], axis=0).tolist()
            for i in range(len(rows[0]["layers"]))]


# ----------------------------------------------------------------------------- claims


def claims(results: Mapping) -> List[Claim]:
    names = [n for n in MODELS if any(r["name"] == n for r in results["rows"])]
    for need in ("mixer", "vit", VARIANT):
        if need not in names:
            raise ValueError(f"the results hold no {need!r} rows; the claim compares Mixer with "
                             f"ViT and Synthesizer-Random ({VARIANT})")
    floor = float(results.get("floor", FLOOR))
    n_seeds = len({r["seed"] for r in results["rows"]})
    conf_fixed = common.CONFIDENCE[margin_of("mixer_mixing_is_fixed")["test"]]

    dep = {n: per_seed(results, n, "median") for n in names}
    dep0 = {n: per_seed(results, n, "init_median") for n in names}
    avg = {n: per_seed(results, n, "input_dependence") for n in names}
    avg0 = {n: per_seed(results, n, "init_input_dependence") for n in names}

    def levels_of(per: Mapping[str, Mapping[int, float]]) -> Dict[str, dict]:
        return {n: level(list(per[n].values()), confidence=conf_fixed, floor=floor)
                for n in names}

    levels, init_levels = levels_of(dep), levels_of(dep0)
    mixer = levels["mixer"]
    floor_rule = (f"interval on the log scale (positive_ci); values below {floor:g} (float "
                  f"round-off of an input-independent map) raised to {floor:g} first; a model "
                  f"with every seed below it reported as 0 with a zero-width interval")
    units = {n: sorted({l["unit"] for r in results["rows"] if r["name"] == n
                        for l in r["layers"]}) for n in names}
    ratio = {s: dep["mixer"][s] / avg["mixer"][s] for s in dep["mixer"]
             if avg["mixer"].get(s, 0.0) > 0}
    detail_dep = {
        "floor": floor, "floor_rule": floor_rule, "units": units,
        "mixer_per_seed": dep["mixer"], "mixer_init_per_seed": dep0["mixer"],
        "mixer_channel_average_per_seed": avg["mixer"],
        "mixer_median_over_channel_average": ratio,
        "per_layer": {n: _per_layer(results, n, "median") for n in names},
        "per_layer_init": {n: _per_layer(results, n, "init_median") for n in names},
        "distribution_per_layer": {n: _distributions(results, n) for n in names},
        "vit_per_head_per_layer": {w: _vit_heads(results, key) for w, key in
                                   (("trained", "per_head"), ("init", "init_per_head"))},
    }
    trained_on = "the converged full-data models (one recipe)"
    n_images = results.get("settings", {}).get("n_images", "?")
    return [
        Claim(key="mixer_mixing_is_fixed",
              claim="Mixer's token-mixing MLP acts as a fixed, input-independent attention matrix",
              who="Tolstikhin et al. (MLP-Mixer) and commentators of the debate (Mixer as a "
                  "'static attention'); Tay et al.'s Synthesizer-Random is the attention analogue",
              experiment=f"input dependence of every channel's token-mixing Jacobian of Mixer "
                         f"(W2 diag(GELU'(h_c)) W1 per channel c) on {n_images} test images, "
                         f"{trained_on}, {n_seeds} seeds; controls: the same seed at "
                         f"initialisation, Synthesizer-Random, ResMLP and FNet as the exact-zero "
                         f"reference (fixed matrices: a check), gMLP with its gate and ViT per "
                         f"head and layer as input-dependent references, and the "
                         f"channel-averaged Jacobian beside the per-channel values",
              figure="input_dependence.pdf",
              effect="Mixer's per-channel input dependence: in each layer the MEDIAN over "
                     "channels of a channel's share of token-mixing energy that varies across "
                     "images (0 = one fixed matrix), mean over layers; geometric mean over seeds "
                     "with a log-scale 90% interval. The channel average (details: "
                     "mixer_channel_average_per_seed) is not used: averaging many input-dependent "
                     "channel maps cancels most of their variation. Per family: the same median "
                     "over that family's units (channels, ViT heads, or the one map)",
              estimate=mixer["effect"], low=mixer["ci_low"], high=mixer["ci_high"],
              per_family=levels,
              reference={"initialisation": init_levels, "fixed_map": 0.0,
                         "channel_average": levels_of(avg),
                         "channel_average_initialisation": levels_of(avg0),
                         "about": "per_family: each model's per-unit median (trained); "
                                  "initialisation: the same at the same-seed random init; "
                                  "channel_average: the channel-averaged map's value"},
              details=detail_dep),
    ]


def checks(results: dict) -> List[Check]:
    """Synthesizer-Random's token mixing is one fixed matrix, so its input dependence is
    exactly 0, trained and at initialisation, averaged and per unit (by construction)."""
    values = [(f"{w} seed {r['seed']} layer {l['depth']} {what}", float(v))
              for r in results["rows"] if r["name"] == VARIANT for l in r["layers"]
              for w, pre in (("trained", ""), ("init", "init_"))
              for what, vals in (("channel average", [l[pre + "input_dependence"]]),
                                 ("unit median", [l[pre + "median"]]),
                                 ("per unit", l.get(pre + "values", [])))
              for v in vals]
    if not values:
        return []
    worst, error = max(values, key=lambda e: abs(e[1]))
    return [Check(key="synthesizer_random_input_dependence_is_zero",
                  what="Synthesizer-Random's softmax(R_h) is one input-independent matrix per "
                       "head: its input dependence is exactly 0 in every layer, trained and at "
                       "initialisation, averaged and per unit (the zero-dependence reference of "
                       "mixer_mixing_is_fixed)",
                  max_abs_error=abs(error), tolerance=ZERO_TOLERANCE,
                  details={"worst": worst, "n_values": len(values)})]


# ----------------------------------------------------------------------------- figure


def _pooled(results: Mapping, name: str, key: str, floor: float) -> np.ndarray:
    """Every unit's value of model ``name`` (all layers and seeds), raised to ``floor``."""
    vals = [v for r in results["rows"] if r["name"] == name for l in r["layers"]
            for v in l.get(key, [])]
    return np.maximum(np.asarray(vals, dtype=float), floor)


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    names = [n for n in MODELS if any(r["name"] == n for r in results["rows"])]
    floor = float(results.get("floor", FLOOR))
    margin = margin_of("mixer_mixing_is_fixed")["margin"]
    fig = plt.figure(figsize=(14, 10))
    gs = fig.add_gridspec(3, 6)

    ax = fig.add_subplot(gs[0, :2])
    for n in names:
        rows = sorted((r for r in results["rows"] if r["name"] == n), key=lambda r: r["seed"])
        depth = np.array([l["depth"] for l in rows[0]["layers"]]) + 0.04 * names.index(n)
        for key, ls, label in (("median", "-", LABELS[n]), ("init_median", ":", None)):
            vals = np.maximum(np.array([[l[key] for l in r["layers"]] for r in rows]), floor)
            ax.plot(depth, np.exp(np.log(vals).mean(0)), ls, marker="o" if ls == "-" else None,
                    ms=3, color=COLORS[n], label=label, lw=1.2 if ls == "-" else 0.9)
    ax.axhline(margin, color="k", ls="--", lw=0.8)
    ax.text(ax.get_xlim()[0], margin * 1.2, f" claim margin {margin:g}", fontsize=7, va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 50)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("token-mixing layer (depth)")
    ax.set_ylabel(f"median input dependence over units (log; {floor:g} = fixed)", fontsize=8)
    ax.set_title("Per-unit median (channels / heads / map) by depth\n(solid: trained, dotted: "
                 "same-seed initialisation)", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper right")

    claims_by_id = {c["id"]: c for c in results.get("claims", [])}
    ax1 = fig.add_subplot(gs[0, 2:4])
    fixed = claims_by_id.get("mixer_mixing_is_fixed")
    if fixed is not None:
        init = fixed["reference"].get("initialisation", {})
        avg = fixed["reference"].get("channel_average", {})
        for i, (n, v) in enumerate(fixed["per_family"].items()):
            e, lo, hi = (max(v[k], floor) for k in ("effect", "ci_low", "ci_high"))
            ax1.errorbar(e, i, xerr=[[e - lo], [hi - e]], fmt="o", color=COLORS[n], capsize=3)
            if v["ci_high"] == 0:
                ax1.text(e * 2, i, " 0 (every seed)", fontsize=7, va="center")
            if n in init:
                ax1.plot(max(init[n]["effect"], floor), i, "x", color=COLORS[n], ms=6)
            if n in avg:
                ax1.plot(max(avg[n]["effect"], floor), i, "s", mfc="none", color=COLORS[n], ms=5)
        ax1.set_yticks(range(len(fixed["per_family"])))
        ax1.set_yticklabels([LABELS[n] for n in fixed["per_family"]], fontsize=8)
        ax1.axvspan(floor / 2, margin, color="0.88", lw=0, label=f"< margin ({margin:g})")
        ax1.set_xscale("log")
        ax1.set_xlim(floor / 2, 1.5)
        ax1.set_xlabel("input dependence, mean over layers (log; 90% CI)")
        ax1.plot([], [], "ko", label="per-unit median (the claim's number)")
        ax1.plot([], [], "ks", mfc="none", label="channel-averaged map")
        ax1.plot([], [], "kx", label="initialisation (median)")
        ax1.legend(fontsize=6.5, loc="lower right")
        ax1.set_title(f"Mixer's mixing fixed? ({fixed['verdict']})", fontsize=9)
    else:
        ax1.set_axis_off()

    ax2 = fig.add_subplot(gs[0, 4:])
    for i, n in enumerate(names):
        acc = list(per_seed(results, n, "test_accuracy").values())
        m, lo, hi = common.mean_ci(acc)
        ax2.bar(i, m, color=COLORS[n], yerr=[[m - lo], [hi - m]], capsize=3)
        ax2.plot([i] * len(acc), acc, "k.", ms=3)
        init = list(per_seed(results, n, "init_accuracy").values())
        ax2.plot(i, np.mean(init), "x", color="k", ms=6)
    ax2.plot([], [], "kx", label="initialisation")
    ax2.axhline(0.1, color="k", ls=":", lw=0.8, label="chance")
    ax2.set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=30, fontsize=8)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("test accuracy (mean, 95% CI over seeds)")
    ax2.set_title("Test accuracy beside the input dependence\n(the accuracy claims: "
                  "synthesizer_ladder.pdf)", fontsize=8)
    ax2.legend(fontsize=7, loc="upper left")

    ax3 = fig.add_subplot(gs[1, :4])
    data, pos, colors, ticks = [], [], [], []
    for i, n in enumerate(names):
        for j, (key, alpha) in enumerate((("values", 0.7), ("init_values", 0.25))):
            vals = _pooled(results, n, key, floor)
            if len(vals):
                data.append(np.log10(vals))
                pos.append(3 * i + j)
                colors.append((COLORS[n], alpha))
        ticks.append(3 * i + 0.5)
    if data:
        box = ax3.boxplot(data, positions=pos, widths=0.8, whis=(5, 95), showfliers=False,
                          patch_artist=True, medianprops={"color": "k"})
        for patch, (color, alpha) in zip(box["boxes"], colors):
            patch.set_facecolor(color)
            patch.set_alpha(alpha)
    ax3.axhline(np.log10(margin), color="k", ls="--", lw=0.8)
    units = {n: sorted({l["unit"] for r in results["rows"] if r["name"] == n
                        for l in r["layers"]}) for n in names}
    ax3.set_xticks(ticks, [f"{LABELS[n]}\n({'/'.join(units[n])})" for n in names], fontsize=8)
    ax3.set_ylabel(f"log10 input dependence per unit\n({floor:g} = fixed)", fontsize=8)
    ax3.set_title("Distribution over units (channels, heads or the map; all layers and seeds): "
                  "trained (dark) vs initialisation (light); box 25-75%, whiskers 5-95%",
                  fontsize=9)

    for k, (which, key) in enumerate((("trained", "per_head"), ("initialisation", "init_per_head"))):
        a = fig.add_subplot(gs[1, 4 + k])
        heads = np.maximum(np.asarray(_vit_heads(results, key), dtype=float), floor)
        if heads.size:
            im = a.imshow(np.log10(heads), cmap="magma", aspect="auto",
                          vmin=np.log10(floor), vmax=0)
            a.set_xlabel("head")
            a.set_ylabel("layer")
            a.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            a.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
            a.grid(False)
            fig.colorbar(im, ax=a, fraction=0.046, label="log10 input dependence")
            a.set_title(f"ViT per head and layer\n({which})", fontsize=8)
        else:
            a.set_axis_off()

    panels = [(n, k) for n, k in (("mixer", "image_0"), (VARIANT, "image_0"), ("vit", "image_0"),
                                  ("vit", "image_1")) if n in results["examples"]]
    for i, (n, k) in enumerate(panels):
        a = fig.add_subplot(gs[2, 1 + i if len(panels) < 5 else i])
        mat = np.array(results["examples"][n][k])
        lim = np.abs(mat).max() or 1.0
        im = (a.imshow(mat, cmap="viridis", vmin=0, vmax=lim) if mat.min() >= 0
              else a.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim))
        a.plot(mat.shape[1] // 2, mat.shape[0] // 2, "k+", ms=8)
        a.set_title(f"{LABELS[n]} layer 0, image {k[-1]}", fontsize=8)
        a.set_xticks([])
        a.set_yticks([])
        a.grid(False)
        fig.colorbar(im, ax=a, fraction=0.046)
    fig.suptitle("Bottom: the centre token's (channel-averaged) mixing weights over the token "
                 "grid (+ = the token), first seed", y=0.01, fontsize=8)
    fig.tight_layout()
    return [common.savefig(fig, paths, "input_dependence")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
