"""``python -m probe.mixing``: token-mixing metrics (JSON) and figures (PDF) for zoo or timm models.

Writes ``<out>/<data>/<model>/mixing.json``, ``mixing_templates.pdf``,
``mixing_over_image.pdf`` and ``log_amplitude.pdf`` per model, and the
cross-model figures ``<out>/<data>/mixing_distance.pdf`` (mean mixing distance
by depth, in input pixels, so CNN stages and token models share one axis) and
``relative_log_amplitude.pdf``. Shared options: :mod:`probe.cli`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from .. import cli, data, plots, spectra, zoo
from ..results import atomic_write_json, check_writable
from .extractors import extract
from .metrics import mean_mixing_distance, summarize

__all__ = ["SCHEMA_VERSION", "build_parser", "run", "main"]

SCHEMA_VERSION = 1


def build_parser() -> cli.OneLineParser:
    """The CLI's parser: the shared block of :mod:`probe.cli` plus ``--radius``."""
    p = cli.parser(
        "python -m probe.mixing",
        "Extract how each model mixes tokens; write metrics (JSON) and figures (PDF).",
        epilog="Writes <out>/<data>/<model>/mixing.json, mixing_templates.pdf, "
               "mixing_over_image.pdf, log_amplitude.pdf, and the cross-model plots "
               "<out>/<data>/mixing_distance.pdf (pixels) and relative_log_amplitude.pdf.",
        n_default=8, n_help="images to probe")
    p.add_argument("--radius", type=float, default=1.0,
                   help="locality radius in grid units of each layer's input (default 1)")
    return p


def run(args: argparse.Namespace) -> List[Path]:
    """Run the mixing probe for ``args`` (see :func:`build_parser`); returns the written files."""
    cli.check_common(args)
    names = args.model or zoo.names()
    if cli.is_weights_file(args.weights) and len(names) != 1:
        raise ValueError(f"--weights {args.weights} is one model's weights file; name that model "
                         f"with a single --model")
    out = check_writable(Path(args.out) / cli.safe_name(args.data))
    ds = data.load(args.data, "test", n=args.n, seed=args.seed, root=args.data_root)
    images, _ = data.as_tensors(ds)
    loaded = [(name, zoo.load(name, weights=args.weights, device=args.device, seed=args.seed))
              for name in names]                                  # fail before any work
    written: List[Path] = []
    distances: Dict[str, List[float]] = {}
    amplitudes: Dict[str, List[float]] = {}
    for name, model in tqdm(loaded, desc="mixing", unit="model", file=sys.stderr, leave=False):
        x = data.fit_to_model(images, model.input_size).to(args.device)
        maps = [m.cpu() for m in extract(model, x)]
        rows = summarize(maps, radius=args.radius)
        for row, m in zip(rows, maps):
            row["mean_mixing_distance_px"] = float(mean_mixing_distance(m, unit="px")
                                                   .double().mean())
        try:
            amp, no_spectra = spectra.relative_log_amplitudes(model, x), None
        except ValueError as e:            # no feature map on a grid (the pure MLP)
            amp, no_spectra = [], str(e)
            print(f"note: {name}: feature-map spectra skipped: {e}", file=sys.stderr)
        folder = out / cli.safe_name(name)
        record = {"schema_version": SCHEMA_VERSION, "analysis": "mixing", "model": name,
                  "family": getattr(model, "family", ""), "weights": args.weights,
                  "dataset": args.data, "n": int(len(x)), "seed": args.seed,
                  "radius": args.radius, "layers": rows, "relative_log_amplitude": amp,
                  **({"relative_log_amplitude_skipped": no_spectra} if no_spectra else {})}
        written.append(atomic_write_json(folder / "mixing.json", record))
        written.append(plots.save(plots.plot_templates(maps,
                                                       title=f"{name}: token-mixing templates"),
                                  folder / "mixing_templates.pdf"))
        written.append(plots.save(plots.plot_maps_over_image(x[0], maps,
                                                             title=f"{name}: mixing of one token"),
                                  folder / "mixing_over_image.pdf"))
        if amp:
            written.append(plots.save(plots.plot_profiles([r["profile"] for r in amp],
                                                          title=f"{name}: feature-map spectra"),
                                      folder / "log_amplitude.pdf"))
            amplitudes[name] = [r["delta_log_amplitude"] for r in amp]
        distances[name] = [r["mean_mixing_distance_px"] for r in rows]
    written.append(plots.save(plots.plot_by_depth(distances, ylabel="mean mixing distance (px)",
                                                  title="mean mixing distance vs depth"),
                              out / "mixing_distance.pdf"))
    written.append(plots.save(plots.plot_by_depth(amplitudes, ylabel="relative log amplitude",
                                                  title="high-frequency log amplitude vs depth"),
                              out / "relative_log_amplitude.pdf"))
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probe.mixing``: see ``--help``. Bad input: one ``error:`` line, exit 2."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        written = run(args)
        print("wrote:")
        for path in written:
            print(f"  {path}")
        return 0

    return cli.run_main(body)


if __name__ == "__main__":
    sys.exit(main())
