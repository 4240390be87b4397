"""Does pre-training help every family, and does Mixer's fixed token mixing transfer worse?

Two claims of the debate (Tay et al. 2021, "Are Pre-trained Convolutions Better than
Pre-trained Transformers?": pre-training helps every architecture, not only Transformers; and
the reading "Mixer's parameterised, input-independent attention matrix hurts pre-train +
fine-tune") measured on three plans of the recipe (``analyses/recipe.json``):

- ``pretrain-0to4``: every family on the whole training pool of Fashion-MNIST classes 0-4;
- ``finetune-5to9``: the same family and seed started from that model (every tensor but the
  classification head, which keeps the seeded initialisation) and trained on 1,000 images of
  classes 5-9;
- ``scratch-5to9``: the same 1,000 images (same batches, augmentation and head
  initialisation) from the seeded initialisation.

Mechanism: ``analyses/cells/transfer.py`` (class subsets, ``init_from``). Accuracy is measured
on the test images of classes 5-9 (labels keep their class ids; argmax over the 10-way head),
beside the same seed at initialisation and chance (0.2). A family's *gain* is its fine-tuned
accuracy minus its from-scratch accuracy, paired by seed.

- ``pretraining-helps-all``: every family gains. Its effect is the gain of the family that
  gains least: the worst verdict of a family's own interval (opposite, negligible,
  inconclusive, supported), then the lowest interval end (intersection-union test: supported
  only when every family's interval lies above the margin; one family clearly not gaining
  makes it negligible or opposite).
- ``transfer-fixed-mixing``: ViT's gain minus Mixer's, paired by seed (> 0: Mixer gains less);
  every other family's (ViT's gain minus its own) beside it.

    python -m analyses.transfer            # full scale: needs the three plans' cells
    python -m analyses.transfer --quick    # seconds, the quick recipe's cells
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence


from analyses import common, converged, verdicts
from analyses.common import COLORS, LABELS, Check, Claim

NAME = "transfer"
PLANS = {"pretrain": "pretrain-0to4", "finetune": "finetune-5to9", "scratch": "scratch-5to9"}
REFERENCE = "vit"
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES)},
    "quick": {"quick": True, "families": ["mixer", "vit", "cnn"]},
}


# ----------------------------------------------------------------------------- compute


def _rows(plan: str, scale: Mapping, progress: bool) -> Dict[tuple, tuple]:
    """``{(family, seed): (model_row, card-free cell)}`` of plan ``plan`` (quick cells trained)."""
    got = converged.plan_rows(plan, quick=bool(scale["quick"]), families=list(scale["families"]),
                              progress=progress)
    return {(row["family"], row["seed"]): (row, cell) for row, cell in got}


def initialisation_accuracy(cell) -> float:
    """Test accuracy of ``cell``'s seeded, untrained model on ``cell``'s test set."""
    from analyses.cells import accuracy, test_sets
    from analyses.cells.training import build_model
    (x, y), _ = test_sets(cell.recipe)
    return accuracy(build_model(cell.family, seed=cell.seed), x, y)


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    fams = list(scale["families"])
    for need in ("mixer", REFERENCE):
        if need not in fams:
            raise ValueError(f"{NAME} compares Mixer's gain with ViT's: include {need} in the families")
    pre = _rows(PLANS["pretrain"], scale, progress)     # first: the fine-tuning cells start there
    scratch = _rows(PLANS["scratch"], scale, progress)
    tuned = _rows(PLANS["finetune"], scale, progress)
    if set(scratch) != set(tuned):
        raise ValueError(f"{PLANS['scratch']} and {PLANS['finetune']} hold different (family, seed) "
                         f"cells: {sorted(set(scratch) ^ set(tuned))}")
    store = converged.recipe_and_store(bool(scale["quick"]))[1]
    rows = []
    for (f, s), (row, cell) in sorted(tuned.items(), key=lambda kv: (fams.index(kv[0][0]), kv[0][1])):
        card = store.card(cell, need_weights=False)
        source = (card or {}).get("init_from", {})
        pre_row = pre.get((f, s), (None,))[0]
        rows.append({"family": f, "seed": s,
                     "finetuned": row["test_accuracy"], "scratch": scratch[(f, s)][0]["test_accuracy"],
                     "finetuned_val": row["val_accuracy"], "scratch_val": scratch[(f, s)][0]["val_accuracy"],
                     "pretrained_0to4": pre_row["test_accuracy"] if pre_row else None,
                     "initialisation": initialisation_accuracy(scratch[(f, s)][1]),
                     "source": source.get("key"),
                     "expected_source": pre[(f, s)][1].key if (f, s) in pre else None})
    first = next(iter(tuned.values()))[1]
    from analyses.cells import test_sets
    (_, y), _ = test_sets(first.recipe)
    classes = first.recipe.training["data"]["classes"]
    models = [r for group in (pre, scratch, tuned) for r, _ in group.values()]
    return {"models": models, "rows": rows, "test_n": len(y), "classes": classes,
            "pretrain_classes": next(iter(pre.values()))[1].recipe.training["data"]["classes"],
            "n_train": first.n_train, "plans": dict(PLANS),
            "reference": {"chance_accuracy": 1 / len(classes)}}


# ----------------------------------------------------------------------------- claims


def gains(results: Mapping) -> Dict[str, List[float]]:
    """Per family, per seed (ascending): fine-tuned minus from-scratch accuracy."""
    out: Dict[str, List[float]] = {}
    for r in sorted(results["rows"], key=lambda r: r["seed"]):
        out.setdefault(r["family"], []).append(r["finetuned"] - r["scratch"])
    return out


def _seeds(results: Mapping) -> Dict[str, List[int]]:
    out: Dict[str, List[int]] = {}
    for r in sorted(results["rows"], key=lambda r: r["seed"]):
        out.setdefault(r["family"], []).append(r["seed"])
    return out


def gain_gaps(results: Mapping, reference: str = REFERENCE) -> Dict[str, List[float]]:
    """Per family other than ``reference``, per seed: the reference's gain minus the family's."""
    g, seeds = gains(results), _seeds(results)
    out = {}
    for f, values in g.items():
        if f == reference:
            continue
        if seeds[f] != seeds[reference]:
            raise ValueError(f"{f} has seeds {seeds[f]}, {reference} {seeds[reference]}: the "
                             f"gains are compared seed by seed")
        out[f] = [a - b for a, b in zip(g[reference], values)]
    return out


VERDICT_RANK = {"opposite": 3, "negligible": 2, "inconclusive": 1, "supported": 0}


def weakest_family(per_family: Mapping[str, Mapping[str, float]], *, margin: float,
                   test: str = "direction") -> str:
    """The family that decides an "every family gains" claim (intersection-union): the one
    with the worst verdict of its own interval (opposite, negligible, inconclusive, supported),
    ties broken by the lowest interval end, then by name."""
    def badness(f: str):
        e = per_family[f]
        return (-VERDICT_RANK[verdicts.decide(test, e["ci_low"], e["ci_high"], margin)],
                e["ci_low"], f)
    return min(per_family, key=badness)


def claims(results: Mapping) -> List[Claim]:
    g = gains(results)
    n_seeds = len(next(iter(g.values())))
    by = {f: [r for r in results["rows"] if r["family"] == f] for f in g}
    stat = lambda f, key: common.mean_ci([r[key] for r in by[f]])  # noqa: E731
    details = {f: {k: stat(f, k) for k in ("finetuned", "scratch", "initialisation")}
               for f in g}
    for f in g:
        if all(r["pretrained_0to4"] is not None for r in by[f]):
            details[f]["pretrained_0to4"] = stat(f, "pretrained_0to4")
    reference = {"initialisation_accuracy": {f: details[f]["initialisation"] for f in g},
                 **results.get("reference", {})}
    experiment = (f"every family pre-trained on Fashion-MNIST classes {results['pretrain_classes']} "
                  f"(whole pool), then fine-tuned on {results['n_train']} images of classes "
                  f"{results['classes']} (head re-initialised as the scratch model's) vs trained on "
                  f"the same images from scratch; accuracy on the {results['test_n']} test images "
                  f"of those classes, {n_seeds} seeds, paired by seed, beside the same seed at "
                  f"initialisation")
    spec = verdicts.margin_of("pretraining-helps-all")
    per_gain = common.family_effects(g, confidence=verdicts.CONFIDENCE[spec["test"]])
    weakest = weakest_family(per_gain, margin=float(spec["margin"]), test=spec["test"])
    w = per_gain[weakest]
    helps = Claim(
        key="pretraining-helps-all",
        claim="pre-training helps every architecture, not only Transformers",
        who="Tay et al. 2021 ('Are Pre-trained Convolutions Better than Pre-trained Transformers?')",
        experiment=experiment, figure="transfer.pdf",
        effect=f"fine-tuned minus from-scratch accuracy (same seed) of the family that gains least "
               f"({LABELS.get(weakest, weakest)}: the worst verdict of its own interval, then the "
               f"lowest interval end); supported only if every family's interval lies above "
               f"the margin",
        estimate=w["effect"], low=w["ci_low"], high=w["ci_high"],
        details={**details, "weakest_family": weakest}, per_family=per_gain, reference=reference)
    conf = verdicts.CONFIDENCE[verdicts.margin_of("transfer-fixed-mixing")["test"]]
    gaps = gain_gaps(results)
    per_gap = common.family_effects(gaps, confidence=conf)
    m = per_gap["mixer"]
    fixed = Claim(
        key="transfer-fixed-mixing",
        claim="Mixer's parameterised (input-independent) attention matrix hurts pre-train + "
              "fine-tune: Mixer gains less from pre-training than ViT",
        who="the MLP-Mixer debate, after Tay et al. 2021 (Synthesizer authors)",
        experiment=experiment, figure="transfer.pdf",
        effect="ViT's gain from pre-training minus Mixer's (gain = fine-tuned minus from-scratch "
               "accuracy, same seed; > 0: Mixer gains less); per family: ViT's gain minus that "
               "family's",
        estimate=m["effect"], low=m["ci_low"], high=m["ci_high"],
        details={"gain": per_gain, **details}, per_family=per_gap, reference=reference)
    return [fixed, helps]


def checks(results: Mapping) -> List[Check]:
    """Every fine-tuned cell started from its own family's and seed's pre-trained cell."""
    wrong = [r for r in results["rows"] if r["source"] is None or r["source"] != r["expected_source"]]
    return [Check(key="finetune-starts-from-pretrain",
                  what="each fine-tuned cell's card names the pretrain-0to4 cell of its family "
                       "and seed as its initialisation",
                  max_abs_error=float(len(wrong)), tolerance=0.0,
                  details={"mismatched": [f"{r['family']} seed {r['seed']}" for r in wrong]})]


# ----------------------------------------------------------------------------- figure


def _forest(ax, claim: Mapping, xlabel: str, title: str) -> None:
    items = [(LABELS.get(f, f), v, COLORS.get(f, "0.4"), "o") for f, v in claim["per_family"].items()]
    items.append(("claim", {"effect": claim["effect"], "ci_low": claim["ci_low"],
                            "ci_high": claim["ci_high"]}, verdicts.VERDICT_COLORS[claim["verdict"]], "D"))
    for i, (label, v, color, marker) in enumerate(items):
        ax.errorbar(v["effect"], i, xerr=[[v["effect"] - v["ci_low"]], [v["ci_high"] - v["effect"]]],
                    fmt=marker, color=color, capsize=3)
    ax.set_yticks(range(len(items)), [it[0] for it in items], fontsize=8)
    ax.axvspan(-claim["margin"], claim["margin"], color="0.88", lw=0, label="+-margin")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(f"{title}\n{claim['id']}: {claim['verdict']} "
                 f"({round(100 * claim.get('confidence', 0.95))}% intervals over seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    rows = results["rows"]
    fams = list(dict.fromkeys(r["family"] for r in rows))
    found = {c["id"]: c for c in results.get("claims", [])}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    for offset, (key, label, marker) in enumerate((("scratch", "from scratch", "o"),
                                                   ("finetuned", "pre-trained + fine-tuned", "s"),
                                                   ("initialisation", "initialisation", "x"))):
        for i, f in enumerate(fams):
            m, lo, hi = common.mean_ci([r[key] for r in rows if r["family"] == f])
            ax.errorbar(i + (offset - 1) * 0.22, m, yerr=[[m - lo], [hi - m]], fmt=marker,
                        color=COLORS.get(f, "0.4"), capsize=2, alpha=1.0 if offset < 2 else 0.6)
        ax.plot([], [], marker, color="k", label=label)
    ax.axhline(results["reference"]["chance_accuracy"], color="0.5", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(fams)), [LABELS.get(f, f) for f in fams], rotation=30)
    ax.set(ylabel=f"test accuracy, classes {results['classes']}",
           title=f"{results['n_train']} training images of classes {results['classes']}")
    ax.legend(fontsize=7)
    if "pretraining-helps-all" in found:
        _forest(axes[1], found["pretraining-helps-all"], "fine-tuned minus from-scratch accuracy",
                "gain from pre-training, per family")
    if "transfer-fixed-mixing" in found:
        _forest(axes[2], found["transfer-fixed-mixing"], "ViT's gain minus the family's (accuracy)",
                "does the family gain less than ViT?")
    for ax in axes[1:]:
        if not ax.has_data():
            ax.set_axis_off()
    n_seeds = len([r for r in rows if r["family"] == fams[0]])
    fig.suptitle(f"Pre-train on classes {results['pretrain_classes']}, fine-tune on "
                 f"{results['classes']} ({n_seeds} seeds; markers: mean, bars: interval over seeds)",
                 fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
