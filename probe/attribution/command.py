"""The ``python -m probe.attribution`` command and its figure, :func:`plot_grid`.

``python -m probe.attribution --model mixer --model timm:vit_tiny_patch16_224
--method ig --method grad_cam --n 4 --out runs/`` writes
``<out>/<data>/attribution_grid.pdf`` (images x models x methods, maps drawn
over the images) and ``<out>/<data>/<model>/attribution.json`` (deletion and
insertion AUCs beside a random pixel order, Petsiuk et al. 2018). The shared
options (``--model``, ``--weights``, ``--data``, ``--n``, ``--seed``, ...) come
from :mod:`probe.cli`; images are fitted to each model's input size with
:func:`probe.data.fit_to_model`.

This module holds the command so that ``probe.attribution`` can re-export
:func:`main` without importing its ``__main__`` (which ``python -m`` runs).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from tqdm import tqdm

from .. import cli, data, plots, zoo
from ..results import atomic_write_json, check_writable
from .api import ALIASES, METHODS, Baseline, _method, attribute, method_names
from .metrics import deletion_curve, insertion_curve

__all__ = ["plot_grid", "main"]

_BATCH = 32


# ----------------------------------------------------------------------------- figure


def _overlay(ax: Axes, image: torch.Tensor, amap: torch.Tensor, signed: bool) -> None:
    """Draw ``amap`` ``[H, W]`` over ``image`` ``[C, h, w]`` (resized to the map for display)."""
    if tuple(image.shape[-2:]) != tuple(amap.shape):
        image = data.fit_to_model(image[None], (image.shape[0], *amap.shape))[0]
    ax.imshow(image.mean(0).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    a = amap.cpu().numpy()
    if signed:  # blue (negative) to red (positive); transparent where the map is ~0
        lim = float(abs(a).max()) or 1.0
        rgba = colormaps["bwr"](0.5 + 0.5 * a / lim)
        rgba[..., 3] = 0.9 * abs(a) / lim
        ax.imshow(rgba)
    else:
        ax.imshow(a, cmap="inferno", vmin=0, vmax=float(a.max()) or 1.0, alpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_grid(images: torch.Tensor, maps: Dict[Tuple[str, str], torch.Tensor], *,
              row_labels: Optional[Sequence[str]] = None,
              path: Optional[Union[str, Path]] = None) -> Figure:
    """Images x (model, method) grid of maps drawn over the images.

    Args:
        images: ``[N, C, H, W]`` in ``[0, 1]`` (first column).
        maps: ``{(model, method): [N, H', W']}``, one column each, in dict order;
            signed methods in a symmetric blue-white-red scale, others in inferno.
            Maps of another resolution than the images (a timm model) are drawn over
            the images resized to the map.
        row_labels: one label per image (e.g. the class).
        path: write the figure there (PDF by extension).

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    n = images.shape[0]
    cols = list(maps)
    fig = plots.new_figure(1.5 * (len(cols) + 1), 1.5 * n + 0.5)
    axes = fig.subplots(n, len(cols) + 1, squeeze=False)
    for r in range(n):
        axes[r][0].imshow(images[r].mean(0).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_xticks([])
        axes[r][0].set_yticks([])
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=7)
        for c, (name, meth) in enumerate(cols, start=1):
            method = METHODS.get(ALIASES.get(meth, meth))
            _overlay(axes[r][c], images[r], maps[name, meth][r], bool(method and method.signed))
            if r == 0:
                axes[r][c].set_title(f"{name}\n{meth}", fontsize=7)
    axes[0][0].set_title("image", fontsize=7)
    plots.save(fig, path)
    return fig


# ----------------------------------------------------------------------------- CLI


def _build_parser() -> argparse.ArgumentParser:
    p = cli.parser(
        "python -m probe.attribution",
        "Attribution maps of zoo or timm models on test images: a PDF grid (images x models x "
        "methods, maps over the images) and deletion/insertion AUCs beside a random pixel order "
        "(JSON). Results: <out>/<data>/attribution_grid.pdf and <out>/<data>/<model>/"
        "attribution.json.",
        default_models=["mixer"], n_default=4, n_help="images in the grid")
    p.add_argument("--method", action="append", metavar="NAME",
                   help=f"attribution method (repeatable; default ig); one of "
                        f"{', '.join(method_names())}")
    p.add_argument("--n-eval", type=int, default=None,
                   help="images for the deletion/insertion metrics (default: --n)")
    p.add_argument("--steps", type=int, default=28,
                   help="steps of the deletion/insertion curves (default 28)")
    p.add_argument("--baseline", default="0.0",
                   help="value of removed pixels: a float or 'mean' (default 0.0 = black)")
    return p


def _parse_baseline(text: str) -> Baseline:
    try:
        return float(text)
    except ValueError:
        if text != "mean":
            raise ValueError(f"--baseline must be a float or 'mean', got {text!r}") from None
        return "mean"


def _run(args: argparse.Namespace) -> int:
    args.model = args.model or ["mixer"]
    cli.check_common(args)
    methods = list(dict.fromkeys(_method(m).name for m in (args.method or ["integrated_gradients"])))
    if args.steps <= 0:
        raise ValueError(f"--steps must be positive, got {args.steps}")
    if args.n_eval is not None and args.n_eval <= 0:
        raise ValueError(f"--n-eval must be positive, got {args.n_eval}")
    baseline = _parse_baseline(args.baseline)
    loaded = {name: zoo.load(name, weights=args.weights, device=args.device, seed=args.seed)
              for name in args.model}
    # (model, method) pairs whose method does not apply (rollout without attention weights,
    # Grad-CAM without a spatial layer) are skipped with a note; nothing left is an error
    skipped = {(name, meth): METHODS[meth].why_not(model) for name, model in loaded.items()
               for meth in methods if not METHODS[meth].applies(model)}
    if len(skipped) == len(loaded) * len(methods):
        name, meth = next(iter(skipped))
        raise ValueError(f"{skipped[name, meth]}; no requested method applies to any requested "
                         f"model: pick another --method or --model")
    for name, meth in skipped:
        print(f"note: skipping {meth} for {name}: {skipped[name, meth]}", file=sys.stderr)
    out = check_writable(Path(args.out) / cli.safe_name(args.data))
    n_eval = args.n_eval or args.n
    ds = data.load(args.data, "test", root=args.data_root, n=max(args.n, n_eval), seed=args.seed)
    x_all, y_all = data.as_tensors(ds)

    grid: Dict[Tuple[str, str], torch.Tensor] = {}
    written: List[Tuple[Path, dict]] = []
    for name, model in loaded.items():
        x = data.fit_to_model(x_all, model.input_size).to(args.device)
        record = {"schema_version": 1, "analysis": "attribution", "model": name, "data": args.data,
                  "weights": args.weights, "n": n_eval, "seed": args.seed, "steps": args.steps,
                  "baseline": baseline, "target": "predicted class", "methods": {}}
        record["skipped"] = {meth: skipped[name, meth] for meth in methods if (name, meth) in skipped}
        for meth in tqdm([m for m in methods if (name, m) not in skipped],
                         desc=f"attribution {name}", unit="method"):
            maps = torch.cat([attribute(model, x[i:i + _BATCH], None, meth)
                              for i in range(0, len(x), _BATCH)])
            grid[name, meth] = maps[:args.n]
            dele = deletion_curve(model, x[:n_eval], None, maps[:n_eval], steps=args.steps,
                                  baseline=baseline, seed=args.seed)
            ins = insertion_curve(model, x[:n_eval], None, maps[:n_eval], steps=args.steps,
                                  baseline=baseline, seed=args.seed)
            record["methods"][meth] = {"deletion": dele.summary(), "insertion": ins.summary()}
        path = atomic_write_json(out / cli.safe_name(name) / "attribution.json", record)
        written.append((path, record))

    labels = [ds.classes[int(v)] for v in y_all[:args.n]]
    fig = plot_grid(x_all[:args.n], grid, row_labels=labels)
    pdf = plots.save(fig, out / "attribution_grid.pdf")

    width = max(8, *(len(name) for name in loaded))
    print(f"\n{'model':{width}s} {'method':22s} {'deletion AUC':>12s} {'random':>8s} "
          f"{'insertion AUC':>13s} {'random':>8s}")
    for _, rec in written:
        for meth, s in rec["methods"].items():
            print(f"{rec['model']:{width}s} {meth:22s} {s['deletion']['auc']:12.4f} "
                  f"{s['deletion']['random_auc']:8.4f} {s['insertion']['auc']:13.4f} "
                  f"{s['insertion']['random_auc']:8.4f}")
    print(f"\nfigure written to {pdf}")
    for path, _ in written:
        print(f"metrics written to {path}")
    return 0


def _run_quietly(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        # timm/captum imports trip torch.jit deprecation notices; keep stderr to our lines
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        return _run(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probe.attribution``; returns the exit code (0, or 2 on bad input)."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return cli.run_main(partial(_run_quietly, args))
