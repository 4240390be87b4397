"""What every analysis shares: trained-model cache, result files, figures, verdict rules, CLI.

Each analysis script is ``python -m analyses.<name> [--quick] [--plot-only]``:

- it computes its numbers (training what it needs through :func:`trained`,
  which caches weights so the analyses reuse each other's models), writes them
  to ``analyses/results/<name>.json`` and its figures to ``figures/*.pdf``;
- ``--plot-only`` redraws the figures from the results file without computing;
- ``--quick`` runs a seconds-scale version into ``runs/analyses_quick/`` so the
  committed full-scale results are never overwritten by a smoke run;
- its ``claims(results)`` turns results into :class:`Claim` rows with a verdict
  computed by :func:`verdict` - ``analyses.report`` collects them.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from probe import cli, data, zoo
from probe.results import atomic_write_json, check_writable, read_json

from analyses.cells.training import PROTOCOL_FAMILIES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analyses" / "results"
FIGURES = ROOT / "figures"
QUICK = ROOT / "runs" / "analyses_quick"
MODEL_CACHE = ROOT / "runs" / "analyses" / "models"
DATA_ROOT: Optional[str] = None   # --data-root of the running analysis (None: $PROBE_DATA, system)

# Family facts come from the zoo's registry (probe/zoo.py); the analysis-only variants add
# their own labels and colours: the Synthesizer ladder (probe/models/synth_ladder.py: Mixer's
# body with one token-mixing change per rung, rung (a) being the zoo Mixer) and the earlier
# single-change-too-many variant ``synth`` (probe/models/synthesizer.py: softmax(R) with
# N(0, 0.02) logits, one head, no value projection), kept so its cells and results still load.
# ``synth`` is also a zoo family now (same architecture and seeded initialisation); it stays a
# variant here: trained at Mixer's swept learning rate, labelled as in the analyses' figures.
# The analyses' families are the protocol's (analyses.cells.training.PROTOCOL_FAMILIES: those
# with a learning-rate sweep and converged cells), not every zoo family; a new zoo family joins
# them once its sweep has run.
FAMILIES = tuple(PROTOCOL_FAMILIES)
MLP_FAMILIES = tuple(n for n in FAMILIES if zoo.families()[n].group == "mlp")
LADDER = ("mixer", "token_linear", "token_softmax", "synth_random", "synth_dense", "dot_attention")
# The finer token grid (issue 16: locality and reach on a grid where they can differ): a zoo
# family's own builder with patch size 2 instead of 4, 14x14 = 196 tokens on 28 px, everything
# else (width, depth, MLP ratios, norms) as the family; trained at the family's swept lr.
FINEGRID_PATCH = 2
FINEGRID = {f"{f}_p2": f for f in ("mixer", "resmlp", "gmlp", "vit", "fnet")}
# Builder variants: a zoo family's own builder with other keyword arguments (its body
# otherwise unchanged), ``name: (zoo family, builder kwargs)``. An entry here is buildable
# (:func:`build`), trained by the cells at its family's swept learning rate (no sweep of its
# own) and loadable; a recipe plan names it like a family. The finer grid's are the first.
BUILDER_VARIANTS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    **{v: (f, {"patch_size": FINEGRID_PATCH}) for v, f in FINEGRID.items()},
    "vit_d2": ("vit", {"depth": 2}), "vit_d3": ("vit", {"depth": 3}),   # fewer-layers claim
    "mixer_p7": ("mixer", {"patch_size": 7}),   # pure-mlp claim: 4x4 tokens of 7x7 px on 28 px
    # resolution transfer: 36-px input (9x9 tokens), fine-tuned from the 28-px full-data models
    **{f"{f}_36px": (f, {"img_size": 36}) for f in PROTOCOL_FAMILIES},
}
# The ResMLP ladder (probe/models/resmlp_ladder.py, the same-model claim): Mixer's body, one change
# per rung from Mixer (a) through linear token mixing (b, the Synthesizer ladder's token_linear)
# and Affine norms (c) to LayerScale (d: ResMLP's block); trained at Mixer's swept learning rate.
RESMLP_LADDER = ("mixer", "token_linear", "linear_affine", "linear_affine_layerscale")
VARIANTS = ("synth",) + LADDER[1:] + RESMLP_LADDER[2:] \
    + tuple(v for v in BUILDER_VARIANTS)   # no sweep of their own
LABELS = {**{n: f.label for n, f in zoo.families().items()}, "synth": "softmax(R) N(0,.02)",
          "token_linear": "linear R", "token_softmax": "softmax(R)",
          "synth_random": "Synth-Random", "synth_dense": "Synth-Dense",
          "dot_attention": "dot attention", "linear_affine": "linear R + Affine",
          "linear_affine_layerscale": "linear R + Affine + LayerScale",
          **{v: f"{zoo.families()[f].label} 14x14" for v, f in FINEGRID.items()}}
for _v, (_f, _kw) in BUILDER_VARIANTS.items():        # e.g. "ViT depth=2"; the finer grid's above
    LABELS.setdefault(_v, f"{zoo.families()[_f].label} " + " ".join(f"{k}={a}" for k, a in _kw.items()))
COLORS = {**{n: f.color for n, f in zoo.families().items()}, "synth": "#ff7f0e",
          "token_linear": "#8c564b", "token_softmax": "#e377c2", "synth_random": "#ff7f0e",
          "synth_dense": "#bcbd22", "dot_attention": "#9edae5", "linear_affine": "#c49c94",
          "linear_affine_layerscale": "#6b6ecf",
          **{v: zoo.families()[body].color for v, (body, _) in BUILDER_VARIANTS.items()}}

# ----------------------------------------------------------------------------- models


def build(name: str, *, seed: int = 0) -> zoo.ProbeModel:
    """A seeded random model: a zoo family (``synth`` included), a ladder rung (the Synthesizer
    ladder's or the ResMLP ladder's, :data:`RESMLP_LADDER`) or a finer-grid
    variant (:data:`VARIANTS`, :data:`FINEGRID`: the family's builder with patch size 2)."""
    if name in BUILDER_VARIANTS:
        from probe.data import FASHION_MNIST_CLASSES
        from probe.provenance import weights_info
        family, kwargs = BUILDER_VARIANTS[name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            size = int(kwargs.get("img_size", 28))     # the input size: an argument of its own
            net = zoo.families()[family].builder(10, 1, size, **{k: v for k, v in kwargs.items()
                                                                 if k != "img_size"})
        return zoo.ProbeModel(net, name=name, family=family, input_size=(1, size, size),
                              classes=FASHION_MNIST_CLASSES, mean=zoo.FASHION_MNIST_MEAN,
                              std=zoo.FASHION_MNIST_STD,
                              weights_info=weights_info("random", f"seed {seed}"))
    if name in VARIANTS and name not in zoo.names():
        from probe.data import FASHION_MNIST_CLASSES
        from probe.models.resmlp_ladder import resmlp_ladder_mixer
        from probe.models.synth_ladder import ladder_mixer
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = (resmlp_ladder_mixer if name in RESMLP_LADDER[2:] else ladder_mixer)(name, 10, 1, 28)
        return zoo.ProbeModel(net, name=name, family=name, input_size=(1, 28, 28),
                              classes=FASHION_MNIST_CLASSES, mean=zoo.FASHION_MNIST_MEAN,
                              std=zoo.FASHION_MNIST_STD)
    return zoo.build(name, seed=seed)


def hyper(name: str) -> dict:
    """Learning rate / weight decay / batch size of a family (``synth`` uses Mixer's)."""
    body = BUILDER_VARIANTS[name][0] if name in BUILDER_VARIANTS else None
    fam = zoo.families()[body or ("mixer" if name in VARIANTS else name)]
    return {"lr": fam.lr, "weight_decay": fam.weight_decay, "batch_size": fam.batch_size}


def epochs_for(n_train: int, budget: int) -> int:
    """Epochs giving about ``budget`` training samples (at least one pass)."""
    return max(1, int(round(budget / n_train)))


_TEST_CACHE: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}


def test_set(n: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST test images (a fixed seeded subset of ``n``, or all 10k)."""
    key = n or 0
    if key not in _TEST_CACHE:
        _TEST_CACHE[key] = data.as_tensors(data.load("fashion-mnist", "test", n=n, seed=0,
                                                     root=DATA_ROOT))
    return _TEST_CACHE[key]


def weights_path(name: str, *, n_train: int, seed: int, epochs: int, cache: Path = MODEL_CACHE) -> Path:
    """Where :func:`trained` caches the weights of ``name`` (safetensors)."""
    return Path(cache) / f"{name}_n{n_train}_e{epochs}_s{seed}.safetensors"


def trained(name: str, *, n_train: int, seed: int, epochs: int, test_n: Optional[int] = None,
            cache: Path = MODEL_CACHE, progress: bool = False) -> Tuple[zoo.ProbeModel, dict]:
    """Train (or load from ``cache``) ``name`` on ``n_train`` seeded Fashion-MNIST images.

    Deterministic: the subset, initialisation and batch order come from ``seed``.
    Weights are cached as safetensors with a JSON record (test accuracy on
    ``test_n`` fixed test images, train time), keyed by every setting, so the
    analyses share models and a rerun trains nothing.
    Returns ``(model in eval mode, record)``.
    """
    from probe.train import evaluate, train
    weights = weights_path(name, n_train=n_train, seed=seed, epochs=epochs, cache=cache)
    card = weights.with_suffix(".json")
    record = read_json(card)
    model = build(name, seed=seed)
    if record is not None and weights.is_file() and record.get("test_n") == (test_n or 10000):
        zoo._load_into(model, zoo.load_state_dict_file(weights), str(weights))
        return model.eval(), record
    h = hyper(name)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        x, y = data.as_tensors(data.load("fashion-mnist", "train", n=n_train, seed=seed,
                                         root=DATA_ROOT))
        stats = train(model, x, y, epochs=epochs, lr=h["lr"], weight_decay=h["weight_decay"],
                      batch_size=h["batch_size"], seed=seed, progress=progress)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    zoo.save_weights(model, weights, dtype=torch.float32)
    xt, yt = test_set(test_n)
    record = {"name": name, "n_train": n_train, "seed": seed, "epochs": epochs,
              "params": zoo.count_params(model), "test_accuracy": round(evaluate(model, xt, yt), 4),
              "test_n": len(xt), **stats, "threads": torch.get_num_threads()}
    atomic_write_json(card, record)
    return model.eval(), record


# ----------------------------------------------------------------------------- statistics
# The verdict rules, intervals, margins and claim/check rows live in analyses.verdicts.

from analyses.verdicts import (CONFIDENCE, RULES, VERDICTS, Check, Claim, decide,  # noqa: E402,F401
                               diff_ci, direction_verdict, equivalence_verdict, family_effects,
                               group_effect, margin_of,
                               mean_ci, positive_ci, ratio_ci)


# ----------------------------------------------------------------------------- files


@dataclass
class Paths:
    results: Path
    figures: Path
    cache: Path


def result_path(paths: Paths, name: str) -> Path:
    return Path(paths.results) / f"{name}.json"


def save_results(paths: Paths, name: str, results: dict) -> Path:
    return atomic_write_json(result_path(paths, name), results)


def load_results(paths: Paths, name: str) -> dict:
    path = result_path(paths, name)
    obj = read_json(path)
    if obj is None:
        raise FileNotFoundError(f"no results at {path}; run `python -m analyses.{name}` first "
                                f"(or with --quick for a small run)")
    return obj


# When a list, :func:`savefig` also appends ``(name, RGBA array)`` renderings (for the report).
CAPTURE: Optional[List[Tuple[str, np.ndarray]]] = None


def savefig(fig, paths: Paths, name: str) -> Path:
    """Write ``fig`` as ``<figures>/<name>.pdf`` with fixed metadata (same bytes every run)."""
    import io
    import matplotlib.pyplot as plt
    path = Path(paths.figures) / f"{name}.pdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"CreationDate": None, "ModDate": None, "Creator": "probe analyses",
                                "Producer": None})
    if CAPTURE is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=130)
        buf.seek(0)
        CAPTURE.append((name, plt.imread(buf)))
    plt.close(fig)
    return path


def style() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "font.size": 9,
                         "legend.frameon": False, "svg.hashsalt": "probe"})


# ----------------------------------------------------------------------------- CLI


def main(name: str, description: str, compute: Callable[[dict, Paths, bool], dict],
         plot: Callable[[dict, Paths], List[Path]], scales: Dict[str, dict],
         argv: Optional[Sequence[str]] = None, *,
         claims: Optional[Callable[[dict], List[Claim]]] = None,
         checks: Optional[Callable[[dict], List[Check]]] = None) -> int:
    """The shared command line of an analysis script.

    ``compute(scale, paths, progress) -> results`` and ``plot(results, paths) -> [pdf paths]``;
    ``scales`` holds the ``"full"`` and ``"quick"`` settings. ``claims(results)`` and
    ``checks(results)``, when given, are written into the results file as ``"claims"`` and
    ``"checks"`` rows (:meth:`Claim.as_result`, :meth:`Check.as_result`).
    """
    parser = cli.OneLineParser(prog=f"python -m analyses.{name}", description=description,
                     epilog=f"full scale: {json.dumps(scales['full'])}; "
                            f"--quick: {json.dumps(scales['quick'])}")
    parser.add_argument("--quick", action="store_true",
                        help="seconds-scale run into runs/analyses_quick/ (smoke test)")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the figures from the results file, compute nothing")
    parser.add_argument("--results", default=None,
                        help="results folder (default analyses/results, or runs/analyses_quick/"
                             "results with --quick)")
    parser.add_argument("--figures", default=None,
                        help="figures folder (default figures/, or runs/analyses_quick/figures)")
    parser.add_argument("--cache", default=None,
                        help="trained-model cache (default runs/analyses/models, or "
                             "runs/analyses_quick/models)")
    shared = parser.add_argument_group(
        "shared options (the probe CLI vocabulary; an analysis fixes its models, data sizes and "
        "seeds in its scale, so --model/--weights/--n/--seed do not apply)")
    shared.add_argument("--data-root", default=None, metavar="DIR",
                        help="folder holding Fashion-MNIST (default: $PROBE_DATA or the system copy)")
    shared.add_argument("--out", default=None, metavar="DIR",
                        help="write results to DIR/results and figures to DIR/figures (overridden "
                             "by --results / --figures)")
    shared.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    base = Path(args.out) if args.out else (QUICK if args.quick else None)
    global DATA_ROOT
    DATA_ROOT = args.data_root
    paths = Paths(Path(args.results) if args.results else (base / "results" if base else RESULTS),
                  Path(args.figures) if args.figures else (base / "figures" if base else FIGURES),
                  Path(args.cache) if args.cache else (QUICK / "models" if args.quick
                                                       else MODEL_CACHE))
    style()
    try:
        cli.apply_threads(args.threads)
        for folder in (paths.results, paths.figures) + (() if args.plot_only else (paths.cache,)):
            check_writable(folder)
        if args.plot_only:
            results = load_results(paths, name)
        else:
            scale = dict(scales["quick" if args.quick else "full"])
            start = time.perf_counter()
            results = compute(scale, paths, not args.no_progress)
            results = {"analysis": name, "scale": "quick" if args.quick else "full",
                       "settings": scale, **results,
                       "duration_s": round(time.perf_counter() - start, 1),
                       "threads": torch.get_num_threads()}
            if claims is not None:
                results["claims"] = [c.as_result() for c in claims(results)]
            if checks is not None:
                results["checks"] = [c.as_result() for c in checks(results)]
            save_results(paths, name, results)
        written = plot(results, paths)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{name}: wrote {result_path(paths, name)}" if not args.plot_only else f"{name}:",
          *(str(p) for p in written), sep="\n  ")
    return 0
