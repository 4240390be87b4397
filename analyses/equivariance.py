"""Do CNNs favour equivariance? Prediction consistency under small shifts, per family.

The claim (from the debate: "CNNs favour equivariance, Transformers relations") is measured on
the converged full-data models of every family (one recipe, seeds ``plans.full``): a fixed
subset of test images is shifted by 1-4 px in each of the four directions, both circularly
(``torch.roll``: nothing leaves the image) and with zero padding (the Fashion-MNIST background;
what leaves the image is lost), and we record how often the predicted class stays the same
(consistency) and the accuracy on the shifted images. Every number sits beside the same seed
at initialisation. A 4-px circular shift moves every 4-px patch onto its neighbour's tokens:
the patch models see a permutation of their tokens there, which the per-shift rows show.

The claim's effect is the CNN's consistency minus the family's, averaged over the 32 shifts
(> 0: the CNN keeps its predictions more often).

    python -m analyses.equivariance            # full scale (see --help)
    python -m analyses.equivariance --quick    # seconds, the quick recipe's models
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch

from analyses import common, evaluation, verdicts
from analyses.common import LABELS, Claim

NAME = "equivariance"
SHIFTS = (1, 2, 3, 4)
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # (dy, dx): down, up, right, left
MODES = ("circular", "zero")
# Full scale: 1,000 test images x 33 views (clean + 32 shifts) for each of the 18 converged
# models and its initialisation, about 2 min per model on one CPU thread (2,000 images took
# about 290 s per model, 85 min in all: more than a background piece should hold).
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES), "n": 1000},
    "quick": {"quick": True, "families": ["cnn", "mixer", "vit"], "n": 128},
}


def shift(x: torch.Tensor, dy: int, dx: int, mode: str) -> torch.Tensor:
    """``x [B, C, H, W]`` moved by ``(dy, dx)`` pixels (down/right positive): ``"circular"``
    wraps around, ``"zero"`` fills the uncovered border with 0."""
    if mode == "circular":
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if mode != "zero":
        raise ValueError(f"unknown shift mode {mode!r}; use one of {', '.join(MODES)}")
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def _predict(model, x: torch.Tensor) -> torch.Tensor:
    return evaluation.outputs(model, x).argmax(1)


def measure(model, x: torch.Tensor, y: torch.Tensor) -> Dict[str, object]:
    """Clean accuracy, and per mode and shift size (over the four directions) the
    consistency with the unshifted prediction and the accuracy."""
    base = _predict(model, x)
    out: Dict[str, object] = {"accuracy": float((base == y).double().mean())}
    for mode in MODES:
        per = {}
        for d in SHIFTS:
            same, right = [], []
            for dy, dx in DIRECTIONS:
                pred = _predict(model, shift(x, dy * d, dx * d, mode))
                same.append(float((pred == base).double().mean()))
                right.append(float((pred == y).double().mean()))
            per[str(d)] = {"consistency": float(np.mean(same)), "accuracy": float(np.mean(right))}
        out[mode] = per
    out["consistency"] = float(np.mean([out[m][str(d)]["consistency"] for m in MODES for d in SHIFTS]))
    return out


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import zoo
    recipe, _, loaded, xt, yt = evaluation.full_models(NAME, scale, "cnn", progress=progress)
    order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))[:min(scale["n"], len(yt))]
    x, y = xt[order], yt[order]
    rows = []
    for model, row in tqdm(loaded, desc="models", disable=not progress):
        rows.append({"family": row["family"], "seed": row["seed"], **measure(model, x, y),
                     "initialisation": measure(zoo.build(row["family"], seed=row["seed"]).eval(), x, y)})
    return {"models": [row for _, row in loaded], "rows": rows, "n": len(y),
            "shifts": list(SHIFTS), "modes": list(MODES),
            "reference": {"chance_accuracy": 0.1,
                          "constant_prediction_consistency": 1.0},
            "recipe_hash": recipe.hash}


# ----------------------------------------------------------------------------- claims


def consistency_gaps(results: Mapping) -> Dict[str, List[float]]:
    """Per non-CNN family, per seed: CNN consistency minus the family's (paired by seed)."""
    return evaluation.paired_by_seed(results["rows"], lambda r: r["consistency"], "cnn", sign=-1.0)


def claims(results: Mapping) -> List[Claim]:
    rows = evaluation.by_family(results["rows"])
    mlps = [f for f in common.MLP_FAMILIES if f in rows]
    if not mlps:
        raise ValueError("the results hold no MLP family (mixer, resmlp, gmlp, fnet)")
    conf = verdicts.CONFIDENCE[verdicts.margin_of("equivariance")["test"]]
    e, lo, hi, per_family = common.group_effect(consistency_gaps(results), mlps, confidence=conf)
    details = {}
    for f, rs in rows.items():
        details[f] = {"consistency": common.mean_ci([r["consistency"] for r in rs]),
                      "accuracy": common.mean_ci([r["accuracy"] for r in rs]),
                      **{f"{mode}_consistency_by_shift": {
                          str(d): common.mean_ci([r[mode][str(d)]["consistency"] for r in rs])[0]
                          for d in SHIFTS} for mode in MODES}}
    reference = {"initialisation_consistency": {
        f: common.mean_ci([r["initialisation"]["consistency"] for r in rs]) for f, rs in rows.items()},
        **results.get("reference", {})}
    group = ", ".join(LABELS[f] for f in mlps)
    return [Claim(
        key="equivariance",
        claim="CNNs favour equivariance: their predictions survive small shifts more often",
        who="the MLP-Mixer debate ('CNNs favour equivariance, Transformers relations')",
        experiment=f"{results.get('n', '?')} test images shifted by 1-4 px in four directions, "
                   f"circularly and with zero padding (32 shifts), converged full-data models, "
                   f"{len(rows['cnn'])} seeds, each beside the same seed at initialisation",
        figure="equivariance.pdf",
        effect=f"CNN prediction consistency minus the family's, mean over the 32 shifts (> 0: "
               f"the CNN keeps its predictions more often); MLP group = mean over {group} per seed",
        estimate=e, low=lo, high=hi, details=details, per_family=per_family, reference=reference)]


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    rows = evaluation.by_family(results["rows"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, mode in zip(axes[:2], MODES):
        for f, rs in rows.items():
            for key, style, label in (("trained", "-", LABELS[f]), ("init", ":", None)):
                values = np.array([[(r if key == "trained" else r["initialisation"])[mode][str(d)]["consistency"]
                                    for d in SHIFTS] for r in rs])
                m = values.mean(0)
                ax.plot(SHIFTS, m, style, marker="o" if key == "trained" else None, ms=4,
                        color=common.COLORS[f], label=label)
                if key == "trained" and len(rs) > 1:
                    ax.fill_between(SHIFTS, values.min(0), values.max(0), color=common.COLORS[f], alpha=0.15)
        ax.set(xlabel="shift (px)", ylabel="prediction unchanged (share of images)", xticks=list(SHIFTS),
               title=f"{mode} shifts (dotted: same seed at initialisation)")
        ax.axvline(4, color="0.8", lw=0.8)
        ax.legend(fontsize=7)
    ax = axes[2]
    for f, rs in rows.items():
        acc = np.array([[r["zero"][str(d)]["accuracy"] for d in SHIFTS] for r in rs]).mean(0)
        clean = np.mean([r["accuracy"] for r in rs])
        ax.plot([0, *SHIFTS], [clean, *acc], marker="o", ms=4, color=common.COLORS[f], label=LABELS[f])
    ax.set(xlabel="zero-padded shift (px)", ylabel="test accuracy", xticks=[0, *SHIFTS],
           title="accuracy under zero-padded shifts")
    ax.legend(fontsize=7)
    fig.suptitle(f"Shift consistency of the converged models ({results.get('n')} test images, "
                 f"{len(next(iter(rows.values())))} seeds; band: range over seeds; grey line: "
                 f"one patch = 4 px)", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims)


if __name__ == "__main__":
    sys.exit(main())
