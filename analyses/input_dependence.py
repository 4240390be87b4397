"""Is Mixer's token mixing a fixed attention matrix, and does generated attention adapt better?

Measures how much each family's token-mixing matrices vary across input images
(``probe.mixing.input_dependence``: the share of the maps' energy not explained by one
input-independent map; 0 = one fixed matrix) layer by layer, on the converged full-data
models of every zoo family (``analyses.converged``, 3 seeds) and on a Synthesizer-Random
variant (``synth``: the zoo Mixer with each token-mixing MLP replaced by a trainable
``softmax(R)`` matrix, ``probe/models/synthesizer.py``). ``synth`` is trained as a cell of
the SAME recipe (``python -m analyses.cells run --plan full --family synth``) at Mixer's
swept learning rate, since it is Mixer's body; it is compared with Mixer (fixed mixing
without softmax) and with ViT (attention generated from the input). Every value stands
beside the same-seed random initialisation's.

Input dependence is non-negative and spans decades (about 1e-1 for attention, exactly 0
for a map that does not depend on the input), so its interval is a t interval on the
logarithm (:func:`analyses.verdicts.positive_ci`). Values below :data:`FLOOR` (a map that
is input-independent up to float round-off) are raised to it before the logarithm; a
family whose every seed is below it is reported as 0 with a zero-width interval. Both
rules are written into the claim's details.

Claims: ``mixer_mixing_is_fixed`` (equivalence: Mixer's input dependence within the
margin of 0), ``mixer_is_synthesizer_random`` (equivalence: Mixer and Synthesizer-Random
accuracy alike), ``generated_attention_adapts_better`` (direction: ViT more accurate than
Synthesizer-Random).

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
VARIANT = "synth"
MODELS = list(common.FAMILIES) + [VARIANT]
FLOOR = 1e-6     # input dependence below this is float round-off of an input-independent map
SCALES = {
    # the converged full-data models (3 seeds) of every family, plus synth trained the same way
    "full": {"quick": False, "families": list(common.FAMILIES), "variants": [VARIANT],
             "seeds": [0, 1, 2], "n_images": 64},
    "quick": {"quick": True, "families": ["mixer", "resmlp", "vit", "cnn"], "variants": [VARIANT],
              "seeds": [0, 1], "n_images": 8},
}


# ----------------------------------------------------------------------------- models


def _variant_models(name: str, seeds: Sequence[int], quick: bool, progress: bool
                    ) -> List[Tuple[zoo.ProbeModel, dict]]:
    """``(model in eval mode, model_row)`` of an analysis variant's full-data cells (quick cells
    are trained on the spot; a missing full-scale cell is a one-line error with the command)."""
    from analyses.cells import train_cell
    from analyses.cells.training import load_model
    _, store = converged.recipe_and_store(quick)
    out = []
    for cell in converged.cells_for([name], seeds, quick=quick):
        card = store.card(cell)
        if card is None:
            if not quick:
                raise ValueError(f"model {cell.key} is not trained yet; run `python -m analyses.cells "
                                 f"run --plan full --family {name}` first")
            card = train_cell(cell, store=store, progress=progress)
        weights = store.weights_path(cell)
        out.append((load_model(name, weights), converged.model_row(card, weights)))
    return out


def _centre_row(m, image: int = 0, head: int = 0) -> List[List[float]]:
    """The centre output token's mixing weights over the input grid, ``[h][w]``."""
    h, w = m.grid
    t = m.prefix_tokens + (h // 2) * w + w // 2
    row = m.matrix[image, head, t, m.prefix_tokens:].reshape(*m.in_grid)
    return [[round(float(v), 6) for v in r] for r in row]


def _layers(model, x: torch.Tensor):
    from probe import mixing
    with torch.no_grad():
        maps = mixing.extract(model, x)
    return maps, [{"depth": r["depth"], "kind": r["kind"], "input_dependence": r["input_dependence"]}
                  for r in mixing.summarize(maps)]


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from analyses.cells import accuracy, test_sets
    quick = bool(scale["quick"])
    for need in ("mixer", "vit"):
        if need not in scale["families"]:
            raise ValueError(f"input_dependence compares Mixer, ViT and {VARIANT}: include {need!r}")
    seeds = list(scale["seeds"])
    loaded = converged.models(scale["families"], seeds, quick=quick, progress=progress)
    for v in scale["variants"]:
        loaded += _variant_models(v, seeds, quick, progress)
    recipe, _ = converged.recipe_and_store(quick)
    _, (sub_x, sub_y) = test_sets(recipe)
    x, _ = common.test_set(scale["n_images"])
    rows, examples, models = [], {}, []
    for model, mrow in tqdm(loaded, desc="input dependence", unit="model", disable=not progress):
        name, seed = mrow["family"], int(mrow["seed"])
        maps, layers = _layers(model, x)
        init = common.build(name, seed=seed).eval()
        _, init_layers = _layers(init, x)
        for layer, first in zip(layers, init_layers):
            layer["init_input_dependence"] = first["input_dependence"]
        models.append(mrow)
        rows.append({"name": name, "seed": seed, "test_accuracy": mrow["test_accuracy"],
                     "init_accuracy": round(accuracy(init, sub_x, sub_y), 4),
                     "params": zoo.count_params(model), "layers": layers,
                     "input_dependence": float(np.mean([l["input_dependence"] for l in layers])),
                     "init_input_dependence": float(np.mean([l["init_input_dependence"]
                                                             for l in layers]))})
        if seed == seeds[0] and name in ("mixer", VARIANT, "vit"):
            first = maps[0]
            examples[name] = {"kind": first.kind,
                              "image_0": _centre_row(first, 0),
                              "image_1": _centre_row(first, min(1, first.matrix.shape[0] - 1))}
    return {"models": models, "rows": rows, "examples": examples, "floor": FLOOR,
            "init_accuracy_n": len(sub_y),
            "reference": {"fixed_map": 0.0, "chance_accuracy": 0.1,
                          "about": "input dependence 0 = one input-independent matrix (Synthesizer-"
                                   "Random, FNet's DFT, a convolution or a linear token MLP); "
                                   "init_* = the same-seed random initialisation"}}


# ----------------------------------------------------------------------------- tables


def per_seed(results: Mapping, name: str, key: str) -> Dict[int, float]:
    """``{seed: value}`` of model ``name``: ``input_dependence`` (mean over layers),
    ``init_input_dependence``, ``test_accuracy`` or ``init_accuracy``."""
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


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> Tuple[List[int], List[float]]:
    seeds = sorted(set(a) & set(b))
    return seeds, [a[s] - b[s] for s in seeds]


def _interval(values: Sequence[float], confidence: float) -> dict:
    m, lo, hi = common.mean_ci(values, confidence=confidence)
    return {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(values)}


# ----------------------------------------------------------------------------- claims


def claims(results: Mapping) -> List[Claim]:
    names = [n for n in MODELS if any(r["name"] == n for r in results["rows"])]
    for need in ("mixer", "vit", VARIANT):
        if need not in names:
            raise ValueError(f"the results hold no {need!r} rows; the claims compare Mixer, ViT "
                             f"and Synthesizer-Random")
    floor = float(results.get("floor", FLOOR))
    n_seeds = len({r["seed"] for r in results["rows"]})
    conf_fixed = common.CONFIDENCE[margin_of("mixer_mixing_is_fixed")["test"]]
    conf_syn = common.CONFIDENCE[margin_of("mixer_is_synthesizer_random")["test"]]
    conf_gen = common.CONFIDENCE[margin_of("generated_attention_adapts_better")["test"]]

    dep = {n: per_seed(results, n, "input_dependence") for n in names}
    dep0 = {n: per_seed(results, n, "init_input_dependence") for n in names}
    acc = {n: per_seed(results, n, "test_accuracy") for n in names}
    acc0 = {n: per_seed(results, n, "init_accuracy") for n in names}
    levels = {n: level(list(dep[n].values()), confidence=conf_fixed, floor=floor) for n in names}
    init_levels = {n: level(list(dep0[n].values()), confidence=conf_fixed, floor=floor)
                   for n in names}
    mixer = levels["mixer"]
    floor_rule = (f"interval on the log scale (positive_ci); values below {floor:g} (float "
                  f"round-off of an input-independent map) raised to {floor:g} first; a model "
                  f"with every seed below it reported as 0 with a zero-width interval")
    detail_dep = {
        "floor": floor, "floor_rule": floor_rule,
        "mixer_per_seed": dep["mixer"], "mixer_init_per_seed": dep0["mixer"],
        "per_layer": {n: [float(np.mean([l["input_dependence"] for r in results["rows"]
                                         if r["name"] == n for l in r["layers"]
                                         if l["depth"] == d]))
                          for d in sorted({l["depth"] for r in results["rows"] if r["name"] == n
                                           for l in r["layers"]})] for n in names},
    }
    acc_levels = {n: _interval(list(acc[n].values()), 0.95) for n in names}
    init_accuracy = {n: _interval(list(acc0[n].values()), 0.95) for n in names}
    acc_ref = {"test_accuracy": acc_levels, "init_accuracy": init_accuracy,
               "init_accuracy_n": results.get("init_accuracy_n"), "chance": 0.1}
    seeds_ms, mix_vs_syn = _paired(acc["mixer"], acc[VARIANT])
    seeds_vs, vit_vs_syn = _paired(acc["vit"], acc[VARIANT])
    _, vit_vs_mix = _paired(acc["vit"], acc["mixer"])
    if not mix_vs_syn or not vit_vs_syn:
        raise ValueError(f"no seed has both a Mixer/ViT and a {VARIANT} model")
    e2, l2, h2 = common.mean_ci(mix_vs_syn, confidence=conf_syn)
    e3, l3, h3 = common.mean_ci(vit_vs_syn, confidence=conf_gen)
    trained_on = "the converged full-data models (one recipe)"
    n_images = results.get("settings", {}).get("n_images", "?")
    return [
        Claim(key="mixer_mixing_is_fixed",
              claim="Mixer's token-mixing MLP acts as a fixed, input-independent attention matrix",
              who="Tolstikhin et al. (MLP-Mixer) and commentators of the debate (Mixer as a "
                  "'static attention'); Tay et al.'s Synthesizer-Random is the attention analogue",
              experiment=f"input dependence of the channel-averaged token-mixing Jacobian of "
                         f"Mixer (mean over its layers) on {n_images} test images, {trained_on}, {n_seeds} seeds; every family and "
                         f"Synthesizer-Random beside it, each with its same-seed initialisation",
              figure="input_dependence.pdf",
              effect="Mixer's input dependence (share of the token-mixing maps' energy that varies "
                     "across images; 0 = one fixed matrix), geometric mean over seeds with a "
                     "log-scale 90% interval: the claim holds if it is below the margin",
              estimate=mixer["effect"], low=mixer["ci_low"], high=mixer["ci_high"],
              per_family=levels,
              reference={"initialisation": init_levels, "fixed_map": 0.0,
                         "about": "per_family: each model's own input dependence (trained); "
                                  "initialisation: the same at the same-seed random init"},
              details=detail_dep),
        Claim(key="mixer_is_synthesizer_random",
              claim="Mixer's token mixing is Synthesizer-Random without the softmax: the two "
                    "perform alike",
              who="Debate commentary comparing MLP-Mixer with Tay et al.'s Synthesizer (2021)",
              experiment=f"test accuracy of Mixer and the same body with softmax(R) token mixing "
                         f"(Synthesizer-Random), both trained under the one recipe at Mixer's "
                         f"swept learning rate, {trained_on}, seeds {seeds_ms}",
              figure="input_dependence.pdf",
              effect="Mixer test accuracy minus Synthesizer-Random test accuracy, paired by seed "
                     "(90% interval)",
              estimate=e2, low=l2, high=h2, reference=acc_ref,
              details={"per_seed_effect": mix_vs_syn, "seeds": seeds_ms,
                       "synth_learning_rate": "Mixer's swept learning rate (Synthesizer-Random "
                                              "is Mixer's body; no sweep of its own)",
                       "input_dependence": {n: levels[n] for n in ("mixer", VARIANT)}}),
        Claim(key="generated_attention_adapts_better",
              claim="Attention generated from the input adapts better than fixed (random "
                    "synthesizer) attention",
              who="Vaswani et al.'s dot-product attention vs Tay et al. (Synthesizer, 2021), "
                  "revisited in the MLP debate",
              experiment=f"test accuracy of ViT (input-generated attention) vs Synthesizer-Random "
                         f"(a learned fixed attention matrix), {trained_on}, seeds {seeds_vs}",
              figure="input_dependence.pdf",
              effect="ViT test accuracy minus Synthesizer-Random test accuracy, paired by seed "
                     "(95% interval)",
              estimate=e3, low=l3, high=h3, reference=acc_ref,
              details={"per_seed_effect": vit_vs_syn, "seeds": seeds_vs,
                       "vit_minus_mixer": _interval(vit_vs_mix, conf_gen),
                       "input_dependence": {n: levels[n] for n in ("vit", VARIANT)}}),
    ]


def checks(results: dict) -> List[Check]:
    """None: this analysis measures trained models only (no identity holds by construction)."""
    return []


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    names = [n for n in MODELS if any(r["name"] == n for r in results["rows"])]
    floor = float(results.get("floor", FLOOR))
    margin = margin_of("mixer_mixing_is_fixed")["margin"]
    fig = plt.figure(figsize=(13, 6.5))
    gs = fig.add_gridspec(2, 6)
    ax = fig.add_subplot(gs[0, :2])
    for n in names:
        rows = sorted((r for r in results["rows"] if r["name"] == n), key=lambda r: r["seed"])
        depth = np.array([l["depth"] for l in rows[0]["layers"]]) + 0.04 * names.index(n)
        for key, ls, label in (("input_dependence", "-", LABELS[n]), ("init_input_dependence", ":", None)):
            vals = np.maximum(np.array([[l[key] for l in r["layers"]] for r in rows]), floor)
            ax.plot(depth, np.exp(np.log(vals).mean(0)), ls, marker="o" if ls == "-" else None,
                    ms=3, color=COLORS[n], label=label, lw=1.2 if ls == "-" else 0.9)
    ax.axhline(margin, color="k", ls="--", lw=0.8)
    ax.text(ax.get_xlim()[0], margin * 1.2, f" claim margin {margin:g}", fontsize=7, va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 50)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("token-mixing layer (depth)")
    ax.set_ylabel(f"input dependence (log; {floor:g} = input-independent)")
    ax.set_title("Mixing varies across images? (solid: trained,\ndotted: same-seed initialisation)",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper right")

    claims_by_id = {c["id"]: c for c in results.get("claims", [])}
    ax1 = fig.add_subplot(gs[0, 2:4])
    fixed = claims_by_id.get("mixer_mixing_is_fixed")
    if fixed is not None:
        init = fixed["reference"].get("initialisation", {})
        for i, (n, v) in enumerate(fixed["per_family"].items()):
            e, lo, hi = (max(v[k], floor) for k in ("effect", "ci_low", "ci_high"))
            ax1.errorbar(e, i, xerr=[[e - lo], [hi - e]], fmt="o", color=COLORS[n], capsize=3)
            if v["ci_high"] == 0:
                ax1.text(e * 2, i, " 0 (every seed)", fontsize=7, va="center")
            if n in init:
                ax1.plot(max(init[n]["effect"], floor), i, "x", color=COLORS[n], ms=6)
        ax1.set_yticks(range(len(fixed["per_family"])))
        ax1.set_yticklabels([LABELS[n] for n in fixed["per_family"]], fontsize=8)
        ax1.axvspan(floor / 2, margin, color="0.88", lw=0, label=f"< margin ({margin:g})")
        ax1.set_xscale("log")
        ax1.set_xlim(floor / 2, 1.5)
        ax1.set_xlabel("input dependence, mean over layers (log; 90% CI)")
        ax1.plot([], [], "kx", label="initialisation")
        ax1.legend(fontsize=7, loc="lower right")
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
    ax2.set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=30, fontsize=8)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("test accuracy (mean, 95% CI over seeds)")
    title = "Fixed vs generated mixing: accuracy"
    for key, short in (("mixer_is_synthesizer_random", "Mixer = Synth"),
                       ("generated_attention_adapts_better", "ViT > Synth")):
        if key in claims_by_id:
            c = claims_by_id[key]
            title += f"\n{short}: {c['effect']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] " \
                     f"({c['verdict']})"
    ax2.set_title(title, fontsize=8)
    ax2.legend(fontsize=7, loc="upper left")

    panels = [(n, k) for n, k in (("mixer", "image_0"), (VARIANT, "image_0"), ("vit", "image_0"),
                                  ("vit", "image_1")) if n in results["examples"]]
    for i, (n, k) in enumerate(panels):
        a = fig.add_subplot(gs[1, 1 + i if len(panels) < 5 else i])
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
    fig.suptitle("Bottom: the centre token's mixing weights over the token grid (+ = the token), "
                 "first seed", y=0.02, fontsize=8)
    fig.tight_layout()
    return [common.savefig(fig, paths, "input_dependence")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
