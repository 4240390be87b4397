"""Can CNNs capture long-range dependencies? Same/different glyph pairs d pixels apart, per family.

The claim (from the debate: "CNNs cannot capture long-range dependencies; attention does in one
step") is measured on a task where only a long-range relation carries the label: two 4x4
glyphs whose top-left corners lie ``d`` px apart (``probe.data.glyph_pairs``), label "same" or
"different". Every protocol family is trained on it at d = 4 (touching), 12 and 20 (the cells of
the recipe's ``long-range`` plan: one recipe, the Fashion-MNIST sweep's learning rates, 10,000
images, three seeds), and its test accuracy is read from the cells' cards, beside chance (0.5)
and beside the same seed at initialisation on the same test images.

The zoo's 10-way head is trained on labels 0/1 (every family keeps its architecture and
parameters); accuracies are the cards' argmax over the 10 logits. Where the trained weights are
on this machine, the accuracy restricted to the task's two logits is measured too (a check that
the unused logits never win).

The claim's effect is the CNN's accuracy drop from the nearest to the farthest distance minus
the mean drop of the token-mixing families (Mixer, ResMLP, gMLP, ViT, FNet), paired by seed
(> 0: the CNN loses more with distance). Each family's own drop is its per-family effect.
That the CNN's last stage sees both glyphs at once (its theoretical receptive field vs the
farthest pair's extent) is a check, not evidence.

Beside the accuracies the results give, per distance and seed, the fraction of test images whose
glyph pattern (both glyphs and their positions) also occurs among the cell's training images:
the farther apart the glyphs, the fewer positions the pair has on 28 px, so more test pairs were
seen in training and a model can score on them by recall rather than by relating the two
glyphs. Read a small drop at d = 20 beside it.

    python -m analyses.long_range            # full scale (see --help)
    python -m analyses.long_range --quick    # seconds, the quick recipe's tiny cells
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from analyses import common, converged, evaluation, verdicts
from analyses.common import LABELS, Check, Claim

NAME = "long_range"
CLAIM = "long-range"
PLAN = "long-range"
CHANCE = 0.5
REFERENCE = "cnn"
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES)},
    "quick": {"quick": True, "families": ["cnn", "vit"]},   # 6 quick cells (3 distances)
}


def distance_of(dataset: str) -> int:
    """The glyph distance of a ``glyph-pairs:<d>`` dataset name."""
    if not isinstance(dataset, str) or not dataset.startswith("glyph-pairs:") \
            or not dataset.split(":", 1)[1].isdigit():
        raise ValueError(f"plan {PLAN} must train on glyph-pairs:<d> datasets (analyses/recipe.json "
                         f"plans.{PLAN}.data_variants), got {dataset!r}")
    return int(dataset.split(":", 1)[1])


# ----------------------------------------------------------------------------- measurements


def receptive_field_px(net: torch.nn.Module, *, size: int = 96) -> int:
    """Theoretical receptive field (px) of the central unit of ``net.forward_features``' output.

    Measured, not derived: a copy of ``net`` with every convolution and linear weight set to a
    positive constant and batch norm set to the identity (so no path cancels or is cut by a
    ReLU) is run on a ``size x size`` image of ones; the extent of the input gradient of the
    central output unit is the receptive field. ``size`` must exceed it."""
    probe_net = copy.deepcopy(net).eval()
    with torch.no_grad():
        for m in probe_net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.fill_(0.01)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    in_chans = next(m for m in probe_net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    x = torch.ones(1, in_chans, size, size, requires_grad=True)
    features = probe_net.forward_features(x)
    h, w = features.shape[-2:]
    features[0, :, h // 2, w // 2].sum().backward()
    rows = torch.nonzero(x.grad[0].abs().sum(0).sum(1)).flatten()
    cols = torch.nonzero(x.grad[0].abs().sum(0).sum(0)).flatten()
    extent = max(int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)
    if extent >= size or 0 in (int(rows[0]), int(cols[0])):
        raise ValueError(f"the receptive field reaches the {size}-px probe image's border; pass a "
                         f"larger size")
    return extent


def glyph_keys(images: torch.Tensor) -> List[bytes]:
    """One key per image: its pixels above 0.5 (the glyphs' bright pixels; the noisy background
    and the glyphs' dark pixels lie below), so two images share a key when they hold the same
    glyphs at the same places, whatever their noise."""
    from analyses.cells.recipe import to_float
    bright = (to_float(images) > 0.5).flatten(1).numpy()
    return [bytes(row) for row in np.packbits(bright, axis=1)]


def seen_in_training(train_images: torch.Tensor, test_images: torch.Tensor) -> torch.Tensor:
    """Per test image (bool): its glyph pattern (:func:`glyph_keys`) occurs among ``train_images``."""
    seen = set(glyph_keys(train_images))
    return torch.tensor([k in seen for k in glyph_keys(test_images)], dtype=torch.bool)


def seen_fraction(train_images: torch.Tensor, test_images: torch.Tensor) -> float:
    """Fraction of ``test_images`` whose glyph pattern occurs among ``train_images``."""
    return float(seen_in_training(train_images, test_images).double().mean()) if len(test_images) else 0.0


def _accuracies(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                seen: torch.Tensor = None) -> Dict[str, float]:
    """Accuracy as the cards measure it (argmax over all logits), over the task's two logits and
    (given ``seen``, the test images whose pattern was in training) on the unseen images alone."""
    logits = evaluation.outputs(model, x)
    right = logits.argmax(1) == y
    out = {"test_accuracy": float(right.double().mean()),
           "test_accuracy_two_logits": float((logits[:, :2].argmax(1) == y).double().mean())}
    if seen is not None and bool((~seen).any()):
        out["test_accuracy_unseen"] = float(right[~seen].double().mean())
    return out


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import data, zoo
    from analyses.cells import test_sets
    from analyses.cells.families import build_model, load_model
    from analyses.cells.recipe import to_float, train_subset
    quick = bool(scale["quick"])
    if REFERENCE not in scale["families"]:
        raise ValueError(f"{NAME} compares every family with {REFERENCE!r}: include it in the families")
    loaded = converged.plan_rows(PLAN, quick=quick, families=list(scale["families"]),
                                 progress=progress)
    models, rows, hashes, test_n, seen = [], [], {}, {}, {}
    for row, cell in tqdm(loaded, desc="models", disable=not progress):
        dataset = cell.recipe.training["data"]["dataset"]
        d = distance_of(dataset)
        (xt, yt), _ = test_sets(cell.recipe)
        xt = to_float(xt)
        hashes[str(d)], test_n[str(d)] = cell.recipe.hash, len(yt)
        if cell.seed not in seen.setdefault(str(d), {}):     # the same for every family
            seen[str(d)][cell.seed] = seen_in_training(
                train_subset(cell.recipe, cell.n_train, cell.seed)[0], xt)
        init = build_model(cell.family, seed=cell.seed).eval()
        entry = {"family": cell.family, "seed": cell.seed, "distance": d,
                 "test_accuracy": row["test_accuracy"], "val_accuracy": row["val_accuracy"],
                 "params": zoo.count_params(init), "initialisation": _accuracies(init, xt, yt)}
        weights = Path(converged.ROOT) / row["weights"]
        if weights.is_file():     # trained on this machine: the two-logit and unseen readings too
            measured = _accuracies(load_model(cell.family, weights), xt, yt, seen[str(d)][cell.seed])
            entry["test_accuracy_two_logits"] = measured["test_accuracy_two_logits"]
            entry["test_accuracy_measured"] = measured["test_accuracy"]
            if "test_accuracy_unseen" in measured:
                entry["test_accuracy_unseen"] = measured["test_accuracy_unseen"]
        rows.append(entry)
        models.append({**row, "dataset": dataset})
    distances = sorted({r["distance"] for r in rows})
    if len(distances) < 2:
        raise ValueError(f"plan {PLAN} needs at least two glyph distances, got {distances}")
    rf = receptive_field_px(zoo.build("cnn").net)
    return {"models": models, "rows": rows, "distances": distances, "test_n": test_n,
            "recipe_hashes": hashes, "plan": PLAN,
            "reference": {"chance_accuracy": CHANCE,
                          "test_pattern_seen_in_training": {
                              d: {str(s): float(m.double().mean()) for s, m in sorted(per.items())}
                              for d, per in seen.items()}},
            "receptive_field": {"cnn_last_stage_px": rf, "glyph_px": data.GLYPH,
                                "farthest_pair_px": max(distances) + data.GLYPH,
                                "image_px": 28}}


# ----------------------------------------------------------------------------- claims


def accuracy_ci(values: Sequence[float], *, confidence: float = 0.95) -> Tuple[float, float, float]:
    """``(mean, low, high)`` of accuracies over seeds, the interval kept inside ``[0, 1]``."""
    m, lo, hi = common.mean_ci(values, confidence=confidence)
    return m, max(lo, 0.0), min(hi, 1.0)


def _summary(values: Sequence[float], *, bounded: bool = True) -> Dict[str, float]:
    m, lo, hi = accuracy_ci(values) if bounded else common.mean_ci(values)
    return {"mean": m, "ci_low": lo, "ci_high": hi, "n": len(values)}


def accuracy_table(rows: Sequence[Mapping], key: str = "test_accuracy"
                   ) -> Dict[str, Dict[int, Dict[int, float]]]:
    """``{family: {distance: {seed: accuracy}}}`` from result rows (``key`` picks the accuracy;
    ``"initialisation"`` reads the same seed's untrained model over the task's two logits: its
    eight unused logits are as likely to win as the two, which says nothing about the task)."""
    out: Dict[str, Dict[int, Dict[int, float]]] = {}
    for r in rows:
        value = r["initialisation"]["test_accuracy_two_logits"] if key == "initialisation" else r[key]
        out.setdefault(r["family"], {}).setdefault(int(r["distance"]), {})[int(r["seed"])] = float(value)
    return out


def drops(table: Mapping[str, Mapping[int, Mapping[int, float]]]) -> Tuple[Dict[str, List[float]], List[int]]:
    """Per family, per seed: accuracy at the nearest distance minus at the farthest (> 0: the
    family loses accuracy with distance); and the seeds, in order.

    Raises:
        ValueError: a family lacks a distance, or seeds differ between families or distances.
    """
    distances = sorted({d for per in table.values() for d in per})
    near, far = distances[0], distances[-1]
    seeds = None
    out = {}
    for fam, per in table.items():
        if near not in per or far not in per:
            raise ValueError(f"{fam} has no accuracy at distance {near if near not in per else far}; "
                             f"every family needs the nearest and the farthest distance")
        mine = sorted(per[near])
        if sorted(per[far]) != mine or (seeds is not None and mine != seeds):
            raise ValueError(f"{fam} has seeds {mine} at d={near} and {sorted(per[far])} at d={far}"
                             f"{'' if seeds is None else f', others {seeds}'}: the drops are "
                             f"paired by seed")
        seeds = mine
        out[fam] = [per[near][s] - per[far][s] for s in mine]
    return out, list(seeds or [])


def cnn_minus_family(family_drops: Mapping[str, Sequence[float]], reference: str = REFERENCE
                     ) -> Dict[str, List[float]]:
    """Per family other than ``reference``, per seed: the reference's drop minus the family's
    (> 0: the CNN loses more with distance)."""
    if reference not in family_drops:
        raise ValueError(f"the results hold no {reference!r} rows: the claim compares it with the others")
    ref = np.asarray(family_drops[reference], dtype=float)
    return {f: (ref - np.asarray(v, dtype=float)).tolist()
            for f, v in family_drops.items() if f != reference}


def claims(results: Mapping) -> List[Claim]:
    table = accuracy_table(results["rows"])
    family_drops, seeds = drops(table)
    differences = cnn_minus_family(family_drops)
    mixing = [f for f in common.FAMILIES if f in differences] + \
             [f for f in differences if f not in common.FAMILIES]
    if not mixing:
        raise ValueError("the results hold no token-mixing family beside the CNN")
    conf = verdicts.CONFIDENCE[verdicts.margin_of(CLAIM)["test"]]
    e, lo, hi, per_difference = common.group_effect(differences, mixing, confidence=conf)
    per_family = common.family_effects(family_drops, confidence=conf)
    for f, v in per_difference.items():
        per_family[f]["cnn_drop_minus_family_drop"] = v
    init = accuracy_table(results["rows"], "initialisation")
    distances = results["distances"]
    near, far = distances[0], distances[-1]
    details = {f: {"params": next(r["params"] for r in results["rows"] if r["family"] == f),
                   "test_accuracy": {str(d): _summary(list(per[d].values())) for d in sorted(per)},
                   "drop": _summary(family_drops[f], bounded=False)}
               for f, per in table.items()}
    if all("test_accuracy_unseen" in r for r in results["rows"]):   # every model on this machine
        unseen = accuracy_table(results["rows"], "test_accuracy_unseen")
        unseen_drops, _ = drops(unseen)
        for f, per in unseen.items():
            details[f]["test_accuracy_unseen_patterns"] = {str(d): _summary(list(per[d].values()))
                                                           for d in sorted(per)}
            details[f]["drop_unseen_patterns"] = _summary(unseen_drops[f], bounded=False)
    init_all = accuracy_table([{**r, "init_all": r["initialisation"]["test_accuracy"]}
                               for r in results["rows"]], "init_all")
    reference = {"chance_accuracy": results["reference"]["chance_accuracy"],
                 "initialisation_test_accuracy_two_logits": {
                     f: {str(d): _summary(list(per[d].values())) for d in sorted(per)}
                     for f, per in init.items()},
                 "initialisation_test_accuracy_all_logits": {
                     f: {str(d): _summary(list(per[d].values())) for d in sorted(per)}
                     for f, per in init_all.items()},
                 "test_pattern_seen_in_training": results["reference"].get(
                     "test_pattern_seen_in_training", {}),
                 "receptive_field": results["receptive_field"]}
    group = ", ".join(LABELS[f] for f in mixing)
    return [Claim(
        key=CLAIM,
        claim="CNNs cannot capture long-range dependencies: they lose more accuracy than the "
              "token-mixing families when the evidence lies far apart",
        who="the MLP-Mixer debate ('CNNs cannot capture long-range dependencies; attention does "
            "in one step')",
        experiment=f"glyph-pairs same/different task (two 4x4 glyphs d px apart) at d = "
                   f"{', '.join(str(d) for d in distances)}; every family trained on it (plan "
                   f"{results.get('plan', PLAN)}: one recipe, the Fashion-MNIST sweep's learning "
                   f"rates), {len(seeds)} seed(s), test accuracy on "
                   f"{results.get('test_n', {}).get(str(far), '?')} images per distance beside "
                   f"chance (0.5) and the same seed at initialisation (over the task's two logits)",
        figure=f"{NAME}.pdf",
        effect=f"CNN accuracy drop from d = {near} to d = {far} minus the mean drop of the "
               f"token-mixing families ({group}), paired by seed (> 0: the CNN loses more with "
               f"distance); per family: its own drop (> 0: it loses accuracy), with its "
               f"difference to the CNN's drop",
        estimate=e, low=lo, high=hi, details=details, per_family=per_family, reference=reference)]


def checks(results: Mapping) -> List[Check]:
    rf = results["receptive_field"]
    out = [Check(
        key="long-range-receptive-field",
        what=f"the CNN's last stage has a theoretical receptive field of {rf['cnn_last_stage_px']} px "
             f"(input gradient support of one central unit, all weights positive), at least the "
             f"{rf['farthest_pair_px']} px spanned by the farthest glyph pair (d + glyph); the "
             f"global average pool before the head sees the whole image in any case",
        max_abs_error=float(max(0, rf["farthest_pair_px"] - rf["cnn_last_stage_px"])),
        tolerance=0.0, details=dict(rf))]
    measured = [r for r in results["rows"] if "test_accuracy_two_logits" in r]
    if measured:
        gap = max(abs(r["test_accuracy_measured"] - r["test_accuracy_two_logits"]) for r in measured)
        out.append(Check(
            key="long-range-two-logits",
            what="the trained 10-way heads answer with the task's two logits: accuracy over all "
                 "logits equals accuracy over logits 0/1 (largest gap over the models whose "
                 "weights are on this machine)",
            max_abs_error=float(gap), tolerance=0.005, details={"models": len(measured)}))
    return out


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    table, init = accuracy_table(results["rows"]), accuracy_table(results["rows"], "initialisation")
    distances = list(results["distances"])
    claim = claims(results)[0]
    fams = [f for f in common.FAMILIES if f in table] + [f for f in table if f not in common.FAMILIES]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    ax = axes[0]
    for i, f in enumerate(fams):
        offset = (i - (len(fams) - 1) / 2) * 0.25
        stats = [accuracy_ci(list(table[f][d].values())) for d in distances]
        m = np.array([s[0] for s in stats])
        ax.errorbar(np.array(distances) + offset, m, yerr=[m - [s[1] for s in stats], [s[2] for s in stats] - m],
                    marker="o", ms=4, capsize=2, color=common.COLORS[f], label=LABELS[f])
        ax.plot(distances, [np.mean(list(init[f][d].values())) for d in distances], ":",
                color=common.COLORS[f], lw=1)
    ax.axhline(results["reference"]["chance_accuracy"], color="k", lw=0.8, ls="--", label="chance (0.5)")
    seen = results["reference"].get("test_pattern_seen_in_training", {})
    seen_line = ", ".join(f"{np.mean(list(seen[str(d)].values())):.0%}" for d in distances
                          if str(d) in seen)
    ax.set(xlabel="glyph distance d (px, top-left to top-left)"
                  + (f"\ntest pairs seen in training (same glyphs, place): {seen_line}"
                     if seen_line else ""),
           ylabel="test accuracy", xticks=distances)
    ax.set_title("accuracy vs distance (dotted: same seed at init., logits 0/1)", fontsize=9)
    ax.legend(fontsize=7)
    margin = claim.margin
    for ax, title, entries in (
            (axes[1], f"accuracy drop d={distances[0]} -> d={distances[-1]} per family",
             [(LABELS[f], claim.per_family[f], common.COLORS[f]) for f in fams]),
            (axes[2], f"CNN drop - family drop (grey: +-margin {claim.margin:g})",
             [(LABELS[f], claim.per_family[f]["cnn_drop_minus_family_drop"], common.COLORS[f])
              for f in fams if "cnn_drop_minus_family_drop" in claim.per_family[f]]
             + [("claim: token-mixing mean", {"effect": claim.estimate, "ci_low": claim.low,
                                              "ci_high": claim.high}, "k")])):
        for y, (label, v, color) in enumerate(entries):
            ax.errorbar(v["effect"], y, xerr=[[v["effect"] - v["ci_low"]], [v["ci_high"] - v["effect"]]],
                        fmt="s" if color == "k" else "o", color=color, capsize=3)
        ax.set_yticks(range(len(entries)), [e[0] for e in entries])
        ax.invert_yaxis()
        ax.axvline(0, color="0.4", lw=0.8)
        if ax is axes[2]:
            ax.axvspan(-margin, margin, color="0.85", alpha=0.5)
        ax.set_xlabel("accuracy (fraction)")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"Long-range dependencies: same/different glyph pairs "
                 f"({len(next(iter(table[fams[0]].values())))} seed(s); bars: "
                 f"{claim.confidence:.0%} interval over seeds; verdict: {claim.verdict})", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
