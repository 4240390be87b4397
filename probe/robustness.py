"""Robustness of a model: adversarial attacks, corruption sweep with mCE, Fourier heat map.

``python -m probe.robustness --model mixer`` is the workbench's main job.

- Attacks (:mod:`probe.attacks`): robust accuracy vs epsilon for FGSM, PGD
  (Linf, L2), DeepFool-L2, CW-L2 and APGD-CE; every adversarial example is
  checked to lie in the epsilon ball and in [0, 1] before it is counted.
- Corruptions (:mod:`probe.corruptions`): accuracy for every corruption x
  severity, corrupted on the fly or read from pre-made ImageNet-C
  (``--corruptions-from imagenet-c:PATH``, :mod:`probe.imagenet_c`); corruption error (CE),
  mCE and relative mCE as in Hendrycks & Dietterich 2019 (arXiv:1903.12261,
  :mod:`probe.mce`), normalised by a baseline: on Fashion-MNIST the zoo's ``cnn``
  (:data:`BASELINE_MODEL`) plays AlexNet's role; for ImageNet-like data and timm models
  AlexNet's published ImageNet-C errors (``--baseline alexnet``); ``--baseline none``
  skips mCE. mCE averages the 15 ImageNet-C corruptions only (the 4 extras are
  reported but, as in the paper, left out of the mean).
- Fourier heat map (Yin et al. 2019, "A Fourier Perspective on Model Robustness
  in Computer Vision", arXiv:1906.08988; :mod:`probe.heatmap`): error rate under
  ``x + r * eps * U_ij`` for 2-D Fourier basis images ``U_ij`` (unit L2 norm), ``r`` a
  random sign per image, clipped to [0, 1]; the grid is centred (zero frequency in the
  middle): every frequency up to 32 px, the 31 x 31 around the centre above
  (``--heatmap-size``), in memory bounded at any image size.

``--device cuda`` runs data, corruptions, attacks and heat map on the GPU; ``--amp bf16``
evaluates clean, corrupted and heat-map images under bf16 autocast (attacks stay fp32 unless
``--amp-attacks``), recorded in the results.

Every accuracy carries a 95% Wilson interval. Work is split into units (clean,
attack x epsilon, corruption x severity, heat map); each is written atomically
to ``<out>/<data>/<model>/robustness.units.json`` as soon as it finishes, so a
killed run continues where it stopped (``--fresh`` starts over) and ends with the
same results as an uninterrupted run. Examples are processed in fixed chunks
whose random streams depend only on (seed, unit, chunk) (:mod:`probe.units`), so ``torchrun
--nproc_per_node=N -m probe.robustness ...`` shards the chunks over processes
(gloo on CPU, NCCL on GPU), sums the counts, and gets exactly the
single-process numbers. ``run(..., on_progress=f)`` calls ``f(done, total, unit)``
after every unit (the app's progress bar; :func:`small_config` is the app's run).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from . import attacks as attacks_mod
from . import cli, imagenet_c, zoo
from .cli import safe_name
from .heatmap import fourier_basis, fourier_heatmap_counts, heatmap_size
from .mce import (ALEXNET, NO_BASELINE, ZOO_BASELINE, alexnet_baseline, check_baseline_input,
                  corruption_errors, default_baseline, mce)
from .results import atomic_write_json, binomial_ci, check_writable, read_json, write_csv
from .units import ShardImages, Dist, UnitStore, chunk_seed

__all__ = [
    "SCHEMA_VERSION", "BASELINE_MODEL", "DEFAULT_LINF_EPSILONS", "DEFAULT_L2_EPSILONS",
    "DEFAULT_ATTACKS", "RunConfig", "run", "fourier_basis", "fourier_heatmap_counts",
    "corruption_errors", "mce", "load_results", "results_stamp", "SMALL_RUN", "small_config",
    "main",
]

SCHEMA_VERSION = 2  # 2: per-example clean flags, attack survival, n_corrupt, baseline_weights
BASELINE_MODEL = ZOO_BASELINE
DEFAULT_ATTACKS = ["fgsm", "pgd", "pgd-l2", "deepfool-l2", "cw-l2", "apgd-ce"]
DEFAULT_LINF_EPSILONS = [0.0, 0.01, 0.02, 0.05, 0.1]
DEFAULT_L2_EPSILONS = [0.0, 0.25, 0.5, 1.0, 2.0]
DEFAULT_SEVERITIES = [1, 2, 3, 4, 5]
# options added after schema 2: left out of a run's identity at their default, so units stored
# before them still resume
_LATER_OPTIONS = ("heatmap_size", "corruptions_from", "amp", "amp_attacks")


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (stored with its units)."""

    model: str
    data: str = "fashion-mnist"
    n: int = 500
    n_attack: int = 100
    n_heatmap: int = 100
    seed: int = 0
    attacks: List[str] = field(default_factory=lambda: list(DEFAULT_ATTACKS))
    epsilons: List[float] = field(default_factory=lambda: list(DEFAULT_LINF_EPSILONS))
    l2_epsilons: List[float] = field(default_factory=lambda: list(DEFAULT_L2_EPSILONS))
    steps: Optional[int] = None
    corruptions: List[str] = field(default_factory=list)
    severities: List[int] = field(default_factory=lambda: list(DEFAULT_SEVERITIES))
    heatmap: bool = True
    heatmap_epsilon: float = 3.0
    baseline: Optional[str] = None           # "alexnet", "none" or a model; None: by data and
                                             # model (mce.default_baseline)
    weights: str = zoo.DEFAULT_WEIGHTS   # shipped for the zoo, pretrained for timm:
    n_corrupt: Optional[int] = None          # corrupt only the first n_corrupt images (default: n)
    baseline_weights: Optional[str] = None   # baseline's weights (default: shipped, or random
                                             # when ``weights`` is random)
    heatmap_size: Optional[int] = None       # K x K frequencies (default: all up to 32 px, else 31)
    corruptions_from: Optional[str] = None   # "imagenet-c:PATH": pre-made corrupted images
    amp: Optional[str] = None                # "bf16": autocast clean/corruption/heat-map evaluation
    amp_attacks: bool = False                # with amp: attacks under autocast too

    def identity(self) -> dict:
        """The fields that must match for stored units to be reused."""
        d = asdict(self)
        for key in _LATER_OPTIONS:
            if d[key] in (None, False):
                del d[key]
        d["schema_version"] = SCHEMA_VERSION
        return d


# ----------------------------------------------------------------------------- helpers


def results_folder(out: Path, data: str, model: str) -> Path:
    """Where a model's results on a dataset go: ``<out>/<data>/<model>`` (safe folder names)."""
    return Path(out) / safe_name(data) / safe_name(model)


def _accuracy_row(correct: int, n: int) -> dict:
    lo, hi = binomial_ci(correct, n)
    return {"accuracy": correct / n if n else float("nan"), "ci_low": lo, "ci_high": hi,
            "correct": correct, "n": n}


# ----------------------------------------------------------------------------- the app's small run


SMALL_RUN = dict(n=100, n_attack=50, attacks=["fgsm", "pgd"], epsilons=[0.0, 0.01, 0.02, 0.05, 0.1],
                 corruptions=["gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression"],
                 severities=[1, 3, 5], heatmap=False)


def small_config(model: str, *, weights: str = zoo.DEFAULT_WEIGHTS, **overrides) -> RunConfig:
    """A :class:`RunConfig` of :data:`SMALL_RUN` (the app's quick run); ``overrides`` replace fields."""
    return RunConfig(model=model, weights=weights, **{**SMALL_RUN, **overrides})


# ----------------------------------------------------------------------------- the run


def _load_model(name: str, device: str, weights: str = zoo.DEFAULT_WEIGHTS):
    from . import zoo
    return zoo.load(name, device=device, weights=weights)


def _count_correct(model, x, y) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def _plan(cfg: RunConfig) -> List[Tuple[str, str, dict]]:
    """Ordered units: (unit id, kind, parameters)."""
    units = [("clean", "clean", {})]
    for name in cfg.attacks:
        spec = attacks_mod.get(name)
        eps = cfg.epsilons if spec.norm == "linf" else cfg.l2_epsilons
        if spec.minimization:
            units.append((f"attack:{name}", "attack", {"attack": name, "epsilons": list(eps)}))
        else:
            for e in eps:
                units.append((f"attack:{name}@{e:g}", "attack", {"attack": name, "epsilons": [e]}))
    for c in cfg.corruptions:
        for s in cfg.severities:
            units.append((f"corruption:{c}@{s}", "corruption", {"corruption": c, "severity": s}))
    if cfg.heatmap:
        units.append(("heatmap", "heatmap", {}))
    return units


def _n_corrupt(cfg: RunConfig, n: int) -> int:
    return n if cfg.n_corrupt is None else min(cfg.n_corrupt, n)


def _clean_flags(store: UnitStore) -> torch.Tensor:
    return torch.tensor([int(v) for v in store.get("clean")["flags"]], dtype=torch.long)


_SCRATCH: Dict[Tuple, torch.Tensor] = {}


def _scratch_like(t: torch.Tensor) -> torch.Tensor:
    """One reusable output buffer like ``t`` (the last shape asked for only): the corruption
    units write every corrupted chunk into it instead of a fresh batch-sized tensor."""
    key = (tuple(t.shape), t.dtype, str(t.device))
    if key not in _SCRATCH:
        _SCRATCH.clear()
        _SCRATCH[key] = torch.empty_like(t, memory_format=torch.contiguous_format)
    return _SCRATCH[key]


def _run_unit(kind: str, params: dict, unit: str, model, x, y, cfg: RunConfig, dist: Dist,
              clean_flags: Optional[torch.Tensor] = None, *, clean=None):
    """Counts for one unit on this process's chunks, summed over processes.

    ``clean_flags``: per-example clean correctness (the clean unit's), for attack survival.
    ``clean``: the clean dataset (pre-made corrupted images are matched to its files).
    """
    from . import corruptions as corr_mod
    if kind == "clean":
        flags = torch.zeros(len(x), dtype=torch.long)
        for c, sl in dist.chunks(len(x)):
            with torch.no_grad():
                flags[sl] = (model(x[sl]).argmax(1) == y[sl]).long().cpu()
        flags = dist.sum(flags)
        return {"correct": int(flags.sum()), "flags": "".join(str(int(v)) for v in flags)}
    if kind == "attack":
        n = min(cfg.n_attack, len(x))
        counts = torch.zeros(len(params["epsilons"]), dtype=torch.long)
        survived = torch.zeros(len(params["epsilons"]), dtype=torch.long)
        for c, sl in dist.chunks(n):
            seed = chunk_seed(cfg.seed, unit, c)
            correct = attacks_mod.run(model, x[sl], y[sl], params["attack"], params["epsilons"],
                                      steps=cfg.steps, seed=seed).cpu()
            counts += correct.sum(1)
            survived += (correct & clean_flags[sl].bool()[None]).sum(1)
        return {"correct": [int(v) for v in dist.sum(counts)],
                "survived": [int(v) for v in dist.sum(survived)]}
    if kind == "corruption":
        total = 0
        premade = (imagenet_c.cell(cfg.corruptions_from, params["corruption"], params["severity"],
                                   n=cfg.n, seed=cfg.seed, model=model, clean=clean)
                   if cfg.corruptions_from else None)
        for c, sl in dist.chunks(_n_corrupt(cfg, len(x))):
            if premade is not None:
                xc, yc = imagenet_c.chunk(premade, sl, x.device)
            else:
                g = torch.Generator(device=x.device).manual_seed(chunk_seed(cfg.seed, unit, c))
                xc = corr_mod.corrupt(x[sl], params["corruption"], params["severity"], generator=g,
                                      out=_scratch_like(x[sl]))
                yc = y[sl]
            total += _count_correct(model, xc, yc)
        return int(dist.sum(torch.tensor([total]))[0])
    if kind == "heatmap":
        n = min(cfg.n_heatmap, len(x))
        grid = torch.zeros(heatmap_size(*x.shape[-2:], cfg.heatmap_size), dtype=torch.long)
        for c, sl in dist.chunks(n):
            g = torch.Generator().manual_seed(chunk_seed(cfg.seed, unit, c))
            grid += fourier_heatmap_counts(model, x[sl], y[sl], epsilon=cfg.heatmap_epsilon,
                                           generator=g, size=cfg.heatmap_size)
        return dist.sum(grid).tolist()
    raise ValueError(f"unknown unit kind {kind}")


def _evaluate(model, x, y, cfg: RunConfig, store: UnitStore, dist: Dist, *, label: str,
              progress: bool, report: Callable[[str], None], clean=None) -> None:
    """Run the units of ``cfg`` not in ``store``; ``report(name)`` after every unit, stored ones first."""
    from tqdm import tqdm
    todo = [u for u in _plan(cfg) if u[0] not in store]
    for unit in (u for u, _, _ in _plan(cfg) if u in store):
        report(f"{label}: {unit}")
    bar = tqdm(todo, desc=label, unit="unit", disable=not (progress and dist.main), leave=True)
    for unit, kind, params in bar:
        bar.set_postfix_str(unit)
        flags = _clean_flags(store) if kind == "attack" else None
        with _autocast(cfg, kind, dist.device):
            store.put(unit, _run_unit(kind, params, unit, model, x, y, cfg, dist, flags,
                                      clean=clean))
        report(f"{label}: {unit}")


def _autocast(cfg: RunConfig, kind: str, device: str):
    """bf16 autocast for a unit when ``cfg.amp`` asks for it; attacks only with ``amp_attacks``."""
    if cfg.amp is None or (kind == "attack" and not cfg.amp_attacks):
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def _resolve(cfg: RunConfig, model) -> RunConfig:
    """``cfg`` with its default baseline filled in for ``model``; options checked before work."""
    if cfg.baseline is None:
        cfg = replace(cfg, baseline=default_baseline(cfg.data, model.input_size))
    if cfg.heatmap:
        heatmap_size(*model.input_size[-2:], cfg.heatmap_size)
    if cfg.amp not in (None, "bf16"):
        raise ValueError(f"amp must be None or 'bf16', got {cfg.amp!r}")
    if cfg.corruptions and cfg.baseline == ALEXNET:
        alexnet_baseline(cfg.corruptions, cfg.severities)
    if cfg.corruptions and cfg.corruptions_from:
        imagenet_c.check_cells(cfg.corruptions_from, cfg.corruptions, cfg.severities)
    return cfg


def _sweeps_baseline(cfg: RunConfig) -> bool:
    """Whether the run evaluates a baseline model (not AlexNet's published errors, not none)."""
    return bool(cfg.corruptions) and cfg.baseline not in (ALEXNET, NO_BASELINE)


def _baseline_config(cfg: RunConfig) -> RunConfig:
    return RunConfig(model=cfg.baseline, data=cfg.data, n=cfg.n, n_attack=cfg.n_attack,
                     n_heatmap=cfg.n_heatmap, seed=cfg.seed, attacks=[],
                     epsilons=cfg.epsilons, l2_epsilons=cfg.l2_epsilons, steps=cfg.steps,
                     corruptions=list(cfg.corruptions), severities=list(cfg.severities),
                     heatmap=False, baseline=cfg.baseline, n_corrupt=cfg.n_corrupt,
                     weights=_baseline_weights(cfg), corruptions_from=cfg.corruptions_from,
                     amp=cfg.amp)


def _baseline_weights(cfg: RunConfig) -> Optional[str]:
    if cfg.baseline == ALEXNET:
        return "published (Hendrycks & Dietterich 2019)"
    if cfg.baseline == NO_BASELINE:
        return None
    if cfg.baseline_weights is not None:
        return cfg.baseline_weights
    return "random" if zoo.resolve_weights(cfg.model, cfg.weights) == "random" else zoo.DEFAULT_WEIGHTS


def _assemble(cfg: RunConfig, store: UnitStore, n: int, base: Optional[dict]) -> dict:
    units = store.units
    flags = _clean_flags(store)
    clean = _accuracy_row(units["clean"]["correct"], n)
    adversarial = []
    n_att = min(cfg.n_attack, n)
    n_cor = _n_corrupt(cfg, n)
    clean_attacked = int(flags[:n_att].sum())
    for unit, kind, params in _plan(cfg):
        if kind != "attack":
            continue
        spec = attacks_mod.get(params["attack"])
        for e, correct, survived in zip(params["epsilons"], units[unit]["correct"],
                                        units[unit]["survived"]):
            row = _accuracy_row(correct, n_att)
            adversarial.append({"attack": spec.name, "norm": spec.norm, "epsilon": e,
                                "robust_accuracy": row["accuracy"], "ci_low": row["ci_low"],
                                "ci_high": row["ci_high"], "n": n_att,
                                "survival": survived / clean_attacked if clean_attacked else None,
                                "survived": survived, "clean_correct": clean_attacked})
    corruption_rows = []
    for c in cfg.corruptions:
        for s in cfg.severities:
            row = _accuracy_row(units[f"corruption:{c}@{s}"], n_cor)
            corruption_rows.append({"corruption": c, "severity": s, "accuracy": row["accuracy"],
                                    "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": n_cor})
    result = {
        "schema_version": SCHEMA_VERSION, "model": cfg.model, "data": cfg.data, "n": n,
        "n_attack": n_att, "n_corrupt": n_cor, "seed": cfg.seed, "weights": str(cfg.weights),
        "clean_accuracy": clean["accuracy"], "clean_ci_low": clean["ci_low"],
        "clean_ci_high": clean["ci_high"],
        "attack_steps": cfg.steps, "adversarial": adversarial, "corruptions": corruption_rows,
        "clean_accuracy_attacked": clean_attacked / n_att if n_att else None,
        "clean_accuracy_corrupted": int(flags[:n_cor].sum()) / n_cor if n_cor else None,
        "baseline": cfg.baseline, "baseline_weights": _baseline_weights(cfg),
        "amp": cfg.amp or "none", "amp_attacks": cfg.amp_attacks,
        "corruptions_from": cfg.corruptions_from,
        "mce": None, "relative_mce": None, "relative_mce_corruptions": 0, "ce": {},
        "fourier_heatmap": None,
    }
    if base is not None and corruption_rows:
        result["mce"], result["relative_mce"], result["ce"] = mce(
            corruption_rows, result["clean_accuracy_corrupted"], base["corruptions"],
            base["clean_accuracy"])
        result["relative_mce_corruptions"] = sum(v["relative_ce"] is not None
                                                 for v in result["ce"].values())
    if cfg.heatmap:
        grid = torch.tensor(units["heatmap"], dtype=torch.float64)
        n_h = min(cfg.n_heatmap, n)
        result["fourier_heatmap"] = {"epsilon": cfg.heatmap_epsilon, "n": n_h,
                                     "error": (grid / n_h).tolist(),
                                     "figure": "fourier_heatmap.pdf"}
    return result


def run(cfg: RunConfig, *, out: Path, device: str = "cpu", fresh: bool = False,
        data_root: Optional[str] = None, progress: bool = True,
        on_progress: Optional[Callable[[int, int, str], None]] = None) -> dict:
    """Run (or resume) one model's robustness evaluation; returns the results dict.

    Writes ``<out>/<data>/<model>/robustness.json`` (+ ``.csv`` and figures) on
    the main process. mCE is relative to ``cfg.baseline``: a baseline model's corruption
    sweep is run (or resumed) the same way under its own folder; ``"alexnet"`` uses the
    published AlexNet errors, ``"none"`` skips mCE. ``on_progress(done, total, name)`` is
    called on the main process after every unit, resumed units first, the baseline's
    (``"baseline <name>: <unit>"``) before the model's (``"<model>: <unit>"``); the last: done == total.
    """
    from . import data as data_mod
    dist = Dist(device)
    done = total = 0

    def report(unit: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None and dist.main:
            on_progress(done, total, unit)

    try:
        model = _load_model(cfg.model, dist.device, cfg.weights)
        if dist.main:
            print(f"weights: {zoo.describe_weights(model)} ({cfg.model})", file=sys.stderr)
        cfg = _resolve(cfg, model)
        total = len(_plan(cfg)) + (len(_plan(_baseline_config(cfg))) if _sweeps_baseline(cfg)
                                   else 0)
        bmodel = None
        if _sweeps_baseline(cfg):
            bweights = _baseline_weights(cfg)
            same = (zoo.resolve_weights(cfg.model, cfg.weights)
                    == zoo.resolve_weights(cfg.baseline, bweights))
            bmodel = (model if cfg.baseline == cfg.model and same
                      else _load_model(cfg.baseline, dist.device, bweights))
            check_baseline_input(cfg.baseline, bmodel.input_size, cfg.model, model.input_size)
        ds = data_mod.load(cfg.data, "test", root=data_root, n=cfg.n, seed=cfg.seed, model=model)
        # each process decodes only its own chunks (1/world of the images under torchrun)
        x = ShardImages(ds, dist, fit=lambda t: data_mod.fit_to_model(t, model.input_size),
                        device=dist.device, load=data_mod.decode)
        y = data_mod.labels(ds).to(dist.device)
        folder = results_folder(out, cfg.data, cfg.model)
        base = None
        if bmodel is not None:
            bcfg = _baseline_config(cfg)
            bfolder = results_folder(out, cfg.data, cfg.baseline)
            bstore = UnitStore(bfolder / "baseline.units.json", bcfg.identity(), fresh=fresh,
                               writer=dist.main)
            dist.barrier()
            _evaluate(bmodel, x, y, bcfg, bstore, dist, label=f"baseline {cfg.baseline}",
                      progress=progress, report=report, clean=ds)
            n_cor = _n_corrupt(cfg, len(x))
            base = {"clean_accuracy": int(_clean_flags(bstore)[:n_cor].sum()) / n_cor,
                    "corruptions": [{"corruption": c, "severity": s,
                                     "accuracy": bstore.get(f"corruption:{c}@{s}") / n_cor}
                                    for c in cfg.corruptions for s in cfg.severities]}
        elif cfg.corruptions and cfg.baseline == ALEXNET:
            base = alexnet_baseline(cfg.corruptions, cfg.severities)
        store = UnitStore(folder / "robustness.units.json", cfg.identity(), fresh=fresh,
                          writer=dist.main)
        dist.barrier()
        if base is not None and bmodel is model:
            # same model, data, seed and chunk seeds: the baseline's units are ours
            store.update({u: v for u, v in bstore.units.items() if u not in store})
        if store.resumed and dist.main and progress:
            print(f"resuming {cfg.model}: {store.resumed} units already done", file=sys.stderr)
        _evaluate(model, x, y, cfg, store, dist, label=cfg.model, progress=progress,
                  report=report, clean=ds)
        result = _assemble(cfg, store, len(x), base)
        result["weights_info"] = dict(model.weights_info or {})
        if dist.main:
            _write_outputs(result, folder)
        return result
    finally:
        dist.close()


def _csv_rows(result: dict) -> List[dict]:
    """One row per number; every row names the weights (``zoo.describe_weights``: RANDOM, ...)."""
    rows = [{"kind": "clean", "name": "clean", "norm": "", "epsilon": "", "severity": "",
             "accuracy": result["clean_accuracy"], "ci_low": result["clean_ci_low"],
             "ci_high": result["clean_ci_high"]}]
    for r in result["adversarial"]:
        rows.append({"kind": "attack", "name": r["attack"], "norm": r["norm"], "epsilon": r["epsilon"],
                     "severity": "", "accuracy": r["robust_accuracy"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"]})
    for r in result["corruptions"]:
        rows.append({"kind": "corruption", "name": r["corruption"], "norm": "", "epsilon": "",
                     "severity": r["severity"], "accuracy": r["accuracy"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"]})
    for key in ("mce", "relative_mce"):
        if result.get(key) is not None:
            rows.append({"kind": key, "name": key, "norm": "", "epsilon": "", "severity": "",
                         "accuracy": result[key], "ci_low": "", "ci_high": ""})
    weights = zoo.describe_weights(result)
    return [{**row, "weights": weights} for row in rows]


def _write_outputs(result: dict, folder: Path) -> None:
    from . import plots_robustness as plots
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "robustness.json", result)
    write_csv(folder / "robustness.csv", _csv_rows(result))
    plots.robustness_figures([result], folder)


def load_results(out: Path, data: str, model: str) -> Optional[dict]:
    """The stored ``robustness.json`` of a model, or ``None``."""
    return read_json(results_folder(out, data, model) / "robustness.json")


def results_stamp(out: Path, data: str, model: str) -> Optional[float]:
    """Modification time of a model's ``robustness.json`` (``None`` if missing): a cache key."""
    path = results_folder(out, data, model) / "robustness.json"
    return path.stat().st_mtime if path.is_file() else None


# ----------------------------------------------------------------------------- CLI


def _build_parser() -> argparse.ArgumentParser:
    from .corruptions import COMMON, NAMES
    p = cli.parser(
        "python -m probe.robustness",
        "Adversarial robustness (foolbox attacks, APGD), corruption robustness "
        "(15 ImageNet-C corruptions x 5 severities, mCE) and Fourier heat maps of "
        "zoo or timm models. Results: <out>/<data>/<model>/robustness.json (+ .csv, "
        "PDF figures). Resumable; shard with torchrun --nproc_per_node=N.",
        default_models=["mixer"], n_default=500,
        n_help="test images for clean/corruption accuracy")
    p.add_argument("--n-attack", type=int, default=100,
                   help="of those, images attacked (default 100)")
    p.add_argument("--n-heatmap", type=int, default=100,
                   help="of those, images for the Fourier heat map (default 100)")
    p.add_argument("--attacks", type=cli.name_list(attacks_mod.names, "attack"),
                   default=list(DEFAULT_ATTACKS),
                   help=f"comma-separated, 'all' or 'none' (default {','.join(DEFAULT_ATTACKS)}; "
                        f"valid: {', '.join(attacks_mod.names())})")
    p.add_argument("--epsilons", type=cli.float_list, default=list(DEFAULT_LINF_EPSILONS),
                   help="Linf budgets, comma-separated, images in [0,1] "
                        f"(default {','.join(f'{e:g}' for e in DEFAULT_LINF_EPSILONS)})")
    p.add_argument("--l2-epsilons", type=cli.float_list, default=list(DEFAULT_L2_EPSILONS),
                   help=f"L2 budgets (default {','.join(f'{e:g}' for e in DEFAULT_L2_EPSILONS)})")
    p.add_argument("--steps", type=int, default=None,
                   help="iterations of iterative attacks (default: each attack's own)")
    p.add_argument("--corruptions", type=cli.name_list(lambda: list(NAMES), "corruption"),
                   default=list(COMMON),
                   help="comma-separated, 'all' (19) or 'none' (default: the 15 ImageNet-C ones)")
    p.add_argument("--severities", type=cli.severity_list, default=list(DEFAULT_SEVERITIES),
                   help="comma-separated in 1..5 (default 1,2,3,4,5)")
    p.add_argument("--heatmap", action=argparse.BooleanOptionalAction, default=True,
                   help="Fourier heat map (default on)")
    p.add_argument("--heatmap-epsilon", type=float, default=3.0,
                   help="L2 norm of the Fourier-basis perturbation (default 3.0)")
    p.add_argument("--heatmap-size", type=int, default=None, metavar="K",
                   help="probe the K x K frequencies around the zero frequency, K odd (default: "
                        "every frequency up to 32 px, 31 for larger images)")
    p.add_argument("--baseline", default=None, metavar="alexnet|none|MODEL",
                   help="what CE / mCE are relative to: alexnet (AlexNet's published ImageNet-C "
                        "errors, Hendrycks & Dietterich 2019; needs severities 1-5), none (no "
                        "mCE) or a model with the same input size run on the same images "
                        f"(default: alexnet for imagenet:, imagenet-c:, imagefolder: data with a "
                        f"timm model, else {BASELINE_MODEL})")
    p.add_argument("--corruptions-from", default=None, metavar="imagenet-c:PATH",
                   help="read pre-made ImageNet-C (PATH/<corruption>/<severity>/<wnid>/<image>) "
                        "instead of corrupting on the fly; same --n/--seed subset as --data")
    p.add_argument("--amp", choices=["none", "bf16"], default="none",
                   help="bf16 autocast for clean, corruption and heat-map evaluation (default "
                        "none); attacks stay fp32 unless --amp-attacks")
    p.add_argument("--amp-attacks", action="store_true", help="with --amp: attacks too")
    p.add_argument("--fresh", action="store_true", help="ignore stored units and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _main(args: argparse.Namespace) -> int:
    models = args.model or ["mixer"]
    args.model = models
    cli.check_common(args)
    if args.baseline not in (None, ALEXNET, NO_BASELINE):
        zoo.check_name(args.baseline)
    if args.baseline == ALEXNET and args.corruptions:
        alexnet_baseline(args.corruptions, args.severities)
    if args.corruptions_from is not None:
        imagenet_c.root(args.corruptions_from)
    if args.heatmap_size is not None and (args.heatmap_size <= 0 or args.heatmap_size % 2 == 0):
        raise ValueError(f"--heatmap-size must be a positive odd number (a window centred on the "
                         f"zero frequency), got {args.heatmap_size}")
    if args.amp_attacks and args.amp == "none":
        raise ValueError("--amp-attacks needs --amp bf16")
    for opt in ("n_attack", "n_heatmap"):
        if getattr(args, opt) <= 0:
            raise ValueError(f"--{opt.replace('_', '-')} must be positive")
    if args.steps is not None and args.steps <= 0:
        raise ValueError("--steps must be positive")
    if args.heatmap_epsilon <= 0:
        raise ValueError("--heatmap-epsilon must be positive")
    if zoo.resolve_weights(models[0], args.weights) not in ("shipped", "random"):
        zoo.load(models[0], weights=args.weights)   # any unreadable file fails here, before work
    check_writable(args.out)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process:
        print(f"data {args.data}: {args.n} test images for clean/corruptions, "
              f"{min(args.n_attack, args.n)} attacked, "
              f"{min(args.n_heatmap, args.n) if args.heatmap else 0} for the Fourier heat map; "
              f"{len(args.attacks)} attacks, {len(args.corruptions)} corruptions x "
              f"{len(args.severities)} severities; seed {args.seed}", file=sys.stderr)
    results = []
    for m in models:
        cfg = RunConfig(model=m, data=args.data, n=args.n, n_attack=args.n_attack,
                        n_heatmap=args.n_heatmap, seed=args.seed, attacks=args.attacks,
                        epsilons=args.epsilons, l2_epsilons=args.l2_epsilons, steps=args.steps,
                        corruptions=args.corruptions, severities=args.severities,
                        heatmap=args.heatmap, heatmap_epsilon=args.heatmap_epsilon,
                        baseline=args.baseline, weights=args.weights,
                        heatmap_size=args.heatmap_size, corruptions_from=args.corruptions_from,
                        amp=None if args.amp == "none" else args.amp, amp_attacks=args.amp_attacks)
        results.append(run(cfg, out=Path(args.out), device=args.device, fresh=args.fresh,
                           data_root=args.data_root, progress=not args.no_progress))
    if main_process:
        from . import plots_robustness as plots
        folder = Path(args.out) / cli.safe_name(args.data)
        if len(results) > 1:
            figs = plots.robustness_figures(results, folder / "compare")
        else:
            figs = plots.figure_paths(results_folder(args.out, args.data, models[0]))
        print(plots.summary_table(results))
        for m in models:
            print(f"results: {results_folder(args.out, args.data, m) / 'robustness.json'} (+ .csv)")
        print("figures: " + ", ".join(str(f) for f in figs))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probe.robustness``: see ``--help``. Bad input: one ``error:`` line, exit 2."""
    args = _build_parser().parse_args(argv)
    return cli.run_main(lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
