"""Robustness of a model: adversarial attacks, corruption sweep with mCE, Fourier heat map.

``python -m probe.robustness --model mixer`` is the workbench's main job.

- Attacks (:mod:`probe.attacks`): robust accuracy vs epsilon for FGSM, PGD
  (Linf, L2), DeepFool-L2, CW-L2 and APGD-CE; every adversarial example is
  checked to lie in the epsilon ball and in [0, 1] before it is counted.
- Corruptions (:mod:`probe.corruptions`): accuracy for every corruption x
  severity; corruption error (CE), mCE and relative mCE as in Hendrycks &
  Dietterich 2019 (arXiv:1903.12261), normalised by a baseline model from the
  zoo. The zoo's ``cnn`` (:data:`BASELINE_MODEL`) plays AlexNet's role: the
  conventional convolutional reference every other family is compared with.
  mCE averages the 15 ImageNet-C corruptions only (the 4 extras are reported
  but, as in the paper, left out of the mean).
- Fourier heat map (Yin et al. 2019, "A Fourier Perspective on Model Robustness
  in Computer Vision", arXiv:1906.08988): error rate under ``x + r * eps * U_ij``
  for every 2-D Fourier basis image ``U_ij`` (unit L2 norm), ``r`` a random sign
  per image, clipped to [0, 1]; the grid is centred (zero frequency in the middle).

Every accuracy carries a 95% Wilson interval. Work is split into units (clean,
attack x epsilon, corruption x severity, heat map); each is written atomically
to ``<out>/<data>/<model>/robustness.units.json`` as soon as it finishes, so a
killed run continues where it stopped (``--fresh`` starts over) and ends with the
same results as an uninterrupted run. Examples are processed in fixed chunks
whose random streams depend only on (seed, unit, chunk), so ``torchrun
--nproc_per_node=N -m probe.robustness ...`` shards the chunks over processes
(gloo on CPU, NCCL on GPU), sums the counts, and gets exactly the
single-process numbers.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attacks as attacks_mod
from .results import atomic_write_json, binomial_ci, check_writable, read_json, write_csv

__all__ = [
    "SCHEMA_VERSION", "BASELINE_MODEL", "DEFAULT_LINF_EPSILONS", "DEFAULT_L2_EPSILONS",
    "DEFAULT_ATTACKS", "RunConfig", "run", "fourier_basis", "fourier_heatmap_counts",
    "corruption_errors", "mce", "load_results", "main",
]

SCHEMA_VERSION = 1
BASELINE_MODEL = "cnn"
DEFAULT_ATTACKS = ["fgsm", "pgd", "pgd-l2", "deepfool-l2", "cw-l2", "apgd-ce"]
DEFAULT_LINF_EPSILONS = [0.0, 0.01, 0.02, 0.05, 0.1]
DEFAULT_L2_EPSILONS = [0.0, 0.25, 0.5, 1.0, 2.0]
DEFAULT_SEVERITIES = [1, 2, 3, 4, 5]
CHUNK = 50  # examples per chunk; fixed so sharding never changes the numbers


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
    baseline: str = BASELINE_MODEL
    weights: str = "shipped"

    def identity(self) -> dict:
        """The fields that must match for stored units to be reused."""
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return d


# ----------------------------------------------------------------------------- helpers


def _dirname(model: str) -> str:
    return model.replace(":", "-").replace("/", "-")


def _chunk_seed(seed: int, unit: str, chunk: int) -> int:
    return zlib.crc32(f"{seed}:{unit}:{chunk}".encode()) & 0x7FFFFFFF


class _Dist:
    """torch.distributed when launched by torchrun (WORLD_SIZE > 1), else a no-op."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                backend = "nccl" if device.startswith("cuda") else "gloo"
                dist.init_process_group(backend)
            if device.startswith("cuda"):
                local = int(os.environ.get("LOCAL_RANK", "0"))
                self.device = f"cuda:{local}"
                torch.cuda.set_device(local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def chunks(self, n: int) -> List[Tuple[int, slice]]:
        """This process's chunks: (chunk index, slice of the examples)."""
        count = math.ceil(n / CHUNK)
        return [(c, slice(c * CHUNK, min(n, (c + 1) * CHUNK))) for c in range(count)
                if c % self.world == self.rank]

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist
            dev = self.device if self.device.startswith("cuda") else "cpu"
            t = t.to(dev)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t = t.cpu()
        return t

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


def _adapt(x: torch.Tensor, input_size: Tuple[int, int, int]) -> torch.Tensor:
    """Resize / convert channels of ``[B, C, H, W]`` images to a model's input size."""
    c, h, w = input_size
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True).expand(-1, c, -1, -1) if c != 1 else x.mean(1, keepdim=True)
    return x.contiguous()


def _accuracy_row(correct: int, n: int) -> dict:
    lo, hi = binomial_ci(correct, n)
    return {"accuracy": correct / n if n else float("nan"), "ci_low": lo, "ci_high": hi,
            "correct": correct, "n": n}


# ----------------------------------------------------------------------------- Fourier heat map


def fourier_basis(h: int, w: int, *, device="cpu") -> torch.Tensor:
    """Real 2-D Fourier basis images, one per frequency, unit L2 norm.

    Returns ``[h, w, h, w]``: ``[i, j]`` is the basis image of the frequency at
    row ``i``, column ``j`` of the *centred* spectrum (zero frequency at
    ``(h // 2, w // 2)``), ``Re(ifft2(delta at that frequency))`` normalised.
    """
    freqs = torch.zeros(h * w, h, w, dtype=torch.complex64, device=device)
    idx = torch.arange(h * w, device=device)
    freqs[idx, idx // w, idx % w] = 1.0
    freqs = torch.fft.ifftshift(freqs, dim=(-2, -1))
    basis = torch.fft.ifft2(freqs).real
    basis = basis / basis.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    return basis.reshape(h, w, h, w)


def _unique_frequencies(h: int, w: int) -> Tuple[List[Tuple[int, int]], Dict[Tuple[int, int], Tuple[int, int]]]:
    """Centred frequencies up to the k <-> -k symmetry, and each one's representative.

    ``Re(ifft2(delta_k)) == Re(ifft2(delta_-k))``, so the two basis images are the same.
    """
    ci, cj = h // 2, w // 2
    unique: List[Tuple[int, int]] = []
    rep: Dict[Tuple[int, int], Tuple[int, int]] = {}
    for i in range(h):
        for j in range(w):
            a, b = (i - ci) % h, (j - cj) % w                     # uncentred index
            mi, mj = ((-a) % h + ci) % h, ((-b) % w + cj) % w       # centred index of -k
            if (mi, mj) in rep:
                rep[(i, j)] = rep[(mi, mj)]
            else:
                rep[(i, j)] = (i, j)
                unique.append((i, j))
    return unique, rep


def fourier_heatmap_counts(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float,
                           generator: torch.Generator, batch: int = 512) -> torch.Tensor:
    """Misclassification counts ``[H, W]`` under each Fourier-basis perturbation (centred grid).

    Basis images of frequencies ``k`` and ``-k`` are identical for real images,
    so each pair is evaluated once and mirrored.
    """
    b, c, h, w = x.shape
    basis = fourier_basis(h, w, device=x.device)
    unique, mirror = _unique_frequencies(h, w)
    signs = torch.randint(0, 2, (b,), generator=generator).to(x.device, x.dtype) * 2 - 1
    counts = {}
    per = max(1, batch // b)
    with torch.no_grad():
        for start in range(0, len(unique), per):
            freqs = unique[start:start + per]
            pert = torch.stack([basis[i, j] for i, j in freqs])            # [F, H, W]
            xs = x[None] + epsilon * signs[None, :, None, None, None] * pert[:, None, None]
            xs = xs.clamp(0, 1).reshape(-1, c, h, w)
            wrong = (model(xs).argmax(1) != y.repeat(len(freqs))).reshape(len(freqs), b).sum(1)
            for f, k in zip(freqs, wrong.tolist()):
                counts[f] = k
    grid = torch.zeros(h, w, dtype=torch.long)
    for (i, j), src in mirror.items():
        grid[i, j] = counts[src]
    return grid


# ----------------------------------------------------------------------------- mCE


def corruption_errors(rows: Sequence[dict]) -> Dict[str, Dict[int, float]]:
    """``{corruption: {severity: error}}`` from corruption rows."""
    out: Dict[str, Dict[int, float]] = {}
    for r in rows:
        out.setdefault(r["corruption"], {})[int(r["severity"])] = 1.0 - r["accuracy"]
    return out


def mce(model_rows: Sequence[dict], model_clean: float, baseline_rows: Sequence[dict],
        baseline_clean: float, *, corruptions: Optional[Sequence[str]] = None) -> Tuple[Optional[float], Optional[float], Dict[str, dict]]:
    """mCE and relative mCE (Hendrycks & Dietterich 2019), in percent of the baseline.

    ``CE_c = sum_s E_sc / sum_s E_sc(baseline)``;
    ``relCE_c = sum_s (E_sc - E_clean) / sum_s (E_sc(baseline) - E_clean(baseline))``;
    mCE / relative mCE are their means over ``corruptions`` (default: the
    ImageNet-C 15 present in both). Returns ``(mce, relative_mce, per_corruption)``;
    a mean is ``None`` when a baseline denominator is 0.
    """
    from .corruptions import COMMON
    ours, base = corruption_errors(model_rows), corruption_errors(baseline_rows)
    names = [c for c in (corruptions or COMMON) if c in ours and c in base]
    per: Dict[str, dict] = {}
    ces, rels = [], []
    for c in names:
        sev = sorted(set(ours[c]) & set(base[c]))
        e = sum(ours[c][s] for s in sev)
        eb = sum(base[c][s] for s in sev)
        rel_num = sum(ours[c][s] - (1 - model_clean) for s in sev)
        rel_den = sum(base[c][s] - (1 - baseline_clean) for s in sev)
        ce = 100.0 * e / eb if eb > 0 else None
        rel = 100.0 * rel_num / rel_den if rel_den > 0 else None
        per[c] = {"ce": ce, "relative_ce": rel}
        ces.append(ce)
        rels.append(rel)
    mean_ce = sum(ces) / len(ces) if ces and None not in ces else None
    mean_rel = sum(rels) / len(rels) if rels and None not in rels else None
    return mean_ce, mean_rel, per


# ----------------------------------------------------------------------------- the run


class _UnitStore:
    """Completed units of one model's run, saved atomically after each unit."""

    def __init__(self, path: Path, identity: dict, *, fresh: bool, writer: bool) -> None:
        self.path = path
        self.identity = identity
        self.writer = writer
        stored = None if fresh else read_json(path)
        if stored and stored.get("identity") == identity:
            self.units = dict(stored.get("units", {}))
        else:
            self.units = {}
        self.resumed = len(self.units)

    def __contains__(self, unit: str) -> bool:
        return unit in self.units

    def get(self, unit: str):
        return self.units[unit]

    def put(self, unit: str, value) -> None:
        self.update({unit: value})

    def update(self, units: Dict[str, object]) -> None:
        self.units.update(units)
        if self.writer:
            atomic_write_json(self.path, {"identity": self.identity, "units": self.units})


def _load_model(name: str, device: str, weights: str = "shipped"):
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


def _run_unit(kind: str, params: dict, unit: str, model, x, y, cfg: RunConfig, dist: _Dist):
    """Counts for one unit on this process's chunks, summed over processes."""
    from . import corruptions as corr_mod
    if kind == "clean":
        total = 0
        for c, sl in dist.chunks(len(x)):
            total += _count_correct(model, x[sl], y[sl])
        return int(dist.sum(torch.tensor([total]))[0])
    if kind == "attack":
        n = min(cfg.n_attack, len(x))
        counts = torch.zeros(len(params["epsilons"]), dtype=torch.long)
        for c, sl in dist.chunks(n):
            seed = _chunk_seed(cfg.seed, unit, c)
            correct = attacks_mod.run(model, x[sl], y[sl], params["attack"], params["epsilons"],
                                      steps=cfg.steps, seed=seed)
            counts += correct.sum(1).cpu()
        return [int(v) for v in dist.sum(counts)]
    if kind == "corruption":
        total = 0
        for c, sl in dist.chunks(len(x)):
            g = torch.Generator(device=x.device).manual_seed(_chunk_seed(cfg.seed, unit, c))
            xc = corr_mod.corrupt(x[sl], params["corruption"], params["severity"], generator=g)
            total += _count_correct(model, xc, y[sl])
        return int(dist.sum(torch.tensor([total]))[0])
    if kind == "heatmap":
        n = min(cfg.n_heatmap, len(x))
        grid = torch.zeros(x.shape[-2:], dtype=torch.long)
        for c, sl in dist.chunks(n):
            g = torch.Generator().manual_seed(_chunk_seed(cfg.seed, unit, c))
            grid += fourier_heatmap_counts(model, x[sl], y[sl], epsilon=cfg.heatmap_epsilon,
                                           generator=g)
        return dist.sum(grid).tolist()
    raise ValueError(f"unknown unit kind {kind}")


def _evaluate(model, x, y, cfg: RunConfig, store: _UnitStore, dist: _Dist, *, label: str,
              progress: bool) -> None:
    from tqdm import tqdm
    plan = [u for u in _plan(cfg) if u[0] not in store]
    bar = tqdm(plan, desc=label, unit="unit", disable=not (progress and dist.main), leave=True)
    for unit, kind, params in bar:
        bar.set_postfix_str(unit)
        store.put(unit, _run_unit(kind, params, unit, model, x, y, cfg, dist))


def _baseline_config(cfg: RunConfig) -> RunConfig:
    return RunConfig(model=cfg.baseline, data=cfg.data, n=cfg.n, n_attack=cfg.n_attack,
                     n_heatmap=cfg.n_heatmap, seed=cfg.seed, attacks=[],
                     epsilons=cfg.epsilons, l2_epsilons=cfg.l2_epsilons, steps=cfg.steps,
                     corruptions=list(cfg.corruptions), severities=list(cfg.severities),
                     heatmap=False, baseline=cfg.baseline,
                     weights="random" if cfg.weights == "random" else "shipped")


def _assemble(cfg: RunConfig, store: _UnitStore, n: int, base: Optional[dict]) -> dict:
    units = store.units
    clean = _accuracy_row(units["clean"], n)
    adversarial = []
    n_att = min(cfg.n_attack, n)
    for unit, kind, params in _plan(cfg):
        if kind != "attack":
            continue
        spec = attacks_mod.get(params["attack"])
        for e, correct in zip(params["epsilons"], units[unit]):
            row = _accuracy_row(correct, n_att)
            adversarial.append({"attack": spec.name, "norm": spec.norm, "epsilon": e,
                                "robust_accuracy": row["accuracy"], "ci_low": row["ci_low"],
                                "ci_high": row["ci_high"], "n": n_att})
    corruption_rows = []
    for c in cfg.corruptions:
        for s in cfg.severities:
            row = _accuracy_row(units[f"corruption:{c}@{s}"], n)
            corruption_rows.append({"corruption": c, "severity": s, "accuracy": row["accuracy"],
                                    "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": n})
    result = {
        "schema_version": SCHEMA_VERSION, "model": cfg.model, "data": cfg.data, "n": n,
        "n_attack": n_att, "seed": cfg.seed,
        "clean_accuracy": clean["accuracy"], "clean_ci_low": clean["ci_low"],
        "clean_ci_high": clean["ci_high"],
        "attack_steps": cfg.steps, "adversarial": adversarial, "corruptions": corruption_rows,
        "baseline": cfg.baseline, "mce": None, "relative_mce": None, "ce": {},
        "fourier_heatmap": None,
    }
    if base is not None and corruption_rows:
        result["mce"], result["relative_mce"], result["ce"] = mce(
            corruption_rows, clean["accuracy"], base["corruptions"], base["clean_accuracy"])
    if cfg.heatmap:
        grid = torch.tensor(units["heatmap"], dtype=torch.float64)
        n_h = min(cfg.n_heatmap, n)
        result["fourier_heatmap"] = {"epsilon": cfg.heatmap_epsilon, "n": n_h,
                                     "error": (grid / n_h).tolist(),
                                     "figure": "fourier_heatmap.pdf"}
    return result


def run(cfg: RunConfig, *, out: Path, device: str = "cpu", fresh: bool = False,
        data_root: Optional[str] = None, progress: bool = True) -> dict:
    """Run (or resume) one model's robustness evaluation; returns the results dict.

    Writes ``<out>/<data>/<model>/robustness.json`` (+ ``.csv`` and figures) on
    the main process. The baseline model's corruption sweep is run (or resumed)
    the same way under its own folder, for mCE.
    """
    from . import data as data_mod
    dist = _Dist(device)
    try:
        model = _load_model(cfg.model, dist.device, cfg.weights)
        ds = data_mod.load(cfg.data, "test", root=data_root, n=cfg.n, seed=cfg.seed,
                           input_size=model.input_size)
        x, y = data_mod.as_tensors(ds)
        if torch.isnan(x).any() or float(x.min()) < 0 or float(x.max()) > 1:
            raise ValueError(f"dataset {cfg.data} holds NaN or values outside [0, 1]; fix the data")
        x = _adapt(x, model.input_size).to(dist.device)
        y = y.to(dist.device)
        folder = Path(out) / cfg.data / _dirname(cfg.model)
        base = bmodel = None
        if cfg.corruptions:
            bcfg = _baseline_config(cfg)
            bfolder = Path(out) / cfg.data / _dirname(cfg.baseline)
            bstore = _UnitStore(bfolder / "baseline.units.json", bcfg.identity(), fresh=fresh,
                                writer=dist.main)
            dist.barrier()
            bweights = "random" if cfg.weights == "random" else "shipped"
            bmodel = (model if cfg.baseline == cfg.model and cfg.weights == bweights
                      else _load_model(cfg.baseline, dist.device, bweights))
            _evaluate(bmodel, x, y, bcfg, bstore, dist, label=f"baseline {cfg.baseline}",
                      progress=progress)
            base = {"clean_accuracy": bstore.get("clean") / len(x),
                    "corruptions": [{"corruption": c, "severity": s,
                                     "accuracy": bstore.get(f"corruption:{c}@{s}") / len(x)}
                                    for c in cfg.corruptions for s in cfg.severities]}
        store = _UnitStore(folder / "robustness.units.json", cfg.identity(), fresh=fresh,
                           writer=dist.main)
        dist.barrier()
        if base is not None and bmodel is model:
            # same model, data, seed and chunk seeds: the baseline's units are ours
            store.update({u: v for u, v in bstore.units.items() if u not in store})
        if store.resumed and dist.main and progress:
            print(f"resuming {cfg.model}: {store.resumed} units already done", file=sys.stderr)
        _evaluate(model, x, y, cfg, store, dist, label=cfg.model, progress=progress)
        result = _assemble(cfg, store, len(x), base)
        if dist.main:
            _write_outputs(result, folder)
        return result
    finally:
        dist.close()


def _csv_rows(result: dict) -> List[dict]:
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
    return rows


def _write_outputs(result: dict, folder: Path) -> None:
    from . import plots_robustness as plots
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "robustness.json", result)
    write_csv(folder / "robustness.csv", _csv_rows(result))
    plots.robustness_figures([result], folder)


def load_results(out: Path, data: str, model: str) -> Optional[dict]:
    """The stored ``robustness.json`` of a model, or ``None``."""
    return read_json(Path(out) / data / _dirname(model) / "robustness.json")


# ----------------------------------------------------------------------------- CLI


def _floats(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(v < 0 or math.isnan(v) for v in values):
        raise argparse.ArgumentTypeError(f"epsilons must be >= 0, got {text!r}")
    return values


def _ints(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 or v > 5 for v in values):
        raise argparse.ArgumentTypeError(f"severities must be in 1..5, got {text!r}")
    return values


def _names(valid: Callable[[], List[str]], what: str):
    def parse(text: str) -> List[str]:
        if text.strip().lower() == "none":
            return []
        if text.strip().lower() == "all":
            return list(valid())
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in names if v not in valid()]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad)}; valid: "
                                             f"{', '.join(valid())}, all, none")
        return names
    return parse


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    from .corruptions import COMMON, NAMES
    p = _OneLineParser(
        prog="python -m probe.robustness",
        description="Adversarial robustness (foolbox attacks, APGD), corruption robustness "
                    "(15 ImageNet-C corruptions x 5 severities, mCE) and Fourier heat maps of "
                    "zoo or timm models. Results: <out>/<data>/<model>/robustness.json (+ .csv, "
                    "PDF figures). Resumable; shard with torchrun --nproc_per_node=N.")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="zoo family (mixer, resmlp, gmlp, vit, fnet, cnn) or timm:<arch>; "
                        "repeat for a side-by-side comparison (default: mixer)")
    p.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (default), cifar10, imagefolder:<path>, synthetic")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--n", "--num-images", dest="n", type=int, default=500,
                   help="test images for clean/corruption accuracy (default 500; under torchrun "
                        "write --num-images, torchrun's own parser claims --n)")
    p.add_argument("--n-attack", type=int, default=100,
                   help="of those, images attacked (default 100)")
    p.add_argument("--n-heatmap", type=int, default=100,
                   help="of those, images for the Fourier heat map (default 100)")
    p.add_argument("--attacks", type=_names(attacks_mod.names, "attack"),
                   default=list(DEFAULT_ATTACKS),
                   help=f"comma-separated, 'all' or 'none' (default {','.join(DEFAULT_ATTACKS)}; "
                        f"valid: {', '.join(attacks_mod.names())})")
    p.add_argument("--epsilons", type=_floats, default=list(DEFAULT_LINF_EPSILONS),
                   help="Linf budgets, comma-separated, images in [0,1] "
                        f"(default {','.join(f'{e:g}' for e in DEFAULT_LINF_EPSILONS)})")
    p.add_argument("--l2-epsilons", type=_floats, default=list(DEFAULT_L2_EPSILONS),
                   help=f"L2 budgets (default {','.join(f'{e:g}' for e in DEFAULT_L2_EPSILONS)})")
    p.add_argument("--steps", type=int, default=None,
                   help="iterations of iterative attacks (default: each attack's own)")
    p.add_argument("--corruptions", type=_names(lambda: list(NAMES), "corruption"),
                   default=list(COMMON),
                   help="comma-separated, 'all' (19) or 'none' (default: the 15 ImageNet-C ones)")
    p.add_argument("--severities", type=_ints, default=list(DEFAULT_SEVERITIES),
                   help="comma-separated in 1..5 (default 1,2,3,4,5)")
    p.add_argument("--heatmap", action=argparse.BooleanOptionalAction, default=True,
                   help="Fourier heat map (default on)")
    p.add_argument("--heatmap-epsilon", type=float, default=3.0,
                   help="L2 norm of the Fourier-basis perturbation (default 3.0)")
    p.add_argument("--baseline", default=BASELINE_MODEL,
                   help=f"model that normalises CE / mCE (AlexNet's role; default {BASELINE_MODEL})")
    p.add_argument("--weights", default="shipped",
                   help="shipped (default), random (seeded init, for smoke tests) or a weights "
                        "file (.safetensors / torch checkpoint) for a single --model")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and all randomness")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default="runs", help="results folder (default runs/)")
    p.add_argument("--fresh", action="store_true", help="ignore stored units and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _validate_models(models: List[str]) -> None:
    from . import zoo
    for m in models:
        if m.startswith(zoo.TIMM_PREFIX):
            import timm
            if not timm.is_model(m[len(zoo.TIMM_PREFIX):]):
                raise ValueError(f"unknown timm architecture {m!r}; see timm.list_models()")
        elif m not in zoo.names():
            raise ValueError(f"unknown model {m!r}; valid names: {', '.join(zoo.names())}, "
                             f"or timm:<arch>")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    models = args.model or ["mixer"]
    try:
        _validate_models(models + [args.baseline])
        for opt in ("n", "n_attack", "n_heatmap"):
            if getattr(args, opt) <= 0:
                raise ValueError(f"--{opt.replace('_', '-')} must be positive")
        if args.steps is not None and args.steps <= 0:
            raise ValueError("--steps must be positive")
        if args.heatmap_epsilon <= 0:
            raise ValueError("--heatmap-epsilon must be positive")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda asked for but no CUDA device is available")
        if args.weights not in ("shipped", "random"):
            if len(models) > 1:
                raise ValueError("--weights PATH applies to a single --model")
            from . import zoo
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
                            baseline=args.baseline, weights=args.weights)
            results.append(run(cfg, out=Path(args.out), device=args.device, fresh=args.fresh,
                               data_root=args.data_root, progress=not args.no_progress))
        if main_process:
            from . import plots_robustness as plots
            folder = Path(args.out) / args.data
            if len(results) > 1:
                figs = plots.robustness_figures(results, folder / "compare")
            else:
                figs = plots.figure_paths(folder / _dirname(models[0]))
            print(plots.summary_table(results))
            for m in models:
                print(f"results: {folder / _dirname(m) / 'robustness.json'} (+ .csv)")
            print("figures: " + ", ".join(str(f) for f in figs))
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished units are saved; run the same command to continue",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
