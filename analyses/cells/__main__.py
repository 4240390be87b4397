"""Command line: ``python -m analyses.cells {run,status} --plan PLAN`` (:data:`.plan.PLANS`).

    python -m analyses.cells run --plan sweep --workers 2 --threads 1
    python -m analyses.cells status --plan full
    python -m analyses.cells run --plan sweep --family cnn --quick     # seconds, runs/cells_quick/
    python -m analyses.cells run --plan full --family synth_random  # a ladder rung, Mixer's lr
    python -m analyses.cells run --plan synthetic   # every family on the synthetic dataset
    python -m analyses.cells run --plan finegrid    # the 14x14-token variants (patch 2)

``run`` trains the plan's unfinished cells and resumes stopped ones; stop it with
Ctrl-C or ``kill <pid>`` at any time and run the same command to continue.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional, Sequence, Tuple

from probe.cli import OneLineParser, run_main
from probe.results import check_writable

from .plan import PLANS, cell_status, plan_names, plan, sweep_results, write_sweep
from .recipe import Recipe, committed_recipe, load_recipe, quick_recipe
from .runner import run_cells
from .training import PROTOCOL_FAMILIES, Cell, Store, cell_families, default_store

__all__ = ["main"]


def _recipe_and_store(args: argparse.Namespace) -> Tuple[Recipe, Store]:
    recipe = load_recipe(args.recipe) if args.recipe else committed_recipe()
    if args.quick:
        recipe = quick_recipe(recipe)
    return recipe, default_store(recipe, quick=args.quick)


def _command(args: argparse.Namespace, cell: Cell) -> str:
    parts = ["python -m analyses.cells run", f"--plan {args.plan}", f"--family {cell.family}",
             f"--n {cell.n_train}", f"--seed {cell.seed}", "--workers 1", f"--threads {args.threads}"]
    if args.recipe:
        parts.append(f"--recipe {args.recipe}")
    if args.quick:
        parts.append("--quick")
    return " ".join(parts)


def _cells(args: argparse.Namespace, recipe: Recipe, store: Store) -> List[Cell]:
    cells = plan(args.plan, recipe=recipe, store=store, families=args.family, seeds=args.seed)
    if args.n:
        cells = [c for c in cells if c.n_train in args.n]
    if not cells:
        raise ValueError(f"no cell of plan {args.plan} matches the --n/--seed filters; run "
                         f"`python -m analyses.cells status --plan {args.plan}` to see its cells")
    return cells


def _hashes(recipe: Recipe, cells: Sequence[Cell]) -> str:
    """The recipe's hash, and those of the variants some cells train under (synthetic data, fp32)."""
    others = sorted({c.recipe.hash for c in cells} - {recipe.hash})
    return recipe.hash + (f"; cells under variant(s) {', '.join(others)}" if others else "")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN: avx512_bf16 / AMX). Without it torch
    emulates bf16 and the recipe's bf16-autocast training runs far slower than fp32 (measured
    on an AVX2-only machine: a Mixer step at batch 128 on one thread took 14-18 s in bf16
    autocast against 1.1-1.3 s in fp32)."""
    import torch
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_bf16(cells: Sequence[Cell], *, allow_slow: bool) -> None:
    """One clear error before training bf16-autocast cells on a CPU without native bf16."""
    import torch
    slow = [c for c in cells if c.recipe.autocast_dtype == torch.bfloat16]
    if slow and not allow_slow and not native_bf16():
        raise ValueError(
            f"{len(slow)} cell(s) train in bf16 autocast (the recipe's training.precision."
            f"train_autocast) but this CPU has no native bf16 (no avx512_bf16/AMX), where bf16 "
            f"training runs about 15x slower than fp32; run the plan on a machine with "
            f"avx512_bf16 (lscpu | grep avx512_bf16), or pass --allow-slow-bf16 to train here anyway "
            f"(changing train_autocast would change the recipe hash and every cell)")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    for opt in ("workers", "threads"):
        if getattr(args, opt) <= 0:
            raise ValueError(f"--{opt} must be positive, got {getattr(args, opt)}")
    recipe, store = _recipe_and_store(args)
    cells = _cells(args, recipe, store)
    check_writable(store.runs)
    if any(c.commits_weights for c in cells):
        check_writable(store.models)
    weights = args.plan != "sweep"       # the sweep needs validation accuracies only
    pending = [c for c in cells if not store.is_done(c, need_weights=weights)]
    if not args.quick:       # quick cells train in fp32 (QUICK_OVERRIDES)
        check_bf16(pending, allow_slow=args.allow_slow_bf16)
    print(f"plan {args.plan}: {len(cells)} cells (recipe {_hashes(recipe, cells)}), {len(cells) - len(pending)} "
          f"done, {len(pending)} to train with {args.workers} worker(s) x {args.threads} thread(s); "
          f"logs in {store.runs}/<cell>/log.txt", flush=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    report = run_cells(pending, store=store, workers=args.workers, threads=args.threads,
                       progress=not args.no_progress, command_for=lambda c: _command(args, c),
                       echo=lambda line: print(line, flush=True), need_weights=weights)
    while args.plan == "sweep" and not report.failed and not report.busy:
        # a family whose best lr sat at the edge of its grid gets the next value beyond it
        more = [c for c in _cells(args, recipe, store) if not store.is_done(c, need_weights=False)]
        if not more:
            break
        print(f"sweep: best learning rate at the edge of the grid, {len(more)} more cell(s): "
              + ", ".join(f"{c.family} {c.lr:g}" for c in more), flush=True)
        step = run_cells(more, store=store, workers=args.workers, threads=args.threads,
                         progress=not args.no_progress, command_for=lambda c: _command(args, c),
                         echo=lambda line: print(line, flush=True), need_weights=False)
        report.finished += step.finished
        report.failed.update(step.failed)
        report.busy += step.busy
    if args.plan == "sweep":
        payload = write_sweep(recipe=recipe, store=store)
        if payload is not None:
            chosen = ", ".join(f"{f} {e['chosen_lr']:g}" for f, e in payload["families"].items())
            print(f"learning rates chosen by the sweep: {chosen} (written to {store.sweep_path})")
    if report.busy:
        print(f"{len(report.busy)} cell(s) skipped: another process is training them")
    if report.failed:
        print(f"error: {len(report.failed)} cell(s) failed: "
              + "; ".join(f"{k} ({v})" for k, v in report.failed.items())
              + f"; see each cell's log.txt under {store.runs}", file=sys.stderr)
        return 1
    print(f"plan {args.plan}: {len(report.finished)} cell(s) finished now")
    return 0


def _status(args: argparse.Namespace) -> int:
    recipe, store = _recipe_and_store(args)
    cells = _cells(args, recipe, store)
    print(f"plan {args.plan}, recipe {_hashes(recipe, cells)} ({recipe.source}); runs in {store.runs}, "
          f"full-data models in {store.models}")
    print(f"{'family':8s} {'n':>6s} {'seed':>4s} {'lr':>7s}  {'state':8s} {'step':>11s} "
          f"{'val':>6s} {'test':>6s} {'time':>9s}")
    counts = {}
    for c in cells:
        st = cell_status(c, store, need_weights=args.plan != "sweep")
        counts[st.state] = counts.get(st.state, 0) + 1
        val = f"{st.card['val_accuracy']:.4f}" if st.card else "-"
        test = f"{st.card['test_accuracy']:.4f}" if st.card else "-"
        minutes = f"{st.train_time_s / 60:.1f} min" if st.train_time_s else "-"
        print(f"{c.family:8s} {c.n_train:6d} {c.seed:4d} {c.lr:7g}  {st.state:8s} "
              f"{f'{st.step}/{c.steps}':>11s} {val:>6s} {test:>6s} {minutes:>9s}")
    print(", ".join(f"{counts[s]} {s}" for s in ("done", "running", "stopped", "pending") if s in counts))
    if args.plan == "sweep":
        results = sweep_results(recipe=recipe, store=store, families=args.family)
        for fam, r in results.items():
            accs = ", ".join(f"{lr:g}: {acc:.4f}" for lr, acc in sorted(r["val_accuracy"].items()))
            print(f"  {fam}: chosen lr {r['chosen_lr']:g} (val {accs})")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = OneLineParser(
        prog="python -m analyses.cells",
        description="Train the recipe's cells (family x data size x seed x lr) resumably, or show "
                    "where they stand. Recipe: analyses/recipe.json.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,status}")
    for name, text in (("run", "train the plan's unfinished cells (resumes stopped ones)"),
                       ("status", "table of the plan's cells: done / running / stopped / pending")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--plan", required=True, choices=plan_names(),
                       help="sweep (lr per family), full (every family on all data, 3 seeds), "
                            "data-efficiency (1k/3k/10k images), precision-check (the CNN in "
                            "bf16 and fp32), synthetic (every family on the synthetic "
                            "dataset, 10k images, 3 seeds: localisation), or a group plan of "
                            "analyses/recipe.json (an entry of 'plans' with its own 'families'; "
                            "its 'why' says what it is for): "
                            + ", ".join(n for n in plan_names() if n not in PLANS[:5]))
        p.add_argument("--family", nargs="+", action="extend", choices=cell_families(), metavar="F",
                       help=f"only these families (default the protocol's: {', '.join(PROTOCOL_FAMILIES)}); "
                            f"the analysis variants (Mixer's body with other token mixing: synth "
                            f"and the Synthesizer ladder token_linear, token_softmax, synth_random, "
                            f"synth_dense, dot_attention) train only when named, at Mixer's swept "
                            f"learning rate, in the full and data-efficiency plans; the finer-grid "
                            f"variants (mixer_p2, ..., fnet_p2: patch 2) at their family's, in the "
                            f"finegrid plan")
        p.add_argument("--seed", nargs="+", action="extend", type=int, metavar="S",
                       help="only these seeds")
        p.add_argument("--n", nargs="+", action="extend", type=int, metavar="N",
                       help="only these training-set sizes")
        p.add_argument("--quick", action="store_true",
                       help="seconds-scale recipe (1024-image pool, 20 steps) into runs/cells_quick/")
        p.add_argument("--recipe", default=None, metavar="PATH",
                       help="another recipe file (default analyses/recipe.json)")
        if name == "run":
            p.add_argument("--workers", type=int, default=2,
                           help="worker processes, one cell each (default 2)")
            p.add_argument("--threads", type=int, default=1,
                           help="torch threads per worker (default 1)")
            p.add_argument("--no-progress", action="store_true", help="no progress bars")
            p.add_argument("--allow-slow-bf16", action="store_true",
                           help="train bf16-autocast cells even on a CPU without native bf16 "
                                "(about 15x slower than fp32 there; default: stop with an error)")
    args = parser.parse_args(argv)
    return run_main(lambda: _run(args) if args.command == "run" else _status(args))


if __name__ == "__main__":
    sys.exit(main())
