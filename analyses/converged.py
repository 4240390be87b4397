"""The trained models every analysis uses: the cells of the one recipe (``analyses/recipe.json``).

Full scale: the full-data models committed under ``analyses/models/<family>_n<n>_s<seed>.safetensors``
(and the data-efficiency and finegrid cells under ``runs/cells``: :func:`models` with
``n_train``, e.g. ``plan_spec("finegrid", quick=...)["n_train"]``), trained by ``python -m
analyses.cells`` (``make cells-full``, ``make cells-data-efficiency``, ``make cells-finegrid``). An analysis never trains those
itself: a missing one is a one-line error naming the command that trains it.

``--quick``: the same recipe shrunk to seconds (:func:`analyses.cells.quick_recipe`, a
1024-image pool, 20 steps, runs/cells_quick/); missing quick cells are trained on the
spot, at the first learning rate of the sweep grid when no quick sweep has run.

Each model comes with its results-file row (:func:`model_row`): ``family, n_train, seed,
steps, lr, val_accuracy, test_accuracy, weights`` (+ ``sha256``, ``recipe_hash``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from probe import zoo

from .cells import Cell, Store, committed_recipe, default_store, quick_recipe, train_cell
from .cells.plan import sweep_results
from .cells.training import CellBusy, load_model, plan_of
from .cells.recipe import Recipe

__all__ = ["recipe_and_store", "plan_spec", "lrs", "cells_for", "model_row", "load", "models",
           "plan_cells", "plan_rows", "plan_models"]

ROOT = Path(__file__).resolve().parents[1]


def recipe_and_store(quick: bool) -> Tuple[Recipe, Store]:
    """The committed recipe and its store, or their ``--quick`` versions."""
    recipe = quick_recipe() if quick else committed_recipe()
    return recipe, default_store(recipe, quick=quick)


def plan_spec(name: str, *, quick: bool) -> dict:
    """The recipe's ``plans.<name>`` (its ``--quick`` version with ``quick``), e.g. ``finegrid``'s
    ``families``, ``n_train`` and ``seeds``."""
    recipe, _ = recipe_and_store(quick)
    if name not in recipe.plans:
        raise ValueError(f"recipe {recipe.hash} has no plans.{name}; see analyses/recipe.json")
    return dict(recipe.plans[name])


def lrs(families: Sequence[str], *, quick: bool) -> Dict[str, float]:
    """``{family: learning rate}`` chosen by the sweep (quick without a sweep: the grid's first)."""
    recipe, store = recipe_and_store(quick)
    found = sweep_results(recipe=recipe, store=store, families=families)
    missing = [f for f in families if f not in found]
    if missing and not quick:
        raise ValueError(f"the learning-rate sweep is not finished for {', '.join(missing)}; run "
                         f"`make cells-sweep` (python -m analyses.cells run --plan sweep) first")
    first = float(sorted(recipe.lr_sweep["lrs"])[0])
    return {f: (found[f]["chosen_lr"] if f in found else first) for f in families}


def cells_for(families: Sequence[str], seeds: Sequence[int], *, n_train: Optional[int] = None,
              quick: bool = False) -> List[Cell]:
    """The cells of ``families`` x ``seeds`` on ``n_train`` images (default: the full pool)."""
    recipe, _ = recipe_and_store(quick)
    chosen = lrs(families, quick=quick)
    n = recipe.full_n if n_train is None else int(n_train)
    return [Cell(f, n, int(s), chosen[f], recipe) for f in families for s in seeds]


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def model_row(card: dict, weights: Path) -> dict:
    """The results-file row of one trained model, from its card."""
    return {"family": card["family"], "n_train": card["n_train"], "seed": card["seed"],
            "steps": card["steps"], "lr": card["lr"], "val_accuracy": card["val_accuracy"],
            "test_accuracy": card["test_accuracy"], "weights": _relative(weights),
            "sha256": card.get("sha256"), "recipe_hash": card["recipe_hash"]}


def load(cell: Cell, *, quick: bool = False, progress: bool = False) -> Tuple[zoo.ProbeModel, dict]:
    """``(model in eval mode, model_row)`` of a finished cell; quick cells are trained if missing.

    Raises:
        ValueError: a full-scale cell is not trained yet (the message names the command).
    """
    _, store = recipe_and_store(quick)
    card = store.card(cell)
    if card is None:
        if not quick:
            plan = plan_of(cell)
            raise ValueError(f"model {cell.key} is not trained yet; run `python -m analyses.cells run "
                             f"--plan {plan} --family {cell.family} --seed {cell.seed}` (make "
                             f"cells-{plan}) first")
        card = _train_waiting(cell, store, progress)
    weights = store.weights_path(cell)
    model = load_model(cell.family, str(weights))       # zoo family or analysis variant (synth)
    return model.eval(), model_row(card, weights)


def _train_waiting(cell: Cell, store: Store, progress: bool, timeout_s: float = 600.0) -> dict:
    """Train a quick cell; if another process is training it, wait for its card."""
    import time
    start = time.monotonic()
    while True:
        try:
            return train_cell(cell, store=store, progress=progress)
        except CellBusy:
            if time.monotonic() - start > timeout_s:
                raise
            time.sleep(1.0)
            card = store.card(cell)
            if card is not None:
                return card


def models(families: Sequence[str], seeds: Sequence[int], *, n_train: Optional[int] = None,
           quick: bool = False, progress: bool = False) -> List[Tuple[zoo.ProbeModel, dict]]:
    """:func:`load` every cell of :func:`cells_for` (family-major, then seed).

    Raises:
        ValueError: full scale and some cells are missing (all of them are named).
    """
    cells = cells_for(families, seeds, n_train=n_train, quick=quick)
    if not quick:
        _, store = recipe_and_store(False)
        missing = [c for c in cells if not store.is_done(c)]
        if missing:
            plan = plan_of(missing[0])
            fams = " ".join(dict.fromkeys(c.family for c in missing))
            raise ValueError(f"{len(missing)} model(s) not trained yet ({', '.join(c.key for c in missing[:4])}"
                             f"{', ...' if len(missing) > 4 else ''}); run `make cells-{plan}` "
                             f"(python -m analyses.cells run --plan {plan} --family {fams}) first")
    return [load(c, quick=quick, progress=progress) for c in cells]


def plan_cells(name: str, *, quick: bool = False, families: Optional[Sequence[str]] = None,
               seeds: Optional[Sequence[int]] = None) -> List[Cell]:
    """The cells of the recipe's plan ``name`` (a group plan of ``analyses/recipe.json``, e.g.
    ``long-range``), or its ``--quick`` version's."""
    from .cells import plan
    recipe, store = recipe_and_store(quick)
    if quick:                               # no quick sweep: every family at the grid's first lr
        fams = families or recipe.plans[name]["families"]
        chosen = lrs(list(fams), quick=True)
        from .cells.groups import group_cell_args
        spec = recipe.plans[name]
        cells = [Cell(f, n, s, chosen[f], r)
                 for f, n, s, r in group_cell_args(recipe, name, spec, list(fams))]
        return [c for c in cells if seeds is None or c.seed in set(seeds)]
    return plan(name, recipe=recipe, store=store, families=families, seeds=seeds)


def _missing_error(name: str, missing: Sequence[Cell]) -> ValueError:
    fams = " ".join(dict.fromkeys(c.family for c in missing))
    return ValueError(f"{len(missing)} model(s) of plan {name} not trained yet ("
                      f"{', '.join(c.key for c in missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                      f"run `python -m analyses.cells run --plan {name} --family {fams}` first")


def plan_rows(name: str, *, quick: bool = False, families: Optional[Sequence[str]] = None,
              seeds: Optional[Sequence[int]] = None, progress: bool = False
              ) -> List[Tuple[dict, Cell]]:
    """``(model_row, cell)`` of every cell of plan ``name``, from the cards alone (the
    accuracies; no model is loaded). Quick cells are trained if missing.

    Raises:
        ValueError: full scale and some cells are missing (the message names the command).
    """
    cells = plan_cells(name, quick=quick, families=families, seeds=seeds)
    _, store = recipe_and_store(quick)
    if not quick:
        missing = [c for c in cells if not store.is_done(c, need_weights=False)]
        if missing:
            raise _missing_error(name, missing)
    out = []
    for cell in cells:
        card = store.card(cell, need_weights=False) or _train_waiting(cell, store, progress)
        out.append((model_row(card, store.weights_path(cell)), cell))
    return out


def plan_models(name: str, *, quick: bool = False, families: Optional[Sequence[str]] = None,
                seeds: Optional[Sequence[int]] = None, progress: bool = False
                ) -> List[Tuple[zoo.ProbeModel, dict, Cell]]:
    """``(model in eval mode, model_row, cell)`` of every cell of plan ``name`` (their weights
    are needed: a plan with ``commit_weights``, or cells trained on this machine). Quick cells
    are trained if missing.

    Raises:
        ValueError: full scale and some cells are missing (the message names the command).
    """
    cells = plan_cells(name, quick=quick, families=families, seeds=seeds)
    if not quick:
        _, store = recipe_and_store(False)
        missing = [c for c in cells if not store.is_done(c)]
        if missing:
            raise _missing_error(name, missing)
    return [(*load(c, quick=quick, progress=progress), c) for c in cells]
