"""Do MLPs need more data than architectures with inductive bias?

Every zoo family trained to convergence under the one recipe (``analyses/recipe.json``)
on nested Fashion-MNIST subsets of 1k, 3k and 10k images and on the full training pool
(55k: the 60k training set less the 5k validation split). The step budget grows with the
data by the recipe's rule, ``steps(n) = max(min_steps, ceil(epochs * n / batch_size))``
(1500, 1500, 1500 and 5157 steps), the same for every family; the learning rate is each
family's choice from the sweep. Seeds: the recipe's ``plans.data-efficiency`` (3 at each
size) and ``plans.full`` (3). The models are cells of ``python -m
analyses.cells`` (``make cells-data-efficiency``, ``make cells-full``); this script trains
nothing at full scale and reads only the cells' cards (committed under
``analyses/models``), so it reruns without the data-efficiency weights.

    python -m analyses.data_efficiency            # full scale (see --help)
    python -m analyses.data_efficiency --quick    # the quick recipe's cells (seconds each)

Results: ``models`` (one row per cell), per family and size the accuracy and the gap to
the CNN with 95% intervals over seeds, every cell's validation curve and a plateau
measure (validation accuracy gained over the last 20% of the steps), and the claim
``mlps_need_more_data`` with each family's effect (ViT included).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from analyses import common, converged, verdicts
from analyses.common import COLORS, LABELS, Claim

NAME = "data_efficiency"
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES)},
    "quick": {"quick": True, "families": ["cnn", "mixer", "vit"]},
}
PLATEAU_FRACTION = 0.2   # the plateau measure: validation accuracy gained over the last 20% of steps


# ----------------------------------------------------------------------------- plan


def plan(quick: bool) -> Dict[int, List[int]]:
    """``{n_train: seeds}``: the recipe's data-efficiency sizes and the full pool (``plans.full``)."""
    recipe, _ = converged.recipe_and_store(quick)
    sizes = {int(n): sorted(int(s) for s in seeds)
             for n, seeds in recipe.plans["data-efficiency"]["sizes"].items()}
    sizes[recipe.full_n] = sorted(int(s) for s in recipe.plans["full"]["seeds"])
    return dict(sorted(sizes.items()))


def plateau(curve: Sequence[Sequence[float]], steps: int, *, fraction: float = PLATEAU_FRACTION
            ) -> Dict[str, float]:
    """Validation accuracy gained over the last ``fraction`` of the steps and over the
    ``fraction`` before it (linear interpolation between evaluations): a plateaued curve
    has a last gain near 0, smaller than the previous one."""
    xs = np.array([p[0] for p in curve], dtype=float)
    ys = np.array([p[1] for p in curve], dtype=float)
    at = {f: float(np.interp(f * steps, xs, ys)) for f in (1.0, 1.0 - fraction, 1.0 - 2 * fraction)}
    return {"last": at[1.0] - at[1.0 - fraction],
            "previous": at[1.0 - fraction] - at[1.0 - 2 * fraction], "final": float(ys[-1])}


# ----------------------------------------------------------------------------- compute


def _initial_accuracy(families: Sequence[str], seeds: Sequence[int], quick: bool) -> Dict[str, dict]:
    """``{family: {seed: accuracy}}`` of the same-seed random initialisation on the recipe's
    test subset (1000 images)."""
    from probe import zoo
    from analyses.cells import accuracy, test_sets
    recipe, _ = converged.recipe_and_store(quick)
    _, (x, y) = test_sets(recipe)
    return {f: {str(s): accuracy(zoo.build(f, seed=s).eval(), x, y) for s in seeds} for f in families}


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from probe import zoo
    from tqdm import tqdm
    quick = bool(scale["quick"])
    fams = list(scale["families"])
    if "cnn" not in fams:
        raise ValueError("data_efficiency compares every family with the CNN: include 'cnn'")
    recipe, store = converged.recipe_and_store(quick)
    sizes = plan(quick)
    cells = [c for n, seeds in sizes.items()
             for c in converged.cells_for(fams, seeds, n_train=n, quick=quick)]
    if not quick:
        missing = [c for c in cells if not store.is_done(c, need_weights=False)]
        if missing:
            plans = sorted({"full" if c.is_full else "data-efficiency" for c in missing})
            raise ValueError(f"{len(missing)} of {len(cells)} cells are not trained yet "
                             f"({', '.join(c.key for c in missing[:3])}{', ...' if len(missing) > 3 else ''}"
                             f"); run {' and '.join(f'`make cells-{p}`' for p in plans)} first")
    models, curves = [], []
    for cell in tqdm(cells, desc="data efficiency", unit="model", disable=not progress):
        if quick and not store.is_done(cell, need_weights=False):
            converged.load(cell, quick=True)          # trains the missing quick cell
        card = store.card(cell, need_weights=False)  # the numbers are on the committed cards
        models.append(converged.model_row(card, store.weights_path(cell)))
        curves.append({"family": cell.family, "n_train": cell.n_train, "seed": cell.seed,
                       "steps": card["steps"], "val_curve": card["val_curve"],
                       "plateau": plateau(card["val_curve"], card["steps"])})
    results = {
        "sizes": list(sizes), "seeds": {str(n): s for n, s in sizes.items()},
        "steps": {str(n): recipe.steps(n) for n in sizes},
        "step_rule": {"rule": "max(min_steps, ceil(epochs * n / batch_size))",
                      **recipe.training["steps"], "batch_size": recipe.batch_size},
        "recipe_hash": recipe.hash, "full_n": recipe.full_n,
        "models": models, "curves": curves,
        "initialisation": _initial_accuracy(fams, sizes[recipe.full_n], quick),
        "reference": {"chance": 0.1,
                      "shipped_test_accuracy": {f: zoo.card(f)["test_accuracy"] for f in fams}},
    }
    results["summary"] = summary(results)
    return results


# ----------------------------------------------------------------------------- tables


def table(results: Mapping) -> Dict[str, Dict[int, Dict[int, float]]]:
    """``{family: {n_train: {seed: test accuracy}}}`` from the ``models`` rows."""
    out: dict = {}
    for r in results["models"]:
        out.setdefault(r["family"], {}).setdefault(int(r["n_train"]), {})[int(r["seed"])] = \
            float(r["test_accuracy"])
    return out


def _sizes(t: Mapping) -> List[int]:
    return sorted({n for by_n in t.values() for n in by_n})


def _interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    m, lo, hi = common.mean_ci(values, confidence=confidence)
    return {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(values)}


def gaps(t: Mapping, family: str, n: int) -> Dict[int, float]:
    """``{seed: CNN accuracy - family accuracy}`` at ``n`` images, over the seeds both have."""
    cnn, fam = t["cnn"].get(n, {}), t[family].get(n, {})
    return {s: cnn[s] - fam[s] for s in sorted(set(cnn) & set(fam))}


def summary(results: Mapping) -> dict:
    """Per family: accuracy per size, gap to the CNN per size (95% intervals over seeds) and
    the plateau of the validation curves per size (gain over the last 20% of the steps)."""
    t = table(results)
    out: dict = {"accuracy": {}, "gap_to_cnn": {}, "plateau": {}}
    for f, by_n in t.items():
        out["accuracy"][f] = {str(n): _interval(list(v.values())) for n, v in sorted(by_n.items())}
        if f != "cnn":
            out["gap_to_cnn"][f] = {str(n): _interval(list(gaps(t, f, n).values()))
                                    for n in sorted(by_n) if gaps(t, f, n)}
    for f in t:
        by_n: dict = {}
        for c in results.get("curves", []):
            if c["family"] == f:
                by_n.setdefault(int(c["n_train"]), []).append(c["plateau"])
        out["plateau"][f] = {str(n): {"gain_last_20pct": _interval([p["last"] for p in ps]),
                                      "gain_previous_20pct": _interval([p["previous"] for p in ps]),
                                      "final_val_accuracy": _interval([p["final"] for p in ps])}
                             for n, ps in sorted(by_n.items())}
    return out


# ----------------------------------------------------------------------------- claims


def effects(results: Mapping) -> Tuple[Dict[str, List[float]], List[int], int, int]:
    """``(effects, seeds, smallest, largest)``: per non-CNN family, per paired seed, (CNN -
    family accuracy) at the smallest size minus the same gap at the largest (> 0: the
    family's deficit shrinks with data). Seeds are those trained at both sizes for every
    family (the same seeds for every family, as :func:`common.group_effect` needs)."""
    t = table(results)
    sizes = _sizes(t)
    small, large = sizes[0], sizes[-1]
    fams = [f for f in t if f != "cnn"]
    seeds = sorted(set.intersection(*(set(t[f].get(n, {})) for f in t for n in (small, large))))
    if not seeds:
        raise ValueError(f"no seed was trained for every family at both {small} and {large} images")
    return ({f: [gaps(t, f, small)[s] - gaps(t, f, large)[s] for s in seeds] for f in fams},
            seeds, small, large)


def claims(results: Mapping) -> List[Claim]:
    t = table(results)
    eff, seeds, small, large = effects(results)
    mlps = [f for f in common.MLP_FAMILIES if f in eff]
    if not mlps:
        raise ValueError("the results hold no MLP family (mixer, resmlp, gmlp, fnet)")
    confidence = verdicts.CONFIDENCE[verdicts.margin_of("mlps_need_more_data")["test"]]
    est, lo, hi, per_family = common.group_effect(eff, mlps, confidence=confidence)
    # sensitivity to the pairing: every seed of each size, unpaired (Welch) on the group's gap
    group_gap = {n: [float(np.mean([gaps(t, f, n)[s] for f in mlps])) for s in sorted(t["cnn"][n])
                     if all(s in gaps(t, f, n) for f in mlps)] for n in (small, large)}
    unpaired = common.diff_ci(group_gap[small], group_gap[large], confidence=confidence)
    sizes = _sizes(t)
    steps = results.get("steps", {})
    seeds_per_size = {n: len(t["cnn"][n]) for n in sizes}
    extra = sorted(set(t["cnn"][small]) - set(seeds))
    s = results.get("summary") or summary(results)
    details = {
        "paired_seeds": seeds,
        "unpaired_all_seeds": {"effect": unpaired[0], "ci_low": unpaired[1], "ci_high": unpaired[2],
                               "seeds": {str(n): len(v) for n, v in group_gap.items()}},
        "group_gap_to_cnn": {str(n): _interval(v, confidence) for n, v in group_gap.items()},
        "gap_to_cnn": s["gap_to_cnn"],
        "steps": steps,
    }
    reference = {"initialisation_accuracy": {f: _interval(list(v.values())) for f, v in
                                             results.get("initialisation", {}).items()},
                 "chance": results.get("reference", {}).get("chance"),
                 "shipped_test_accuracy": results.get("reference", {}).get("shipped_test_accuracy"),
                 "accuracy": s["accuracy"]}
    pairing = (f"paired by seed over the seeds trained at both sizes ({', '.join(map(str, seeds))})"
               + (f"; the extra seeds at {small} ({', '.join(map(str, extra))}) enter the per-size "
                  f"gaps and an unpaired interval in the details" if extra else ""))
    return [Claim(
        key="mlps_need_more_data",
        claim="MLPs lack inductive bias and need more data than CNNs to reach the same accuracy",
        who="Tolstikhin et al. (MLP-Mixer) and Touvron et al. (ResMLP) report MLPs lagging "
            "without large pre-training; Liu et al. (gMLP) and Zhao et al. attribute it to "
            "missing inductive bias",
        experiment=f"test accuracy of {', '.join(LABELS[f] for f in t)} trained to convergence "
                   f"under one recipe on {', '.join(str(n) for n in sizes)} Fashion-MNIST images "
                   f"({', '.join(str(steps.get(str(n), '?')) for n in sizes)} steps, the same for "
                   f"every family), seeds per size "
                   f"{', '.join(f'{n}: {k}' for n, k in seeds_per_size.items())}",
        figure="data_efficiency.pdf",
        effect=f"(CNN - family accuracy) at {small} images minus the same gap at {large} images, "
               f"{pairing}; MLP group = mean over {', '.join(LABELS[f] for f in mlps)} per seed. "
               f"> 0: the family's deficit to the CNN shrinks with more data",
        estimate=est, low=lo, high=hi, details=details, per_family=per_family, reference=reference)]


# ----------------------------------------------------------------------------- figures


def _size_label(n: int, steps: Mapping) -> str:
    name = f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)
    return f"{name}\n{steps[str(n)]} steps" if str(n) in steps else name


def plot(results: dict, paths: common.Paths) -> List[Path]:
    return [plot_data_efficiency(results, paths), plot_training_curves(results, paths)]


def plot_data_efficiency(results: dict, paths: common.Paths) -> Path:
    """Accuracy vs training images per family, the gap to the CNN per size, the claim's effects."""
    import matplotlib.pyplot as plt
    s = results.get("summary") or summary(results)
    t = table(results)
    sizes = _sizes(t)
    steps = results.get("steps", {})
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.9),
                                       gridspec_kw={"width_ratios": [1.1, 1.1, 0.8]})
    for f in t:
        ns = sorted(t[f])
        acc = [s["accuracy"][f][str(n)] for n in ns]
        ls = "--" if f not in common.MLP_FAMILIES else "-"
        ax.plot(ns, [a["effect"] for a in acc], ls, marker="o", ms=3, color=COLORS[f], label=LABELS[f])
        ax.fill_between(ns, [a["ci_low"] for a in acc], [a["ci_high"] for a in acc], color=COLORS[f],
                        alpha=0.15, lw=0)
        if f in s["gap_to_cnn"]:
            g = [s["gap_to_cnn"][f][str(n)] for n in ns if str(n) in s["gap_to_cnn"][f]]
            gn = [n for n in ns if str(n) in s["gap_to_cnn"][f]]
            m = np.array([x["effect"] for x in g])
            ax2.errorbar(gn, m, yerr=[m - [x["ci_low"] for x in g], [x["ci_high"] for x in g] - m],
                         fmt=ls, marker="o", ms=3, capsize=2, color=COLORS[f], label=LABELS[f])
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xticks(sizes)
        a.set_xticklabels([_size_label(n, steps) for n in sizes], fontsize=7)
        a.minorticks_off()
        a.set_xlabel("training images (Fashion-MNIST), optimiser steps")
    ax.set_ylabel("test accuracy (mean, 95% CI over seeds)")
    ax.set_title("Accuracy vs data, each trained to convergence")
    ax.legend(fontsize=7, ncol=2)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("CNN accuracy minus the family's (paired by seed)")
    ax2.set_title("Gap to the CNN (> 0: CNN better)")
    claim = next((c for c in results.get("claims", []) if c["id"] == "mlps_need_more_data"), None)
    if claim is not None:
        rows = [(LABELS[f], v, COLORS[f]) for f, v in claim["per_family"].items()]
        rows.append(("MLP group", {"effect": claim["effect"], "ci_low": claim["ci_low"],
                                   "ci_high": claim["ci_high"]}, "k"))
        for i, (label, v, color) in enumerate(rows):
            ax3.errorbar(v["effect"], i, xerr=[[v["effect"] - v["ci_low"]], [v["ci_high"] - v["effect"]]],
                         fmt="o" if label != "MLP group" else "D", color=color, capsize=3)
        ax3.set_yticks(range(len(rows)))
        ax3.set_yticklabels([r[0] for r in rows], fontsize=8)
        ax3.axvspan(-claim["margin"], claim["margin"], color="0.85", lw=0, label="+-margin")
        ax3.axvline(0, color="k", lw=0.8)
        ax3.set_xlabel("gap at smallest minus gap at full size")
        ax3.set_title(f"Deficit shrinks with data? ({claim['verdict']})", fontsize=9)
        ax3.legend(fontsize=7, loc="lower right")
    else:
        ax3.set_axis_off()
    fig.tight_layout()
    return common.savefig(fig, paths, "data_efficiency")


def plot_training_curves(results: dict, paths: common.Paths) -> Path:
    """Validation curves of the full-data cells, one panel per family (last 20% shaded)."""
    import matplotlib.pyplot as plt
    full = max(int(c["n_train"]) for c in results["curves"])
    curves = [c for c in results["curves"] if int(c["n_train"]) == full]
    fams = [f for f in common.FAMILIES if any(c["family"] == f for c in curves)]
    cols = min(3, len(fams))
    rows = -(-len(fams) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    s = results.get("summary") or summary(results)
    for ax, f in zip(axes.flat, fams):
        mine = sorted((c for c in curves if c["family"] == f), key=lambda c: c["seed"])
        steps = max(c["steps"] for c in mine)
        zoom = ax.inset_axes([0.42, 0.1, 0.55, 0.5])      # the last 40% of the steps, own y scale
        for c in mine:
            xs, ys = zip(*c["val_curve"])
            for a in (ax, zoom):
                a.plot(xs, ys, marker=".", ms=3, lw=1, color=COLORS[f], alpha=0.5 + 0.5 / (1 + c["seed"]))
        tail = [y for c in mine for x, y in c["val_curve"] if x >= (1 - 2 * PLATEAU_FRACTION) * steps]
        zoom.set_xlim((1 - 2 * PLATEAU_FRACTION) * steps - 1, steps + 1)
        if tail:
            pad = max(0.002, 0.1 * (max(tail) - min(tail)))
            zoom.set_ylim(min(tail) - pad, max(tail) + pad)
        zoom.tick_params(labelsize=6)
        for a in (ax, zoom):
            a.axvspan((1 - PLATEAU_FRACTION) * steps, steps, color="0.9", lw=0)
        gain = s["plateau"][f][str(full)]["gain_last_20pct"]
        ax.set_title(f"{LABELS[f]}: last 20% of steps {gain['effect'] * 100:+.2f} points", fontsize=8)
        ax.set_xlabel("optimiser step")
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy")
    for ax in list(axes.flat)[len(fams):]:
        ax.set_axis_off()
    fig.suptitle(f"Validation accuracy while training on {full} images, one line per seed "
                 f"(evaluated every {_eval_every(curves)} steps; shaded: last 20% of the steps; "
                 f"inset: last 40%)", fontsize=9)
    fig.tight_layout()
    return common.savefig(fig, paths, "training_curves")


def _eval_every(curves: Sequence[Mapping]) -> int:
    xs = [p[0] for p in curves[0]["val_curve"]] if curves else []
    return int(xs[1] - xs[0]) if len(xs) > 1 else int(xs[0]) if xs else 0


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=lambda results: [])


if __name__ == "__main__":
    sys.exit(main())
