"""What the evaluation-only analyses share: their converged models, batched inference and
timing, and their per-seed effects against one reference family.

An evaluation-only analysis (calibration, equivariance, edge_cost, cost_accuracy) measures the
converged full-data models of its scale's families (seeds ``plans.full`` of the recipe) and
compares every family with one reference family seed by seed (or timing round by round).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np
import torch

from analyses import converged

__all__ = ["full_models", "outputs", "latency_ms", "by_family", "paired_by_seed", "paired_by_round"]


def full_models(name: str, scale: Mapping, reference: str, *, progress: bool):
    """``(recipe, seeds, [(model, model_row)], test images float, test labels)`` of an analysis:
    the converged full-data models of ``scale["families"]`` (quick cells when ``scale["quick"]``),
    which must include the ``reference`` family every other is compared with."""
    from analyses.cells import test_sets
    from analyses.cells.recipe import to_float
    fams = list(scale["families"])
    if reference not in fams:
        raise ValueError(f"{name} compares every family with {reference!r}: include it in the families")
    quick = bool(scale["quick"])
    recipe, _ = converged.recipe_and_store(quick)
    seeds = sorted(int(s) for s in recipe.plans["full"]["seeds"])
    loaded = converged.models(fams, seeds, quick=quick, progress=progress)
    (xt, yt), _ = test_sets(recipe)
    return recipe, seeds, loaded, to_float(xt), yt


def outputs(model: torch.nn.Module, images: torch.Tensor, *, batch: int = 500) -> torch.Tensor:
    """``model``'s logits on ``images`` in fp32 (no autocast, no gradient), batch by batch."""
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        return torch.cat([model(images[i:i + batch]).float() for i in range(0, len(images), batch)])


def latency_ms(model: torch.nn.Module, x: torch.Tensor, reps: int) -> float:
    """Median milliseconds of ``model(x)`` over ``reps`` calls after one warm-up, on the
    current torch threads."""
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def by_family(rows: Sequence[dict]) -> Dict[str, List[dict]]:
    """Result rows (each with ``family`` and ``seed``) grouped by family, in seed order."""
    out: Dict[str, List[dict]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        out.setdefault(r["family"], []).append(r)
    return out


def paired_by_seed(rows: Sequence[dict], value: Callable[[dict], float], reference: str, *,
                   sign: float = 1.0) -> Dict[str, List[float]]:
    """Per family other than ``reference``, per seed: ``sign * (value(family row) -
    value(reference row))`` of the same seed.

    Raises:
        ValueError: a family's seeds differ from the reference's.
    """
    grouped = by_family(rows)
    ref = {r["seed"]: value(r) for r in grouped[reference]}
    out = {}
    for f, mine in grouped.items():
        if f == reference:
            continue
        if sorted(r["seed"] for r in mine) != sorted(ref):
            raise ValueError(f"{f} has seeds {[r['seed'] for r in mine]}, {reference} "
                             f"{sorted(ref)}: the families are compared seed by seed")
        out[f] = [sign * (value(r) - ref[r["seed"]]) for r in mine]
    return out


def paired_by_round(rows: Mapping[str, Sequence[float]], reference: str,
                    effect: Callable[[float, float], float]) -> Dict[str, List[float]]:
    """Per family other than ``reference``: ``effect(family value, reference value)`` of each
    interleaved timing round (``rows[family]`` = one value per round)."""
    ref = rows[reference]
    return {f: [effect(v, r) for v, r in zip(values, ref, strict=True)]
            for f, values in rows.items() if f != reference}

