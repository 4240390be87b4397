"""Are MLPs the cheaper match for attention, suited to mobile and edge devices?

The claim (debate on MLP-Mixer: "MLPs only match attention, but they are cheaper, so they
suit mobile/edge devices") is measured the way an edge deployment runs a model: one image at
a time on one CPU thread.

- Batch-1, single-thread latency of every family at 28 px (the converged full-data models)
  in interleaved timing rounds; the claim's effect is ViT's latency over the family's, minus 1
  (> 0: the family is faster than attention), paired by round.
- The same architectures at 56 and 112 px (same depth, width and patch size, so 4x and 16x the
  tokens; random weights, since latency does not depend on them): where does Mixer overtake
  ViT, whose attention grows with the square of the tokens?
- int8 dynamic quantisation (``torch.ao.quantization.quantize_dynamic`` of the Linear layers,
  the usual edge recipe for MLP-heavy models): its latency at 28 px and the accuracy it costs
  on the test set, per converged model.

    python -m analyses.edge_cost            # full scale (see --help); run on an idle machine
    python -m analyses.edge_cost --quick    # seconds, the quick recipe's models
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch

from analyses import common, evaluation, verdicts
from analyses.common import LABELS, Claim

NAME = "edge_cost"
SCALES = {
    "full": {"quick": False, "families": list(common.FAMILIES), "sizes": [28, 56, 112], "rounds": 7,
             "reps": 30},
    "quick": {"quick": True, "families": ["cnn", "mixer", "vit"], "sizes": [28, 56], "rounds": 3,
              "reps": 3},
}


def quantized(model: torch.nn.Module) -> torch.nn.Module:
    """int8 dynamic quantisation of ``model``'s Linear layers (weights int8, activations
    quantised on the fly); a copy, ``model`` is left as it is."""
    import copy
    import warnings
    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():  # torch.ao's deprecation notices: the recipe is still the usual one
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear}, dtype=torch.qint8)


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((evaluation.outputs(model, x).argmax(1) == y).double().mean())


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import zoo
    recipe, _, loaded, xt, yt = evaluation.full_models(NAME, scale, "vit", progress=progress)
    fams = list(scale["families"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the edge setting: one thread, one image
    try:
        timed = {}
        for model, row in loaded:  # the first seed's trained model of each family
            timed.setdefault(row["family"], model.eval())
        int8 = {f: quantized(m) for f, m in timed.items()}
        nets = {(f, s): zoo.families()[f].builder(10, 1, s).eval() for f in fams for s in scale["sizes"]}
        x28 = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        xs = {s: torch.rand(1, 1, s, s, generator=torch.Generator().manual_seed(s)) for s in scale["sizes"]}
        fp32: Dict[str, List[float]] = {f: [] for f in fams}
        q8: Dict[str, List[float]] = {f: [] for f in fams}
        by_size: Dict[str, Dict[str, List[float]]] = {f: {str(s): [] for s in scale["sizes"]} for f in fams}
        for _ in tqdm(range(scale["rounds"]), desc="timing rounds", disable=not progress):
            for f in fams:  # interleaved: machine drift hits every family alike
                fp32[f].append(evaluation.latency_ms(timed[f], x28, scale["reps"]))
                q8[f].append(evaluation.latency_ms(int8[f], x28, scale["reps"]))
                for s in scale["sizes"]:
                    by_size[f][str(s)].append(evaluation.latency_ms(nets[(f, s)], xs[s], scale["reps"]))
        accuracy = []
        for model, row in tqdm(loaded, desc="int8 accuracy", disable=not progress):
            accuracy.append({"family": row["family"], "seed": row["seed"], "fp32": _accuracy(model, xt, yt),
                             "int8": _accuracy(quantized(model), xt, yt)})
    finally:
        torch.set_num_threads(before)
    rows = [{"family": f, "params": zoo.count_params(timed[f]),
             "flops_per_image_28px": zoo.count_flops(timed[f]),
             "latency_ms_fp32": fp32[f], "latency_ms_int8": q8[f],
             "latency_ms_by_size": by_size[f]} for f in fams]
    return {"models": [row for _, row in loaded], "rows": rows, "accuracy": accuracy,
            "test_n": len(yt), "threads": 1, "batch": 1, "recipe_hash": recipe.hash}


# ----------------------------------------------------------------------------- claims


def _rows(results: Mapping) -> Dict[str, dict]:
    return {r["family"]: r for r in results["rows"]}


def latency_effects(results: Mapping, key: str = "latency_ms_fp32") -> Dict[str, List[float]]:
    """Per non-ViT family, per timing round: ViT latency / family latency - 1 (> 0: faster)."""
    return evaluation.paired_by_round({f: r[key] for f, r in _rows(results).items()}, "vit",
                                      lambda family, vit: vit / family - 1.0)


def crossover(results: Mapping, family: str = "mixer") -> Dict[str, object]:
    """Median latency ratio ViT / ``family`` per input size, and the smallest size where the
    family is faster (``None``: at no measured size)."""
    rows = _rows(results)
    if family not in rows:
        return {}
    ratios = {s: float(np.median(rows["vit"]["latency_ms_by_size"][s]) / np.median(v))
              for s, v in rows[family]["latency_ms_by_size"].items()}
    faster = [int(s) for s, r in ratios.items() if r > 1]
    return {"vit_over_family": ratios, "family_faster_from_px": min(faster) if faster else None}


def claims(results: Mapping) -> List[Claim]:
    rows = _rows(results)
    mlps = [f for f in common.MLP_FAMILIES if f in rows]
    if not mlps:
        raise ValueError("the results hold no MLP family (mixer, resmlp, gmlp, fnet)")
    conf = verdicts.CONFIDENCE[verdicts.margin_of("cost-effective")["test"]]
    e, lo, hi, per_family = common.group_effect(latency_effects(results), mlps, confidence=conf)
    acc: Dict[str, List[dict]] = {}
    for a in results["accuracy"]:
        acc.setdefault(a["family"], []).append(a)
    details = {f: {"params": r["params"], "mflops_28px": r["flops_per_image_28px"] / 1e6,
                   "latency_ms_fp32": common.positive_ci(r["latency_ms_fp32"]),
                   "latency_ms_int8": common.positive_ci(r["latency_ms_int8"]),
                   "latency_ms_by_size": {s: float(np.median(v)) for s, v in r["latency_ms_by_size"].items()},
                   "int8_accuracy_drop": common.mean_ci([a["fp32"] - a["int8"] for a in acc.get(f, [])])
                   if acc.get(f) else None}
               for f, r in rows.items()}
    g8, l8, h8, pf8 = common.group_effect(latency_effects(results, "latency_ms_int8"), mlps, confidence=conf)
    details["int8_latency_effect"] = {"estimate": g8, "ci_low": l8, "ci_high": h8, "per_family": pf8}
    details["mixer_vs_vit_by_size"] = crossover(results)
    group = ", ".join(LABELS[f] for f in mlps)
    return [Claim(
        key="cost-effective",
        claim="MLPs only match attention but are cheaper to run, so they suit mobile and edge devices",
        who="the MLP-Mixer debate (MLPs as the cheap alternative to Transformers on edge devices)",
        experiment=f"batch-1 latency on one CPU thread of the converged full-data models at 28 px, "
                   f"{len(rows['vit']['latency_ms_fp32'])} interleaved timing rounds; beside it int8 "
                   f"dynamic quantisation (latency, test-accuracy cost on {results.get('test_n', '?')} "
                   f"images) and the same architectures at "
                   f"{', '.join(rows['vit']['latency_ms_by_size'])} px",
        figure="edge_cost.pdf",
        effect=f"ViT latency / family latency - 1, paired by timing round (> 0: faster than "
               f"attention); MLP group = mean over {group} per round",
        estimate=e, low=lo, high=hi, details=details, per_family=per_family,
        reference={"accuracy": {f: common.mean_ci([a["fp32"] for a in v]) for f, v in acc.items()}})]


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    rows = results["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for r in rows:
        sizes = [int(s) for s in r["latency_ms_by_size"]]
        ax.plot(sizes, [np.median(v) for v in r["latency_ms_by_size"].values()], marker="o",
                color=common.COLORS[r["family"]], label=LABELS[r["family"]])
    ax.set(xscale="log", yscale="log", xlabel="input side (px)", ylabel="latency, batch 1, 1 thread (ms)",
           title="latency vs input size (same architecture)")
    ax.set_xticks(sorted({int(s) for r in rows for s in r["latency_ms_by_size"]}))
    ax.get_xaxis().set_major_formatter(plt.ScalarFormatter())
    ax.legend(fontsize=7)
    ax = axes[1]
    x = np.arange(len(rows))
    for i, r in enumerate(rows):
        for offset, key, marker in ((-0.15, "latency_ms_fp32", "o"), (0.15, "latency_ms_int8", "s")):
            m, lo, hi = common.positive_ci(r[key])
            ax.errorbar(i + offset, m, yerr=[[m - lo], [hi - m]], fmt=marker, color=common.COLORS[r["family"]],
                        capsize=2)
    ax.plot([], [], "o", color="k", label="fp32")
    ax.plot([], [], "s", color="k", label="int8 dynamic")
    ax.set_xticks(x, [LABELS[r["family"]] for r in rows], rotation=30)
    ax.set(ylabel="latency at 28 px (ms)", title="fp32 vs int8, batch 1, 1 thread")
    ax.legend(fontsize=7)
    ax = axes[2]
    acc: Dict[str, List[dict]] = {}
    for a in results["accuracy"]:
        acc.setdefault(a["family"], []).append(a)
    for r in rows:
        f = r["family"]
        lat = float(np.median(r["latency_ms_fp32"]))
        for key, marker in (("fp32", "o"), ("int8", "s")):
            values = [a[key] for a in acc.get(f, [])]
            if values:
                ax.scatter([lat if key == "fp32" else float(np.median(r["latency_ms_int8"]))],
                           [np.mean(values)], marker=marker, color=common.COLORS[f],
                           label=LABELS[f] if key == "fp32" else None)
    ax.set(xlabel="latency at 28 px (ms)", ylabel="test accuracy (mean over seeds)",
           title="accuracy vs latency (squares: int8)")
    ax.legend(fontsize=7)
    fig.suptitle("Edge cost: one image, one CPU thread (converged models at 28 px; random weights "
                 "at larger sizes, where only the time is measured)", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims)


if __name__ == "__main__":
    sys.exit(main())
