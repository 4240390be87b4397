"""Are MLPs less robust than CNNs and Transformers?

Evaluates the full-data models of every zoo family (trained to convergence under the one
recipe, seeds 0, 1, 2: :func:`analyses.converged.models`) on the same Fashion-MNIST test
images through :func:`probe.robustness.run` - the code path of ``python -m probe.robustness``
(one :class:`probe.robustness.RunConfig` per model, resumable units under
``<cache>/../robustness_runs/s<seed>/``):

- clean accuracy;
- Linf PGD (:func:`probe.attacks.run`, our ``pgd``: random start, step
  2.5 * eps / steps) at a few epsilons on [0, 1] images;
- the 15 ImageNet-C corruptions x 5 severities (:func:`probe.corruptions.corrupt`)
  with mCE and relative mCE (Hendrycks & Dietterich 2019, arXiv:1903.12261,
  :func:`probe.robustness.mce`) normalised by the CNN *of the same seed* - the
  CNN's own mCE and relative mCE are therefore 100 by definition (a check, not evidence);
- the Fourier heat map (Yin et al. 2019, arXiv:1906.08988,
  :func:`probe.robustness.fourier_heatmap_counts`), summarised as mean error at
  low and high spatial frequencies;
- effective robustness (Taori et al. 2020, arXiv:2007.00644): robust accuracy (PGD at the
  middle epsilon; the mean accuracy over all corruption cells) against clean accuracy on the
  same images (the attacked ones; the corrupted ones) over every trained model and seed, with
  a least-squares line fitted in logit space (both axes logit-transformed, accuracies first
  clipped to [0.5/n, 1 - 0.5/n]). A model's effective
  robustness is its robust accuracy minus the line's prediction at its clean accuracy, in
  accuracy units: a family whose lower robust accuracy only follows its lower clean accuracy
  sits on the line, so its lower clean accuracy is not read as lower robustness;
- the initialisation: each family's same-seed random initialisation (:func:`probe.zoo.build`)
  through the same run on fewer images (PGD at the middle epsilon only, no heat map; mCE
  still against the same-seed *trained* CNN), as a reference beside the trained values.

Every model sees the same images, the same PGD random starts and the same corrupted images,
so comparisons between families are paired (per seed).

Claims (margins and the interval level from ``analyses/margins.json``; the MLP group's
effect at a seed is the mean of its families' effects, the interval is over seeds, and
every non-CNN family - ViT included - gets its own effect and interval in ``per_family``):

- ``mlps_less_robust_adversarial``: CNN minus family PGD *survival rate* (robust accuracy
  divided by clean accuracy on the attacked images) at the middle epsilon; absolute robust
  accuracy, every epsilon, and the CNN-minus-family effective robustness are in the details;
- ``mlps_less_robust_corruptions``: family mCE minus 100 (the same-seed CNN's); relative mCE,
  the clean-accuracy gap, corrupted-accuracy effective robustness and the Fourier-heat-map
  bands are in the details.

    python -m analyses.robustness_comparison            # full scale (see --help)
    python -m analyses.robustness_comparison --quick    # seconds, into runs/analyses_quick/

Full scale needs the committed full-data models (``make cells-full``). With the old 1-epoch
models the trained-model part took 973 s at n_corrupt=300 / n_heatmap=50 on 2 CPU cores
(clean 19 s, PGD 182 s, corruptions 342 s, heat maps 422 s for 18 models); the initialisation
runs add an estimated 3 minutes (one epsilon on 100 images, corruptions on 100 images).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from analyses import common, converged, verdicts
from analyses.common import LABELS, Check, Claim
from probe import corruptions, robustness, zoo

NAME = "robustness_comparison"

SCALES = {
    "full": {"quick": False, "seeds": [0, 1, 2], "families": list(common.FAMILIES),
             "n_clean": 1000, "n_attack": 200, "epsilons": [0.01, 0.02, 0.05], "steps": 10,
             "n_corrupt": 300, "corruptions": list(corruptions.COMMON),
             "severities": [1, 2, 3, 4, 5], "n_heatmap": 50, "heatmap_epsilon": 3.0,
             "eval_seed": 0,
             "init": {"n_clean": 1000, "n_attack": 100, "n_corrupt": 100}},
    # quick: two MLPs and the CNN (the claims' groups), the quick recipe's 20-step cells
    "quick": {"quick": True, "seeds": [0, 1], "families": ["mixer", "fnet", "cnn"],
              "n_clean": 32, "n_attack": 8, "epsilons": [0.01, 0.02, 0.05], "steps": 2,
              "n_corrupt": 4, "corruptions": list(corruptions.COMMON), "severities": [1, 3, 5],
              "n_heatmap": 1, "heatmap_epsilon": 3.0, "eval_seed": 0,
              "init": {"n_clean": 32, "n_attack": 8, "n_corrupt": 4}},
}

ATTACK = "pgd"          # Linf PGD of probe.attacks
LOW_FREQUENCY = 0.5     # low band: radius <= 0.5 * Nyquist (cycles per image); high band: above
CHANCE = 0.1            # ten balanced classes
# the public fields of a probe.robustness.run result this analysis keeps per model
KEEP = ("n", "n_attack", "n_corrupt", "weights", "clean_accuracy", "clean_ci_low",
        "clean_ci_high", "clean_accuracy_attacked", "clean_accuracy_corrupted", "attack_steps",
        "adversarial", "corruptions", "baseline", "baseline_weights", "mce", "relative_mce",
        "relative_mce_corruptions", "ce", "fourier_heatmap")
ADV, COR = "mlps_less_robust_adversarial", "mlps_less_robust_corruptions"


# ----------------------------------------------------------------------------- compute


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


def run_config(family: str, weights: Path, baseline_weights: Path, scale: dict, *,
               init: bool = False) -> robustness.RunConfig:
    """The :class:`probe.robustness.RunConfig` of one model: the CLI's run, with PGD only,
    the same-seed trained CNN as the mCE baseline, and corruptions on the first ``n_corrupt``
    images. ``init``: the initialisation's smaller run (``scale["init"]`` sizes, the middle
    epsilon only, no heat map)."""
    sizes = scale["init"] if init else scale
    epsilons = [_middle(scale["epsilons"])] if init else [float(e) for e in scale["epsilons"]]
    return robustness.RunConfig(
        model=family, data="fashion-mnist", n=sizes["n_clean"], n_attack=sizes["n_attack"],
        n_heatmap=scale["n_heatmap"], seed=scale["eval_seed"], attacks=[ATTACK],
        epsilons=epsilons, l2_epsilons=[], steps=int(scale["steps"]),
        corruptions=list(scale["corruptions"]), severities=[int(v) for v in scale["severities"]],
        heatmap=not init, heatmap_epsilon=float(scale["heatmap_epsilon"]), baseline="cnn",
        weights=str(weights), n_corrupt=sizes["n_corrupt"], baseline_weights=str(baseline_weights))


def _part(unit: str) -> str:
    """Timing bucket (clean, attack, corruption, heatmap) of a unit name from ``on_progress``."""
    return unit.split(": ", 1)[1].split(":", 1)[0]


def row_from_result(family: str, seed: int, res: dict, *, init: bool = False) -> dict:
    """The analysis' model row: the public fields of a ``probe.robustness.run`` result (its PGD
    rows only) plus the Fourier heat map's low/high-frequency band errors."""
    row = {"family": family, "seed": int(seed), "init": init, **{k: res[k] for k in KEEP}}
    row["adversarial"] = [a for a in res["adversarial"] if a["attack"] == ATTACK]
    heat = res["fourier_heatmap"]
    row["heatmap_bands"] = band_errors(heat["error"]) if heat else None
    return row


def init_weights(family: str, seed: int, folder: Path) -> Path:
    """Write the same-seed random initialisation (:func:`probe.zoo.build`) as fp32
    safetensors named by its sha256 (so stored robustness units never outlive a changed init)."""
    folder = Path(folder)
    tmp = folder / f"{family}_s{seed}.partial.safetensors"
    digest = zoo.save_weights(zoo.build(family, seed=seed), tmp, dtype=torch.float32)
    path = folder / f"{family}_s{seed}_{digest[:12]}.safetensors"
    tmp.replace(path)
    return path


def _weights_file(model_row: dict) -> Path:
    path = Path(model_row["weights"])
    return path if path.is_absolute() else converged.ROOT / path


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    """Every (family, seed) trained model and its same-seed initialisation through
    ``probe.robustness.run`` - the code path of ``python -m probe.robustness``."""
    from tqdm import tqdm
    fams, seeds = list(scale["families"]), [int(s) for s in scale["seeds"]]
    if "cnn" not in fams:
        raise ValueError("the families must include cnn: the mCE baseline is the same-seed CNN")
    loaded = converged.models(fams, seeds, quick=bool(scale.get("quick")), progress=progress)
    model_rows = [r for _, r in loaded]
    del loaded   # robustness.run loads each model from its weights file itself
    weights = {(r["family"], int(r["seed"])): _weights_file(r) for r in model_rows}
    runs = Path(paths.cache).parent / "robustness_runs"
    jobs = [(f, s, init) for init in (False, True) for s in seeds for f in fams]
    rows, init_rows, spent = [], [], {}
    bar = tqdm(jobs, desc="robustness", unit="model", disable=not progress)
    for fam, s, init in bar:
        bar.set_postfix(model=fam, seed=s, init=init)
        w = init_weights(fam, s, runs / "init_weights") if init else weights[(fam, s)]
        cfg = run_config(fam, w, weights[("cnn", s)], scale, init=init)
        parts = {"clean": 0.0, "attack": 0.0, "corruption": 0.0, "heatmap": 0.0}
        clock = [time.perf_counter()]

        def tick(done: int, total: int, unit: str) -> None:
            now = time.perf_counter()
            parts[_part(unit)] += now - clock[0]
            clock[0] = now

        out = runs / (f"init_s{s}" if init else f"s{s}")
        res = robustness.run(cfg, out=out, progress=False, on_progress=tick)
        spent[(fam, s, init)] = parts
        (init_rows if init else rows).append(
            {**row_from_result(fam, s, res, init=init),
             "eval_time_s": round(sum(parts.values()), 2)})
    names = ("clean", "attack", "corruption", "heatmap")

    def total(init: bool) -> Dict[str, float]:
        return {f"{k[0]}_s{k[1]}": round(sum(v.values()), 2) for k, v in spent.items()
                if k[2] == init}

    timing = {"eval_s_per_model": total(False), "init_eval_s_per_model": total(True),
              "eval_s_by_part": {p: round(sum(v[p] for k, v in spent.items() if not k[2]), 2)
                                 for p in names},
              "threads": torch.get_num_threads()}
    results = {"models": model_rows, "rows": rows, "init_rows": init_rows,
               "baseline": "cnn (trained, same seed)", "attack": ATTACK,
               "middle_epsilon": _middle(scale["epsilons"]), "timing": timing,
               "code_path": "probe.robustness.run (the CLI's), RunConfig per model"}
    results["effective_robustness"] = {k: effective_robustness(results, k) for k in ER_KINDS}
    return results


# ----------------------------------------------------------------------------- tables


def _middle(epsilons: Sequence[float]) -> float:
    e = sorted(float(v) for v in epsilons if v > 0)
    return e[len(e) // 2]


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def middle_epsilon(results: Mapping) -> float:
    eps = sorted({a["epsilon"] for r in results["rows"] for a in r["adversarial"]})
    return results.get("middle_epsilon") or _middle(eps)


def by_family(rows: Sequence[dict]) -> Dict[str, Dict[int, dict]]:
    """``{family: {seed: row}}`` in the zoo's family order."""
    out: Dict[str, Dict[int, dict]] = {}
    for r in rows:
        out.setdefault(r["family"], {})[int(r["seed"])] = r
    return by_family_order(out)


def _adv(row: dict, eps: float) -> dict:
    return next(a for a in row["adversarial"] if math.isclose(a["epsilon"], eps))


def metric(row: dict, name: str, eps: Optional[float] = None) -> float:
    """One number of a model row: ``clean``, ``clean_on_corrupt``, ``clean_on_attack``,
    ``robust``/``survival`` (at ``eps``), ``corrupted`` (mean accuracy over the corruption
    cells), ``mce``, ``relative_mce``, ``heat_low``, ``heat_high``, ``heat_mean``."""
    if name == "clean":
        return _num(row["clean_accuracy"])
    if name == "clean_on_attack":
        return _num(row["clean_accuracy_attacked"])
    if name == "clean_on_corrupt":
        return _num(row["clean_accuracy_corrupted"])
    if name == "robust":
        return _num(_adv(row, eps)["robust_accuracy"])
    if name == "survival":
        return _num(_adv(row, eps)["survival"])
    if name == "corrupted":
        return float(np.mean([c["accuracy"] for c in row["corruptions"]]))
    if name in ("mce", "relative_mce"):
        return _num(row[name])
    if name.startswith("heat_"):
        return _num((row.get("heatmap_bands") or {}).get(name[5:]))
    raise ValueError(f"unknown metric {name!r}")


def paired_seeds(t: Mapping[str, Mapping[int, dict]], families: Sequence[str]) -> List[int]:
    """Seeds for which every family in ``families`` has a row."""
    return sorted(set.intersection(*(set(t[f]) for f in families))) if families else []


def _interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    v = [float(x) for x in values if not math.isnan(float(x))]
    if not v:   # nothing measured (e.g. no image survived to be attacked): None, not NaN, in JSON
        return {"effect": None, "ci_low": None, "ci_high": None, "n": 0}
    m, lo, hi = common.mean_ci(v, confidence=confidence)
    return {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(v)}


def summary(rows: Sequence[dict], name: str, eps: Optional[float] = None) -> Dict[str, dict]:
    """``{family: {"effect" (the mean), "ci_low", "ci_high", "n"}}`` over seeds (Student-t 95%)."""
    return {f: _interval([metric(r, name, eps) for _, r in sorted(rs.items())])
            for f, rs in by_family(rows).items()}


def family_values(rows: Sequence[dict], name: str, eps: Optional[float] = None,
                  ) -> Tuple[Dict[str, Dict[int, float]], List[int]]:
    """``({family: {seed: value}}, seeds)`` over the seeds every family has with a finite value."""
    t = by_family(rows)
    vals = {f: {s: metric(r, name, eps) for s, r in rs.items()} for f, rs in t.items()}
    seeds = [s for s in paired_seeds(t, list(t)) if all(math.isfinite(vals[f][s]) for f in t)]
    return vals, seeds


def effects_against_cnn(values: Mapping[str, Mapping[int, float]], seeds: Sequence[int], *,
                        sign: float = 1.0) -> Dict[str, List[float]]:
    """``{family: [sign * (CNN - family) per seed]}`` for every non-CNN family."""
    if "cnn" not in values:
        raise ValueError("the results hold no cnn rows: every effect is relative to the CNN")
    return {f: [sign * (values["cnn"][s] - v[s]) for s in seeds]
            for f, v in values.items() if f != "cnn"}


def _group(effects: Mapping[str, Sequence[float]], confidence: float = 0.95) -> dict:
    """The MLP group's effect and interval plus ``per_family`` (as ``common.group_effect``)."""
    mlps = [f for f in common.MLP_FAMILIES if f in effects]
    if not mlps or not all(len(effects[f]) for f in mlps):
        return {"effect": None, "ci_low": None, "ci_high": None, "per_family": {}, "group": mlps,
                "n_seeds": 0}
    est, lo, hi, per = common.group_effect(effects, mlps, confidence=confidence)
    return {"effect": est, "ci_low": lo, "ci_high": hi, "per_family": per, "group": mlps,
            "n_seeds": len(effects[mlps[0]])}


def group_gap(rows: Sequence[dict], name: str, eps: Optional[float] = None, *, sign: float = 1.0,
              confidence: float = 0.95) -> dict:
    """``sign * (CNN - family)`` of a metric: the MLP group's and each family's effect."""
    vals, seeds = family_values(rows, name, eps)
    return {**_group(effects_against_cnn(vals, seeds, sign=sign), confidence), "seeds": seeds}


# ----------------------------------------------------------------------------- effective robustness

ER_KINDS = ("adversarial", "corruptions")


def logit(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of accuracies on ``n`` images, clipped to ``[0.5/n, 1 - 0.5/n]``."""
    p, n = np.asarray(p, dtype=float), np.asarray(n, dtype=float)
    q = np.clip(p, 0.5 / n, 1 - 0.5 / n)
    return np.log(q / (1 - q))


def fit_line(x: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
    """``(slope, intercept)`` of the ordinary least-squares line ``y = intercept + slope * x``
    (slope 0 when every ``x`` is the same); its residuals sum to 0."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx = x - x.mean()
    var = float((dx ** 2).sum())
    slope = float((dx * (y - y.mean())).sum() / var) if var > 1e-12 else 0.0
    return slope, float(y.mean() - slope * x.mean())


def _er_points(results: Mapping, kind: str, rows: Sequence[dict]) -> List[dict]:
    eps = middle_epsilon(results)
    out = []
    for r in rows:
        if kind == "adversarial":   # clean and robust accuracy on the same (attacked) images
            clean, n_clean = metric(r, "clean_on_attack"), r["n_attack"]
            robust, n_robust = metric(r, "robust", eps), _adv(r, eps)["n"]
        else:                       # clean and corrupted accuracy on the same (corrupted) images
            clean, n_clean = metric(r, "clean_on_corrupt"), r["n_corrupt"]
            robust, n_robust = metric(r, "corrupted"), sum(c["n"] for c in r["corruptions"])
        out.append({"family": r["family"], "seed": int(r["seed"]), "clean": clean,
                    "robust": robust, "n_clean": int(n_clean), "n_robust": int(n_robust)})
    return out


def effective_robustness(results: Mapping, kind: str) -> dict:
    """Robust accuracy against clean accuracy over every trained model and seed (``kind``:
    ``"adversarial"``: PGD at the middle epsilon; ``"corruptions"``: mean accuracy over the
    corruption cells), a least-squares line in logit space, and each model's effective
    robustness = robust accuracy minus the line's prediction (accuracy units), with each
    family's mean and 95% interval over seeds. The initialisation rows (``init_rows``) are
    placed against the same line but do not enter the fit."""
    if kind not in ER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ER_KINDS)}, got {kind!r}")
    points = _er_points(results, kind, results["rows"])
    if len(points) < 3:
        raise ValueError(f"effective robustness needs at least 3 models, got {len(points)}")
    x = logit([p["clean"] for p in points], [p["n_clean"] for p in points])
    y = logit([p["robust"] for p in points], [p["n_robust"] for p in points])
    slope, intercept = fit_line(x, y)

    def place(pts: List[dict]) -> List[dict]:
        if not pts:
            return []
        xs = logit([p["clean"] for p in pts], [p["n_clean"] for p in pts])
        ys = logit([p["robust"] for p in pts], [p["n_robust"] for p in pts])
        fitted = intercept + slope * xs
        predicted = 1 / (1 + np.exp(-fitted))
        return [{**p, "predicted": float(q), "effective_robustness": float(p["robust"] - q),
                 "residual_logit": float(yy - f)}
                for p, q, yy, f in zip(pts, predicted, ys, fitted)]

    models = place(points)
    fams: Dict[str, List[float]] = {}
    for m in models:
        fams.setdefault(m["family"], []).append(m["effective_robustness"])
    y_fit = intercept + slope * x
    ss_res, ss_tot = float(((y - y_fit) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return {
        "x": ("clean accuracy on the attacked images" if kind == "adversarial"
              else "clean accuracy on the corrupted images"),
        "y": (f"PGD robust accuracy at eps {middle_epsilon(results):g}" if kind == "adversarial"
              else "mean accuracy over the corruption x severity cells"),
        "fit": {"space": "logit (both axes), accuracies clipped to [0.5/n, 1 - 0.5/n]",
                "method": "ordinary least squares over every trained model and seed",
                "slope": slope, "intercept": intercept, "n_models": len(models),
                "r2": 1 - ss_res / ss_tot if ss_tot > 0 else None},
        "models": models,
        "by_family": {f: _interval(v) for f, v in by_family_order(fams).items()},
        "init": place(_er_points(results, kind, results.get("init_rows", []))),
    }


def by_family_order(d: Mapping[str, object]) -> Dict[str, object]:
    """``d`` with its families in the zoo's order (others after, sorted)."""
    return {f: d[f] for f in list(common.FAMILIES) + sorted(set(d) - set(common.FAMILIES))
            if f in d}


def er_gap(er: Mapping, confidence: float = 0.95) -> dict:
    """CNN minus family effective robustness per seed: the MLP group and each family."""
    vals: Dict[str, Dict[int, float]] = {}
    for m in er["models"]:
        vals.setdefault(m["family"], {})[int(m["seed"])] = m["effective_robustness"]
    seeds = sorted(set.intersection(*(set(v) for v in vals.values())))
    return {**_group(effects_against_cnn(vals, seeds), confidence), "seeds": seeds,
            "fit": er["fit"]}


# ----------------------------------------------------------------------------- claims


WHO = ("a worry of the 2021 debate: MLPs without convolution's or attention's structure may be "
       "less robust; Morrison et al. 2021 (arXiv:2106.13122) found MLP-Mixers less "
       "corruption-robust than ViTs, Benz et al. 2021 (arXiv:2110.02797) found Mixer "
       "adversarially more robust than CNNs")


def _confidence(key: str) -> float:
    return verdicts.CONFIDENCE[verdicts.margin_of(key)["test"]]


def _init_reference(results: Mapping, names: Sequence[str], eps: Optional[float]) -> dict:
    """Each family's initialisation values (mean over seeds) for ``names``."""
    rows = results.get("init_rows", [])
    if not rows:
        return {}
    out = {}
    for f, rs in by_family(rows).items():
        out[f] = {n: _interval([metric(r, n, eps) for r in rs.values()])["effect"] for n in names}
    return out


def _required(gap: dict, what: str) -> dict:
    if gap["effect"] is None:
        raise ValueError(f"no seed has a {what} for the CNN and every MLP family; the claim "
                         f"needs at least one paired seed")
    return gap


def claims(results: Mapping) -> List[Claim]:
    t = by_family(results["rows"])
    if "cnn" not in t:
        raise ValueError("the results hold no cnn rows: the claims compare with the CNN")
    mlps = [f for f in common.MLP_FAMILIES if f in t]
    if not mlps:
        raise ValueError("the results hold no MLP family (mixer, resmlp, gmlp, fnet)")
    rows, init_rows = results["rows"], results.get("init_rows", [])
    eps_all = sorted({a["epsilon"] for r in rows for a in r["adversarial"]})
    mid = middle_epsilon(results)
    s = results["settings"]
    names = ", ".join(LABELS[f] for f in mlps)
    per_family_note = (f"; per_family: each non-CNN family's own effect "
                       f"({', '.join(LABELS[f] for f in t if f != 'cnn')})")
    er = {k: effective_robustness(results, k) for k in ER_KINDS}
    out = []

    # a. adversarial: CNN - family PGD survival rate (robust accuracy / clean accuracy)
    conf = _confidence(ADV)
    adv = _required(group_gap(rows, "survival", mid, confidence=conf), "PGD survival")
    seeds = adv["seeds"]
    vit_vs = {}
    if "vit" in t:
        vals, sd = family_values(rows, "survival", mid)
        vit_vs = _interval([vals["vit"][k] - float(np.mean([vals[f][k] for f in mlps]))
                            for k in sd])
    details = {
        "middle_epsilon": mid, "group": mlps, "paired_seeds": seeds,
        "robust_accuracy_cnn_minus_family": group_gap(rows, "robust", mid),
        "clean_accuracy_cnn_minus_family": group_gap(rows, "clean"),
        "survival_cnn_minus_family_by_epsilon": {f"{e:g}": group_gap(rows, "survival", e)
                                                 for e in eps_all},
        "effective_robustness_cnn_minus_family": er_gap(er["adversarial"]),
        "effective_robustness_by_family": er["adversarial"]["by_family"],
        "survival_by_family": summary(rows, "survival", mid),
        "robust_accuracy_by_family": summary(rows, "robust", mid),
        "clean_accuracy_by_family": summary(rows, "clean"),
        "vit_minus_mlps_survival": vit_vs,
    }
    reference = {"chance_accuracy": CHANCE, "initialisation": _init_reference(
        results, ("clean", "robust", "survival"), mid)}
    if init_rows:
        reference["initialisation_effect"] = group_gap(init_rows, "survival", mid)
    out.append(Claim(
        key=ADV,
        claim="MLPs are less robust to adversarial perturbations than CNNs",
        who=WHO,
        experiment=f"Linf PGD ({s['steps']} steps, random start) at eps "
                   f"{', '.join(f'{e:g}' for e in eps_all)} on {s['n_attack']} Fashion-MNIST test "
                   f"images in [0, 1], {', '.join(LABELS[f] for f in t)}, seeds "
                   f"{', '.join(map(str, seeds))} (same images and random starts for every model)",
        figure="robustness_comparison.pdf",
        effect=f"CNN minus family PGD survival rate at eps {mid:g}, paired by seed; MLP group = "
               f"mean over {names} per seed{per_family_note}. Survival = robust accuracy / clean "
               f"accuracy on the attacked images (the share of correctly classified images the "
               f"attack does not flip), so a family's lower clean accuracy is not counted as "
               f"lower robustness; > 0 means less robust than the CNN (absolute robust accuracy "
               f"and effective robustness in details)",
        estimate=adv["effect"], low=adv["ci_low"], high=adv["ci_high"], details=details,
        per_family=adv["per_family"], reference=reference))

    # b. corruptions: family mCE - 100 (the CNN of the same seed)
    conf = _confidence(COR)
    cor = _required(group_gap(rows, "mce", sign=-1.0, confidence=conf), "mCE")
    vit_vs = {}
    if "vit" in t:
        vals, sd = family_values(rows, "mce")
        vit_vs = _interval([float(np.mean([vals[f][k] for f in mlps])) - vals["vit"][k]
                            for k in sd])
    details = {
        "group": mlps, "paired_seeds": cor["seeds"],
        "relative_mce_family_minus_cnn": group_gap(rows, "relative_mce", sign=-1.0),
        "clean_accuracy_on_corrupted_images_cnn_minus_family": group_gap(rows, "clean_on_corrupt"),
        "corrupted_accuracy_cnn_minus_family": group_gap(rows, "corrupted"),
        "effective_robustness_cnn_minus_family": er_gap(er["corruptions"]),
        "effective_robustness_by_family": er["corruptions"]["by_family"],
        "mce_by_family": summary(rows, "mce"),
        "relative_mce_by_family": summary(rows, "relative_mce"),
        "relative_mce_corruptions_used": {f"{r['family']}_s{r['seed']}":
                                          r["relative_mce_corruptions"] for r in rows},
        "fourier_heatmap_error_family_minus_cnn": {
            b: group_gap(rows, f"heat_{b}", sign=-1.0) for b in ("low", "high", "mean")},
        "fourier_heatmap_band_error_by_family": {b: summary(rows, f"heat_{b}")
                                                 for b in ("low", "high")},
        "mlps_minus_vit_mce": vit_vs,
        "note": "mCE and relative mCE are normalised by the trained CNN of the same seed, so the "
                "CNN's are 100 by definition (the check robustness_cnn_mce_is_100). Relative mCE "
                "divides by the CNN's error increase, which is near zero for corruptions that "
                "barely hurt it (JPEG, pixelate on 28 px images): its per-corruption ratios then "
                "swing by hundreds of points, which is why the claim uses mCE",
    }
    reference = {"initialisation": _init_reference(results, ("clean", "corrupted", "mce"), None)}
    if init_rows:
        reference["initialisation_effect"] = group_gap(init_rows, "mce", sign=-1.0)
    n_cor = len({c["corruption"] for c in rows[0]["corruptions"]})
    n_sev = len({c["severity"] for c in rows[0]["corruptions"]})
    out.append(Claim(
        key=COR,
        claim="MLPs are less robust to common corruptions than CNNs",
        who=WHO,
        experiment=f"{n_cor} ImageNet-C corruptions x {n_sev} severities on {s['n_corrupt']} "
                   f"Fashion-MNIST test images, {', '.join(LABELS[f] for f in t)}, seeds "
                   f"{', '.join(map(str, cor['seeds']))} (same corrupted images for every "
                   f"model); mCE (Hendrycks & Dietterich 2019) normalised by the CNN of the "
                   f"same seed",
        figure="robustness_comparison.pdf",
        effect=f"family mCE minus 100 (the same-seed CNN's, by definition), in percent of the "
               f"CNN's corruption error, per seed; MLP group = mean over {names} per seed"
               f"{per_family_note}; > 0 means less robust than the CNN. mCE includes clean "
               f"error (the clean-accuracy gap on the same images, relative mCE and the "
               f"corrupted-accuracy effective robustness are in details)",
        estimate=cor["effect"], low=cor["ci_low"], high=cor["ci_high"], details=details,
        per_family=cor["per_family"], reference=reference))
    return out


def checks(results: Mapping) -> List[Check]:
    """The same-seed CNN's mCE is 100: it is normalised by itself (by construction)."""
    cnn = [r for r in results["rows"] if r["family"] == "cnn"]
    errors = [abs(_num(r["mce"]) - 100.0) for r in cnn]
    worst = max(errors) if errors and not any(map(math.isnan, errors)) else float("inf")
    return [Check(key="robustness_cnn_mce_is_100",
                  what="the trained CNN's mCE against itself (the same-seed baseline) is 100",
                  max_abs_error=worst, tolerance=1e-9,
                  details={"seeds": [int(r["seed"]) for r in cnn]})]


# ----------------------------------------------------------------------------- figures


def plot(results: dict, paths: common.Paths) -> List[Path]:
    """The figures (analyses/robustness_figures.py)."""
    from analyses.robustness_figures import plot as draw
    return draw(results, paths)


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv,
                       claims=claims, checks=checks)


if __name__ == "__main__":
    sys.exit(main())
