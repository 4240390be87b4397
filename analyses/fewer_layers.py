"""Does dropping one or two Transformer layers give the same speed-up as switching to an MLP?

The claim (debate on MLP-Mixer: "if speed is what you want, drop one or two Transformer
layers instead of switching to an MLP") is measured on ViT at depth 2, 3 and 4 (the zoo's;
the shallower ones are ViT's own builder with ``depth`` 2 and 3, everything else unchanged:
``analyses.common.BUILDER_VARIANTS`` ``vit_d2``, ``vit_d3``) and Mixer at its zoo depth 4,
all converged full-data cells of the one recipe, the full plan's seeds (``make cells-full``
and ``python -m analyses.cells run --plan fewer-layers``):

- test accuracy of every model (mean over seeds), beside its same-seed initialisation and
  chance (0.1);
- latency in four deployment settings, batch 1 and batch 256 x 1 and 2 CPU threads: the median
  milliseconds of a forward pass (:func:`analyses.evaluation.latency_ms`) of the first seed's
  trained model, in interleaved timing rounds (every model and setting once per round, the
  model order rotating from round to round), so that machine drift hits every model alike.
  Parameters and FLOPs per image sit beside them.

The claim's effect, fixed before any result: in each setting ``s``, the *latency-matched
depth* ``d*(s)`` is the deepest ViT of {2, 3, 4} whose median latency over the rounds is at
most Mixer's (the fewest layers dropped to run at least as fast as Mixer). The setting's
effect at seed ``k`` is ``acc(ViT-d*(s), k) - acc(Mixer, k)``: what dropping layers instead
of switching costs (< 0) or gains (> 0) in test accuracy at Mixer's speed. If even ViT-2 is
slower than Mixer, dropping one or two layers does not reach Mixer's speed in that setting:
ViT-2 is compared, but credited with no accuracy gain bought with that extra latency (the
effect is ``min(acc(ViT-2) - acc(Mixer), 0)`` per seed, and the setting is flagged
``speed_matched: false``). The claim's estimate is the mean over the settings, seed by seed,
with its interval over seeds; ``per_family`` holds each setting's own effect. It is an
equivalence claim (margin in ``analyses/margins.json``, 90% interval): *supported* when the
latency-matched ViT and Mixer are alike within the margin; *opposite* when they differ beyond
it (the sign says which route is better). Beside it, ``details`` gives the literal speed
comparison: each model's speed-up over ViT-4 per setting, paired by round.

    python -m analyses.fewer_layers            # full scale (see --help); run on an idle machine
    python -m analyses.fewer_layers --quick    # seconds, the quick recipe's models
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from analyses import common, converged, evaluation, verdicts
from analyses.common import LABELS, Check, Claim

NAME = "fewer_layers"
PLAN = "fewer-layers"
DEPTHS = {"vit_d2": 2, "vit_d3": 3, "vit": 4}     # the ViTs, shallowest first
VITS = tuple(DEPTHS)
MLP = "mixer"
MLP_DEPTH = 4
MODELS = VITS + (MLP,)
SCALES = {
    "full": {"quick": False, "batches": [1, 256], "threads": [1, 2], "rounds": 7,
             "reps": {"1": 30, "256": 5}},
    "quick": {"quick": True, "batches": [1, 8], "threads": [1, 2], "rounds": 2,
              "reps": {"1": 3, "8": 2}},
}


def setting_name(batch: int, threads: int) -> str:
    """The setting's key: ``"batch 1, 1 thread"``, ``"batch 256, 2 threads"``."""
    return f"batch {batch}, {threads} thread{'s' if threads != 1 else ''}"


# ----------------------------------------------------------------------------- compute


def _models(seeds: Sequence[int], quick: bool, progress: bool) -> list:
    """``[(model, model_row)]``: ViT and Mixer from the full plan, ViT-2/3 from the fewer-layers
    plan; a missing full-scale cell is a one-line error naming the command that trains it."""
    if not quick:
        _, store = converged.recipe_and_store(False)
        missing = [c for c in converged.cells_for([*VITS[2:], MLP], seeds) if not store.is_done(c)]
        if missing:
            raise ValueError(f"{len(missing)} full-data model(s) not trained yet ("
                             f"{', '.join(c.key for c in missing[:3])}); run `make cells-full` "
                             f"(python -m analyses.cells run --plan full --family vit mixer) first")
    base = converged.models([VITS[2], MLP], seeds, quick=quick, progress=progress)
    shallow = converged.plan_models(PLAN, quick=quick, families=list(VITS[:2]), seeds=seeds,
                                    progress=progress)
    return [(m, r) for m, r, _ in shallow] + list(base)


def _block_params(model) -> int:
    return sum(p.numel() for p in model.net.blocks[0].parameters())


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import zoo
    from analyses.cells import accuracy, test_sets
    quick = bool(scale["quick"])
    recipe, _ = converged.recipe_and_store(quick)
    seeds = sorted(int(s) for s in recipe.plans["full"]["seeds"])
    loaded = _models(seeds, quick, progress)
    _, (sub_x, sub_y) = test_sets(recipe)
    rows = []
    for model, mrow in tqdm(loaded, desc="accuracy", disable=not progress):
        init = common.build(mrow["family"], seed=int(mrow["seed"])).eval()
        rows.append({"family": mrow["family"], "seed": int(mrow["seed"]),
                     "test_accuracy": mrow["test_accuracy"],
                     "init_accuracy": round(accuracy(init, sub_x, sub_y), 4)})
    timed = {}
    for model, mrow in loaded:                 # the first seed's trained model of each
        timed.setdefault(mrow["family"], model.eval())
    missing = [m for m in MODELS if m not in timed]
    if missing:
        raise ValueError(f"no trained model of {', '.join(missing)}")
    inputs = {b: torch.rand(b, 1, 28, 28, generator=torch.Generator().manual_seed(b))
              for b in scale["batches"]}
    settings = [(int(b), int(t)) for b in scale["batches"] for t in scale["threads"]]
    latency = {setting_name(b, t): {m: [] for m in MODELS} for b, t in settings}
    before = torch.get_num_threads()
    try:
        for r in tqdm(range(int(scale["rounds"])), desc="timing rounds", disable=not progress):
            order = MODELS[r % len(MODELS):] + MODELS[:r % len(MODELS)]   # rotates every round
            for b, t in settings:
                torch.set_num_threads(t)
                for m in order:
                    latency[setting_name(b, t)][m].append(
                        evaluation.latency_ms(timed[m], inputs[b], int(scale["reps"][str(b)])))
    finally:
        torch.set_num_threads(before)
    architecture = {m: {"depth": DEPTHS.get(m, MLP_DEPTH), "blocks": len(timed[m].net.blocks),
                        "params": zoo.count_params(timed[m]),
                        "block_params": _block_params(timed[m]),
                        "flops_per_image": zoo.count_flops(timed[m])} for m in MODELS}
    return {"models": [row for _, row in loaded], "rows": rows,
            "timing": [{"setting": setting_name(b, t), "batch": b, "threads": t,
                        "latency_ms": latency[setting_name(b, t)]} for b, t in settings],
            "architecture": architecture, "init_accuracy_n": len(sub_y),
            "reference": {"chance_accuracy": 0.1}, "recipe_hash": recipe.hash}


# ----------------------------------------------------------------------------- effects


def accuracy_by_seed(results: Mapping) -> Dict[str, Dict[int, float]]:
    """``{model: {seed: test accuracy}}``."""
    out: Dict[str, Dict[int, float]] = {}
    for r in results["rows"]:
        out.setdefault(r["family"], {})[int(r["seed"])] = float(r["test_accuracy"])
    return out


def matched_depth(latency: Mapping[str, Sequence[float]]) -> Optional[str]:
    """The deepest ViT (of :data:`VITS`) whose median latency is at most Mixer's, or ``None``
    (even the shallowest is slower)."""
    limit = float(np.median(latency[MLP]))
    fast = [v for v in VITS if float(np.median(latency[v])) <= limit]
    return max(fast, key=DEPTHS.__getitem__) if fast else None


def setting_effects(results: Mapping) -> Dict[str, dict]:
    """Per setting: ``{"vit": the latency-matched ViT, "speed_matched", "effects": per-seed
    accuracy(matched ViT) - accuracy(Mixer) (unmatched: min(that of ViT-2, 0)), "seeds"}``.

    Raises:
        ValueError: a ViT's seeds differ from Mixer's (the comparison is paired by seed).
    """
    acc = accuracy_by_seed(results)
    seeds = sorted(acc[MLP])
    for v in VITS:
        if sorted(acc.get(v, {})) != seeds:
            raise ValueError(f"{v} has seeds {sorted(acc.get(v, {}))}, {MLP} {seeds}: the models "
                             f"are compared seed by seed")
    out = {}
    for s in results["timing"]:
        vit = matched_depth(s["latency_ms"])
        diffs = [acc[vit or VITS[0]][k] - acc[MLP][k] for k in seeds]
        out[s["setting"]] = {"vit": vit or VITS[0], "speed_matched": vit is not None,
                             "effects": diffs if vit else [min(d, 0.0) for d in diffs],
                             "seeds": seeds}
    return out


def latency_summary(values: Sequence[float]) -> Dict[str, float]:
    """The median over timing rounds (what the matching reads), the range, and the geometric
    mean with its 95% interval over rounds."""
    g, lo, hi = common.positive_ci(values)
    return {"median": float(np.median(values)), "min": float(np.min(values)),
            "max": float(np.max(values)), "geometric_mean": g, "ci_low": lo, "ci_high": hi}


def speedups(latency: Mapping[str, Sequence[float]]) -> Dict[str, dict]:
    """Per model: its speed-up over ViT-4, ``latency(ViT-4) / latency(model)`` per timing round
    (paired by round), summarised like :func:`latency_summary`."""
    return {m: latency_summary([v / x for v, x in zip(latency["vit"], latency[m], strict=True)])
            for m in MODELS if m != "vit"}


def claims(results: Mapping) -> List[Claim]:
    entry = verdicts.margin_of("fewer-layers")
    conf = verdicts.CONFIDENCE[entry["test"]]
    per_setting = setting_effects(results)
    effects = {s: e["effects"] for s, e in per_setting.items()}
    est, lo, hi, per_family = common.group_effect(effects, list(effects), confidence=conf)
    acc = accuracy_by_seed(results)
    inits: Dict[str, List[float]] = {}
    for r in results["rows"]:
        inits.setdefault(r["family"], []).append(float(r["init_accuracy"]))
    details = {"settings": {}, "per_seed_effect": {s: e["effects"] for s, e in per_setting.items()},
               "seeds": next(iter(per_setting.values()))["seeds"] if per_setting else []}
    for s in results["timing"]:
        name, lat = s["setting"], s["latency_ms"]
        e = per_setting[name]
        details["settings"][name] = {
            "latency_matched_vit": e["vit"], "latency_matched_depth": DEPTHS[e["vit"]],
            "speed_matched": e["speed_matched"],
            "verdict": verdicts.decide(entry["test"], per_family[name]["ci_low"],
                                       per_family[name]["ci_high"], entry["margin"]),
            "latency_ms": {m: latency_summary(lat[m]) for m in MODELS},
            "speedup_over_vit4": speedups(lat)}
    unmatched = [s for s, e in per_setting.items() if not e["speed_matched"]]
    details["unmatched_settings"] = unmatched
    reference = {"test_accuracy": {m: dict(zip(("mean", "ci_low", "ci_high"), common.mean_ci(list(v.values()))))
                                   for m, v in acc.items()},
                 "init_accuracy": {m: dict(zip(("mean", "ci_low", "ci_high"), common.mean_ci(v)))
                                   for m, v in inits.items()},
                 "init_accuracy_n": results.get("init_accuracy_n"), "chance": 0.1,
                 "architecture": results.get("architecture", {})}
    n_seeds = len(details["seeds"])
    rounds = len(results["timing"][0]["latency_ms"][MLP]) if results["timing"] else 0
    return [Claim(
        key="fewer-layers",
        claim="Dropping one or two Transformer layers gives the same speed-up as switching to an "
              "MLP: a ViT made as fast as Mixer by dropping layers is as accurate as Mixer",
        who="the MLP-Mixer debate (the speed argument for MLPs answered with shallower Transformers)",
        experiment=f"ViT at depth 2, 3 and 4 vs Mixer (depth 4), converged full-data models of one "
                   f"recipe, {n_seeds} seeds: test accuracy beside the same-seed initialisation and "
                   f"chance; forward latency of the first seed's models in "
                   f"{', '.join(details['settings'])}, {rounds} interleaved timing rounds"
                   + (f"; no ViT of depth >= 2 is as fast as Mixer in {', '.join(unmatched)}"
                      if unmatched else ""),
        figure=f"{NAME}.pdf",
        effect="test accuracy of the latency-matched ViT (the deepest of depth 2-4 whose median "
               "latency is at most Mixer's, per setting) minus Mixer's, paired by seed; mean over "
               f"the settings per seed ({round(100 * conf)}% interval over seeds); per_family: "
               "each setting",
        estimate=est, low=lo, high=hi, per_family=per_family, details=details, reference=reference)]


def checks(results: Mapping) -> List[Check]:
    """Each ViT has ``depth`` blocks, and its parameter count is ViT-4's less one block's per
    dropped layer (``depth`` changes the number of blocks and nothing else)."""
    arch = results.get("architecture", {})
    if "vit" not in arch:
        return []
    full = arch["vit"]
    errors = {v: abs(arch[v]["blocks"] - DEPTHS[v]) + abs(
        arch[v]["params"] - (full["params"] - (DEPTHS["vit"] - DEPTHS[v]) * full["block_params"]))
        for v in VITS if v in arch}
    worst = max(errors, key=errors.get)
    return [Check(key="fewer_layers_depth_only",
                  what="ViT-d has d blocks and ViT-4's parameters less (4 - d) blocks' "
                       "(max_abs_error: block-count error + parameter-count error, worst ViT)",
                  max_abs_error=float(errors[worst]), tolerance=0.0,
                  details={"worst": worst, "errors": errors})]


# ----------------------------------------------------------------------------- figure


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 2, 5 x 10^k written as plain numbers on a log axis (no minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    acc = accuracy_by_seed(results)
    per_setting = setting_effects(results)
    settings = results["timing"]
    n = len(settings) + 2
    cols = 3
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.2 * rows), squeeze=False)
    flat = axes.ravel()
    markers = {"vit_d2": "v", "vit_d3": "D", "vit": "o", MLP: "s"}
    shades = {"vit_d2": 0.45, "vit_d3": 0.7, "vit": 1.0, MLP: 1.0}

    def label(m: str) -> str:
        return f"ViT depth {DEPTHS[m]}" if m in DEPTHS else f"{LABELS[m]} depth {MLP_DEPTH}"

    for ax, s in zip(flat, settings):
        points = {}
        for m in MODELS:
            lat = latency_summary(s["latency_ms"][m])
            lm, llo, lhi = lat["median"], lat["min"], lat["max"]
            am, alo, ahi = common.mean_ci(list(acc[m].values()))
            points[m] = (lm, am)
            ax.errorbar(lm, am, xerr=[[lm - llo], [lhi - lm]], yerr=[[am - alo], [ahi - am]],
                        fmt=markers[m], color=common.COLORS[m], alpha=shades[m], capsize=2, ms=7)
        ax.plot([points[v][0] for v in VITS], [points[v][1] for v in VITS], color=common.COLORS["vit"],
                lw=0.8, alpha=0.5)
        match = per_setting[s["setting"]]["vit"]
        ax.plot(*points[match], "o", mfc="none", mec="k", ms=14, mew=1.2)
        ax.axvline(points[MLP][0], color=common.COLORS[MLP], ls=":", lw=0.8)
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set(xlabel="latency per forward pass (ms; median, bars: range over rounds)",
               ylabel="test accuracy (mean over seeds, 95% CI)",
               title=f"{s['setting']}" + ("" if per_setting[s["setting"]]["speed_matched"]
                                          else " (no ViT as fast as Mixer)"))
    handles = [Line2D([], [], marker=markers[m], color=common.COLORS[m], alpha=shades[m], ls="",
                      label=label(m)) for m in MODELS]
    handles.append(Line2D([], [], marker="o", mfc="none", mec="k", ls="", ms=10,
                          label="latency-matched ViT"))
    flat[0].legend(handles=handles, fontsize=7, loc="best")

    ax = flat[len(settings)]
    claim = (results.get("claims") or [c.as_result() for c in claims(results)])[0]
    rows_ = [("all settings (claim)", claim["effect"], claim["ci_low"], claim["ci_high"], claim["verdict"])]
    for s in settings:
        f = claim["per_family"][s["setting"]]
        rows_.append((f"{s['setting']}\n(ViT depth {DEPTHS[per_setting[s['setting']]['vit']]})",
                      f["effect"], f["ci_low"], f["ci_high"],
                      verdicts.decide(claim["test"], f["ci_low"], f["ci_high"], claim["margin"])))
    for i, (name, e, lo, hi, verdict) in enumerate(rows_):
        y = len(rows_) - 1 - i
        ax.errorbar(e, y, xerr=[[e - lo], [hi - e]], fmt="D" if i == 0 else "o",
                    color="k" if i == 0 else common.COLORS["vit"], capsize=3)
        ax.annotate(verdict, xy=(0.99, y + 0.15), xycoords=("axes fraction", "data"), ha="right",
                    fontsize=7)
    ax.axvspan(-claim["margin"], claim["margin"], color="0.85", zorder=0, label="+-margin")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows_)), [r[0] for r in reversed(rows_)], fontsize=7)
    ax.set_xlabel("latency-matched ViT minus Mixer, test accuracy\n"
                  f"(paired by seed, {round(100 * claim['confidence'])}% CI)")
    ax.set_title("The claim per setting (forest plot)", fontsize=9)
    ax.legend(fontsize=7, loc="best")

    ax = flat[len(settings) + 1]
    width = 0.8 / 3
    for j, m in enumerate(("vit_d3", "vit_d2", MLP)):
        for i, s in enumerate(settings):
            sp = speedups(s["latency_ms"])[m]
            ax.errorbar(i + (j - 1) * width, sp["median"], fmt=markers[m], color=common.COLORS[m],
                        alpha=shades[m], yerr=[[sp["median"] - sp["min"]], [sp["max"] - sp["median"]]],
                        capsize=2, label=label(m) if i == 0 else None)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set_xticks(range(len(settings)), [s["setting"].replace(", ", "\n") for s in settings], fontsize=7)
    ax.set(ylabel="speed-up over ViT depth 4 (x; median, bars: range over rounds)",
           title="Dropping layers vs switching to Mixer: speed-up")
    ax.legend(fontsize=7)
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.suptitle("Fewer Transformer layers or an MLP: accuracy vs measured latency (converged "
                 f"models, seeds: {len(next(iter(acc.values())))})", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
