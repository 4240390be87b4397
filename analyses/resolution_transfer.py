"""Do token-mixing MLPs transfer worse to another input size? Fine-tuning 28 -> 36 px.

The claim (debate on MLP-Mixer: its token-mixing weights are tied to one number of tokens, so
it cannot take another input size, while a CNN is size-agnostic and ViT interpolates its
position embeddings) measured on the ``resolution-36`` plan of the recipe: every family built
for 36-px input (9x9 tokens of 4 px; ``analyses.common.BUILDER_VARIANTS`` ``<family>_36px``)
starts from its converged full-data 28-px model of the same seed, resized as
``analyses/cells/transfer.py`` states - ViT's position embeddings and the token-mixing weights
of Mixer, ResMLP and gMLP interpolated bilinearly from the 7x7 to the 9x9 grid (the input
axis of a weight scaled by 49/81), CNN and FNet unchanged - and is fine-tuned on 10,000
training images upsampled bilinearly from 28 to 36 px.

A family's *retained accuracy* is its fine-tuned 36-px test accuracy minus its 28-px source's,
same seed (the whole test set, upsampled the same way). Beside it: the resized model before
any fine-tuning (zero-shot at 36 px) and the same seed's untrained 36-px model.

``resolution-transfer``: the CNN's retained accuracy minus the token-mixing MLPs' (Mixer,
ResMLP, gMLP: the families whose weights have a token axis), averaged over them seed by seed
(> 0: they keep less); ViT and FNet appear per family.

    python -m analyses.resolution_transfer            # full scale: needs the resolution-36 cells
    python -m analyses.resolution_transfer --quick    # seconds, the quick recipe's cells
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import torch

from analyses import common, converged, verdicts
from analyses.common import COLORS, LABELS, Check, Claim

NAME = "resolution_transfer"
PLAN = "resolution-36"
SUFFIX = "_36px"
REFERENCE = "cnn"
TOKEN_MIXING = ("mixer", "resmlp", "gmlp")      # families with token-mixing weights to resize
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES)},
    "quick": {"quick": True, "families": ["mixer", "cnn"]},    # the claim's two sides, minutes
}


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from analyses.cells import accuracy, test_sets
    from analyses.cells.training import build_model
    from analyses.cells.transfer import initialise
    fams, quick = list(scale["families"]), bool(scale["quick"])
    if REFERENCE not in fams or not any(f in fams for f in TOKEN_MIXING):
        raise ValueError(f"{NAME} compares the token-mixing MLPs ({', '.join(TOKEN_MIXING)}) with "
                         f"the CNN: include cnn and at least one of them in the families")
    recipe, store = converged.recipe_and_store(quick)
    seeds = sorted(int(s) for s in recipe.plans[PLAN]["seeds"])
    sources = converged.models(fams, seeds, quick=quick, progress=progress)  # the 28-px models
    tuned = converged.plan_rows(PLAN, quick=quick, families=[f + SUFFIX for f in fams],
                                progress=progress)
    by_cell = {(cell.family[:-len(SUFFIX)], cell.seed): (row, cell) for row, cell in tuned}
    rows = []
    for model, src in sources:
        row, cell = by_cell[(src["family"], src["seed"])]
        (x, y), _ = test_sets(cell.recipe)                   # upsampled to 36 px
        resized = build_model(cell.family, seed=cell.seed)
        loaded = initialise(resized, cell, store)             # the fine-tuning's step 0
        untrained = build_model(cell.family, seed=cell.seed)
        rows.append({"family": src["family"], "seed": src["seed"],
                     "source_28px": src["test_accuracy"], "finetuned_36px": row["test_accuracy"],
                     "zero_shot_36px": accuracy(resized, x, y),
                     "initialisation_36px": accuracy(untrained, x, y),
                     "resized_tensors": loaded["resized"], "source": loaded["key"],
                     "identity_error_28px": _identity_error(model)})
    first = tuned[0][1]
    d = first.recipe.training["data"]
    return {"models": [r for _, r in sources] + [r for r, _ in tuned], "rows": rows,
            "image_size": d["image_size"], "source_size": int(sources[0][0].input_size[-1]),
            "n_train": first.n_train, "test_n": len(test_sets(first.recipe)[0][1]),
            "reference": {"chance_accuracy": 0.1}}


def _identity_error(model) -> float:
    """Largest change :func:`resize_state` makes to a model's own state at its own size (0)."""
    from analyses.cells.transfer import resize_state
    state = model.net.state_dict()
    same, _ = resize_state(state, state, num_prefix_tokens=int(getattr(model.net, "num_prefix_tokens", 0)))
    return max(float((same[k].float() - v.float()).abs().max()) if v.numel() else 0.0
               for k, v in state.items())


# ----------------------------------------------------------------------------- claims


def retained(results: Mapping, key: str = "finetuned_36px") -> Dict[str, Dict[int, float]]:
    """``{family: {seed: accuracy at 36 px (``key``) minus the 28-px source's}}``."""
    out: Dict[str, Dict[int, float]] = {}
    for r in results["rows"]:
        out.setdefault(r["family"], {})[r["seed"]] = r[key] - r["source_28px"]
    return out


def retained_gaps(results: Mapping, key: str = "finetuned_36px") -> Dict[str, List[float]]:
    """Per family other than the CNN, per seed: the CNN's retained accuracy minus the family's."""
    kept = retained(results, key)
    ref = kept[REFERENCE]
    out = {}
    for f, per_seed in kept.items():
        if f == REFERENCE:
            continue
        if sorted(per_seed) != sorted(ref):
            raise ValueError(f"{f} has seeds {sorted(per_seed)}, {REFERENCE} {sorted(ref)}: the "
                             f"families are compared seed by seed")
        out[f] = [ref[s] - per_seed[s] for s in sorted(per_seed)]
    return out


def claims(results: Mapping) -> List[Claim]:
    gaps = retained_gaps(results)
    group = [f for f in TOKEN_MIXING if f in gaps]
    if not group:
        raise ValueError(f"the results hold no token-mixing MLP ({', '.join(TOKEN_MIXING)})")
    conf = verdicts.CONFIDENCE[verdicts.margin_of("resolution-transfer")["test"]]
    e, lo, hi, per_family = common.group_effect(gaps, group, confidence=conf)
    by = {}
    for r in results["rows"]:
        by.setdefault(r["family"], []).append(r)
    stat = lambda f, key: common.mean_ci([r[key] for r in by[f]])  # noqa: E731
    details = {f: {k: stat(f, k) for k in ("source_28px", "zero_shot_36px", "finetuned_36px",
                                           "initialisation_36px")} for f in by}
    zero = common.family_effects(retained_gaps(results, "zero_shot_36px"), confidence=conf)
    size, src = results["image_size"], results["source_size"]
    return [Claim(
        key="resolution-transfer",
        claim=f"token-mixing MLPs transfer worse to another input size: fine-tuned from {src} to "
              f"{size} px they retain less accuracy than a CNN",
        who="the MLP-Mixer debate (token-mixing weights are tied to one number of tokens; CNNs "
            "are size-agnostic, ViT interpolates its position embeddings)",
        experiment=f"the converged {src}-px full-data models resized to {size} px (ViT position "
                   f"embeddings and token-mixing weights interpolated bilinearly on the token "
                   f"grid; CNN and FNet unchanged) and fine-tuned on {results['n_train']} images "
                   f"upsampled bilinearly; accuracy on the {results['test_n']} test images at "
                   f"{size} px, {len(by[REFERENCE])} seeds, paired by seed, beside the resized "
                   f"model before fine-tuning and the untrained {size}-px model",
        figure="resolution_transfer.pdf",
        effect=f"the CNN's retained accuracy minus the family's (retained = fine-tuned {size}-px "
               f"accuracy minus the {src}-px source's, same seed); group = mean over "
               f"{', '.join(LABELS[f] for f in group)} per seed",
        estimate=e, low=lo, high=hi,
        details={**details, "zero_shot_gap": zero}, per_family=per_family,
        reference={"initialisation_accuracy": {f: d["initialisation_36px"] for f, d in details.items()},
                   **results.get("reference", {})})]


def checks(results: Mapping) -> List[Check]:
    """Resizing a model's state to its own size changes nothing (the 28 -> 28 identity)."""
    err = max(r["identity_error_28px"] for r in results["rows"])
    return [Check(key="resize-identity", what="resize_state of each source model to its own "
                  "input size returns every tensor unchanged", max_abs_error=err, tolerance=0.0)]


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    rows = results["rows"]
    fams = list(dict.fromkeys(r["family"] for r in rows))
    size, src = results["image_size"], results["source_size"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    kinds = (("source_28px", f"{src} px (source)", "o"), ("zero_shot_36px", f"{size} px, resized, "
             "before fine-tuning", "^"), ("finetuned_36px", f"{size} px, fine-tuned", "s"),
             ("initialisation_36px", f"{size} px, initialisation", "x"))
    for offset, (key, label, marker) in enumerate(kinds):
        for i, f in enumerate(fams):
            m, lo, hi = common.mean_ci([r[key] for r in rows if r["family"] == f])
            ax.errorbar(i + (offset - 1.5) * 0.18, m, yerr=[[m - lo], [hi - m]], fmt=marker,
                        color=COLORS.get(f, "0.4"), capsize=2)
        ax.plot([], [], marker, color="k", label=label)
    ax.axhline(results["reference"]["chance_accuracy"], color="0.5", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(fams)), [LABELS.get(f, f) for f in fams], rotation=30)
    ax.set(ylabel="test accuracy", title=f"{src} -> {size} px ({results['n_train']} fine-tuning images)")
    ax.legend(fontsize=7)
    ax = axes[1]
    claim = next((c for c in results.get("claims", []) if c["id"] == "resolution-transfer"), None)
    if claim is None:
        ax.set_axis_off()
    else:
        items = [(LABELS.get(f, f), v, COLORS.get(f, "0.4"), "o") for f, v in claim["per_family"].items()]
        items.append(("token-mixing MLPs", {"effect": claim["effect"], "ci_low": claim["ci_low"],
                                            "ci_high": claim["ci_high"]},
                      verdicts.VERDICT_COLORS[claim["verdict"]], "D"))
        for i, (label, v, color, marker) in enumerate(items):
            ax.errorbar(v["effect"], i, xerr=[[v["effect"] - v["ci_low"]], [v["ci_high"] - v["effect"]]],
                        fmt=marker, color=color, capsize=3)
        ax.set_yticks(range(len(items)), [it[0] for it in items], fontsize=8)
        ax.axvspan(-claim["margin"], claim["margin"], color="0.88", lw=0, label="+-margin")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("CNN's retained accuracy minus the family's")
        ax.set_title(f"resolution-transfer: {claim['verdict']} "
                     f"({round(100 * claim.get('confidence', 0.95))}% intervals over seeds)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    n_seeds = len([r for r in rows if r["family"] == fams[0]])
    fig.suptitle(f"Resolution transfer {src} -> {size} px ({n_seeds} seeds; markers: mean, bars: "
                 f"95% interval over seeds)", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
