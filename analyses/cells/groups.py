"""Group plans: the recipe's ``plans`` entries that list their own ``families``.

Besides the built-in plans (``sweep``, ``full``, ``data-efficiency``, ``precision-check``,
``synthetic``), any entry of ``analyses/recipe.json``'s ``plans`` with a ``families`` list is a
*group plan*: the cells an analysis needs, named once in the recipe instead of in code::

    "long-range": {"families": ["mixer", "cnn"],     # zoo families or analysis variants
                   "n_train": 10000,                 # an int, "full" (the whole pool) or a list
                   "seeds": [0, 1, 2],
                   "data_variants": [{"dataset": "glyph-pairs:4", "pool_n": 12000, "test_n": 2000}],
                   "commit_weights": true,           # weights + cards under <models>/<plan>/
                   "why": "...", "lr": "..."}

``data`` (one dict) or ``data_variants`` (a list) override ``training.data`` of the recipe
(each gives the cells their own recipe hash, as the ``synthetic`` plan's data do); neither
means the recipe's own data. Every family trains at its learning-rate family's swept rate.
A cell is in a group plan when its family, size, seed and recipe are among the plan's
(:func:`membership`); a full-data cell is the ``full`` plan's too, and its weights go where
every full-data model's go. With ``commit_weights`` the weights of the other cells are
committed under ``<models>/<plan>/<key>.safetensors`` (card beside them), for the analyses
that load them on a fresh clone; without it only their cards are (``<models>/cells/``).
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Tuple

from .recipe import Recipe

__all__ = ["BUILTIN_PLANS", "group_plans", "group_sizes", "group_recipes", "membership",
           "validate_group", "quick_group", "nearest_group", "group_cell_args"]

BUILTIN_PLANS = ("sweep", "full", "data-efficiency", "precision-check", "synthetic")


def group_plans(recipe: Recipe) -> Dict[str, dict]:
    """``{name: spec}`` of the recipe's group plans, in the recipe's order."""
    return {name: spec for name, spec in recipe.plans.items()
            if name not in BUILTIN_PLANS and isinstance(spec, dict) and "families" in spec}


def _sizes_spec(spec: dict) -> list:
    n = spec["n_train"]
    return list(n) if isinstance(n, list) else [n]


def group_sizes(recipe: Recipe, spec: dict) -> List[int]:
    """The plan's training-set sizes (``"full"``: the recipe's whole pool), ascending."""
    return sorted({recipe.full_n if n == "full" else int(n) for n in _sizes_spec(spec)})


def _data_overrides(spec: dict) -> List[Optional[dict]]:
    if "data_variants" in spec:
        return [dict(d) for d in spec["data_variants"]]
    return [dict(spec["data"]) if spec.get("data") else None]


def group_recipes(recipe: Recipe, spec: dict) -> List[Recipe]:
    """One recipe per data variant: ``recipe`` with ``training.data`` overridden (or itself);
    a plan with ``init_from`` also sets ``training.init_from`` (:func:`.transfer.init_overrides`)."""
    from .transfer import init_overrides
    init = init_overrides(recipe, spec)
    return [recipe if d is None and not init
            else recipe.variant({"training": {**({} if d is None else {"data": d}), **init}})
            for d in _data_overrides(spec)]


def validate_group(name: str, spec: dict, source: str = "recipe") -> None:
    """Raise a one-line ``ValueError`` naming the field when ``plans.<name>`` is malformed."""
    fams = spec.get("families")
    if not fams or not isinstance(fams, list) or not all(isinstance(f, str) for f in fams):
        raise ValueError(f"{source}: plans.{name}.families must be a non-empty list of family "
                         f"names, got {fams!r}")
    if "n_train" not in spec:
        raise ValueError(f"{source}: plans.{name}.n_train is missing (an integer, \"full\" or a list)")
    for n in _sizes_spec(spec):
        if n != "full" and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
            raise ValueError(f"{source}: plans.{name}.n_train must be positive integers or "
                             f"\"full\", got {spec['n_train']!r}")
    seeds = spec.get("seeds")
    if not seeds or not isinstance(seeds, list) \
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"{source}: plans.{name}.seeds must be integers >= 0")
    if "data" in spec and "data_variants" in spec:
        raise ValueError(f"{source}: plans.{name} has both data and data_variants; keep one")
    variants = spec.get("data_variants", [])
    if "data_variants" in spec and (not isinstance(variants, list) or not variants
                                    or not all(isinstance(d, dict) for d in variants)):
        raise ValueError(f"{source}: plans.{name}.data_variants must be a non-empty list of "
                         f"training.data overrides")
    if not isinstance(spec.get("commit_weights", False), bool):
        raise ValueError(f"{source}: plans.{name}.commit_weights must be true or false")


def quick_group(spec: dict, quick_n: int) -> dict:
    """The ``--quick`` version of a group plan: sizes ``quick_n`` (``"full"`` stays the quick
    pool), its first seed, generated datasets shrunk to a 1024-image pool and 256 test images;
    the spec's own ``"quick"`` entry overrides any of these."""
    sizes = sorted({n for n in ("full" if n == "full" else quick_n for n in _sizes_spec(spec))},
                   key=str)
    out = dict(spec, n_train=sizes if len(sizes) > 1 else sizes[0], seeds=list(spec["seeds"][:1]))

    def shrink(d: dict) -> dict:
        d = dict(d)
        if d.get("pool_n") is not None:
            d["pool_n"] = 1024
        if d.get("test_n") is not None:
            d["test_n"] = 256
        return d

    if "data_variants" in spec:
        out["data_variants"] = [shrink(d) for d in spec["data_variants"]]
    elif spec.get("data"):
        out["data"] = shrink(spec["data"])
    out.update(spec.get("quick", {}))
    return out


@functools.lru_cache(maxsize=64)
def _index(root: Recipe) -> Dict[Tuple[str, int, int, str], str]:
    index: Dict[Tuple[str, int, int, str], str] = {}
    for name, spec in group_plans(root).items():
        for r in group_recipes(root, spec):
            for n in group_sizes(r, spec):          # "full": the variant's own pool
                for s in spec["seeds"]:
                    for f in spec["families"]:
                        index.setdefault((f, n, int(s), r.hash), name)
    return index


def membership(family: str, n_train: int, seed: int, recipe: Recipe) -> Optional[str]:
    """The first group plan (recipe order) whose cells include this one, or ``None``."""
    return _index(recipe.root).get((family, int(n_train), int(seed), recipe.hash))


def nearest_group(family: str, n_train: int, recipe: Recipe) -> Optional[str]:
    """The group plan that trains ``family`` at ``n_train`` images on ``recipe``'s data with
    some seed (the plan a missing cell of another seed would join), or ``None``."""
    hashes = {}
    for name, spec in group_plans(recipe.root).items():
        if family in spec["families"] and int(n_train) in group_sizes(recipe.root, spec):
            hashes = {r.hash for r in group_recipes(recipe.root, spec)}
            if recipe.hash in hashes:
                return name
    return None


def group_cell_args(recipe: Recipe, name: str, spec: dict, families: Sequence[str]
                    ) -> List[Tuple[str, int, int, Recipe]]:
    """``(family, n_train, seed, recipe)`` of the plan's cells for ``families``: seed-major,
    then size, data variant and family order."""
    recipes = group_recipes(recipe, spec)
    pairs = sorted((n, i) for i, r in enumerate(recipes) for n in group_sizes(r, spec))
    return [(f, n, int(s), recipes[i]) for s in spec["seeds"] for n, i in pairs for f in families]
