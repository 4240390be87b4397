"""The Synthesizer ladder: from Mixer's token MLP to attention, one change at a time.

Six models share Mixer's body (patch 4, 4 blocks, width 128, the same norms, channel MLPs,
head, recipe and learning rate: ``probe/models/synth_ladder.py``) and differ only in
their token mixing:

(a) ``mixer``          token-mixing MLP (the zoo Mixer);
(b) ``token_linear``   one linear token matrix ``R`` (no hidden layer);
(c) ``token_softmax``  ``softmax(R)``, logits ``N(0, 1)``;
(d) ``synth_random``   ``softmax(R_h)`` per head with a value projection (Synthesizer-Random,
                       Tay et al. 2021, arXiv:2005.00743, as published);
(e) ``synth_dense``    Dense Synthesizer: each token's logits from a 2-layer MLP of the token;
(f) ``dot_attention``  scaled dot-product attention (as ViT's, without a class token).

Per rung over the seeds of the converged full-data cells (``make cells-full cells-ladder``,
3 seeds, every rung at Mixer's swept learning rate, :mod:`analyses.converged`): test
accuracy with a 95% interval, beside its same-seed initialisation and chance; the parameter
count (all within +-25% of Mixer's: a check); and the input dependence of the token mixing
(``probe.mixing.input_dependence`` through :func:`analyses.input_dependence.layer_dependence`:
per channel for Mixer's token Jacobians, per head for (d)-(f), the median over units, mean
over layers, trained and at initialisation). Rungs (b)-(d) mix with fixed matrices, so
their input dependence is exactly 0 (a check); (e) and (f) generate their mixing from the
input.

Claims (margins in ``analyses/margins.json``):

- ``mixer_is_synthesizer_random`` (equivalence): the claim's effect is (a) Mixer minus
  (d) Synthesizer-Random test accuracy, paired by seed (90% interval): the literal claim.
  Its other half, "without the softmax", is the single change (b) vs (c) (linear R minus
  softmax(R)); it is reported beside it in ``per_family`` (``"token_linear - token_softmax"``)
  and ``details["without_softmax"]`` with its own interval and verdict at the same margin, so
  a reader sees when the two comparisons disagree.
- ``generated_attention_adapts_better`` (direction): (f) dot-product attention minus (d)
  Synthesizer-Random test accuracy, paired by seed (95% interval); (e) Dense Synthesizer
  minus (d) in ``per_family`` and ``details["dense_minus_random"]``.

    python -m analyses.synthesizer_ladder            # full scale (see --help)
    python -m analyses.synthesizer_ladder --quick    # seconds, into runs/analyses_quick/
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np

from analyses import common, converged
from analyses.common import COLORS, LABELS, LADDER, Check, Claim
from analyses.verdicts import CONFIDENCE, decide, margin_of
from probe import zoo

NAME = "synthesizer_ladder"
LETTERS = dict(zip(LADDER, "abcdef"))
FIXED = ("token_linear", "token_softmax", "synth_random")       # fixed token-mixing matrices
GENERATED = ("synth_dense", "dot_attention")                    # mixing generated from the input
PARAMETER_BAND = 0.25             # every rung within +-25% of Mixer's parameter count
ZERO_TOLERANCE = 0.0              # a fixed matrix's input dependence is exactly 0
SCALES = {
    "full": {"quick": False, "rungs": list(LADDER), "seeds": [0, 1, 2], "n_images": 64},
    "quick": {"quick": True, "rungs": list(LADDER), "seeds": [0, 1], "n_images": 8},
}
# (claim, (higher, lower) of its main comparison, (higher, lower) of its second comparison)
COMPARISONS = {
    "mixer_is_synthesizer_random": (("mixer", "synth_random"), ("token_linear", "token_softmax")),
    "generated_attention_adapts_better": (("dot_attention", "synth_random"),
                                          ("synth_dense", "synth_random")),
}


# ----------------------------------------------------------------------------- compute


def _models(rungs: Sequence[str], seeds: Sequence[int], quick: bool, progress: bool) -> list:
    """``[(model, model_row)]`` of every rung's full-data cells; a missing full-scale cell is a
    one-line error naming the make target that trains it."""
    if not quick:
        _, store = converged.recipe_and_store(False)
        missing = [c for c in converged.cells_for(rungs, seeds) if not store.is_done(c)]
        if missing:
            target = "cells-full" if all(c.family in common.FAMILIES for c in missing) else "cells-ladder"
            raise ValueError(f"{len(missing)} ladder model(s) not trained yet "
                             f"({', '.join(c.key for c in missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                             f"run `make {target}` first (make cells-full trains Mixer, make "
                             f"cells-ladder the other rungs)")
    return converged.models(rungs, seeds, quick=quick, progress=progress)


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from analyses.cells import accuracy, test_sets
    from analyses.input_dependence import dependence_beside_init
    quick = bool(scale["quick"])
    rungs = list(scale["rungs"])
    for need in ("mixer", "synth_random"):
        if need not in rungs:
            raise ValueError(f"the ladder's claims compare with {need!r}; include it in the rungs")
    seeds = list(scale["seeds"])
    loaded = _models(rungs, seeds, quick, progress)
    recipe, _ = converged.recipe_and_store(quick)
    _, (sub_x, sub_y) = test_sets(recipe)
    x, _ = common.test_set(scale["n_images"])
    rows, models = [], []
    for model, mrow in tqdm(loaded, desc="ladder", unit="model", disable=not progress):
        name, seed = mrow["family"], int(mrow["seed"])
        _, layers, init = dependence_beside_init(model, name, seed, x,
                                                 keys=("input_dependence", "median", "values"))
        for layer in layers:
            for key in ("per_head", "distribution"):
                layer.pop(key, None)
        models.append(mrow)
        rows.append({"name": name, "rung": LETTERS[name], "seed": seed,
                     "test_accuracy": mrow["test_accuracy"],
                     "init_accuracy": round(accuracy(init, sub_x, sub_y), 4),
                     "params": zoo.count_params(model), "layers": layers,
                     **{key: float(np.mean([l[key] for l in layers]))
                        for key in ("median", "init_median")}})
    base = zoo.count_params(common.build("mixer", seed=0))
    params = {n: zoo.count_params(common.build(n, seed=0)) for n in rungs}
    return {"models": models, "rows": rows, "init_accuracy_n": len(sub_y),
            "params": {n: {"count": c, "ratio_to_mixer": round(c / base, 4)}
                       for n, c in params.items()},
            "reference": {"chance_accuracy": 0.1, "fixed_map": 0.0,
                          "about": "median = per layer the median over the units' input "
                                   "dependence (Mixer: channels' token Jacobians; (d)-(f): heads; "
                                   "(b), (c): the one map), mean over layers; init_* = the "
                                   "same-seed random initialisation"}}


# ----------------------------------------------------------------------------- claims


def per_seed(results: Mapping, name: str, key: str) -> Dict[int, float]:
    """``{seed: value}`` of rung ``name``: ``test_accuracy``, ``init_accuracy``, ``median`` or
    ``init_median``."""
    return {int(r["seed"]): float(r[key]) for r in results["rows"] if r["name"] == name}


def _paired(results: Mapping, a: str, b: str, confidence: float) -> dict:
    """``a`` minus ``b`` test accuracy paired by seed: mean with a t interval."""
    acc_a, acc_b = per_seed(results, a, "test_accuracy"), per_seed(results, b, "test_accuracy")
    seeds = sorted(set(acc_a) & set(acc_b))
    if not seeds:
        raise ValueError(f"no seed has both a {a!r} and a {b!r} model; the comparison needs both")
    diffs = [acc_a[s] - acc_b[s] for s in seeds]
    m, lo, hi = common.mean_ci(diffs, confidence=confidence)
    return {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(seeds), "seeds": seeds,
            "per_seed_effect": diffs, "vs": b}


def _levels(results: Mapping, names: Sequence[str], key: str) -> Dict[str, dict]:
    from analyses.input_dependence import level
    return {n: level(list(per_seed(results, n, key).values()), confidence=0.95) for n in names}


def _accuracy_levels(results: Mapping, names: Sequence[str], key: str) -> Dict[str, dict]:
    out = {}
    for n in names:
        m, lo, hi = common.mean_ci(list(per_seed(results, n, key).values()), confidence=0.95)
        out[n] = {"effect": m, "ci_low": lo, "ci_high": hi}
    return out


def claims(results: Mapping) -> List[Claim]:
    names = [n for n in LADDER if any(r["name"] == n for r in results["rows"])]
    for need in {n for pairs in COMPARISONS.values() for pair in pairs for n in pair}:
        if need not in names:
            raise ValueError(f"the results hold no {need!r} rows; the ladder's claims compare "
                             f"rungs {', '.join(LADDER)}")
    reference = {"test_accuracy": _accuracy_levels(results, names, "test_accuracy"),
                 "init_accuracy": _accuracy_levels(results, names, "init_accuracy"),
                 "init_accuracy_n": results.get("init_accuracy_n"), "chance": 0.1,
                 "input_dependence": _levels(results, names, "median"),
                 "init_input_dependence": _levels(results, names, "init_median"),
                 "params": results.get("params", {})}
    n_seeds = len({r["seed"] for r in results["rows"]})
    body = ("Mixer's body (patch 4, 4 blocks, width 128, same channel MLPs, norms and head), "
            f"converged full-data cells of one recipe at Mixer's swept learning rate, {n_seeds} "
            f"seeds")
    controls = ("controls: each rung's same-seed initialisation accuracy and chance (0.1), "
                "each rung's input dependence (fixed rungs exactly 0, a check) and its "
                "parameter count (within +-25% of Mixer's, a check)")
    out = []
    for key, ((a, b), (c, d)) in COMPARISONS.items():
        entry = margin_of(key)
        conf = CONFIDENCE[entry["test"]]
        main, second = _paired(results, a, b, conf), _paired(results, c, d, conf)
        second_verdict = decide(entry["test"], second["ci_low"], second["ci_high"], entry["margin"])
        per_family = {f"{a} - {b}": {k: main[k] for k in ("effect", "ci_low", "ci_high", "n")},
                      f"{c} - {d}": {k: second[k] for k in ("effect", "ci_low", "ci_high", "n")}}
        pct = round(100 * conf)
        if key == "mixer_is_synthesizer_random":
            out.append(Claim(
                key=key,
                claim="Mixer's token mixing is Synthesizer-Random without the softmax: the two "
                      "perform alike",
                who="Debate commentary comparing MLP-Mixer with Tay et al.'s Synthesizer (2021)",
                experiment=f"test accuracy of the Synthesizer ladder in {body}: (a) Mixer vs "
                           f"(d) Synthesizer-Random (per-head softmax(R_h) with a value "
                           f"projection, as published), and the single change (b) linear R vs "
                           f"(c) softmax(R) with N(0, 1) logits; {controls}",
                figure="synthesizer_ladder.pdf",
                effect=f"(a) Mixer minus (d) Synthesizer-Random test accuracy, paired by seed "
                       f"({pct}% interval). per_family and details['without_softmax']: (b) "
                       f"linear R minus (c) softmax(R), the softmax alone, with its own interval "
                       f"and verdict at the same margin",
                estimate=main["effect"], low=main["ci_low"], high=main["ci_high"],
                per_family=per_family, reference=reference,
                details={"per_seed_effect": main["per_seed_effect"], "seeds": main["seeds"],
                         "without_softmax": {**second, "verdict": second_verdict},
                         "learning_rate": "every rung at Mixer's swept learning rate (the same "
                                          "body; no sweep of its own)"}))
        else:
            out.append(Claim(
                key=key,
                claim="Attention generated from the input adapts better than fixed (random "
                      "synthesizer) attention",
                who="Vaswani et al.'s dot-product attention vs Tay et al. (Synthesizer, 2021), "
                    "revisited in the MLP debate",
                experiment=f"test accuracy of the Synthesizer ladder in {body}: (f) dot-product "
                           f"attention vs (d) Synthesizer-Random, the same heads and value "
                           f"projection, only the logits' source differs (query-key product of "
                           f"the tokens vs a learned table), and (e) Dense Synthesizer (logits "
                           f"from each token alone) vs (d); {controls}",
                figure="synthesizer_ladder.pdf",
                effect=f"(f) dot-product attention minus (d) Synthesizer-Random test accuracy, "
                       f"paired by seed ({pct}% interval). per_family and "
                       f"details['dense_minus_random']: (e) Dense Synthesizer minus (d)",
                estimate=main["effect"], low=main["ci_low"], high=main["ci_high"],
                per_family=per_family, reference=reference,
                details={"per_seed_effect": main["per_seed_effect"], "seeds": main["seeds"],
                         "dense_minus_random": {**second, "verdict": second_verdict},
                         "learning_rate": "every rung at Mixer's swept learning rate (the same "
                                          "body; no sweep of its own)"}))
    return out


def checks(results: Mapping) -> List[Check]:
    """The fixed rungs' input dependence is exactly 0 (every layer, unit and seed, trained and
    at init), and every rung's parameter count lies within +-25% of Mixer's."""
    out = []
    values = [(f"{r['name']} {w} seed {r['seed']} layer {l['depth']}", float(v))
              for r in results["rows"] if r["name"] in FIXED for l in r["layers"]
              for w, pre in (("trained", ""), ("init", "init_"))
              for v in [l[pre + "input_dependence"], l[pre + "median"], *l.get(pre + "values", [])]]
    if values:
        worst, error = max(values, key=lambda e: abs(e[1]))
        out.append(Check(key="ladder_fixed_rungs_input_dependence_is_zero",
                         what="rungs (b) linear R, (c) softmax(R) and (d) Synthesizer-Random mix "
                              "with matrices that do not depend on the input: their input "
                              "dependence is exactly 0 in every layer, trained and at init, "
                              "averaged and per unit",
                         max_abs_error=abs(error), tolerance=ZERO_TOLERANCE,
                         details={"worst": worst, "n_values": len(values)}))
    params = results.get("params", {})
    if params:
        ratios = {n: p["ratio_to_mixer"] for n, p in params.items()}
        worst = max(ratios, key=lambda n: abs(ratios[n] - 1))
        out.append(Check(key="ladder_parameter_band",
                         what="every rung's parameter count lies within +-25% of Mixer's "
                              "(max_abs_error: the largest |count / Mixer's - 1|)",
                         max_abs_error=abs(ratios[worst] - 1), tolerance=PARAMETER_BAND,
                         details={"counts": {n: p["count"] for n, p in params.items()},
                                  "ratio_to_mixer": ratios, "worst": worst}))
    return out


# ----------------------------------------------------------------------------- figure


def _tick(name: str) -> str:
    return f"({LETTERS[name]}) {LABELS[name]}"


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    from analyses.input_dependence import FLOOR
    names = [n for n in LADDER if any(r["name"] == n for r in results["rows"])]
    params = results.get("params", {})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})

    ax = axes[0]
    for i, n in enumerate(names):
        acc = list(per_seed(results, n, "test_accuracy").values())
        m, lo, hi = common.mean_ci(acc)
        ax.bar(i, m, color=COLORS[n], yerr=[[m - lo], [hi - m]], capsize=3)
        ax.plot([i] * len(acc), acc, "k.", ms=3)
        ax.plot(i, np.mean(list(per_seed(results, n, "init_accuracy").values())), "kx", ms=6)
        if n in params:
            ax.text(i, 0.02, f"{params[n]['count'] / 1e3:.0f}k\n"
                             f"{100 * (params[n]['ratio_to_mixer'] - 1):+.0f}%",
                    ha="center", fontsize=6.5, color="w")
    ax.plot([], [], "kx", label="initialisation")
    ax.axhline(0.1, color="k", ls=":", lw=0.8, label="chance")
    accs = [v for n in names for v in per_seed(results, n, "test_accuracy").values()]
    ax.set_ylim(0, min(1.0, max(accs) + 0.1))
    ax.set_xticks(range(len(names)), [_tick(n) for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (mean, 95% CI over seeds)")
    ax.set_title("Accuracy per rung (bar foot: parameters, vs Mixer)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[1]
    for i, n in enumerate(names):
        for key, marker, off in (("median", "o", 0.0), ("init_median", "x", 0.2)):
            vals = np.array(list(per_seed(results, n, key).values()))
            shown = np.maximum(vals, FLOOR)
            ax.plot([i + off] * len(shown), shown, marker, color=COLORS[n], ms=5 if marker == "o" else 6,
                    alpha=0.9 if marker == "o" else 0.6)
            if key == "median" and (vals == 0).all():
                ax.text(i, FLOOR * 2.5, "0\nexactly", ha="center", fontsize=6.5)
    ax.set_yscale("log")
    ax.set_ylim(FLOOR / 2, 2)
    ax.axhline(FLOOR, color="0.6", lw=0.6)
    ax.set_xticks(range(len(names)), [_tick(n) for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"input dependence: median over units, mean over layers\n(log; {FLOOR:g} = "
                  f"fixed)", fontsize=8)
    ax.plot([], [], "ko", label="trained (one dot per seed)")
    ax.plot([], [], "kx", label="initialisation")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Input dependence per rung (Mixer: per channel; (d)-(f): per head)", fontsize=9)

    ax = axes[2]
    rows = []
    for c in results.get("claims", []):
        second = c["details"].get("without_softmax") or c["details"].get("dense_minus_random", {})
        for pair, verdict in zip(c["per_family"], (c["verdict"], second.get("verdict", ""))):
            rows.append((pair, c["per_family"][pair], c["margin"], c["test"], verdict))
    for i, (pair, v, margin, test, verdict) in enumerate(rows):
        y = len(rows) - 1 - i
        e, lo, hi = v["effect"], v["ci_low"], v["ci_high"]
        a, b = pair.split(" - ")
        ax.errorbar(e, y, xerr=[[e - lo], [hi - e]], fmt="o", color=COLORS[a], capsize=3)
        span = (-margin, margin) if test == "equivalence" else (margin, margin)
        ax.plot(span, [y - 0.3, y - 0.3], color="k", lw=2, alpha=0.4)
        ax.annotate(verdict, xy=(0.99, y + 0.12), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"({LETTERS[p.split(' - ')[0]]}) - ({LETTERS[p.split(' - ')[1]]})\n"
                                     f"{test} {round(100 * CONFIDENCE[test])}%"
                                     for p, _, _, test, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel("test accuracy difference, paired by seed")
    ax.set_title("The comparisons (grey bar: the margin band / threshold)", fontsize=9)
    fig.tight_layout()
    return [common.savefig(fig, paths, "synthesizer_ladder")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
