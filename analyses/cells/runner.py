"""Train many cells: in this process (one worker) or in spawned worker processes.

Each worker process trains one cell and exits (``maxtasksperchild=1``), so no
state leaks from one cell into the next; it reports its steps to the parent,
which shows one progress bar over all steps and prints one line per finished
cell. A stopped run (Ctrl-C, ``kill``) loses at most ``checkpoint_every`` steps
per running cell: the same command resumes every cell from its checkpoint.
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .plan import cell_status
from .training import Cell, CellBusy, Store, _Log, train_cell

__all__ = ["RunReport", "run_cells", "summary"]

REPORT_EVERY = 10   # steps between progress messages from a worker


@dataclass
class RunReport:
    """What a :func:`run_cells` call did.

    Attributes:
        finished: the cards of the cells finished by this call.
        failed: ``{cell key: error message}`` (tracebacks are in each cell's ``log.txt``).
        busy: keys of cells another process was training (skipped).
    """

    finished: List[dict] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    busy: List[str] = field(default_factory=list)


def summary(card: dict) -> str:
    """One line for a finished cell."""
    return (f"{card['key']}: val {card['val_accuracy']:.4f}, test {card['test_accuracy']:.4f} "
            f"({card['steps']} steps, {card['train_time_s'] / 60:.1f} min, {card['img_per_s']:.0f} "
            f"img/s) -> {card['weights']}")


def _train_one(cell: Cell, store: Store, threads: Optional[int], command: Optional[str],
               progress: bool, on_step: Optional[Callable[[int], None]]
               ) -> Tuple[str, Optional[dict], Optional[str]]:
    """``(key, card, None)``, or ``(key, None, error)``; errors go to the cell's log with traceback."""
    try:
        card = train_cell(cell, store=store, threads=threads, progress=progress, on_step=on_step,
                          command=command)
        return cell.key, card, None
    except CellBusy as e:
        return cell.key, None, f"busy: {e}"
    except Exception as e:  # one failed cell must not stop the others; the log keeps the traceback
        _Log(store.log_path(cell))("failed:\n" + traceback.format_exc())
        return cell.key, None, f"{type(e).__name__}: {e}"


def _work(task: tuple) -> Tuple[str, Optional[dict], Optional[str]]:
    """Worker-process entry: train one cell, reporting ``(key, step)`` to the parent's queue."""
    cell, store, threads, command, messages = task

    def report(step: int) -> None:
        if step % REPORT_EVERY == 0 or step == cell.steps:
            messages.put((cell.key, step))

    try:
        return _train_one(cell, store, threads, command, False, report)
    except KeyboardInterrupt:
        return cell.key, None, "interrupted"


def _record(report: RunReport, result: Tuple[str, Optional[dict], Optional[str]],
            echo: Callable[[str], None]) -> None:
    key, card, error = result
    if card is not None:
        report.finished.append(card)
        echo(summary(card))
    elif error is not None and error.startswith("busy: "):
        report.busy.append(key)
        echo(f"{key}: skipped, {error[len('busy: '):]}")
    elif error is not None:
        report.failed[key] = error
        echo(f"{key}: FAILED, {error}")


def run_cells(cells: Sequence[Cell], *, store: Store, workers: int = 1, threads: Optional[int] = 1,
              progress: bool = True, command_for: Optional[Callable[[Cell], str]] = None,
              echo: Callable[[str], None] = print, need_weights: bool = True) -> RunReport:
    """Train the unfinished ``cells`` (in order) with ``workers`` processes of ``threads`` threads.

    Args:
        cells: the cells; finished ones are skipped.
        store: where they live.
        workers: 1 trains in this process; more spawn that many worker processes.
        threads: torch threads per worker.
        progress: progress bars (per step with one worker, over all steps otherwise).
        command_for: the command recorded in each card (default ``train_cell``'s).
        echo: where the per-cell summary lines go.
        need_weights: a cell counts as finished only with its committed weights (False: its
            card is enough - the sweep reads validation accuracies only).
    """
    if workers <= 0:
        raise ValueError(f"workers must be positive, got {workers}")
    if threads is not None and threads <= 0:
        raise ValueError(f"threads must be positive, got {threads}")
    report = RunReport()
    pending = [c for c in cells if not store.is_done(c, need_weights=need_weights)]
    command_for = command_for or (lambda cell: None)
    if workers == 1 or len(pending) <= 1:
        for cell in pending:
            _record(report, _train_one(cell, store, threads, command_for(cell), progress, None), echo)
        return report
    from tqdm import tqdm
    done_steps = {c.key: cell_status(c, store).step for c in pending}
    total = sum(c.steps - done_steps[c.key] for c in pending)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        messages = manager.Queue()
        pool = ctx.Pool(min(workers, len(pending)), maxtasksperchild=1)
        bar = tqdm(total=total, desc=f"{len(pending)} cells", unit="step", disable=not progress,
                   smoothing=0.02, mininterval=1 if sys.stderr.isatty() else 60)

        def show(line: str) -> None:
            with bar.external_write_mode():
                echo(line)

        try:
            running = [pool.apply_async(_work, ((c, store, threads, command_for(c), messages),))
                       for c in pending]
            while running:
                try:
                    key, step = messages.get(timeout=0.5)
                    bar.update(max(0, step - done_steps[key]))
                    done_steps[key] = max(done_steps[key], step)
                except queue_module.Empty:
                    pass
                for job in [j for j in running if j.ready()]:
                    running.remove(job)
                    _record(report, job.get(), show)
            pool.close()
            pool.join()
        finally:
            bar.close()
            pool.terminate()
            pool.join()
    return report
