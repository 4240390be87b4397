"""Plans (ordered lists of cells), the learning-rate sweep's choice, and the status of cells.

- ``sweep``: every family x its learning-rate grid at ``lr_sweep.n_train`` images, seed
  ``lr_sweep.seed``. The grid starts as ``lr_sweep.lrs``; while a family's best learning
  rate sits at an edge of its grid, the next value beyond that edge (x or / ``lr_sweep.extend.
  factor``, within ``lr_sweep.extend.bounds``) joins it (:func:`sweep_grid`), so that the
  chosen learning rate is never an untested edge.
- ``full``: every family on the whole training pool, seeds ``plans.full.seeds``,
  seed-major (all families of seed 0 first), at the learning rate the sweep chose.
- ``data-efficiency``: every family at each size of ``plans.data-efficiency.sizes`` with
  its seeds, seed-major, at the chosen learning rate. (The full-data point of the
  data-efficiency curve is the ``full`` plan.)
- ``synthetic``: every family on ``plans.synthetic.n_train`` images of the ``synthetic``
  dataset (class evidence in a known square; issue 16's localisation), seeds
  ``plans.synthetic.seeds``, seed-major, at the learning rate the (Fashion-MNIST) sweep chose:
  the committed recipe with only ``training.data`` ``dataset``, ``pool_n`` and ``test_n``
  changed (:func:`synthetic_recipe`, its own hash; cards beside the others).
- ``finegrid``: the finer-token-grid variants ``plans.finegrid.families`` (a family's
  architecture with patch size 2: 14x14 tokens, ``analyses.common.FINEGRID``) on
  ``plans.finegrid.n_train`` images (a data-efficiency size, so the 7x7 models of the same
  data and seeds exist), seeds ``plans.finegrid.seeds``, seed-major, the committed recipe,
  each at its family's swept learning rate (:func:`finegrid_cells`).

The sweep's choice (:func:`select_lr`: best final validation accuracy, ties to the
smaller lr) is written to ``<models>/lr_sweep.json`` (committed beside the full-data
weights) so that the full and data-efficiency cells can be keyed without the sweep's
run folders.

Plans hold the protocol's families (:data:`.training.PROTOCOL_FAMILIES`; the zoo's later
families, e.g. ``extattn``, train only when named and once swept) unless ``families`` names others: an analysis variant
(``synth`` and the Synthesizer ladder's rungs, :data:`.training.VARIANT_LR_FAMILY`) joins
the ``full`` and ``data-efficiency`` plans only when named (``--family synth_random``), trains
under the same recipe at its body's family's swept learning rate (Mixer's for all) and has no
sweep of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from probe import zoo
from probe.results import atomic_write_json, read_json

from .groups import BUILTIN_PLANS, group_cell_args, group_plans
from .recipe import Recipe, committed_recipe
from .training import (PROTOCOL_FAMILIES, Cell, Store, cell_families, default_store, is_locked,
                       lr_family)

__all__ = ["PLANS", "plan_names", "plan", "select_lr", "synthetic_recipe", "synthetic_cells", "finegrid_cells", "precision_cells", "sweep_grid", "sweep_results", "chosen_lrs", "write_sweep",
           "CellStatus", "cell_status"]

PLANS = ("sweep", "full", "data-efficiency", "precision-check", "synthetic", "finegrid")


def plan_names(recipe: Optional[Recipe] = None) -> List[str]:
    """Every plan of ``recipe`` (default the committed one): the built-in plans, then its group
    plans (:mod:`.groups`), ``finegrid`` among them."""
    recipe = recipe or committed_recipe()
    return list(BUILTIN_PLANS) + [n for n in group_plans(recipe) if n not in BUILTIN_PLANS]


def select_lr(val_accuracy: Mapping[float, float]) -> float:
    """The learning rate with the best validation accuracy; ties go to the smaller learning rate.

    Args:
        val_accuracy: ``{lr: final validation accuracy}``.
    """
    if not val_accuracy:
        raise ValueError("select_lr needs at least one {lr: validation accuracy} result")
    return min(val_accuracy, key=lambda lr: (-val_accuracy[lr], lr))


def _families(families: Optional[Sequence[str]]) -> List[str]:
    """``families`` in registry order (zoo families, then variants); default the protocol's
    families (:data:`.training.PROTOCOL_FAMILIES`, not every zoo family: a family joins the plans
    once its sweep has run)."""
    if not families:
        return list(PROTOCOL_FAMILIES)
    names = cell_families()
    bad = [f for f in families if f not in names]
    if bad:
        raise ValueError(f"unknown family {', '.join(bad)}; valid: {', '.join(names)}")
    return [f for f in names if f in families]


def _lr(value: float) -> float:
    return float(f"{value:.6g}")          # 4e-3 * 2 is 0.008, not 0.008000000000000002


def sweep_grid(recipe: Recipe, store: Store, family: str) -> Tuple[List[float], bool]:
    """``(learning rates, complete)`` of ``family``'s sweep as far as its finished cells tell.

    The grid starts as ``lr_sweep.lrs``. Once every cell of the grid is done, if the best
    validation accuracy (:func:`select_lr`) sits at the grid's largest (smallest) learning
    rate, the next one up (down) by ``lr_sweep.extend.factor`` is added, unless it leaves
    ``lr_sweep.extend.bounds``. ``complete`` is True when every grid cell is done and no
    value is to be added. Without ``lr_sweep.extend`` the grid is ``lr_sweep.lrs``.
    """
    s = recipe.lr_sweep
    grid = sorted(_lr(v) for v in s["lrs"])
    extend = s.get("extend")
    while True:
        cards = {lr: store.card(Cell(family, int(s["n_train"]), int(s["seed"]), lr, recipe),
                                need_weights=False) for lr in grid}
        if any(card is None for card in cards.values()):
            return grid, False
        if not extend:
            return grid, True
        best = select_lr({lr: card["val_accuracy"] for lr, card in cards.items()})
        lo, hi = (float(b) for b in extend["bounds"])
        factor = float(extend["factor"])
        if best == grid[-1] and _lr(best * factor) <= hi:
            grid.append(_lr(best * factor))
        elif best == grid[0] and _lr(best / factor) >= lo:
            grid.insert(0, _lr(best / factor))
        else:
            return grid, True


def _sweep_cells(recipe: Recipe, store: Store, families: Sequence[str]) -> List[Cell]:
    s = recipe.lr_sweep
    return [Cell(f, int(s["n_train"]), int(s["seed"]), lr, recipe)
            for f in families for lr in sweep_grid(recipe, store, f)[0]]


def sweep_results(*, recipe: Recipe, store: Store, families: Optional[Sequence[str]] = None
                  ) -> Dict[str, dict]:
    """Per family whose sweep is complete: ``{"val_accuracy": {lr: acc}, "chosen_lr", "keys"}``.

    A family recorded in ``lr_sweep.json`` (written for this recipe, sweep size and seed)
    keeps that recorded choice: it is the committed decision every later cell was trained
    at. A sweep cell may be trained again later by a plan that commits its weights (a
    group plan sharing the key), and with another thread count its bf16 reductions give a
    slightly different validation accuracy; re-reading the cards would then flip a choice
    between two near-tied rates and orphan every cell trained at the old one. Families not
    in the file are read from the finished sweep cells' cards (see :func:`sweep_grid`).
    An analysis variant gets the entry of the family whose learning rate it uses
    (:func:`.training.lr_family`), with ``"lr_from"``: that family.
    """
    asked = _families(families)
    sources = {lr_family(f) for f in asked}
    swept = [f for f in zoo.names() if f in sources]
    out: Dict[str, dict] = {}
    saved = read_json(store.sweep_path)
    s = recipe.lr_sweep
    if isinstance(saved, dict) and saved.get("recipe_hash") == recipe.hash \
            and [saved.get(k) for k in ("lrs", "extend", "n_train", "seed")] \
            == [s["lrs"], s.get("extend"), s["n_train"], s["seed"]]:
        for fam, entry in saved.get("families", {}).items():
            if fam in swept:
                out[fam] = {"val_accuracy": {float(k): v for k, v in entry["val_accuracy"].items()},
                            "chosen_lr": float(entry["chosen_lr"]), "keys": entry["keys"]}
    for fam in swept:
        if fam in out:
            continue
        grid, complete = sweep_grid(recipe, store, fam)
        if complete:
            cells = _sweep_cells_at(recipe, fam, grid)
            accs = {c.lr: store.card(c, need_weights=False)["val_accuracy"] for c in cells}
            out[fam] = {"val_accuracy": accs, "chosen_lr": select_lr(accs),
                        "keys": [c.key for c in cells]}
    return {f: (out[lr_family(f)] if lr_family(f) == f else {**out[lr_family(f)], "lr_from": lr_family(f)})
            for f in asked if lr_family(f) in out}


def _sweep_cells_at(recipe: Recipe, family: str, grid: Sequence[float]) -> List[Cell]:
    s = recipe.lr_sweep
    return [Cell(family, int(s["n_train"]), int(s["seed"]), lr, recipe) for lr in grid]


def write_sweep(*, recipe: Recipe, store: Store) -> Optional[dict]:
    """Write ``<models>/lr_sweep.json`` from every family with a complete sweep (None if none)."""
    results = sweep_results(recipe=recipe, store=store)
    if not results:
        return None
    s = recipe.lr_sweep
    payload = {"schema_version": 2, "recipe_hash": recipe.hash, "n_train": s["n_train"],
               "seed": s["seed"], "lrs": s["lrs"], "extend": s.get("extend"), "rule": s["rule"],
               "families": {fam: {"val_accuracy": {f"{lr:g}": acc for lr, acc in
                                                   sorted(r["val_accuracy"].items())},
                                  "chosen_lr": r["chosen_lr"], "keys": r["keys"]}
                            for fam, r in results.items()}}
    atomic_write_json(store.sweep_path, payload)
    return payload


def chosen_lrs(*, recipe: Recipe, store: Store, families: Sequence[str]) -> Dict[str, float]:
    """``{family: lr}`` chosen by the sweep; ``ValueError`` naming the families still missing."""
    results = sweep_results(recipe=recipe, store=store, families=families)
    missing = [f for f in families if f not in results]
    if missing:
        raise ValueError(f"the learning-rate sweep of recipe {recipe.hash} is not finished for "
                         f"{', '.join(missing)}; run `python -m analyses.cells run --plan sweep` "
                         f"(make cells-sweep) first")
    return {f: results[f]["chosen_lr"] for f in families}


def plan(name: str, *, recipe: Optional[Recipe] = None, store: Optional[Store] = None,
         families: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None
         ) -> List[Cell]:
    """The ordered cells of plan ``name`` (one of :data:`PLANS`).

    Args:
        name: the plan.
        recipe: default the committed recipe.
        store: where the sweep's results are read (default :func:`default_store`).
        families: these families only (default :data:`.training.PROTOCOL_FAMILIES`); an
            analysis variant (``synth``, the ladder's rungs) is trained only when named here,
            at its body's family's swept learning rate, and has no ``sweep`` cells.
        seeds: keep these seeds only (default every seed of the plan).

    Raises:
        ValueError: unknown plan or family; a variant in the ``sweep`` plan; for ``full`` and
            ``data-efficiency``, a family whose learning-rate sweep is not finished.
    """
    recipe = recipe or committed_recipe()
    if name not in PLANS and name not in group_plans(recipe):
        raise ValueError(f"unknown plan {name!r}; valid: {', '.join(plan_names(recipe))}")
    store = store or default_store(recipe)
    if name != "finegrid" and name in group_plans(recipe):
        return _group_cells(recipe, store, name, families, seeds)
    fams = _families(families)
    if name == "sweep":
        variants = [f for f in fams if lr_family(f) != f]
        if variants:
            raise ValueError(f"{', '.join(variants)} has no learning-rate sweep: it trains at "
                             f"{lr_family(variants[0])}'s swept learning rate (the same body); use "
                             f"--plan full or data-efficiency")
        cells = _sweep_cells(recipe, store, fams)
    else:
        if name == "precision-check" and families is None:
            fams = [recipe.plans["precision-check"]["family"]]
        if name == "finegrid":
            fams = _finegrid_families(recipe, families)
        lrs = chosen_lrs(recipe=recipe, store=store, families=fams)
        if name == "full":
            jobs = [(s, recipe.full_n) for s in recipe.plans["full"]["seeds"]]
        elif name == "data-efficiency":
            sizes = {int(n): list(s) for n, s in recipe.plans["data-efficiency"]["sizes"].items()}
            all_seeds = sorted({s for ss in sizes.values() for s in ss})
            jobs = [(s, n) for s in all_seeds for n in sorted(sizes) if s in sizes[n]]
        if name == "precision-check":
            cells = precision_cells(recipe, lrs)
            cells = [c for c in cells if c.family in fams]
        elif name == "synthetic":
            cells = synthetic_cells(recipe, lrs, families=fams)
        elif name == "finegrid":
            cells = finegrid_cells(recipe, lrs, families=fams)
        else:
            cells = [Cell(f, n, s, lrs[f], recipe) for s, n in jobs for f in fams]
    if seeds is not None:
        cells = [c for c in cells if c.seed in set(seeds)]
    return cells


def _group_cells(recipe: Recipe, store: Store, name: str, families: Optional[Sequence[str]],
                 seeds: Optional[Sequence[int]]) -> List[Cell]:
    """The cells of group plan ``name`` (:mod:`.groups`), or those of ``families``/``seeds``."""
    spec = group_plans(recipe)[name]
    planned = list(spec["families"])
    fams = planned if not families else [f for f in planned if f in families]
    other = [f for f in (families or ()) if f not in planned]
    if other:
        raise ValueError(f"{', '.join(other)} is not in the {name} plan; its families are "
                         f"{', '.join(planned)}")
    lrs = chosen_lrs(recipe=recipe, store=store, families=fams)
    cells = [Cell(f, n, s, lrs[f], r) for f, n, s, r in group_cell_args(recipe, name, spec, fams)]
    return [c for c in cells if seeds is None or c.seed in set(seeds)]


def precision_cells(recipe: Recipe, lrs: Mapping[str, float]) -> List[Cell]:
    """The ``precision-check`` plan: ``plans.precision-check.family`` on ``n_train`` images
    with each seed, trained twice - by the recipe (bf16 autocast) and by the recipe with
    ``training_overrides`` (fp32) - pairs in seed order, the recipe's cell first. The fp32
    cells have their own recipe hash; their cards sit beside the others."""
    spec = recipe.plans["precision-check"]
    other = recipe.variant({"training": spec["training_overrides"]})
    fam, n = spec["family"], int(spec["n_train"])
    return [Cell(fam, n, int(s), lrs[fam], r) for s in spec["seeds"] for r in (recipe, other)]


def synthetic_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` with only its training data changed to ``plans.synthetic``: the ``synthetic``
    dataset, its ``pool_n`` generated training images (+ ``val_n`` validation) and ``test_n``
    test images. Everything else (steps, optimiser, schedule, augmentation, precision) is the
    recipe's; the hash differs because the data do."""
    if "synthetic" not in recipe.plans:
        raise ValueError(f"recipe {recipe.hash} has no plans.synthetic; add one laid out like "
                         f"analyses/recipe.json's")
    spec = recipe.plans["synthetic"]
    return recipe.variant({"training": {"data": {"dataset": "synthetic", "pool_n": int(spec["pool_n"]),
                                                 "test_n": int(spec["test_n"])}}})


def synthetic_cells(recipe: Recipe, lrs: Mapping[str, float], *,
                    families: Optional[Sequence[str]] = None,
                    seeds: Optional[Sequence[int]] = None) -> List[Cell]:
    """The ``synthetic`` plan: ``families`` (default every family of ``lrs``) on
    ``plans.synthetic.n_train`` images of :func:`synthetic_recipe`, each at its ``lrs`` entry
    (the sweep's choice), for ``seeds`` (default ``plans.synthetic.seeds``), seed-major."""
    data_recipe = synthetic_recipe(recipe)
    n = int(recipe.plans["synthetic"]["n_train"])
    fams = list(lrs) if families is None else list(families)
    missing = [f for f in fams if f not in lrs]
    if missing:
        raise ValueError(f"no learning rate for {', '.join(missing)}")
    seeds = recipe.plans["synthetic"]["seeds"] if seeds is None else seeds
    return [Cell(f, n, int(s), lrs[f], data_recipe) for s in seeds for f in fams]


def _finegrid_families(recipe: Recipe, families: Optional[Sequence[str]]) -> List[str]:
    """``plans.finegrid.families``, or those of them named in ``families`` (others: an error)."""
    if "finegrid" not in recipe.plans:
        raise ValueError(f"recipe {recipe.hash} has no plans.finegrid; add one laid out like "
                         f"analyses/recipe.json's")
    planned = list(recipe.plans["finegrid"]["families"])
    if not families:
        return planned
    other = [f for f in families if f not in planned]
    if other:
        raise ValueError(f"{', '.join(other)} is not in the finegrid plan; its families are "
                         f"{', '.join(planned)}")
    return [f for f in planned if f in families]


def finegrid_cells(recipe: Recipe, lrs: Mapping[str, float], *,
                   families: Optional[Sequence[str]] = None,
                   seeds: Optional[Sequence[int]] = None) -> List[Cell]:
    """The ``finegrid`` plan: ``families`` (default ``plans.finegrid.families``) on
    ``plans.finegrid.n_train`` images of the committed recipe, each at its ``lrs`` entry (its
    family's swept learning rate), for ``seeds`` (default ``plans.finegrid.seeds``), seed-major."""
    fams = _finegrid_families(recipe, families)
    spec = recipe.plans["finegrid"]
    # the 7x7 models it is compared with: a data-efficiency size trained with those seeds
    coarse = recipe.plans["data-efficiency"]["sizes"].get(str(spec["n_train"]), [])
    if any(s not in coarse for s in spec["seeds"]):
        raise ValueError(f"plans.finegrid must use a size and seeds of plans.data-efficiency (the "
                         f"7x7 models it is compared with): n_train {spec['n_train']} has seeds "
                         f"{coarse}, the finegrid plan asks {spec['seeds']}")
    missing = [f for f in fams if f not in lrs]
    if missing:
        raise ValueError(f"no learning rate for {', '.join(missing)}")
    seeds = spec["seeds"] if seeds is None else seeds
    return [Cell(f, int(spec["n_train"]), int(s), lrs[f], recipe) for s in seeds for f in fams]


@dataclass
class CellStatus:
    """Where a cell stands.

    Attributes:
        cell: the cell.
        state: ``done``, ``running`` (a process holds its lock), ``stopped`` (a checkpoint
            exists, nobody trains it) or ``pending``.
        step: finished steps (the checkpoint's for ``running``/``stopped``).
        card: the card of a ``done`` cell.
        train_time_s: wall time so far.
    """

    cell: Cell
    state: str
    step: int
    card: Optional[dict]
    train_time_s: float


def cell_status(cell: Cell, store: Store, *, need_weights: bool = True) -> CellStatus:
    """The :class:`CellStatus` of ``cell`` in ``store`` (reads small files only; without
    ``need_weights`` a card is enough for ``done``, as for the sweep)."""
    card = store.card(cell, need_weights=need_weights)
    if card is not None:
        return CellStatus(cell, "done", cell.steps, card, float(card["train_time_s"]))
    progress = read_json(store.progress_path(cell)) or {}
    step = int(progress.get("step", 0)) if progress.get("key") == cell.key else 0
    elapsed = float(progress.get("train_time_s", 0.0)) if step else 0.0
    if is_locked(store.lock_path(cell)):
        return CellStatus(cell, "running", step, None, elapsed)
    return CellStatus(cell, "stopped" if step else "pending", step, None, elapsed)
