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
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .spectra import templates

__all__ = ["new_figure", "save", "plot_templates", "plot_maps_over_image", "plot_by_depth",
           "plot_profiles", "select_head", "default_query", "mixing_panel", "attribution_figure",
           "figure_bytes", "figure_pdf"]

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
                  path: Optional[PathLike] = None,
                  dashed: Optional[Dict[str, Sequence[float]]] = None,
                  hlines: Optional[Dict[str, float]] = None) -> Figure:
    """One line per model of a per-layer quantity against relative depth (0 = first, 1 = last).

    ``dashed`` adds a dashed line per model in its colour (e.g. the same model at
    initialisation, labelled ``"<name> (init)"``); ``hlines`` adds grey horizontal reference
    lines (e.g. uniform or local mixing), labelled by their keys.
    """
    if not series:
        raise ValueError("nothing to plot")
    fig = new_figure(4.2, 3.0)
    ax = fig.subplots()

    def xs_of(values):
        n = len(values)
        return [i / (n - 1) if n > 1 else 0.0 for i in range(n)]

    for name, values in series.items():
        (line,) = ax.plot(xs_of(values), list(values), marker="o", label=name)
        if dashed and name in dashed:
            ax.plot(xs_of(dashed[name]), list(dashed[name]), ls="--", marker=".",
                    color=line.get_color(), alpha=0.8, label=f"{name} (init)")
    for i, (label, value) in enumerate((hlines or {}).items()):
        ax.axhline(value, color="0.45", lw=0.9, ls=(":", "-.", (0, (5, 2)), "-")[i % 4], label=label)
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


# ----------------------------------------------------------------------------- app panels


def select_head(m, head: Optional[int]):
    """The MixingMap ``m`` restricted to one attention head.

    ``None``, a single-head map or a head out of range give ``m`` itself (all heads).
    """
    from dataclasses import replace
    if head is None or m.heads == 1 or not 0 <= head < m.heads:
        return m
    return replace(m, matrix=m.matrix[:, head:head + 1])


def default_query(m) -> int:
    """The output token a panel shows by default: the class token, else the centre token (a row)."""
    h, w = m.grid
    return 0 if m.prefix_tokens else (h // 2) * w + w // 2


def _shown(image: torch.Tensor):
    """``[C, H, W]`` as an array imshow takes (RGB as is, anything else as its channel mean)."""
    img = image.detach().float().cpu()
    return img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img.mean(0).numpy()


def mixing_panel(image: torch.Tensor, m, *, title: str = "", query: Optional[int] = None
                 ) -> Figure:
    """One layer of one model: the query token's mixing over the image, and the full matrix.

    Left: ``|matrix[query, spatial inputs]|`` of image 0, heads averaged, upsampled
    over the image (the query token boxed in cyan); right: the whole ``T_out x T_in``
    matrix (signed colour scale when it has negative entries), the query row marked.

    Args:
        image: ``[C, H, W]`` in ``[0, 1]`` (the model's input).
        m: a MixingMap (image 0 is drawn; heads averaged unless :func:`select_head` chose one).
        title: figure title.
        query: output token (matrix row, prefix included); default :func:`default_query`.
    """
    from matplotlib.patches import Rectangle
    size = tuple(image.shape[-2:])
    q = default_query(m) if query is None else int(query)
    mat = m.matrix[0].detach().float().cpu().mean(0)                    # [T_out, T_in]
    p = m.prefix_tokens
    q = min(q, mat.shape[0] - 1)
    hi, wi = m.in_grid
    row = mat[q, p:].abs().reshape(1, 1, hi, wi)
    heat = F.interpolate(row, size=size, mode="nearest")[0, 0]
    fig = new_figure(4.4, 2.2)
    ax_img, ax_mat = fig.subplots(1, 2, width_ratios=[1, 1.12])
    ax_img.imshow(_shown(image), cmap="gray", vmin=0, vmax=1)
    ax_img.imshow(heat.numpy(), cmap="inferno", alpha=0.62)
    if q >= p:
        h, w = m.grid
        t = q - p
        sy, sx = size[0] / h, size[1] / w
        ax_img.add_patch(Rectangle(((t % w) * sx - 0.5, (t // w) * sy - 0.5), sx, sy,
                                   fill=False, edgecolor="cyan", lw=1.0))
        qname = f"token ({t // w}, {t % w})"
    else:
        qname = "class token"
    ax_img.set_title(f"|mixing| of {qname}", fontsize=8)
    lim = float(mat.abs().max()) or 1.0
    signed = bool((mat < 0).any())
    im = ax_mat.imshow(mat.numpy(), cmap="RdBu_r" if signed else "viridis",
                       vmin=-lim if signed else 0, vmax=lim, interpolation="nearest",
                       aspect="auto")
    ax_mat.set_title(f"matrix {mat.shape[0]} x {mat.shape[1]} (out x in)", fontsize=8)
    ax_mat.axhline(q, color="orange", lw=0.8, alpha=0.9)
    cb = fig.colorbar(im, ax=ax_mat, shrink=0.8, pad=0.02)
    cb.ax.tick_params(labelsize=6)
    for ax in (ax_img, ax_mat):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def attribution_figure(image: torch.Tensor, attribution: torch.Tensor, *, title: str = ""
                       ) -> Figure:
    """The image with its attribution ``[H, W]`` overlaid (signed: red positive, blue negative).

    Args:
        image: ``[C, H, W]`` in ``[0, 1]``.
        attribution: ``[H, W]`` map (resized bilinearly when its size differs from the image's).
        title: axes title.
    """
    size = tuple(image.shape[-2:])
    a = attribution.detach().float().cpu()
    if a.ndim != 2:
        raise ValueError(f"attribution must be one [H, W] map, got shape {tuple(a.shape)}; "
                         f"pass maps[0] of probe.attribution.attribute's [B, H, W] output")
    if tuple(a.shape) != size:
        a = F.interpolate(a[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    lim = float(a.abs().max()) or 1.0
    fig = new_figure(2.6, 2.6)
    ax = fig.subplots()
    ax.imshow(_shown(image), cmap="gray", vmin=0, vmax=1)
    ax.imshow(a.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.65)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return fig


def figure_bytes(fig: Figure, fmt: str = "pdf", *, dpi: int = 160) -> bytes:
    """``fig`` as PDF or PNG bytes (PNG cropped to its content); no pyplot involved.

    Figures made with :func:`new_figure` hold no global state, so nothing needs closing.
    """
    import io
    if fmt not in ("pdf", "png"):
        raise ValueError(f"figure format must be 'pdf' or 'png', got {fmt!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight" if fmt == "png" else None)
    return buf.getvalue()


def figure_pdf(fig: Figure) -> bytes:
    """``fig`` as PDF bytes (for downloads)."""
    return figure_bytes(fig, "pdf")
