"""Metrics of token-mixing maps: distance, locality, input dependence, equivariance, entropy, rank.

Every metric takes a :class:`probe.mixing.MixingMap` or a raw matrix
``[..., T_out, T_in]`` with its ``grid``. The distance-based metrics
(:func:`mean_mixing_distance`, :func:`locality`) measure in ``unit="tokens"``
(cells of the layer's INPUT grid: pixels for a CNN stage on the full-size
map, 4x4-pixel tokens for the zoo's patch-4 models) or ``unit="px"`` (input
pixels: each input-grid cell is ``image_size / input_grid`` pixels, the patch
size of a token model or the input stride of a CNN stage), so CNN pixels and
token models' tokens are on one comparable axis.

The mean mixing distance generalises the ViT paper's mean attention distance
(Dosovitskiy et al. 2021, Fig. 7); the effective rank is Roy & Vetterli 2007.

This module imports nothing from :mod:`probe.mixing` (maps are read by their
attributes), so :mod:`probe.mixing.maps` can use it without an import cycle.
"""
from __future__ import annotations

import math
from typing import List, Optional, Protocol, Sequence, Tuple, Union

import torch

__all__ = ["UNITS", "MapLike", "token_positions", "mean_mixing_distance", "locality", "input_dependence",
           "translation_equivariance", "entropy", "effective_rank", "summarize", "distribution",
           "template_locality"]

UNITS = ("tokens", "px")
Tensor = torch.Tensor
Size = Union[int, Tuple[int, int]]


class MapLike(Protocol):
    """What the metrics read from a :class:`probe.mixing.MixingMap`."""

    layer: str
    kind: str
    depth: int
    matrix: Tensor
    grid: Tuple[int, int]
    prefix_tokens: int

    @property
    def in_grid(self) -> Tuple[int, int]: ...

    @property
    def heads(self) -> int: ...

    @property
    def px_per_token(self) -> Tuple[float, float]: ...


MapOrMatrix = Union[MapLike, Tensor]


def _matrix(m: MapOrMatrix) -> Tensor:
    if isinstance(m, torch.Tensor):
        return m
    if not hasattr(m, "matrix"):
        raise ValueError(f"expected a MixingMap or a matrix tensor, got {type(m).__name__}")
    return m.matrix


def _unpack(m: MapOrMatrix, grid, prefix_tokens: int, input_grid):
    if not isinstance(m, torch.Tensor):
        matrix = _matrix(m)
        return matrix, tuple(m.grid), m.prefix_tokens, m.in_grid
    if grid is None:
        raise ValueError("pass grid=(h, w) with a raw matrix")
    return m, tuple(grid), int(prefix_tokens), tuple(input_grid or grid)


def _px_scale(m: MapOrMatrix, unit: str, image_size: Optional[Size],
              input_grid: Tuple[int, int]) -> Optional[Tuple[float, float]]:
    """Pixels per input-grid cell ``(rows, cols)`` for ``unit="px"``; ``None`` for tokens."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if unit == "tokens":
        return None
    if image_size is not None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        hi, wi = input_grid
        return float(h) / hi, float(w) / wi
    if not isinstance(m, torch.Tensor):
        return tuple(m.px_per_token)
    raise ValueError("unit='px' with a raw matrix needs the size of the model input: pass "
                     "image_size=(H, W) in pixels, or a MixingMap from probe.mixing.extract")


def token_positions(grid: Tuple[int, int], input_grid: Optional[Tuple[int, int]] = None
                    ) -> Tuple[Tensor, Tensor]:
    """Positions of output and input tokens in input-grid units.

    Returns ``(out [T_out, 2], in [T_in, 2])`` as (row, col); output token ``i``
    of a grid ``s`` times coarser sits at the centre of its cell, ``i * s + (s - 1) / 2``.
    """
    h, w = grid
    hi, wi = input_grid or grid
    sh, sw = hi / h, wi / w
    oi, oj = torch.meshgrid(torch.arange(h) * sh + (sh - 1) / 2,
                            torch.arange(w) * sw + (sw - 1) / 2, indexing="ij")
    ii, jj = torch.meshgrid(torch.arange(hi).double(), torch.arange(wi).double(), indexing="ij")
    return (torch.stack([oi.reshape(-1), oj.reshape(-1)], 1).double(),
            torch.stack([ii.reshape(-1), jj.reshape(-1)], 1))


def _spatial(matrix: Tensor, grid, prefix: int, input_grid) -> Tensor:
    t_out, t_in = grid[0] * grid[1], input_grid[0] * input_grid[1]
    if matrix.shape[-2] != t_out + prefix or matrix.shape[-1] != t_in + prefix:
        raise ValueError(f"matrix {tuple(matrix.shape)} does not fit grid {grid} (input grid "
                         f"{input_grid}) with {prefix} prefix tokens")
    return matrix[..., prefix:, prefix:]


def _distances(grid, input_grid, scale: Optional[Tuple[float, float]] = None) -> Tensor:
    """``[T_out, T_in]`` Euclidean distances in input-grid cells, or pixels given ``scale``."""
    out, inp = token_positions(grid, input_grid)
    if scale is not None:
        s = torch.tensor(scale, dtype=torch.float64)
        out, inp = out * s, inp * s
    return torch.cdist(out, inp)


def mean_mixing_distance(m: MapOrMatrix, grid: Optional[Tuple[int, int]] = None, *,
                         prefix_tokens: int = 0, input_grid: Optional[Tuple[int, int]] = None,
                         unit: str = "tokens", image_size: Optional[Size] = None) -> Tensor:
    """Mean mixing distance, per map and head, in input-grid cells or pixels.

    The ViT paper's mean attention distance generalised to signed maps:
    ``sum_{t,s} |w_ts| d(t, s) / sum_{t,s} |w_ts|`` over spatial tokens (prefix
    rows and columns dropped), ``d`` the Euclidean distance between token centres.

    Args:
        m: a :class:`MixingMap`, or a matrix ``[..., T_out, T_in]`` with ``grid``.
        unit: ``"tokens"`` (cells of the input grid) or ``"px"`` (input pixels:
            a cell is ``image_size / input_grid`` pixels along each axis).
        image_size: ``(H, W)`` (or ``H`` for square) of the model input in pixels;
            needed for ``unit="px"`` with a raw matrix, else the map's own.

    Returns:
        ``[...]`` (``[B, H]`` for a MixingMap). Identity -> 0.
    """
    matrix, grid, prefix, input_grid = _unpack(m, grid, prefix_tokens, input_grid)
    scale = _px_scale(m, unit, image_size, input_grid)
    w = _spatial(matrix, grid, prefix, input_grid).abs().double()
    d = _distances(grid, input_grid, scale).to(w.device)
    return ((w * d).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1e-30)).float()


def locality(m: MapOrMatrix, grid: Optional[Tuple[int, int]] = None, *, radius: float = 1.0,
             prefix_tokens: int = 0, input_grid: Optional[Tuple[int, int]] = None,
             unit: str = "tokens", image_size: Optional[Size] = None) -> Tensor:
    """Fraction of the spatial mixing mass ``|w|`` within ``radius`` (in ``unit``).

    ``unit`` and ``image_size`` as for :func:`mean_mixing_distance`; with
    ``unit="px"`` the radius is in input pixels.

    Returns ``[...]`` in ``[0, 1]`` (``[B, H]`` for a MixingMap). Identity -> 1.
    """
    matrix, grid, prefix, input_grid = _unpack(m, grid, prefix_tokens, input_grid)
    scale = _px_scale(m, unit, image_size, input_grid)
    w = _spatial(matrix, grid, prefix, input_grid).abs().double()
    near = (_distances(grid, input_grid, scale) <= radius + 1e-9).double().to(w.device)
    return ((w * near).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1e-30)).float()


def _channel_matrix(m: MapOrMatrix) -> Tensor:
    """``[B, G, T, T]`` per-channel (or channel-group) maps of ``m`` for ``per_channel=True``."""
    if isinstance(m, torch.Tensor):
        return m
    channels = getattr(m, "channels", None)
    if channels is not None:
        return channels
    if getattr(m, "static", False):
        return _matrix(m)          # one group: every channel mixes with the same fixed matrix
    if m.kind == "attention":
        raise ValueError(f"{m.layer}: attention has no per-channel token mixing (its value "
                         f"projection mixes channels); use input_dependence(m) for per-head values")
    raise ValueError(f"{m.layer} has no per-channel maps; extract it with "
                     f"probe.mixing.extract(model, x, per_channel=True)")


def input_dependence(m: MapOrMatrix, *, per_channel: bool = False) -> Tensor:
    """How much the map varies across inputs, per head (or per channel).

    ``sum_b ||M_b - mean_b M||^2 / sum_b ||M_b||^2``: the share of the map's
    energy not explained by one input-independent map. Exactly 0 for static maps
    (``B = 1``) and for any head whose ``B`` maps are identical (checked bitwise, so
    round-off in the mean cannot make a fixed matrix look input dependent);
    approaching 1 when maps are unrelated across images.

    Args:
        m: a MixingMap or a matrix ``[B, H, T_out, T_in]``.
        per_channel: measure each channel (or channel group) of the map's
            ``channels`` ``[B, G, T, T]`` (from ``extract(..., per_channel=True)``)
            instead of each head; a static map without ``channels`` gives one 0 (every
            channel mixes with the same matrix). A raw matrix is read as ``[B, G, T, T]``.
            :func:`distribution` summarises the result.

    Returns:
        ``[H]`` (or ``[G]`` with ``per_channel``).
    """
    matrix = _channel_matrix(m) if per_channel else _matrix(m)
    if matrix.ndim != 4:
        raise ValueError(f"input_dependence needs [B, H, T, T], got {tuple(matrix.shape)}")
    mat = matrix.double()
    if mat.shape[0] == 1:
        return torch.zeros(mat.shape[1])
    dev = (mat - mat.mean(0, keepdim=True)).pow(2).sum((0, 2, 3))
    out = dev / mat.pow(2).sum((0, 2, 3)).clamp_min(1e-30)
    same = (matrix == matrix[:1]).flatten(2).all(-1).all(0)            # [H]: identical maps
    return out.masked_fill(same, 0.0).float()


def distribution(values: Tensor, *, quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95)
                 ) -> dict:
    """Summary of a set of values (per channel, per template, ...) as JSON-ready floats.

    Returns ``{"n", "mean", "std", "min", "q05", "q25", "q50", "q75", "q95", "max"}``
    (the ``q`` keys follow ``quantiles``); ``std`` is the population standard deviation.
    """
    v = torch.as_tensor(values).detach().double().reshape(-1).cpu()
    if v.numel() == 0:
        raise ValueError("distribution of no values")
    q = torch.quantile(v, torch.tensor(list(quantiles), dtype=torch.float64))
    out = {"n": int(v.numel()), "mean": float(v.mean()), "std": float(v.std(unbiased=False)),
           "min": float(v.min())}
    out.update({f"q{round(100 * p):02d}": float(e) for p, e in zip(quantiles, q)})
    out["max"] = float(v.max())
    return out


def template_locality(m: MapOrMatrix, radius: float, *, unit: str = "px",
                      templates: str = "rows", power: float = 2.0,
                      grid: Optional[Tuple[int, int]] = None,
                      image_size: Optional[Size] = None) -> Tensor:
    """Per template: the share of its energy ``|w|^power`` within ``radius`` of its centre.

    Mixer's token-mixing templates (Tolstikhin et al. 2021, Fig. 5) are maps over the
    input grid; this scores each one, so the distribution across templates can be
    reported (:func:`distribution`), not only its mean.

    Args:
        m: a MixingMap, or a raw tensor (``templates="rows"``: matrix ``[..., T, T]`` with
            ``grid``; ``"fc1"``: templates ``[K, h, w]``).
        radius: in ``unit`` (``"px"``, the default, or ``"tokens"``: input-grid cells).
        templates: ``"rows"``: every row of the mixing matrix (prefix tokens dropped),
            centred on its output token; ``"fc1"``: Mixer's first-layer token templates
            (``native["fc1"]`` ``[hidden, h, w]``, the paper's figure), each centred on
            its own peak ``argmax |w|`` (they have no output token); among tied peaks the
            one nearest the grid's centre (then the first in row-major order), so a flat
            template is scored around the centre, not a corner.
        power: 2 scores energy (the default), 1 the ``|w|`` mass that :func:`locality` uses.
        image_size: ``(H, W)`` in pixels for ``unit="px"`` with a raw tensor.

    Returns:
        ``"rows"``: ``[..., T_out]`` (``[B, H, T_out]`` for a MixingMap); ``"fc1"``: ``[K]``.
        An identity row or a one-token template -> 1 at any radius >= 0; a uniform
        row -> the share of input tokens within ``radius`` of its token; a flat template
        -> the share of tokens within ``radius`` of the centre token (lattice points of
        the disc over ``h * w``, about ``pi r^2 / (h w)`` in tokens when the disc fits).
    """
    if templates == "rows":
        matrix, grid, prefix, input_grid = _unpack(m, grid, 0, None)
        scale = _px_scale(m, unit, image_size, input_grid)
        w = _spatial(matrix, grid, prefix, input_grid).abs().double().pow(power)
        near = (_distances(grid, input_grid, scale) <= radius + 1e-9).double().to(w.device)
        return ((w * near).sum(-1) / w.sum(-1).clamp_min(1e-30)).float()
    if templates != "fc1":
        raise ValueError(f"templates must be 'rows' or 'fc1', got {templates!r}")
    if isinstance(m, torch.Tensor):
        t = m
    else:
        native = m.native if isinstance(getattr(m, "native", None), dict) else {}
        if "fc1" not in native:
            raise ValueError(f"{m.layer} has no first-layer token templates (native['fc1']: "
                             f"a Mixer token-mlp map); use templates='rows'")
        t = native["fc1"]
    if t.ndim != 3:
        raise ValueError(f"templates must be [K, h, w], got {tuple(t.shape)}")
    tgrid = (int(t.shape[1]), int(t.shape[2]))
    scale = _px_scale(m, unit, image_size, tgrid)
    _, pos = token_positions(tgrid)
    if scale is not None:
        pos = pos * torch.tensor(scale, dtype=torch.float64)
    w = t.reshape(t.shape[0], -1).abs().double().pow(power)
    mid = ((pos - pos.mean(0)) ** 2).sum(-1).to(w.device)                  # [T] to grid centre
    peak = torch.where(w == w.max(-1, keepdim=True).values, mid, torch.inf).argmin(-1)
    centre = pos[peak.cpu()]                                               # [K, 2]
    near = (torch.cdist(centre, pos) <= radius + 1e-9).double().to(w.device)
    return ((w * near).sum(-1) / w.sum(-1).clamp_min(1e-30)).float()


def translation_equivariance(m: MapOrMatrix, grid: Optional[Tuple[int, int]] = None, *,
                             prefix_tokens: int = 0,
                             input_grid: Optional[Tuple[int, int]] = None) -> Tensor:
    """Fraction of the spatial map's energy explained by a function of relative offset.

    The map is projected onto matrices ``R[t, s] = k(pos(t) - pos(s))`` (the
    Toeplitz / convolution matrices, borders included) by averaging entries
    with equal offset; the score is ``||R||^2 / ||M||^2`` in ``[0, 1]``:
    1 for a convolution (zero padded or circular), low for position-specific maps.

    Returns ``[...]`` (``[B, H]`` for a MixingMap).
    """
    matrix, grid, prefix, input_grid = _unpack(m, grid, prefix_tokens, input_grid)
    w = _spatial(matrix, grid, prefix, input_grid).double()
    out, inp = token_positions(grid, input_grid)
    off = torch.round(2 * (out[:, None, :] - inp[None, :, :])).long()     # [To, Ti, 2]
    off = off - off.reshape(-1, 2).min(0).values
    key = (off[..., 0] * (int(off[..., 1].max()) + 1) + off[..., 1]).reshape(-1).to(w.device)
    groups = int(key.max()) + 1
    flat = w.reshape(*w.shape[:-2], -1)
    sums = torch.zeros(*flat.shape[:-1], groups, dtype=flat.dtype,
                       device=flat.device).index_add_(-1, key, flat)
    ones = torch.ones(key.shape, dtype=flat.dtype, device=flat.device)
    counts = torch.zeros(groups, dtype=flat.dtype, device=flat.device).index_add_(0, key, ones)
    proj = (sums / counts.clamp_min(1))[..., key]
    return (proj.pow(2).sum(-1) / flat.pow(2).sum(-1).clamp_min(1e-30)).float()


def entropy(m: MapOrMatrix, *, normalized: bool = False) -> Tensor:
    """Mean row entropy (nats) of ``p = |w| / sum |w|`` over input tokens, per map and head.

    Uses every row and column (prefix tokens included): for attention the rows
    are the softmax probabilities. Uniform rows -> ``log T_in`` (the maximum);
    ``normalized=True`` divides by ``log T_in``.

    Returns ``[...]`` (``[B, H]`` for a MixingMap).
    """
    matrix = _matrix(m)
    w = matrix.abs().double()
    p = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1).mean(-1)
    if normalized:
        h = h / math.log(matrix.shape[-1])
    return h.float()


def effective_rank(m: MapOrMatrix) -> Tensor:
    """Effective rank (Roy & Vetterli 2007): ``exp(H(sigma / sum sigma))`` of the singular values.

    Identity of size T -> T; rank-one -> 1. Returns ``[...]`` (``[B, H]`` for a MixingMap).
    """
    s = torch.linalg.svdvals(_matrix(m).double())
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-30)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum(-1)).float()


def summarize(maps: Sequence[MapLike], *, radius: float = 1.0, unit: str = "tokens"
              ) -> List[dict]:
    """Every metric for every map, per head (mean over images) and overall, as floats.

    Args:
        maps: MixingMaps (e.g. from :func:`probe.mixing.extract`).
        radius: locality radius, in ``unit``.
        unit: ``"tokens"`` (keys ``mean_mixing_distance``, ``locality_r<radius>``) or
            ``"px"`` (keys ``mean_mixing_distance_px``, ``locality_r<radius>_px`` and
            ``px_per_token``; needs maps with ``image_size``). Other metrics have no unit.

    Maps extracted with ``per_channel`` also get ``input_dependence_per_channel``, the
    :func:`distribution` of the per-channel (or per-group) values.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    suffix = "" if unit == "tokens" else "_px"
    rows = []
    for m in maps:
        per = {
            "mean_mixing_distance" + suffix: mean_mixing_distance(m, unit=unit),
            f"locality_r{radius:g}" + suffix: locality(m, radius=radius, unit=unit),
            "translation_equivariance": translation_equivariance(m),
            "entropy": entropy(m),
            "entropy_normalized": entropy(m, normalized=True),
            "effective_rank": effective_rank(m),
        }
        row = {"layer": m.layer, "kind": m.kind, "depth": m.depth, "grid": list(m.grid),
               "input_grid": list(m.in_grid), "prefix_tokens": m.prefix_tokens,
               "heads": m.heads, "images": int(m.matrix.shape[0])}
        if unit == "px":
            row["px_per_token"] = list(m.px_per_token)
        for k, v in per.items():
            head = v.mean(0)
            row[k] = float(head.mean())
            row[k + "_per_head"] = [float(e) for e in head]
        dep = input_dependence(m)
        row["input_dependence"] = float(dep.mean())
        row["input_dependence_per_head"] = [float(e) for e in dep]
        if getattr(m, "channels", None) is not None:
            row["input_dependence_per_channel"] = distribution(input_dependence(m, per_channel=True))
        rows.append(row)
    return rows
