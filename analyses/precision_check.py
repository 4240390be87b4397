"""Does training in bf16 autocast reach the accuracy of fp32 training? A protocol check.

The recipe (``analyses/recipe.json``) trains every family with bf16 autocast on the CPU
(about twice as fast here) and evaluates in fp32. The cells of the ``precision-check``
plan train one family (the CNN, the fastest) on the same images and seeds twice: by the
recipe and in fp32 (``plans.precision-check.training_overrides``); everything else is
equal. The check compares their test accuracies paired by seed: the 90% interval of
the mean difference (bf16 - fp32) must lie within +-``tolerance`` (one accuracy point,
the margin of every accuracy claim of the report), i.e. the two agree within seed noise.
It is a check of the protocol, not evidence for a claim of the debate.

    make cells-precision                         # trains the cells (resumable)
    python -m analyses.precision_check           # reads their cards (seconds)
    python -m analyses.precision_check --quick   # 20-step cells, into runs/analyses_quick/
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import numpy as np

from analyses import common, converged
from analyses.cells import Cell
from analyses.cells.plan import chosen_lrs, precision_cells
from analyses.common import Check, Claim

NAME = "precision_check"
SCALES = {"full": {"quick": False, "tolerance": 0.01}, "quick": {"quick": True, "tolerance": 0.01}}


def _cells(quick: bool) -> List[Cell]:
    recipe, store = converged.recipe_and_store(quick)
    family = recipe.plans["precision-check"]["family"]
    if quick:
        lrs = converged.lrs([family], quick=True)
        spec = {"n_train": int(recipe.lr_sweep["n_train"]), "seeds": [0, 1]}
        # the quick recipe trains in fp32; its bf16 arm is put back here
        recipe = recipe.variant({"plans": {"precision-check": spec},
                                 "training": {"precision": {"train_autocast": "bfloat16"}}})
    else:
        lrs = chosen_lrs(recipe=recipe, store=store, families=[family])
    return precision_cells(recipe, lrs)


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    quick = bool(scale["quick"])
    _, store = converged.recipe_and_store(quick)
    cells = _cells(quick)
    missing = [c for c in cells if not store.is_done(c, need_weights=False)]
    if missing and not quick:
        raise ValueError(f"{len(missing)} precision-check cell(s) not trained yet; run `make "
                         f"cells-precision` (python -m analyses.cells run --plan precision-check)")
    models = []
    for cell in cells:
        if not store.is_done(cell, need_weights=False):
            converged.load(cell, quick=True, progress=progress)      # quick: trains it
        card = store.card(cell, need_weights=False)
        row = converged.model_row(card, store.weights_path(cell))
        row["train_autocast"] = cell.recipe.training["precision"]["train_autocast"]
        row["train_time_s"] = card["train_time_s"]
        models.append(row)
    return {"models": models, "family": cells[0].family, "n_train": cells[0].n_train}


def _pairs(results: dict):
    by_seed: dict = {}
    for m in results["models"]:
        by_seed.setdefault(m["seed"], {})["bf16" if m["train_autocast"] else "fp32"] = m
    seeds = sorted(s for s, d in by_seed.items() if {"bf16", "fp32"} <= set(d))
    return seeds, [by_seed[s]["bf16"] for s in seeds], [by_seed[s]["fp32"] for s in seeds]


def claims(results: dict) -> List[Claim]:
    return []


def checks(results: dict) -> List[Check]:
    seeds, bf16, fp32 = _pairs(results)
    diff = [a["test_accuracy"] - b["test_accuracy"] for a, b in zip(bf16, fp32)]
    mean, low, high = common.mean_ci(diff, confidence=0.90)
    return [Check(
        key="bf16_training_matches_fp32",
        what=f"{common.LABELS[results['family']]} on {results['n_train']} images, {len(seeds)} "
             f"seeds: test accuracy of bf16-autocast training minus fp32 training, the larger "
             f"end of its 90% interval over seeds (tolerance: one accuracy point)",
        max_abs_error=float(max(abs(low), abs(high))), tolerance=results["settings"]["tolerance"],
        details={"mean_difference": mean, "ci_low": low, "ci_high": high, "seeds": seeds,
                 "bf16": [m["test_accuracy"] for m in bf16],
                 "fp32": [m["test_accuracy"] for m in fp32],
                 "time_ratio_fp32_over_bf16": _time_ratio(bf16, fp32)})]


def _time_ratio(bf16, fp32):
    """Mean fp32 / bf16 training time (wall, under whatever else the machine ran), or None."""
    ratios = [b["train_time_s"] / a["train_time_s"] for a, b in zip(bf16, fp32)
              if a.get("train_time_s") and b.get("train_time_s")]
    return round(float(np.mean(ratios)), 2) if ratios else None


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    seeds, bf16, fp32 = _pairs(results)
    (check,) = checks(results)
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for s, a, b in zip(seeds, bf16, fp32):
        ax.plot([0, 1], [b["test_accuracy"], a["test_accuracy"]], "o-", color="0.4", lw=1)
        ax.text(1.04, a["test_accuracy"], f"seed {s}", fontsize=7, va="center")
    ax.set_xticks([0, 1], ["fp32 training", "bf16 autocast"])
    ax.set_xlim(-0.3, 1.4)
    ax.set_ylabel("test accuracy (fp32 evaluation)")
    d = check.details
    ax.set_title(f"{common.LABELS[results['family']]}, {results['n_train']} images: bf16 - fp32 = "
                 f"{d['mean_difference']:+.4f}\n90% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], "
                 f"tolerance +-{check.tolerance:g}: {'holds' if check.holds else 'FAILS'}",
                 fontsize=8)
    fig.tight_layout()
    return [common.savefig(fig, paths, "precision_check")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv,
                       claims=claims, checks=checks)


if __name__ == "__main__":
    sys.exit(main())
