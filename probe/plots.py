"""Figure functions shared by the CLIs, the analyses and the app (matplotlib, Agg, no pyplot state).

Every function returns a ``matplotlib.figure.Figure`` and, given ``path``,
writes it (PDF by extension) and closes nothing global: figures are built with
the object-oriented API on an Agg canvas, so no backend is switched and no
pyplot figure leaks.

Token-mixing templates are drawn as in the MLP-Mixer paper (Tolstikhin et al.
2021, Fig. 5); the relative log amplitude follows Park & Kim 2022, Fig. 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "save", "plot_templates", "plot_maps_over_image", "plot_by_depth",
           "plot_profiles"]

PathLike = Union[str, Path]


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Optional[PathLike]) -> Optional[Path]:
    """Write ``fig`` to ``path`` (folders created); returns the path or ``None``."""
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _pick(n: int, k: int) -> List[int]:
    if n <= k:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def _lattice(grid: Tuple[int, int], k: int) -> List[int]:
    """``k`` output tokens (row-major indices) spread over a 2-row lattice inside the grid."""
    h, w = grid
    rows, cols = (1, k) if h < 2 else (2, (k + 1) // 2)
    out = []
    for i in range(rows):
        for j in range(cols):
            out.append(int((i + 0.5) * h / rows) * w + int((j + 0.5) * w / cols))
    return sorted(set(out))[:k]


def plot_templates(maps, *, per_layer: int = 8, title: str = "", path: Optional[PathLike] = None
                   ) -> Figure:
    """Token-mixing templates of every layer as grids (one row per layer).

    Mixer: hidden units of the token-mixing MLP's first layer; other kinds:
    rows of the mixing matrix (how an output token weighs every input token)
    for output tokens spread over the grid, averaged over images and heads. Each
    template has its own symmetric colour scale (blue negative, red positive).
    """
    from .spectra import templates
    if not maps:
        raise ValueError("no mixing maps to plot")
    fig = new_figure(1.1 * per_layer + 1.2, 1.15 * len(maps) + 0.4)
    axes = fig.subplots(len(maps), per_layer, squeeze=False)
    for r, m in enumerate(maps):
        tpl = templates(m)
        native = isinstance(m.native, dict) and "fc1" in m.native
        idx = _pick(tpl.shape[0], per_layer) if native else _lattice(m.grid, per_layer)
        for c in range(per_layer):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(idx):
                ax.axis("off")
                continue
            t = tpl[idx[c]].float()
            lim = float(t.abs().max()) or 1.0
            ax.imshow(t.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            if c == 0:
                ax.set_ylabel(f"{m.depth}: {m.kind}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    save(fig, path)
    return fig


def plot_maps_over_image(image: torch.Tensor, maps, *, query: Optional[int] = None,
                         title: str = "", path: Optional[PathLike] = None) -> Figure:
    """How one query token mixes the image, layer by layer.

    Args:
        image: ``[C, H, W]`` in ``[0, 1]``.
        maps: MixingMaps of one model (image 0 of each is used).
        query: output token (matrix row, prefix included); default the class
            token when there is one, else the centre token.
    """
    import torch.nn.functional as F
    if not maps:
        raise ValueError("no mixing maps to plot")
    img = image.detach().float().cpu()
    gray = img.mean(0) if img.shape[0] != 3 else None
    fig = new_figure(1.6 * (len(maps) + 1), 1.9)
    axes = fig.subplots(1, len(maps) + 1, squeeze=False)[0]
    axes[0].imshow(gray.numpy() if gray is not None else img.permute(1, 2, 0).numpy(),
                   cmap="gray")
    axes[0].set_title("image", fontsize=7)
    for ax, m in zip(axes[1:], maps):
        p = m.prefix_tokens
        h, w = m.grid
        q = query if query is not None else (0 if p else p + (h // 2) * w + w // 2)
        row = m.matrix[0].abs().mean(0)[min(q, m.matrix.shape[-2] - 1), p:]
        hi, wi = m.in_grid
        heat = F.interpolate(row.reshape(1, 1, hi, wi).float(), size=img.shape[-2:],
                             mode="nearest")[0, 0]
        ax.imshow(gray.numpy() if gray is not None else img.permute(1, 2, 0).numpy(),
                  cmap="gray")
        ax.imshow(heat.numpy(), cmap="inferno", alpha=0.6)
        ax.set_title(f"{m.depth}: {m.kind}", fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    save(fig, path)
    return fig


def plot_by_depth(series: Dict[str, Sequence[float]], *, ylabel: str, title: str = "",
                  path: Optional[PathLike] = None) -> Figure:
    """One line per model of a per-layer quantity against relative depth (0 = first, 1 = last)."""
    if not series:
        raise ValueError("nothing to plot")
    fig = new_figure(4.2, 3.0)
    ax = fig.subplots()
    for name, values in series.items():
        n = len(values)
        xs = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        ax.plot(xs, list(values), marker="o", label=name)
    ax.set_xlabel("relative depth")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    save(fig, path)
    return fig


def plot_profiles(profiles: Sequence[Sequence[float]], *, title: str = "",
                  path: Optional[PathLike] = None) -> Figure:
    """Relative log amplitude against normalised frequency, one line per depth (Park & Kim 2022)."""
    fig = new_figure(4.2, 3.0)
    ax = fig.subplots()
    n = len(profiles)
    for i, prof in enumerate(profiles):
        k = len(prof)
        xs = [j / (k - 1) if k > 1 else 0.0 for j in range(k)]
        ax.plot(xs, list(prof), color=(i / max(n - 1, 1), 0.2, 1 - i / max(n - 1, 1)),
                label=f"depth {i}")
    ax.set_xlabel("frequency (x pi)")
    ax.set_ylabel("relative log amplitude")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    if title:
        ax.set_title(title, fontsize=9)
    save(fig, path)
    return fig
