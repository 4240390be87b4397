"""Do MLPs lose trustworthiness where it matters? Calibration, selective prediction, shift.

The claim (debate on MLP-Mixer, e.g. "MLPs are not ready for medical diagnosis, where a model
must know when it is wrong") is read as three measurements on the converged full-data models
of every family (one recipe, seeds ``plans.full``):

- expected calibration error (ECE, 15 equal-width confidence bins, top-1) on the test set,
  beside the same seed at initialisation and beside the ECE after temperature scaling
  fitted on the recipe's validation split (how much of the error one scalar removes);
- selective accuracy at 90% coverage: accuracy on the 90% of test images the model is most
  confident about;
- the same under the corruption suite: the 15 corruptions x 5 severities (``probe.corruptions``,
  ``preset="auto"``) of a fixed test subset, pooled.

The claim's effect is the family's clean ECE minus the same-seed CNN's (> 0: worse
calibrated than the CNN); the selective and corrupted numbers sit beside it per family.

    python -m analyses.calibration            # full scale (see --help)
    python -m analyses.calibration --quick    # seconds, the quick recipe's models
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from analyses import common, evaluation, verdicts
from analyses.common import LABELS, Claim

NAME = "calibration"
BINS = 15
COVERAGE = 0.9
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES), "corruption_n": 1000,
             "corruptions": "all", "severities": [1, 2, 3, 4, 5]},
    "quick": {"quick": True, "families": ["cnn", "mixer", "vit"], "corruption_n": 64,
              "corruptions": ["gaussian_noise", "fog", "pixelate"], "severities": [1, 5]},
}


# ----------------------------------------------------------------------------- metrics


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> float:
    """Expected calibration error: the count-weighted mean over equal-width confidence bins of
    |accuracy - mean confidence| (top-1 class)."""
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    index = torch.clamp((conf.double() * bins).long(), max=bins - 1)  # bin (k/B, (k+1)/B], 1 -> last
    total = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(correct))
    gap = (torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
           - torch.zeros(bins, dtype=torch.float64).index_add_(0, index, conf.double()))
    return float(gap.abs().sum() / len(labels))


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> Dict[str, List[float]]:
    """Per confidence bin: mean confidence, accuracy and count (empty bins: NaN -> None)."""
    conf, pred = probs.max(dim=1)
    index = torch.clamp((conf.double() * bins).long(), max=bins - 1)
    out = {"confidence": [], "accuracy": [], "count": []}
    for k in range(bins):
        inside = index == k
        n = int(inside.sum())
        out["count"].append(n)
        out["confidence"].append(float(conf[inside].double().mean()) if n else None)
        out["accuracy"].append(float((pred[inside] == labels[inside]).double().mean()) if n else None)
    return out


def selective_accuracy(probs: torch.Tensor, labels: torch.Tensor, coverage: float = COVERAGE) -> float:
    """Accuracy on the ``coverage`` share of images with the highest top-1 confidence (ties
    broken by index, so the subset has exactly ``round(coverage * n)`` images)."""
    conf, pred = probs.max(dim=1)
    keep = max(1, int(round(coverage * len(labels))))
    order = torch.sort(conf, descending=True, stable=True).indices[:keep]
    return float((pred[order] == labels[order]).double().mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` (LBFGS on log T)."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    z = logits.double()
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), labels)
        loss.backward()
        return loss
    opt.step(closure)
    return float(log_t.detach().exp())


def summary(logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    probs = logits.double().softmax(dim=1)
    return {"accuracy": float((logits.argmax(1) == labels).double().mean()), "ece": ece(probs, labels),
            "nll": float(F.cross_entropy(logits.double(), labels)),
            "selective_accuracy_90": selective_accuracy(probs, labels)}


# ----------------------------------------------------------------------------- compute


def _corrupted_suite(images: torch.Tensor, scale: Mapping, progress: bool):
    """``[(corruption, severity, images)]`` of the corruption subset, one generator per cell."""
    from tqdm import tqdm
    from probe import corruptions
    names = list(corruptions.COMMON) if scale["corruptions"] == "all" else list(scale["corruptions"])
    cells = [(n, s) for n in names for s in scale["severities"]]
    out = []
    for i, (name, severity) in enumerate(tqdm(cells, desc="corrupting", disable=not progress)):
        g = torch.Generator().manual_seed(1000 + i)
        out.append((name, severity, corruptions.corrupt(images, name, severity, generator=g)))
    return out


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import zoo
    from analyses.cells import data_split, test_sets
    from analyses.cells.recipe import to_float
    recipe, _, loaded, xt, yt = evaluation.full_models(NAME, scale, "cnn", progress=progress)
    _, (xs, ys) = test_sets(recipe)
    xs = to_float(xs)
    split = data_split(recipe)
    n_c = min(int(scale["corruption_n"]), len(ys))
    suite = _corrupted_suite(xs[:n_c], scale, progress)
    rows = []
    for model, row in tqdm(loaded, desc="models", disable=not progress):
        logits = evaluation.outputs(model, xt)
        temperature = fit_temperature(evaluation.outputs(model, split.val_images), split.val_labels)
        corrupted = torch.cat([evaluation.outputs(model, images) for _, _, images in suite])
        labels_c = ys[:n_c].repeat(len(suite))
        init = evaluation.outputs(zoo.build(row["family"], seed=row["seed"]).eval(), xt)
        rows.append({"family": row["family"], "seed": row["seed"], **summary(logits, yt),
                     "temperature": temperature,
                     "ece_temperature_scaled": ece((logits.double() / temperature).softmax(1), yt),
                     "reliability": reliability(logits.double().softmax(1), yt),
                     "corrupted": summary(corrupted, labels_c),
                     "initialisation": summary(init, yt)})
    return {"models": [row for _, row in loaded], "rows": rows,
            "test_n": len(yt), "corruption_cells": [[n, s] for n, s, _ in suite],
            "corruption_n": n_c, "bins": BINS, "coverage": COVERAGE,
            "reference": {"chance_accuracy": 0.1, "perfect_ece": 0.0},
            "recipe_hash": recipe.hash}


# ----------------------------------------------------------------------------- claims


def paired_effects(results: Mapping, value, sign: float = 1.0) -> Dict[str, List[float]]:
    """Per non-CNN family, per seed: ``sign * (value(family row) - value(CNN row))``."""
    return evaluation.paired_by_seed(results["rows"], value, "cnn", sign=sign)


def claims(results: Mapping) -> List[Claim]:
    rows = evaluation.by_family(results["rows"])
    mlps = [f for f in common.MLP_FAMILIES if f in rows]
    if not mlps:
        raise ValueError("the results hold no MLP family (mixer, resmlp, gmlp, fnet)")
    conf = verdicts.CONFIDENCE[verdicts.margin_of("calibration")["test"]]
    e, lo, hi, per_family = common.group_effect(paired_effects(results, lambda r: r["ece"]), mlps,
                                                confidence=conf)
    stat = lambda rs, key: common.mean_ci([key(r) for r in rs])  # noqa: E731
    details = {f: {"ece": stat(rs, lambda r: r["ece"]),
                   "ece_temperature_scaled": stat(rs, lambda r: r["ece_temperature_scaled"]),
                   "temperature": stat(rs, lambda r: r["temperature"]),
                   "selective_accuracy_90": stat(rs, lambda r: r["selective_accuracy_90"]),
                   "accuracy": stat(rs, lambda r: r["accuracy"]),
                   "corrupted_ece": stat(rs, lambda r: r["corrupted"]["ece"]),
                   "corrupted_accuracy": stat(rs, lambda r: r["corrupted"]["accuracy"]),
                   "corrupted_selective_accuracy_90": stat(rs, lambda r: r["corrupted"]["selective_accuracy_90"])}
               for f, rs in rows.items()}
    # the two other readings of "trustworthy", as group effects beside the claim's
    side = {}
    for key, value, sign in (("selective_accuracy_90_gap", lambda r: r["selective_accuracy_90"], -1.0),
                             ("corrupted_ece_gap", lambda r: r["corrupted"]["ece"], 1.0),
                             ("corrupted_accuracy_gap", lambda r: r["corrupted"]["accuracy"], -1.0)):
        g, gl, gh, pf = common.group_effect(paired_effects(results, value, sign), mlps, confidence=0.95)
        side[key] = {"estimate": g, "ci_low": gl, "ci_high": gh, "per_family": pf}
    reference = {"initialisation_ece": {f: stat(rs, lambda r: r["initialisation"]["ece"])
                                        for f, rs in rows.items()},
                 "temperature_scaled_ece": {f: d["ece_temperature_scaled"] for f, d in details.items()},
                 **results.get("reference", {})}
    n_seeds = len(rows["cnn"])
    group = ", ".join(LABELS[f] for f in mlps)
    cells = len(results.get("corruption_cells", []))
    return [Claim(
        key="calibration",
        claim="MLPs lose trustworthiness where it matters: they are worse calibrated than CNNs",
        who="the MLP-Mixer debate (MLPs are 'not ready' where a model must know when it is "
            "wrong, e.g. medical diagnosis)",
        experiment=f"ECE ({results.get('bins', BINS)} bins) on the {results.get('test_n', '?')} test images, "
                   f"converged full-data models, {n_seeds} seeds, each beside the same seed at "
                   f"initialisation and after temperature scaling on the validation split; beside "
                   f"it selective accuracy at 90% coverage and ECE/accuracy under {cells} corruption "
                   f"cells of {results.get('corruption_n', '?')} test images",
        figure="calibration.pdf",
        effect=f"family ECE minus the same-seed CNN's (> 0: worse calibrated); MLP group = mean "
               f"over {group} per seed",
        estimate=e, low=lo, high=hi, details={**details, "other_readings": side},
        per_family=per_family, reference=reference)]


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    rows = evaluation.by_family(results["rows"])
    fams = list(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for f in fams:
        rel = rows[f][0]["reliability"]
        pts = [(c, a) for c, a, n in zip(rel["confidence"], rel["accuracy"], rel["count"]) if n]
        ax.plot(*zip(*pts), marker="o", ms=3, color=common.COLORS[f], label=LABELS[f])
    ax.set(xlabel="confidence (top-1)", ylabel="accuracy",
           title=f"reliability, test set (seed {rows[fams[0]][0]['seed']})")
    ax.legend(fontsize=7)
    x = np.arange(len(fams))
    for ax, key, title in ((axes[1], "ece", "expected calibration error"),
                           (axes[2], "selective_accuracy_90", "selective accuracy at 90% coverage")):
        for offset, (label, get, marker) in enumerate((
                ("clean", lambda r: r[key], "o"),
                ("corruptions", lambda r: r["corrupted"][key], "s"),
                ("initialisation", lambda r: r["initialisation"][key], "x"))):
            for i, f in enumerate(fams):
                values = [get(r) for r in rows[f]]
                m, lo, hi = common.mean_ci(values)
                ax.errorbar(i + (offset - 1) * 0.22, m, yerr=[[m - lo], [hi - m]], fmt=marker,
                            color=common.COLORS[f], alpha=1.0 if offset == 0 else 0.6, capsize=2)
            ax.plot([], [], marker, color="k", label=label)  # legend entry in neutral black
        if key == "ece":
            for i, f in enumerate(fams):
                m = float(np.mean([r["ece_temperature_scaled"] for r in rows[f]]))
                ax.plot([i - 0.35, i + 0.35], [m, m], color=common.COLORS[f], lw=1, ls=":")
            title += " (dotted: after temperature scaling)"
        ax.set_xticks(x, [LABELS[f] for f in fams], rotation=30)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Calibration of the converged models ({len(rows[fams[0]])} seeds; markers: mean, "
                 f"bars: 95% interval over seeds)", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims)


if __name__ == "__main__":
    sys.exit(main())
