"""Is Mixer a pure MLP? Patches against the flattened image: accuracy, data efficiency, shifts.

The claim (LeCun in the 2021 debate: "Mixer is not a pure MLP; the per-patch MLP is a 16x16
stride-16 convolution, which brings inductive bias; a real MLP would flatten the input") is
measured on three models trained under the one recipe (``analyses/recipe.json``), each at its
family's swept learning rate:

- ``mlp``: the zoo's pure MLP on the flattened 28x28 image (784-512-256-128, no patches:
  ``probe/models/mlp.py``), with its own learning-rate sweep;
- ``mixer``: the zoo Mixer, 4-px patches (7x7 tokens);
- ``mixer_p7``: the same Mixer with 7-px patches (4x4 tokens; ``analyses.common.BUILDER_VARIANTS``),
  the coarser patch grid, at Mixer's swept learning rate.

Each is trained on 1,000 and 10,000 images and on the full pool (55,000), seeds 0, 1, 2 (the
recipe's ``pure-mlp`` plan for ``mlp`` and ``mixer_p7``; the zoo Mixer's cells are those of
the ``data-efficiency`` and ``full`` plans). Measured: test accuracy per size (from the cells'
cards, beside the same seed at initialisation), and on the full-data models the prediction
consistency under 1-4 px circular and zero-padded shifts (:func:`analyses.equivariance.measure`,
the metric of the ``equivariance`` claim), beside initialisation.

The claim's effect, fixed before any result: the zoo Mixer's (patch 4) test accuracy minus the
pure MLP's on 1,000 images, paired by seed (> 0: the patch structure helps where data are
scarce, the inductive bias the claim speaks of). Beside it: the same for ``mixer_p7``
(``per_family``), the gap at every size and its shrinkage from 1k to the full pool (does the
patch structure help most with little data?), and the shift consistency of each Mixer minus
the MLP's.

    python -m analyses.pure_mlp            # full scale (see --help)
    python -m analyses.pure_mlp --quick    # seconds, the quick recipe's cells

Cells: ``python -m analyses.cells run --plan sweep --family mlp`` (the MLP's sweep), then
``python -m analyses.cells run --plan pure-mlp``; the zoo Mixer's: ``make cells-data-efficiency``
and ``make cells-full``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np

from analyses import common, converged, equivariance, evaluation
from analyses.common import Claim
from analyses.verdicts import margin_of

NAME = "pure_mlp"
CLAIM = "pure-mlp"
PLAN = "pure-mlp"
MLP, MIXER = "mlp", "mixer"
NAMES = {MLP: "pure MLP (flattened image)", MIXER: "Mixer, patch 4 (7x7 tokens)",
         "mixer_p7": "Mixer, patch 7 (4x4 tokens)"}
COLORS = {MLP: common.COLORS[MLP], MIXER: common.COLORS[MIXER], "mixer_p7": "#17becf"}
SCALES = {
    "full": {"quick": False, "shift_n": 2000},
    "quick": {"quick": True, "shift_n": 128},
}


# ----------------------------------------------------------------------------- compute


def _plan(quick: bool):
    """``(recipe, store, families of the plan, sizes, seeds)`` of the ``pure-mlp`` plan."""
    from analyses.cells.groups import group_sizes
    recipe, store = converged.recipe_and_store(quick)
    if PLAN not in recipe.plans:
        raise ValueError(f"recipe {recipe.hash} has no plans.{PLAN}; see analyses/recipe.json")
    spec = recipe.plans[PLAN]
    if MLP not in spec["families"]:
        raise ValueError(f"plans.{PLAN}.families must include {MLP!r}, the model every Mixer "
                         f"is compared with")
    return recipe, store, list(spec["families"]), group_sizes(recipe, spec), \
        sorted(int(s) for s in spec["seeds"])


def _sweep_or_raise(recipe, store) -> None:
    from analyses.cells.plan import sweep_results
    if MLP not in sweep_results(recipe=recipe, store=store, families=[MLP]):
        raise ValueError(f"the learning-rate sweep of {MLP} is not finished; run `python -m "
                         f"analyses.cells run --plan sweep --family {MLP}`, then `python -m "
                         f"analyses.cells run --plan {PLAN}` first")


def _mixer_rows(sizes: Sequence[int], seeds: Sequence[int], quick: bool, progress: bool):
    """``[(model_row, cell)]`` of the zoo Mixer at ``sizes`` x ``seeds`` from the cards (the
    data-efficiency and full plans' cells); quick cells are trained if missing."""
    _, store = converged.recipe_and_store(quick)
    cells = [c for n in sizes for c in converged.cells_for([MIXER], seeds, n_train=n, quick=quick)]
    missing = [c for c in cells if not store.is_done(c, need_weights=False)]
    if missing and not quick:
        plans = sorted({"full" if c.is_full else "data-efficiency" for c in missing})
        raise ValueError(f"{len(missing)} Mixer model(s) not trained yet ({missing[0].key}"
                         f"{', ...' if len(missing) > 1 else ''}); run "
                         f"{' and '.join(f'`make cells-{p}`' for p in plans)} first")
    out = []
    for cell in cells:
        if not store.is_done(cell, need_weights=False):
            converged.load(cell, quick=True, progress=progress)      # trains the quick cell
        card = store.card(cell, need_weights=False)
        out.append((converged.model_row(card, store.weights_path(cell)), cell))
    return out


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from analyses.cells import accuracy, test_sets
    from analyses.cells.recipe import to_float
    import torch
    quick = bool(scale["quick"])
    recipe, store, fams, sizes, seeds = _plan(quick)
    if not quick:
        _sweep_or_raise(recipe, store)
    planned = converged.plan_rows(PLAN, quick=quick, progress=progress)
    mixer = _mixer_rows(sizes, seeds, quick, progress)
    models = [r for r, _ in mixer] + [r for r, _ in planned]
    names = [MIXER] + fams
    (xt, yt), (sub_x, sub_y) = test_sets(recipe)
    init_accuracy = {n: {str(s): round(accuracy(common.build(n, seed=s).eval(), sub_x, sub_y), 4)
                         for s in seeds} for n in names}
    idx = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))[:int(scale["shift_n"])]
    x, y = to_float(xt)[idx], yt[idx]
    shift = []
    full_cells = [c for _, c in mixer + planned if c.is_full]
    for cell in tqdm(full_cells, desc="shifts", unit="model", disable=not progress):
        model, row = converged.load(cell, quick=quick, progress=progress)
        init = common.build(cell.family, seed=cell.seed).eval()
        shift.append({"family": cell.family, "seed": cell.seed, **equivariance.measure(model, x, y),
                      "initialisation": equivariance.measure(init, x, y)})
    return {"models": models, "families": names, "sizes": sizes, "seeds": seeds,
            "full_n": recipe.full_n, "shift": shift, "shift_n": len(y),
            "initialisation_accuracy": init_accuracy, "init_accuracy_n": len(sub_y),
            "recipe_hash": recipe.hash,
            "reference": {"chance_accuracy": 0.1, "constant_prediction_consistency": 1.0,
                          "about": "initialisation_accuracy: the same seed untrained, on the "
                                   "recipe's test subset; shift rows carry their initialisation"}}


# ----------------------------------------------------------------------------- claim


def accuracy_table(results: Mapping) -> Dict[str, Dict[int, Dict[int, float]]]:
    """``{family: {n_train: {seed: test accuracy}}}`` from the ``models`` rows."""
    out: dict = {}
    for r in results["models"]:
        out.setdefault(r["family"], {}).setdefault(int(r["n_train"]), {})[int(r["seed"])] = \
            float(r["test_accuracy"])
    return out


def gaps(table: Mapping[str, Mapping[int, Mapping[int, float]]], family: str, n_train: int
         ) -> List[float]:
    """Per seed (ascending): ``family``'s accuracy minus the pure MLP's at ``n_train`` images.

    Raises:
        ValueError: a model or size is missing, or the seeds differ.
    """
    for f in (family, MLP):
        if n_train not in table.get(f, {}):
            raise ValueError(f"no {f!r} models on {n_train} images in the results; {CLAIM} "
                             f"compares every Mixer with the pure MLP at each size")
    mine, ref = table[family][n_train], table[MLP][n_train]
    if sorted(mine) != sorted(ref):
        raise ValueError(f"{family} has seeds {sorted(mine)} on {n_train} images, {MLP} "
                         f"{sorted(ref)}: the models are compared seed by seed")
    return [mine[s] - ref[s] for s in sorted(mine)]


def _interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    m, lo, hi = common.mean_ci(values, confidence=confidence)
    return {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(values)}


def claims(results: Mapping) -> List[Claim]:
    conf = common.CONFIDENCE[margin_of(CLAIM)["test"]]
    table = accuracy_table(results)
    sizes = sorted(int(n) for n in results["sizes"])
    small, full = sizes[0], sizes[-1]
    mixers = [f for f in results["families"] if f != MLP]
    if MIXER not in mixers:
        raise ValueError(f"the results hold no {MIXER!r} models; {CLAIM} compares the zoo Mixer "
                         f"with the pure MLP")
    e, lo, hi = common.mean_ci(gaps(table, MIXER, small), confidence=conf)
    per_family = {f: _interval(gaps(table, f, small), conf) for f in mixers}
    per_size = {f: {str(n): _interval(gaps(table, f, n), conf) for n in sizes} for f in mixers}
    shrink = {f: _interval([a - b for a, b in zip(gaps(table, f, small), gaps(table, f, full))],
                           conf) for f in mixers}
    accuracy = {f: {str(n): _interval(list(by_n[n].values())) for n in sorted(by_n)}
                for f, by_n in table.items()}
    shift = results.get("shift", [])
    consistency, consistency_gap, init_consistency = {}, {}, {}
    if shift:
        rows = evaluation.by_family(shift)
        consistency = {f: _interval([r["consistency"] for r in rs]) for f, rs in rows.items()}
        init_consistency = {f: _interval([r["initialisation"]["consistency"] for r in rs])
                            for f, rs in rows.items()}
        paired = evaluation.paired_by_seed(shift, lambda r: r["consistency"], MLP)
        consistency_gap = {f: _interval(v, conf) for f, v in paired.items()}
    n_seeds = len(gaps(table, MIXER, small))
    return [Claim(
        key=CLAIM,
        claim="Mixer is not a pure MLP: its per-patch MLP (a strided convolution) brings "
              "inductive bias that a pure MLP on the flattened image lacks",
        who="Yann LeCun in the 2021 MLP-Mixer debate ('a real MLP would flatten the input; the "
            "per-patch MLP is a 16x16 stride-16 convolution')",
        experiment=f"the zoo's pure MLP (784-512-256-128 on the flattened image), Mixer with "
                   f"4-px patches and Mixer with 7-px patches, one recipe, each at its swept "
                   f"learning rate, trained on {', '.join(f'{n:,}' for n in sizes)} images, "
                   f"{n_seeds} seeds; test accuracy beside the same seed at initialisation, and "
                   f"prediction consistency under 1-4 px shifts of the full-data models "
                   f"({results.get('shift_n', '?')} test images)",
        figure=f"{NAME}.pdf",
        effect=f"Mixer (patch 4) test accuracy minus the pure MLP's on {small:,} images, paired "
               f"by seed (> 0: the patch structure helps where data are scarce); per_family: "
               f"each Mixer's gap on {small:,} images",
        estimate=e, low=lo, high=hi, per_family=per_family,
        reference={"test_accuracy": accuracy,
                   "initialisation_accuracy": results.get("initialisation_accuracy", {}),
                   "shift_consistency": consistency,
                   "shift_consistency_initialisation": init_consistency,
                   "chance_accuracy": 0.1, "constant_prediction_consistency": 1.0},
        details={"gap_per_size": per_size,
                 "gap_shrinkage": shrink,
                 "gap_shrinkage_about": f"gap on {small:,} images minus gap on {full:,}, paired "
                                        f"by seed (> 0: the patches help most with little data)",
                 "shift_consistency_minus_mlp": consistency_gap})]


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    table = accuracy_table(results)
    names = [f for f in results["families"] if f in table]
    sizes = sorted(int(n) for n in results["sizes"])
    claim = next((c for c in results.get("claims", []) if c["id"] == CLAIM), None)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))

    ax = axes[0, 0]
    for f in names:
        vals = np.array([[table[f][n][s] for s in sorted(table[f][n])] for n in sizes])
        ax.plot(sizes, vals.mean(1), "-o", ms=4, color=COLORS.get(f, "0.5"), label=NAMES.get(f, f))
        ax.fill_between(sizes, vals.min(1), vals.max(1), color=COLORS.get(f, "0.5"), alpha=0.15)
        init = np.mean(list(results["initialisation_accuracy"][f].values()))
        ax.axhline(init, color=COLORS.get(f, "0.5"), ls=":", lw=0.9)
    ax.axhline(0.1, color="k", ls=":", lw=0.8, label="chance / dotted: initialisation")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set(xlabel="training images (log)", ylabel="test accuracy (mean; band: range over seeds)",
           title="Accuracy vs training-set size", xticks=sizes)
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.legend(fontsize=7, loc="best")

    ax = axes[0, 1]
    if claim is not None:
        per_size = claim["details"]["gap_per_size"]
        rows = [(f, n, per_size[f][str(n)]) for f in per_size for n in sizes]
        for i, (f, n, v) in enumerate(rows):
            ax.errorbar(v["effect"], i, xerr=[[v["effect"] - v["ci_low"]], [v["ci_high"] - v["effect"]]],
                        fmt="o", color=COLORS.get(f, "0.5"), capsize=3, ms=7 if (f, n) == (MIXER, sizes[0]) else 4)
        ax.set_yticks(range(len(rows)), [f"{NAMES.get(f, f).split(' (')[0]}, {n:,}" for f, n, _ in rows],
                      fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.8)
        ax.axvspan(-claim["margin"], claim["margin"], color="0.88", lw=0,
                   label=f"+-margin {claim['margin']:g}")
        ax.set(xlabel="test accuracy minus the pure MLP's (same seed)",
               title=f"Gap to the pure MLP per model and size ({round(100 * claim['confidence'])}% "
                     f"CI)\nclaim {CLAIM} (big dot: Mixer p4, {sizes[0]:,}): {claim['verdict']}")
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.set_axis_off()

    shift = evaluation.by_family(results.get("shift", []))
    for ax, mode in zip(axes[1], equivariance.MODES):
        for f, rs in shift.items():
            for key, ls, label in (("trained", "-", NAMES.get(f, f)), ("init", ":", None)):
                vals = np.array([[(r if key == "trained" else r["initialisation"])[mode][str(d)]["consistency"]
                                  for d in equivariance.SHIFTS] for r in rs])
                ax.plot(equivariance.SHIFTS, vals.mean(0), ls, marker="o" if ls == "-" else None,
                        ms=4, color=COLORS.get(f, "0.5"), label=label)
        ax.set(xlabel="shift (px)", ylabel="prediction unchanged (share of test images)",
               xticks=list(equivariance.SHIFTS), ylim=(0, 1.02),
               title=f"{mode} shifts, full-data models (dotted: initialisation)")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Pure MLP vs Mixer: patches as inductive bias ({len(results.get('seeds', []))} "
                 f"seed(s); {results.get('shift_n', '?')} test images for shifts)", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims)


if __name__ == "__main__":
    sys.exit(main())
