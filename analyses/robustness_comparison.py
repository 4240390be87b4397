"""Are MLPs less robust than CNNs and Transformers?

Evaluates every zoo family, several training seeds each, on the same
Fashion-MNIST test images through :func:`probe.robustness.run` - the code path of
``python -m probe.robustness`` (one :class:`probe.robustness.RunConfig` per model,
resumable units under ``<cache>/../robustness_runs/s<seed>/``):

- clean accuracy;
- Linf PGD (:func:`probe.attacks.run`, our ``pgd``: random start, step
  2.5 * eps / steps) at a few epsilons on [0, 1] images;
- the 15 ImageNet-C corruptions x 5 severities (:func:`probe.corruptions.corrupt`)
  with mCE and relative mCE (Hendrycks & Dietterich 2019, arXiv:1903.12261,
  :func:`probe.robustness.mce`) normalised by the CNN *of the same seed* - the
  CNN's own mCE and relative mCE are therefore 100 by definition;
- the Fourier heat map (Yin et al. 2019, arXiv:1906.08988,
  :func:`probe.robustness.fourier_heatmap_counts`), summarised as mean error at
  low and high spatial frequencies.

Every model sees the same images, the same PGD random starts and the same
corrupted images, so comparisons between families are paired (per seed).

Claims (95% Student-t intervals over seeds of per-seed differences):

- adversarial: CNN minus mean MLP PGD *survival rate* (robust accuracy divided
  by clean accuracy on the attacked images) at the middle epsilon; absolute
  robust accuracy and the comparison with ViT are in the details;
- corruptions: mean MLP mCE minus 100 (the same-seed CNN); relative mCE, the
  clean-accuracy gap, ViT and the Fourier-heat-map bands are in the details.

    python -m analyses.robustness_comparison            # full scale (see --help)
    python -m analyses.robustness_comparison --quick    # seconds, into runs/analyses_quick/

Full scale reuses the data-efficiency models (30k images, 1 epoch, seeds 0-2)
and takes about 12 minutes on 2 CPU cores.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from analyses import common
from analyses.common import COLORS, LABELS, Claim
from probe import corruptions, robustness
from probe.results import binomial_ci

NAME = "robustness_comparison"

# Evaluation sizes of the full scale fit the 15-minute budget for all 18 models on 2 CPU cores:
# a full run at n_corrupt=300 / n_heatmap=50 took 973 s (clean 19 s, PGD 182 s, corruptions
# 342 s, heat maps 422 s, all 18 models); these sizes scale that to about 710 s.
SCALES = {
    "full": {"seeds": [0, 1, 2], "families": list(common.FAMILIES), "n_train": 30000, "epochs": 1,
             "test_n": None, "n_clean": 1000, "n_attack": 200, "epsilons": [0.01, 0.02, 0.05],
             "steps": 10, "n_corrupt": 300, "corruptions": list(corruptions.COMMON),
             "severities": [1, 2, 3, 4, 5], "n_heatmap": 50, "heatmap_epsilon": 3.0,
             "eval_seed": 0},
    # quick: two MLPs, ViT and the CNN (the claims' groups), barely trained, a few images
    "quick": {"seeds": [0, 1], "families": ["mixer", "fnet", "vit", "cnn"], "n_train": 100,
              "epochs": 1, "test_n": 100, "n_clean": 32, "n_attack": 8,
              "epsilons": [0.01, 0.02, 0.05], "steps": 2, "n_corrupt": 4,
              "corruptions": list(corruptions.COMMON), "severities": [1, 3, 5], "n_heatmap": 1,
              "heatmap_epsilon": 3.0, "eval_seed": 0},
}

ATTACK = "pgd"          # Linf PGD of probe.attacks
LOW_FREQUENCY = 0.5     # low band: radius <= 0.5 * Nyquist (cycles per image); high band: above


# ----------------------------------------------------------------------------- compute


def _row(correct: int, n: int) -> dict:
    """Accuracy with its 95% Wilson interval (the rows of ``probe.robustness``)."""
    lo, hi = binomial_ci(correct, n)
    return {"accuracy": correct / n if n else None, "ci_low": lo, "ci_high": hi,
            "correct": int(correct), "n": int(n)}


def radius_grid(h: int, w: int) -> np.ndarray:
    """Distance of each cell of a centred ``h x w`` spectrum from zero frequency (cycles/image)."""
    i = np.arange(h)[:, None] - h // 2
    j = np.arange(w)[None, :] - w // 2
    return np.sqrt(i ** 2 + j ** 2)


def band_errors(error: Sequence[Sequence[float]]) -> dict:
    """Mean heat-map error over low (<= half Nyquist) and high frequencies, and overall."""
    e = np.asarray(error, dtype=float)
    h, w = e.shape
    r = radius_grid(h, w)
    cut = LOW_FREQUENCY * min(h, w) / 2
    return {"low": float(e[r <= cut].mean()), "high": float(e[r > cut].mean()),
            "mean": float(e.mean()), "cut_radius": cut}


def run_config(family: str, weights: Path, baseline_weights: Path, scale: dict
               ) -> robustness.RunConfig:
    """The :class:`probe.robustness.RunConfig` of one model: the CLI's run, with PGD only,
    the same-seed CNN as the mCE baseline, and corruptions on the first ``n_corrupt`` images."""
    return robustness.RunConfig(
        model=family, data="fashion-mnist", n=scale["n_clean"], n_attack=scale["n_attack"],
        n_heatmap=scale["n_heatmap"], seed=scale["eval_seed"], attacks=[ATTACK],
        epsilons=[float(e) for e in scale["epsilons"]], l2_epsilons=[], steps=int(scale["steps"]),
        corruptions=list(scale["corruptions"]), severities=[int(v) for v in scale["severities"]],
        heatmap=True, heatmap_epsilon=float(scale["heatmap_epsilon"]), baseline="cnn",
        weights=str(weights), n_corrupt=scale["n_corrupt"], baseline_weights=str(baseline_weights))


def _part(unit: str) -> str:
    """Timing bucket (clean, attack, corruption, heatmap) of a unit name from ``on_progress``."""
    return unit.split(": ", 1)[1].split(":", 1)[0]


def row_from_result(family: str, seed: int, res: dict) -> dict:
    """The analysis' model row from a ``probe.robustness.run`` result (same keys as before)."""
    n, n_att = res["n"], res["n_attack"]
    clean_correct = round(res["clean_accuracy"] * n)
    adversarial = []
    for a in res["adversarial"]:
        row = _row(round(a["robust_accuracy"] * n_att), n_att)
        row["robust_accuracy"] = row.pop("accuracy")
        adversarial.append({"epsilon": a["epsilon"], **row, "survival": a["survival"],
                            "survived": a["survived"], "clean_correct": a["clean_correct"]})
    corr = [{"corruption": c["corruption"], "severity": int(c["severity"]),
             **_row(round(c["accuracy"] * c["n"]), c["n"])} for c in res["corruptions"]]
    heat = res["fourier_heatmap"]
    return {"family": family, "seed": seed, "clean": _row(clean_correct, n),
            "clean_on_corrupt": res["clean_accuracy_corrupted"],
            "clean_on_attack": _row(round(res["clean_accuracy_attacked"] * n_att), n_att),
            "adversarial": adversarial, "corruptions": corr,
            "heatmap": {"epsilon": heat["epsilon"], "n": heat["n"], "error": heat["error"],
                        **band_errors(heat["error"])},
            "mce": res["mce"], "relative_mce": res["relative_mce"],
            "relative_mce_corruptions": res["relative_mce_corruptions"], "ce": res["ce"]}


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    """Every (family, seed) through ``probe.robustness.run`` - the code path of
    ``python -m probe.robustness`` - with the cached trained weights."""
    from tqdm import tqdm
    jobs = [(fam, s) for s in scale["seeds"] for fam in scale["families"]]
    records, weights = {}, {}
    for fam, s in tqdm(jobs, desc="models", unit="model", disable=not progress):
        _, records[(fam, s)] = common.trained(fam, n_train=scale["n_train"], seed=s,
                                              epochs=scale["epochs"], test_n=scale["test_n"],
                                              cache=paths.cache)
        weights[(fam, s)] = common.weights_path(fam, n_train=scale["n_train"], seed=s,
                                                epochs=scale["epochs"], cache=paths.cache)
    rows, spent = [], {}
    bar = tqdm(jobs, desc="robustness", unit="model", disable=not progress)
    for fam, s in bar:
        bar.set_postfix(model=fam, seed=s)
        if ("cnn", s) not in weights:
            raise ValueError(f"seed {s} has no cnn model: the mCE baseline is the same-seed CNN")
        cfg = run_config(fam, weights[(fam, s)], weights[("cnn", s)], scale)
        parts = {"clean": 0.0, "attack": 0.0, "corruption": 0.0, "heatmap": 0.0}
        clock = [time.perf_counter()]

        def tick(done: int, total: int, unit: str) -> None:
            now = time.perf_counter()
            parts[_part(unit)] += now - clock[0]
            clock[0] = now

        out = Path(paths.cache).parent / "robustness_runs" / f"s{s}"
        res = robustness.run(cfg, out=out, progress=False, on_progress=tick)
        spent[(fam, s)] = parts
        record = records[(fam, s)]
        rows.append({**row_from_result(fam, s, res),
                     "train": {k: record.get(k) for k in ("n_train", "epochs", "params",
                                                          "test_accuracy", "test_n",
                                                          "train_time_s")},
                     "eval_time_s": round(sum(parts.values()), 2)})
    names = ("clean", "attack", "corruption", "heatmap")
    timing = {"eval_s_per_model": {f"{k[0]}_s{k[1]}": round(sum(v.values()), 2)
                                   for k, v in spent.items()},
              "eval_s_mean_per_model": round(sum(sum(v.values()) for v in spent.values())
                                             / max(1, len(spent)), 2),
              "eval_s_by_part": {p: round(sum(v[p] for v in spent.values()), 2) for p in names},
              "threads": torch.get_num_threads()}
    return {"rows": rows, "baseline": "cnn (same seed)", "attack": ATTACK,
            "middle_epsilon": _middle(scale["epsilons"]), "timing": timing,
            "code_path": "probe.robustness.run (the CLI's), RunConfig per model"}


# ----------------------------------------------------------------------------- tables


def _middle(epsilons: Sequence[float]) -> float:
    e = sorted(float(v) for v in epsilons if v > 0)
    return e[len(e) // 2]


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def by_family(results: dict) -> Dict[str, Dict[int, dict]]:
    """``{family: {seed: row}}``."""
    out: Dict[str, Dict[int, dict]] = {}
    for r in results["rows"]:
        out.setdefault(r["family"], {})[int(r["seed"])] = r
    return out


def _adv(row: dict, eps: float) -> dict:
    return next(a for a in row["adversarial"] if math.isclose(a["epsilon"], eps))


def metric(row: dict, name: str, eps: Optional[float] = None) -> float:
    """One number of a model row: ``clean``, ``clean_on_corrupt``, ``robust``/``survival`` (at
    ``eps``), ``mce``, ``relative_mce``, ``heat_low``, ``heat_high``, ``heat_mean``."""
    if name == "clean":
        return _num(row["clean"]["accuracy"])
    if name == "robust":
        return _num(_adv(row, eps)["robust_accuracy"])
    if name == "survival":
        return _num(_adv(row, eps)["survival"])
    if name in ("mce", "relative_mce", "clean_on_corrupt"):
        return _num(row[name])
    if name.startswith("heat_"):
        return _num(row["heatmap"][name[5:]])
    raise ValueError(f"unknown metric {name!r}")


def paired_seeds(t: Dict[str, Dict[int, dict]], families: Sequence[str]) -> List[int]:
    """Seeds for which every family in ``families`` has a row."""
    common_seeds = set.intersection(*(set(t[f]) for f in families)) if families else set()
    return sorted(common_seeds)


def per_seed_gap(results: dict, name: str, reference: str, *, eps: Optional[float] = None,
                 sign: float = 1.0) -> List[float]:
    """Per seed: ``sign * (reference - mean over the MLP families)`` of a metric."""
    t = by_family(results)
    mlps = [f for f in common.MLP_FAMILIES if f in t]
    seeds = paired_seeds(t, mlps + [reference])
    return [sign * (metric(t[reference][s], name, eps)
                    - float(np.mean([metric(t[f][s], name, eps) for f in mlps])))
            for s in seeds]


def summary(results: dict, name: str, eps: Optional[float] = None) -> Dict[str, list]:
    """``{family: [mean, low, high]}`` over seeds (Student-t 95%)."""
    out = {}
    for fam, rows in by_family(results).items():
        vals = [metric(rows[s], name, eps) for s in sorted(rows)]
        out[fam] = list(common.mean_ci(vals)) if not any(map(math.isnan, vals)) else [
            float("nan")] * 3
    return out


def _ci_verdict(values: Sequence[float], margin: float) -> dict:
    est, lo, hi = common.mean_ci(values)
    return {"estimate": est, "low": lo, "high": hi,
            "verdict": common.verdict(lo, hi, margin=margin), "per_seed": list(values)}


# ----------------------------------------------------------------------------- claims


WHO = ("a worry of the 2021 debate: MLPs without convolution's or attention's structure may be "
       "less robust; Morrison et al. 2021 (arXiv:2106.13122) found MLP-Mixers less "
       "corruption-robust than ViTs, Benz et al. 2021 (arXiv:2110.02797) found Mixer "
       "adversarially more robust than CNNs")
ADV_MARGIN = 0.02
MCE_MARGIN = 5.0


def claims(results: dict) -> List[Claim]:
    t = by_family(results)
    mlps = [f for f in common.MLP_FAMILIES if f in t]
    eps_all = sorted({a["epsilon"] for r in results["rows"] for a in r["adversarial"]})
    mid = results.get("middle_epsilon") or _middle(eps_all)
    seeds = paired_seeds(t, mlps + ["cnn"])
    names = ", ".join(LABELS[f] for f in mlps)
    out = []

    # a. adversarial: CNN - MLPs of the PGD survival rate (robust accuracy / clean accuracy)
    surv = per_seed_gap(results, "survival", "cnn", eps=mid)
    est, lo, hi = common.mean_ci(surv)
    details = {
        "middle_epsilon": mid,
        "robust_accuracy_cnn_minus_mlps": _ci_verdict(
            per_seed_gap(results, "robust", "cnn", eps=mid), ADV_MARGIN),
        "clean_accuracy_cnn_minus_mlps": _ci_verdict(per_seed_gap(results, "clean", "cnn"), 0.0),
        "survival_cnn_minus_mlps_by_epsilon": {
            f"{e:g}": _ci_verdict(per_seed_gap(results, "survival", "cnn", eps=e), ADV_MARGIN)
            for e in eps_all},
        "survival_mean_by_family": summary(results, "survival", mid),
        "robust_accuracy_mean_by_family": summary(results, "robust", mid),
        "clean_accuracy_mean_by_family": summary(results, "clean"),
    }
    if "vit" in t:
        details["vs_vit_survival_vit_minus_mlps"] = _ci_verdict(
            per_seed_gap(results, "survival", "vit", eps=mid), ADV_MARGIN)
        details["vs_vit_robust_accuracy_vit_minus_mlps"] = _ci_verdict(
            per_seed_gap(results, "robust", "vit", eps=mid), ADV_MARGIN)
    s = results["settings"]
    out.append(Claim(
        key="mlps_less_robust_adversarial",
        claim="MLPs are less robust to adversarial perturbations than CNNs",
        who=WHO,
        experiment=f"Linf PGD ({s['steps']} steps, random start) at eps "
                   f"{', '.join(f'{e:g}' for e in eps_all)} on {s['n_attack']} Fashion-MNIST test "
                   f"images in [0, 1], {', '.join(LABELS[f] for f in t)}, {len(seeds)} seeds "
                   f"(same images and random starts for every model)",
        figure="robustness_comparison.pdf",
        effect=f"CNN minus mean MLP ({names}) PGD survival rate at eps {mid:g}, paired by seed; "
               f"survival = robust accuracy / clean accuracy on the attacked images (the share "
               f"of correctly classified images the attack does not flip), so a family's lower "
               f"clean accuracy is not counted as lower robustness; > 0 means MLPs less robust "
               f"(absolute robust accuracy in details)",
        estimate=est, low=lo, high=hi, margin=ADV_MARGIN,
        rule=common.RULE + f" (margin: {ADV_MARGIN:g} survival rate)", details=details))

    # b. corruptions: MLPs' mCE - 100 (the CNN of the same seed)
    gap = per_seed_gap(results, "mce", "cnn", sign=-1.0)
    est, lo, hi = common.mean_ci(gap)
    heat = {b: _ci_verdict(per_seed_gap(results, f"heat_{b}", "cnn", sign=-1.0), 0.02)
            for b in ("low", "high", "mean")}
    details = {
        "relative_mce_mlps_minus_cnn": _ci_verdict(
            per_seed_gap(results, "relative_mce", "cnn", sign=-1.0), MCE_MARGIN),
        "clean_accuracy_on_corrupted_images_cnn_minus_mlps": _ci_verdict(
            per_seed_gap(results, "clean_on_corrupt", "cnn"), 0.0),
        "mce_mean_by_family": summary(results, "mce"),
        "relative_mce_mean_by_family": summary(results, "relative_mce"),
        "relative_mce_corruptions_used": {f"{r['family']}_s{r['seed']}":
                                          r["relative_mce_corruptions"] for r in results["rows"]},
        "fourier_heatmap_error_mlps_minus_cnn": heat,
        "fourier_heatmap_band_error_by_family": {b: summary(results, f"heat_{b}")
                                                 for b in ("low", "high")},
        "note": "mCE and relative mCE are normalised by the CNN of the same seed, so the CNN's "
                "are 100 by definition. Relative mCE divides by the CNN's error increase, which "
                "is near zero for corruptions that barely hurt it (JPEG, pixelate on 28 px "
                "images): its per-corruption ratios then swing by hundreds of points, which is "
                "why the claim uses mCE",
    }
    if "vit" in t:
        details["vs_vit_mce_mlps_minus_vit"] = _ci_verdict(
            per_seed_gap(results, "mce", "vit", sign=-1.0), MCE_MARGIN)
        details["vs_vit_relative_mce_mlps_minus_vit"] = _ci_verdict(
            per_seed_gap(results, "relative_mce", "vit", sign=-1.0), MCE_MARGIN)
    n_cor = len({r["corruption"] for r in results["rows"][0]["corruptions"]})
    n_sev = len({r["severity"] for r in results["rows"][0]["corruptions"]})
    out.append(Claim(
        key="mlps_less_robust_corruptions",
        claim="MLPs are less robust to common corruptions than CNNs",
        who=WHO,
        experiment=f"{n_cor} ImageNet-C corruptions x {n_sev} severities on {s['n_corrupt']} "
                   f"Fashion-MNIST test images, {len(seeds)} seeds (same corrupted images for "
                   f"every model); mCE (Hendrycks & Dietterich 2019) normalised by the CNN of "
                   f"the same seed",
        figure="robustness_comparison.pdf",
        effect=f"mean mCE of the MLPs ({names}) minus 100 (the CNN's, by definition), in percent "
               f"of the CNN's corruption error, per seed; > 0 means MLPs less robust. mCE "
               f"includes clean error (the clean-accuracy gap on the same images and the "
               f"clean-error-corrected relative mCE are in details)",
        estimate=est, low=lo, high=hi, margin=MCE_MARGIN,
        rule=common.RULE + f" (margin: {MCE_MARGIN:g} points of mCE)", details=details))
    return out


# ----------------------------------------------------------------------------- figures


def _order(t: dict) -> List[str]:
    return [f for f in common.FAMILIES if f in t]


def _bars(ax, fams, stats, *, offset=0.0, width=0.8, hatch=None, label=None, scale=1.0):
    for i, f in enumerate(fams):
        m, lo, hi = (scale * v for v in stats[f])
        ax.bar(i + offset, m, width, color=COLORS[f], alpha=0.85, hatch=hatch, edgecolor="k",
               lw=0.4, label=label if i == 0 else None)
        if not (math.isnan(lo) or lo == hi):
            ax.errorbar(i + offset, m, yerr=[[m - lo], [hi - m]], color="k", capsize=2, lw=0.8)


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    t = by_family(results)
    fams = _order(t)
    n_seeds = len(paired_seeds(t, fams))
    s = results["settings"]
    eps_all = sorted({a["epsilon"] for r in results["rows"] for a in r["adversarial"]})
    mid = results.get("middle_epsilon") or _middle(eps_all)
    xt = [LABELS[f] for f in fams]

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    ax = axes[0]
    clean = summary(results, "clean")
    _bars(ax, fams, clean)
    for i, f in enumerate(fams):
        ax.plot([i] * len(t[f]), [metric(r, "clean") for r in t[f].values()], "k.", ms=3)
    ax.set_xticks(range(len(fams)), xt, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_ylabel("clean accuracy")
    ax.set_title(f"Clean accuracy (n={s['n_clean']})")

    ax = axes[1]
    for f in fams:
        # eps 0: clean accuracy on the attacked images
        vals0 = [t[f][k]["clean_on_attack"]["accuracy"] for k in sorted(t[f])]
        pts = [(0.0, list(common.mean_ci(vals0)))] + [(e, summary(results, "robust", e)[f])
                                                       for e in eps_all]
        e_, st = zip(*pts)
        m, lo, hi = (np.array(v) for v in zip(*st))
        ls = "-" if f in common.MLP_FAMILIES else "--"
        ax.plot(e_, m, ls, marker="o", ms=3, color=COLORS[f], label=LABELS[f])
        ax.fill_between(e_, lo, hi, color=COLORS[f], alpha=0.12, lw=0)
    ax.axvline(mid, color="k", lw=0.6, ls=":")
    ax.set_xlabel(r"PGD $\ell_\infty$ epsilon (images in [0, 1])")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"PGD-{s['steps']} (n={s['n_attack']}; dotted: claim's eps)")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[2]
    mce, rel = summary(results, "mce"), summary(results, "relative_mce")
    _bars(ax, fams, mce, offset=-0.2, width=0.4, label="mCE")
    _bars(ax, fams, rel, offset=0.2, width=0.4, hatch="//", label="relative mCE")
    ax.axhline(100, color="k", lw=0.8)
    ax.set_xticks(range(len(fams)), xt, rotation=30)
    ax.set_ylabel("% of the same-seed CNN (CNN = 100)")
    ax.set_title(f"Corruptions: {len(s['corruptions'])} x {len(s['severities'])} sev. "
                 f"(n={s['n_corrupt']})")
    ax.legend(fontsize=7)

    ax = axes[3]
    low, high = summary(results, "heat_low"), summary(results, "heat_high")
    _bars(ax, fams, low, offset=-0.2, width=0.4, label="low freq.")
    _bars(ax, fams, high, offset=0.2, width=0.4, hatch="//", label="high freq.")
    ax.set_xticks(range(len(fams)), xt, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_ylabel("error rate under the perturbation")
    ax.set_title(f"Fourier heat map, eps={s['heatmap_epsilon']:g} (n={s['n_heatmap']})")
    ax.legend(fontsize=7)
    fig.suptitle(f"Robustness by family: mean and 95% CI over {n_seeds} seeds "
                 f"(paired: same images, attacks and corruptions)", fontsize=10)
    fig.tight_layout()
    written = [common.savefig(fig, paths, "robustness_comparison")]

    written.append(common.savefig(_heatmap_figure(results, t, fams), paths, "fourier_heatmaps"))
    return written


def _heatmap_figure(results: dict, t: dict, fams: List[str]):
    """One row: each family's Fourier heat map averaged over seeds, one shared colour scale."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle
    s = results["settings"]
    grids = {f: np.mean([np.asarray(r["heatmap"]["error"], dtype=float) for r in t[f].values()], 0)
             for f in fams}
    vmax = max(0.1, math.ceil(10 * max(float(g.max()) for g in grids.values())) / 10)
    fig, axes = plt.subplots(1, len(fams), figsize=(2.3 * len(fams) + 1.0, 2.9), squeeze=False,
                             sharey=True)
    im = None
    for ax, f in zip(axes.flat, fams):
        g = grids[f]
        h, w = g.shape
        extent = (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)
        im = ax.imshow(g, cmap="viridis", vmin=0, vmax=vmax, extent=extent)
        cut = LOW_FREQUENCY * min(h, w) / 2
        ax.add_patch(Circle((0, 0), cut, fill=False, ls="--", lw=0.7, color="w"))
        b = band_errors(g)
        ax.set_title(f"{LABELS[f]}\nlow {b['low']:.2f} | high {b['high']:.2f}", fontsize=9,
                     color=COLORS[f])
        ax.grid(False)
        ax.set_xlabel("horizontal frequency")
    axes.flat[0].set_ylabel("vertical frequency")
    fig.subplots_adjust(left=0.06, right=0.92, top=0.68, bottom=0.17, wspace=0.08)
    cax = fig.add_axes([0.935, 0.17, 0.01, 0.51])
    fig.colorbar(im, cax=cax, label="error rate")
    n_seeds = len(paired_seeds(t, fams))
    fig.suptitle(f"Fourier heat maps (Yin et al. 2019): error under each single-frequency "
                 f"perturbation (L2 eps={s['heatmap_epsilon']:g})\nn={s['n_heatmap']} images, mean "
                 f"of {n_seeds} seeds; zero frequency at the centre; dashed: low/high band limit "
                 f"(half Nyquist)", fontsize=9)
    return fig


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv)


if __name__ == "__main__":
    sys.exit(main())
