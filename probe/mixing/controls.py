"""Controls for mixing metrics: reference matrices and trained vs init vs reference tables.

A mixing metric means little on its own: on a 7x7 token grid uniform mixing, a
random matrix and the DFT all have a mean mixing distance near the grid's
average token distance. :func:`references` builds, for any token grid, the
matrices a learned map should be compared with, each as a static
:class:`~probe.mixing.MixingMap` so every metric runs on it unchanged, and
:func:`controls` reports one metric for trained maps, their initialisation and
the references in one table.

Closed forms (``N = h * w`` tokens, ``d(t, s)`` the distance between token centres
in input-grid cells, rows = output tokens, columns = input tokens):

- ``uniform``   ``U[t, s] = 1 / N_in``. Its mean mixing distance is the mean
  pairwise token distance ``(1 / (N_out N_in)) sum_{t,s} d(t, s)``; its locality
  at radius ``r`` is the share of token pairs with ``d(t, s) <= r``.
- ``random``    ``G[t, s] ~ N(0, 1)`` i.i.d. from ``torch.Generator().manual_seed(seed)``,
  rescaled to the Frobenius norm of ``like`` (the root mean square over images and
  heads of its spatial block's norm) when given.
- ``dft``       ``Re(F_h kron F_w)``, ``F_n[k, j] = exp(-2 pi i k j / n) / sqrt(n)``:
  ``D[(k, l), (i, j)] = cos(2 pi (k i / h + l j / w)) / sqrt(h w)``, exactly the
  matrix FNet applies (:func:`probe.models.fnet.fourier_mixing_matrix`; Lee-Thorp et
  al. 2021). Square grids only (``grid == input_grid``).
- ``local``     ``L[t, s] = exp(-d(t, s)^2 / (2 sigma^2)) / sum_s' exp(-d(t, s')^2 / (2 sigma^2))``,
  ``sigma`` in tokens (default 1). On an unbounded grid its ``|w|`` mass within
  radius ``r`` is ``sum_{|k| <= r} exp(-|k|^2 / 2) / (sum_j exp(-j^2 / 2))^2`` over integer
  offsets ``k`` (0.866 at ``r = 2``, sigma 1); borders only raise it.
- ``identity``  ``I``: distance 0, locality 1. Square grids only.

All references are input independent (``B = 1``), so their input dependence is
exactly 0, and they have no prefix (class) tokens.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..models.fnet import fourier_mixing_matrix
from .maps import MixingMap
from .metrics import (effective_rank, entropy, input_dependence, locality, mean_mixing_distance,
                      template_locality, token_positions, translation_equivariance)

__all__ = ["REFERENCES", "CONTROLS", "METRICS", "references", "controls"]

Tensor = torch.Tensor
REFERENCES = ("uniform", "random", "dft", "local", "identity")
CONTROLS = ("uniform", "random", "dft", "local")   # the references controls() reports by default
METRICS = ("mean_mixing_distance", "locality", "template_locality", "translation_equivariance",
           "entropy", "entropy_normalized", "effective_rank", "input_dependence")
DISTANCE_METRICS = ("mean_mixing_distance",)
RADIUS_METRICS = ("locality", "template_locality")
Grid = Tuple[int, int]


def _spatial_norm(like: Union[MixingMap, Tensor]) -> float:
    """Root mean square over images and heads of the spatial block's Frobenius norm."""
    if isinstance(like, torch.Tensor):
        mat = like
    else:
        p = like.prefix_tokens
        mat = like.matrix[..., p:, p:]
    norms = mat.detach().double().pow(2).sum((-2, -1))
    return float(norms.mean().sqrt())


def _reference_matrix(name: str, grid: Grid, input_grid: Grid, *, norm: Optional[float],
                      seed: int, sigma: float) -> Optional[Tensor]:
    t_out, t_in = grid[0] * grid[1], input_grid[0] * input_grid[1]
    square = tuple(grid) == tuple(input_grid)
    if name == "uniform":
        return torch.full((t_out, t_in), 1.0 / t_in, dtype=torch.float64)
    if name == "random":
        g = torch.randn(t_out, t_in, generator=torch.Generator().manual_seed(int(seed)),
                        dtype=torch.float64)
        return g if norm is None else g * (norm / float(g.norm()))
    if name == "local":
        out, inp = token_positions(grid, input_grid)
        k = torch.exp(-torch.cdist(out, inp).pow(2) / (2 * sigma ** 2))
        return k / k.sum(-1, keepdim=True)
    if name == "dft":
        return fourier_mixing_matrix(grid).double() if square else None
    if name == "identity":
        return torch.eye(t_out, dtype=torch.float64) if square else None
    raise ValueError(f"unknown reference {name!r}; choose from {REFERENCES}")


def references(grid: Optional[Grid] = None, *, like: Union[MixingMap, Tensor, None] = None,
               seed: int = 0, sigma: float = 1.0, input_grid: Optional[Grid] = None,
               image_size: Optional[Tuple[int, int]] = None,
               names: Sequence[str] = REFERENCES) -> Dict[str, MixingMap]:
    """Reference token-mixing maps on a grid (closed forms in the module docstring).

    Args:
        grid: ``(h, w)`` output token grid (default: ``like``'s).
        like: a trained map (or matrix) to match: gives the default ``grid``,
            ``input_grid``, ``image_size`` and ``depth``, and the Frobenius norm of the
            ``random`` reference.
        seed: seed of the ``random`` reference.
        sigma: width of the ``local`` reference in input-grid cells (tokens).
        input_grid: ``(h, w)`` of the input tokens when it differs (strided conv stages);
            ``dft`` and ``identity`` need ``input_grid == grid`` and are left out otherwise.
        image_size: ``(H, W)`` pixels of the model input, for ``unit="px"`` metrics.
        names: which references, from :data:`REFERENCES`.

    Returns:
        ``{name: MixingMap}``: static maps (``matrix`` ``[1, 1, T_out, T_in]``, float32,
        layer ``"reference:<name>"``, ``native = {"reference": name}``).
    """
    unknown = [n for n in names if n not in REFERENCES]
    if unknown:
        raise ValueError(f"unknown reference(s) {unknown}; choose from {REFERENCES}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 tokens, got {sigma}")
    like_map = like if isinstance(like, MixingMap) else None
    if grid is None:
        if like_map is None:
            raise ValueError("pass grid=(h, w) or like=<a MixingMap>")
        grid = like_map.grid
    grid = (int(grid[0]), int(grid[1]))
    if input_grid is None:
        input_grid = like_map.in_grid if like_map is not None else grid
    input_grid = (int(input_grid[0]), int(input_grid[1]))
    if image_size is None and like_map is not None:
        image_size = like_map.image_size
    norm = _spatial_norm(like) if like is not None else None
    out = {}
    for name in names:
        mat = _reference_matrix(name, grid, input_grid, norm=norm, seed=seed, sigma=sigma)
        if mat is None:
            continue
        out[name] = MixingMap(f"reference:{name}", "fourier" if name == "dft" else "token-linear",
                              mat.float()[None, None], grid, 0, {"reference": name},
                              like_map.depth if like_map is not None else 0,
                              input_grid=None if input_grid == grid else input_grid,
                              image_size=None if image_size is None else tuple(image_size))
    return out


_build_references = references      # controls() takes a ``references`` list of names


def _metric_fn(metric: Union[str, Callable], radius: Optional[float], unit: str
               ) -> Callable[[MixingMap], Tensor]:
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS} or pass a callable "
                         f"map -> tensor")
    if metric in RADIUS_METRICS and radius is None:
        raise ValueError(f"{metric} needs radius= (in {unit})")
    return {
        "mean_mixing_distance": lambda m: mean_mixing_distance(m, unit=unit),
        "locality": lambda m: locality(m, radius=radius, unit=unit),
        "template_locality": lambda m: template_locality(m, radius, unit=unit),
        "translation_equivariance": translation_equivariance,
        "entropy": entropy,
        "entropy_normalized": lambda m: entropy(m, normalized=True),
        "effective_rank": effective_rank,
        "input_dependence": input_dependence,
    }[metric]


def _per_head(value: Tensor, m: MixingMap) -> Tensor:
    """Reduce a metric's value to ``[H]``: mean over images and over templates/rows."""
    v = torch.as_tensor(value).double()
    if v.ndim == 1 and v.shape[0] == m.heads:
        return v                                                # input_dependence: [H]
    if v.ndim >= 2 and v.shape[0] == m.matrix.shape[0] and v.shape[1] == m.heads:
        return v.reshape(*v.shape[:2], -1).mean(-1).mean(0)     # [B, H, ...]
    return v.reshape(1, -1).mean(-1).expand(m.heads)


def _side(m: MixingMap, unit: str) -> float:
    """Image side in ``unit``: sqrt(H * W) pixels, or sqrt(h * w) input-grid cells."""
    if unit == "px":
        if m.image_size is None:
            raise ValueError(f"{m.layer} has no image_size, so distances have no size in pixels; "
                             f"extract it with probe.mixing.extract or pass unit='tokens'")
        h, w = m.image_size
        return math.sqrt(h * w)
    hi, wi = m.in_grid
    return math.sqrt(hi * wi)


def controls(trained: Sequence[MixingMap], init: Optional[Sequence[MixingMap]] = None, *,
             metric: Union[str, Callable[[MixingMap], Tensor]] = "mean_mixing_distance",
             radius: Optional[float] = None, unit: str = "px",
             references: Sequence[str] = CONTROLS, seed: int = 0, sigma: float = 1.0
             ) -> List[dict]:
    """One metric per layer for trained maps, their initialisation and reference matrices.

    Args:
        trained: maps of the trained model (e.g. ``extract(model, x)``).
        init: maps of the same model at initialisation (same seed), matched by ``layer``;
            ``None`` leaves ``init`` as ``None``.
        metric: a name from :data:`METRICS` or ``fn(map) -> tensor``; a value is averaged
            over images, rows/templates and heads (``trained_per_head`` keeps heads).
        radius: for ``locality`` and ``template_locality``, in ``unit``.
        unit: ``"px"`` (default) or ``"tokens"`` for the distance metrics.
        references: names from :data:`REFERENCES`, built per layer on its grid with
            :func:`probe.mixing.references` (``random`` at the trained map's norm).
        seed: seed of the ``random`` reference (the same for every layer).
        sigma: width of the ``local`` reference, in tokens.

    Returns:
        One row per trained map: ``{"layer", "depth", "kind", "metric", "unit", "radius",
        "trained", "trained_per_head", "init", "init_per_head", <reference>: value, ...}``
        (a reference that does not exist on the grid, e.g. ``dft`` of a strided stage, is
        ``None``). For ``mean_mixing_distance`` also ``"side"`` (image side in ``unit``:
        ``sqrt(H W)``) and ``"<key>_fraction"`` = value / side for trained, init and every
        reference.

    Raises:
        ValueError: unknown metric or reference, missing radius, or an init layer missing.
    """
    fn = _metric_fn(metric, radius, unit)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    by_layer = {m.layer: m for m in (init or [])}
    rows = []
    for m in trained:
        start = None
        if init is not None:
            if m.layer not in by_layer:
                raise ValueError(f"init maps have no layer {m.layer!r}; pass maps extracted "
                                 f"from the same architecture (layers: {sorted(by_layer)})")
            start = by_layer[m.layer]
        refs = _build_references(like=m, seed=seed, sigma=sigma, names=references)
        head = _per_head(fn(m), m)
        row = {"layer": m.layer, "depth": m.depth, "kind": m.kind, "metric": name,
               "unit": unit if name in DISTANCE_METRICS + RADIUS_METRICS else None,
               "radius": radius if name in RADIUS_METRICS else None,
               "trained": float(head.mean()), "trained_per_head": [float(e) for e in head],
               "init": None, "init_per_head": None}
        if start is not None:
            h0 = _per_head(fn(start), start)
            row["init"], row["init_per_head"] = float(h0.mean()), [float(e) for e in h0]
        for ref in references:
            row[ref] = float(_per_head(fn(refs[ref]), refs[ref]).mean()) if ref in refs else None
        if name in DISTANCE_METRICS:
            side = _side(m, unit)
            row["side"] = side
            for key in ("trained", "init", *references):
                row[f"{key}_fraction"] = None if row[key] is None else row[key] / side
        rows.append(row)
    return rows
