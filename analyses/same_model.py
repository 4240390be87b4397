"""Are Stack-of-FFN, ResMLP and Mixer the same model? An ablation ladder, one change per rung.

The claim (Su Jianlin, on the three 2021 papers: "a stack of feed-forward layers, ResMLP and
MLP-Mixer are the same model") is tested on the ResMLP ladder (``probe/models/resmlp_ladder.py``)
and the two zoo families it leads to, all converged full-data cells of the one recipe, the full
plan's seeds:

(a) ``mixer``                     the zoo Mixer (token-mixing MLP, LayerNorm);
(b) ``token_linear``              (a) with one linear token map ``R x + b`` (the Synthesizer
                                  ladder's rung (b), ``make cells-ladder``);
(c) ``linear_affine``             (b) with ResMLP's ``Affine`` instead of every LayerNorm;
(d) ``linear_affine_layerscale``  (c) with LayerScale (0.1): ResMLP's block in Mixer's width and
                                  depth (``python -m analyses.cells run --plan same-model``);
(e) ``resmlp``                    the zoo ResMLP: (d)'s architecture (a check), at its own swept
                                  learning rate instead of Mixer's;
(f) ``ffn``                       the zoo stack of feed-forward layers (Melas-Kyriazi 2021): the
                                  ViT body with a token MLP in place of attention (its own sweep:
                                  ``--plan sweep --family ffn``, then ``--plan full --family ffn``).

Rungs (b)-(d) train at Mixer's swept learning rate (the same body), (e) and (f) at their own.
Each rung's test accuracy is reported beside its same-seed initialisation and chance; every
rung's parameter count lies within +-25% of Mixer's (a check).

The claim ``same-model`` is an equivalence claim (margin in ``analyses/margins.json``, 90%
interval, TOST), fixed before any result: each model's test accuracy minus Mixer's, paired by
seed (``per_family``: every rung (b)-(f)). "The same model" holds only if *every* named model
is equivalent to Mixer (an intersection-union test: no multiplicity correction is needed), so
the claim's row is the least equivalent of the two models the claim names, ResMLP (e) and the
stack of feed-forward layers (f): the worse verdict (opposite, then inconclusive, then
supported), ties broken by the interval reaching farther from 0. ``details`` gives every
rung's own verdict and the steps of the ladder (each rung minus the one before, and (e) minus
(d): the learning rate alone; (f) minus (e)).

    python -m analyses.same_model            # full scale (see --help)
    python -m analyses.same_model --quick    # seconds, the quick recipe's models
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from analyses import common, converged, verdicts
from analyses.common import COLORS, LABELS, Check, Claim

NAME = "same_model"
PLAN = "same-model"
RUNGS = common.RESMLP_LADDER + ("resmlp", "ffn")
LETTERS = dict(zip(RUNGS, "abcdef"))
CLAIMED = ("resmlp", "ffn")                 # the models the claim names beside Mixer
STEPS = (("token_linear", "mixer"), ("linear_affine", "token_linear"),
         ("linear_affine_layerscale", "linear_affine"), ("resmlp", "linear_affine_layerscale"),
         ("ffn", "resmlp"))
STEP_NAMES = {("token_linear", "mixer"): "token MLP -> linear R",
              ("linear_affine", "token_linear"): "LayerNorm -> Affine",
              ("linear_affine_layerscale", "linear_affine"): "+ LayerScale",
              ("resmlp", "linear_affine_layerscale"): "Mixer's lr -> ResMLP's lr",
              ("ffn", "resmlp"): "ResMLP -> FF-only (ViT body)"}
PARAMETER_BAND = 0.25                       # every rung within +-25% of Mixer's parameter count
ARCHITECTURE_TOLERANCE = 1e-4               # rung (d) with its weights in the zoo ResMLP: logits
VERDICT_RANK = {"opposite": 2, "inconclusive": 1, "supported": 0}
SCALES = {"full": {"quick": False, "rungs": list(RUNGS), "check_images": 256},
          "quick": {"quick": True, "rungs": list(RUNGS), "check_images": 32}}
COMMANDS = {"mixer": "make cells-full", "resmlp": "make cells-full", "token_linear": "make cells-ladder",
            "ffn": "python -m analyses.cells run --plan full --family ffn (after its sweep: "
                   "python -m analyses.cells run --plan sweep --family ffn)"}


# ----------------------------------------------------------------------------- compute


def _ffn_swept(quick: bool) -> None:
    """The zoo ffn needs its own learning-rate sweep before its full cells have a key."""
    from analyses.cells.plan import sweep_results
    recipe, store = converged.recipe_and_store(quick)
    if not quick and "ffn" not in sweep_results(recipe=recipe, store=store, families=["ffn"]):
        raise ValueError("the zoo ffn has no learning-rate sweep yet; run `python -m analyses.cells "
                         "run --plan sweep --family ffn`, then `python -m analyses.cells run --plan "
                         "full --family ffn`")


def _models(rungs: Sequence[str], seeds: Sequence[int], quick: bool, progress: bool) -> list:
    """``[(model, model_row)]`` of every rung's full-data cells: (c), (d) from the same-model plan,
    the others from the plans that train them; a missing full-scale cell is a one-line error
    naming the command."""
    planned = [r for r in rungs if r in converged.plan_spec(PLAN, quick=quick)["families"]]
    other = [r for r in rungs if r not in planned]
    if "ffn" in other:
        _ffn_swept(quick)
    if not quick:
        _, store = converged.recipe_and_store(False)
        missing = [c for c in converged.cells_for(other, seeds) if not store.is_done(c)]
        if missing:
            commands = dict.fromkeys(COMMANDS.get(c.family, f"python -m analyses.cells run --plan "
                                                  f"full --family {c.family}") for c in missing)
            raise ValueError(f"{len(missing)} model(s) of the ladder not trained yet ("
                             f"{', '.join(c.key for c in missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                             f"run {'; '.join(commands)}")
    loaded = converged.models(other, seeds, quick=quick, progress=progress) if other else []
    if planned:
        loaded += [(m, r) for m, r, _ in converged.plan_models(PLAN, quick=quick, families=planned,
                                                                seeds=seeds, progress=progress)]
    return sorted(loaded, key=lambda mr: (RUNGS.index(mr[1]["family"]), mr[1]["seed"]))


def architecture_error(rung_d: torch.nn.Module, images: torch.Tensor) -> float:
    """Max abs difference of logits between rung (d) and the zoo ResMLP holding (d)'s weights
    (renamed by :func:`probe.models.resmlp_ladder.as_resmlp_state_dict`)."""
    from probe import zoo
    from probe.models.resmlp_ladder import as_resmlp_state_dict
    resmlp = zoo.build("resmlp", seed=0)
    state = {k: v.float() for k, v in rung_d.state_dict().items()}
    resmlp.load_state_dict(as_resmlp_state_dict(state))
    reference = rung_d.eval()
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        return float((reference(images) - resmlp.eval()(images)).abs().max())


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import zoo
    from analyses.cells import accuracy, test_sets
    quick = bool(scale["quick"])
    rungs = list(scale["rungs"])
    if "mixer" not in rungs:
        raise ValueError("every rung is compared with Mixer: include 'mixer' in the rungs")
    bad = [r for r in rungs if r not in RUNGS]
    if bad:
        raise ValueError(f"unknown rung(s) {', '.join(bad)}; the ladder is {', '.join(RUNGS)}")
    recipe, _ = converged.recipe_and_store(quick)
    seeds = sorted(int(s) for s in recipe.plans["full"]["seeds"])
    loaded = _models(rungs, seeds, quick, progress)
    _, (sub_x, sub_y) = test_sets(recipe)
    check_x = sub_x[:int(scale["check_images"])]
    rows, errors = [], {}
    for model, mrow in tqdm(loaded, desc="ladder", unit="model", disable=not progress):
        name, seed = mrow["family"], int(mrow["seed"])
        init = common.build(name, seed=seed).eval()
        rows.append({"name": name, "rung": LETTERS[name], "seed": seed,
                     "test_accuracy": mrow["test_accuracy"],
                     "init_accuracy": round(accuracy(init, sub_x, sub_y), 4),
                     "params": zoo.count_params(model)})
        if name == "linear_affine_layerscale":
            errors[str(seed)] = architecture_error(model, check_x)
    base = zoo.count_params(common.build("mixer", seed=0))
    params = {n: zoo.count_params(common.build(n, seed=0)) for n in rungs}
    return {"models": [row for _, row in loaded], "rows": rows, "init_accuracy_n": len(sub_y),
            "params": {n: {"count": c, "ratio_to_mixer": round(c / base, 4)} for n, c in params.items()},
            "resmlp_architecture_error": errors, "check_images": len(check_x),
            "reference": {"chance_accuracy": 0.1}, "recipe_hash": recipe.hash}


# ----------------------------------------------------------------------------- claims


def per_seed(results: Mapping, name: str, key: str = "test_accuracy") -> Dict[int, float]:
    """``{seed: value}`` of rung ``name`` (``test_accuracy`` or ``init_accuracy``)."""
    return {int(r["seed"]): float(r[key]) for r in results["rows"] if r["name"] == name}


def paired(results: Mapping, a: str, b: str, confidence: float) -> dict:
    """``a`` minus ``b`` test accuracy, paired by seed: mean with a t interval over seeds.

    Raises:
        ValueError: ``a`` and ``b`` have different seeds (or none).
    """
    acc_a, acc_b = per_seed(results, a), per_seed(results, b)
    if not acc_a or sorted(acc_a) != sorted(acc_b):
        raise ValueError(f"{a} has seeds {sorted(acc_a)}, {b} {sorted(acc_b)}: the rungs are "
                         f"compared seed by seed")
    seeds = sorted(acc_a)
    diffs = [acc_a[s] - acc_b[s] for s in seeds]
    m, lo, hi = common.mean_ci(diffs, confidence=confidence)
    return {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(seeds), "seeds": seeds,
            "per_seed_effect": diffs}


def least_equivalent(per_rung: Mapping[str, dict], names: Sequence[str], *, test: str,
                     margin: float) -> str:
    """The one of ``names`` with the worst verdict (opposite, inconclusive, supported), ties
    broken by the interval reaching farthest from 0."""
    def badness(n: str) -> Tuple[int, float]:
        e = per_rung[n]
        verdict = verdicts.decide(test, e["ci_low"], e["ci_high"], margin)
        return VERDICT_RANK.get(verdict, 1), max(abs(e["ci_low"]), abs(e["ci_high"]))
    return max(names, key=badness)


def claims(results: Mapping) -> List[Claim]:
    names = [n for n in RUNGS if per_seed(results, n)]
    for need in ("mixer",) + CLAIMED:
        if need not in names:
            raise ValueError(f"the results hold no {need!r} rows; the same-model claim compares "
                             f"Mixer, ResMLP and the stack of feed-forward layers")
    entry = verdicts.margin_of("same-model")
    test, margin = entry["test"], float(entry["margin"])
    conf = verdicts.CONFIDENCE[test]
    per_rung = {n: paired(results, n, "mixer", conf) for n in names if n != "mixer"}
    head = least_equivalent(per_rung, CLAIMED, test=test, margin=margin)
    per_family = {n: {k: e[k] for k in ("effect", "ci_low", "ci_high", "n")} for n, e in per_rung.items()}
    steps = {f"{a} - {b}": {**paired(results, a, b, conf), "change": STEP_NAMES[(a, b)]}
             for a, b in STEPS if a in names and b in names}
    for group in (per_rung, steps):
        for e in group.values():
            e["verdict"] = verdicts.decide(test, e["ci_low"], e["ci_high"], margin)

    def level(key: str) -> Dict[str, dict]:
        return {n: dict(zip(("mean", "ci_low", "ci_high"),
                            common.mean_ci(list(per_seed(results, n, key).values()))))
                for n in names}

    reference = {"test_accuracy": level("test_accuracy"), "init_accuracy": level("init_accuracy"),
                 "init_accuracy_n": results.get("init_accuracy_n"), "chance": 0.1,
                 "params": results.get("params", {})}
    n_seeds = len(per_rung[head]["seeds"])
    h = per_rung[head]
    return [Claim(
        key="same-model",
        claim="Stack-of-FFN, ResMLP and Mixer are the same model: they perform alike",
        who="Su Jianlin (on MLP-Mixer, ResMLP and 'A Stack of Feed-Forward Layers', 2021)",
        experiment=f"test accuracy of converged full-data models of one recipe, {n_seeds} seeds: "
                   f"the ladder from Mixer to ResMLP in Mixer's body, one change per rung ((b) "
                   f"linear token mixing, (c) Affine for LayerNorm, (d) LayerScale = ResMLP's "
                   f"block; at Mixer's swept learning rate), the zoo ResMLP and the zoo stack of "
                   f"feed-forward layers at their own; each beside its same-seed initialisation "
                   f"and chance; parameter counts within +-25% of Mixer's (a check)",
        figure=f"{NAME}.pdf",
        effect=f"model minus Mixer test accuracy, paired by seed ({round(100 * conf)}% interval); "
               f"the claim's row is the least equivalent of ResMLP and FF-only "
               f"(intersection-union: here {LABELS[head]}); per_family: every rung",
        estimate=h["effect"], low=h["ci_low"], high=h["ci_high"], per_family=per_family,
        reference=reference,
        details={"claim_row": head, "per_rung": per_rung, "steps": steps,
                 "learning_rate": "rungs (b)-(d) at Mixer's swept learning rate (the same body); "
                                  "ResMLP and FF-only at their own"})]


def checks(results: Mapping) -> List[Check]:
    """Every rung's parameter count lies within +-25% of Mixer's; rung (d) is the zoo ResMLP's
    architecture (its trained weights in the zoo ResMLP give the same logits)."""
    out = []
    params = results.get("params", {})
    if params:
        ratios = {n: p["ratio_to_mixer"] for n, p in params.items()}
        worst = max(ratios, key=lambda n: abs(ratios[n] - 1))
        out.append(Check(key="same_model_parameter_band",
                         what="every rung's parameter count lies within +-25% of Mixer's "
                              "(max_abs_error: the largest |count / Mixer's - 1|)",
                         max_abs_error=abs(ratios[worst] - 1), tolerance=PARAMETER_BAND,
                         details={"counts": {n: p["count"] for n, p in params.items()},
                                  "ratio_to_mixer": ratios, "worst": worst}))
    errors = results.get("resmlp_architecture_error", {})
    if errors:
        out.append(Check(key="same_model_layerscale_rung_is_resmlp",
                         what="rung (d) (linear R + Affine + LayerScale in Mixer's body) is the zoo "
                              "ResMLP's architecture: its trained weights loaded into the zoo ResMLP "
                              "give the same logits (max abs difference over test images and seeds)",
                         max_abs_error=float(max(errors.values())), tolerance=ARCHITECTURE_TOLERANCE,
                         details={"per_seed": errors, "images": results.get("check_images")}))
    return out


# ----------------------------------------------------------------------------- figure


def _tick(name: str) -> str:
    return f"({LETTERS[name]}) {LABELS[name]}"


def _forest(ax, entries: Sequence[Tuple[str, dict, str]], margin: float, xlabel: str, title: str) -> None:
    for i, (label, e, color) in enumerate(entries):
        y = len(entries) - 1 - i
        ax.errorbar(e["effect"], y, xerr=[[e["effect"] - e["ci_low"]], [e["ci_high"] - e["effect"]]],
                    fmt="o", color=color, capsize=3)
        ax.annotate(e["verdict"], xy=(0.99, y + 0.15), xycoords=("axes fraction", "data"), ha="right",
                    fontsize=7)
    ax.axvspan(-margin, margin, color="0.85", zorder=0, label="+-margin (equivalence)")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(entries)), [e[0] for e in reversed(entries)], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    names = [n for n in RUNGS if per_seed(results, n)]
    params = results.get("params", {})
    claim = (results.get("claims") or [c.as_result() for c in claims(results)])[0]
    details, margin = claim["details"], claim["margin"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.3, 1, 1]})

    ax = axes[0]
    for i, n in enumerate(names):
        acc = list(per_seed(results, n).values())
        m, lo, hi = common.mean_ci(acc)
        ax.bar(i, m, color=COLORS[n], yerr=[[m - lo], [hi - m]], capsize=3)
        ax.plot([i] * len(acc), acc, "k.", ms=3)
        ax.plot(i, np.mean(list(per_seed(results, n, "init_accuracy").values())), "kx", ms=6)
        if n in params:
            ax.text(i, 0.02, f"{params[n]['count'] / 1e3:.0f}k\n{100 * (params[n]['ratio_to_mixer'] - 1):+.0f}%",
                    ha="center", fontsize=6.5, color="w")
    ax.plot([], [], "kx", label="initialisation (same seed)")
    ax.axhline(0.1, color="k", ls=":", lw=0.8, label="chance")
    accs = [v for n in names for v in per_seed(results, n).values()]
    ax.set_ylim(0, min(1.0, max(accs) + 0.1))
    ax.set_xticks(range(len(names)), [_tick(n) for n in names], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (mean, 95% CI over seeds; dots: seeds)")
    ax.set_title("The ladder (bar foot: parameters, vs Mixer)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")

    pct = round(100 * claim["confidence"])
    _forest(axes[1], [(_tick(n) + (" *" if n == details["claim_row"] else ""), details["per_rung"][n],
                       COLORS[n]) for n in names if n != "mixer"], margin,
            f"model minus Mixer, test accuracy (paired by seed, {pct}% CI)",
            f"Each rung vs Mixer (* the claim's row: {claim['verdict']})")
    _forest(axes[2], [(f"{STEP_NAMES[tuple(k.split(' - '))]}\n({LETTERS[k.split(' - ')[0]]}) - "
                       f"({LETTERS[k.split(' - ')[1]]})", e, COLORS[k.split(" - ")[0]])
                      for k, e in details["steps"].items()], margin,
            f"rung minus the rung before, test accuracy ({pct}% CI)", "One change at a time")
    fig.suptitle(f"Stack-of-FFN, ResMLP and Mixer: the same model? (converged full-data models, "
                 f"seeds: {len(per_seed(results, 'mixer'))})", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
