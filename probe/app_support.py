"""Helpers of the comparison app (``streamlit run apps/compare.py``) that are not page layout.

The page (``apps/compare.py``) only arranges widgets and figures; everything it
computes comes from here or from the other ``probe`` modules: checked image
uploads, fitting images to a model, perturbations (corruption or Linf PGD),
top-k predictions, the per-model mixing panel, metric tables, robustness
tables, the small robustness run behind the app's button, defensive access to
:mod:`probe.attribution`, and figure/CSV bytes for downloads.
"""
from __future__ import annotations

import csv
import importlib
import io
import math
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "Perturbation", "load_upload", "fit_to_model",
    "weights_stamp", "load_model", "perturb", "top_k", "select_head", "default_query",
    "mixing_panel", "metric_rows", "display_rows", "SHORT_NAMES", "rows_to_csv", "rows_to_markdown", "figure_bytes", "build_pdf", "figure_pdf", "robust_accuracy_rows",
    "corruption_error_rows", "small_run_config", "run_small_robustness", "attribution_api",
    "AttributionAPI", "SMALL_RUN", "attribute_map", "deletion_auc",
    "attribution_figure",
]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000           # ~ 6300 x 6300; larger headers are refused before decoding
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


# ----------------------------------------------------------------------------- input


def load_upload(data: bytes, input_size: Tuple[int, int, int] = (1, 28, 28), *,
                invert: bool = False, max_bytes: int = MAX_UPLOAD_BYTES,
                max_pixels: int = MAX_UPLOAD_PIXELS) -> torch.Tensor:
    """An uploaded PNG/JPEG as a ``[1, C, H, W]`` float tensor in ``[0, 1]`` of ``input_size``.

    The type is checked by content (magic bytes, then PIL's own format), the
    size in bytes before anything is parsed, and the pixel count from the
    header before the image is decoded (no decompression bombs).

    Args:
        data: the file's bytes.
        input_size: ``(C, H, W)`` to convert to (1 channel: grayscale; 3: RGB).
        invert: ``1 - x`` (Fashion-MNIST shows light objects on a dark background).

    Raises:
        ValueError: with a message that says what is wrong and what to upload instead.
    """
    from PIL import Image, UnidentifiedImageError
    if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
        raise ValueError("the uploaded file is empty; upload a PNG or JPEG image")
    if len(data) > max_bytes:
        raise ValueError(f"the uploaded file is {len(data) / 2**20:.1f} MB; the limit is "
                         f"{max_bytes / 2**20:.0f} MB. Upload a smaller PNG or JPEG")
    kind = next((k for magic, k in _MAGIC.items() if bytes(data[:len(magic)]) == magic), None)
    if kind is None:
        raise ValueError("this file is not a PNG or JPEG image (checked by its content, not "
                         "its name); upload a PNG or JPEG")
    if kind == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if w * h > max_pixels:               # refused from the header, before PIL parses it
            raise ValueError(_too_many_pixels(w, h, max_pixels))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)), formats=[kind])
    except Image.DecompressionBombError as e:
        raise ValueError(f"the image is far too large ({e}); at most {max_pixels:,} pixels are "
                         f"accepted. Downscale it and upload again") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"this {kind} file cannot be read ({e}); it may be truncated or "
                         f"corrupt. Re-save it and upload again") from None
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > max_pixels:
        raise ValueError(_too_many_pixels(w, h, max_pixels))
    c, th, tw = input_size
    if c not in (1, 3):
        raise ValueError(f"models with {c} input channels cannot take an uploaded image")
    try:
        img.load()
        img = img.convert("L" if c == 1 else "RGB").resize((tw, th), Image.BILINEAR)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"this {kind} file cannot be decoded ({e}); re-save it and upload "
                         f"again") from None
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).float().div(255.0)
    x = x.view(th, tw, c).permute(2, 0, 1)[None].contiguous()
    return 1.0 - x if invert else x


def _too_many_pixels(w: int, h: int, max_pixels: int) -> str:
    return (f"the image is {w} x {h} pixels; at most {max_pixels:,} pixels are accepted. "
            f"Downscale it and upload again")


def fit_to_model(x: torch.Tensor, input_size: Tuple[int, int, int]) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` images and match channels to a model's ``(C, H, W)``."""
    c, h, w = input_size
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True)
        if c != 1:
            x = x.expand(-1, c, -1, -1)
    return x.contiguous()


# ----------------------------------------------------------------------------- models


def weights_stamp(name: str) -> Optional[float]:
    """Modification time of a zoo model's shipped weights (``None`` if missing or ``timm:``).

    Used as a cache key so the app picks up weights that appear while it runs.
    """
    from . import zoo
    if name.startswith("timm:"):
        return None
    path = zoo.WEIGHTS_DIR / f"{name}.safetensors"
    return path.stat().st_mtime if path.is_file() else None


def load_model(name: str, weights: str = "shipped"):
    """``(model, note)``: the model, and a warning when shipped weights had to be replaced.

    Missing or unreadable shipped weights fall back to a seeded random
    initialisation; ``note`` then says so and names the command that makes them.
    Unknown names raise ``ValueError`` (with the valid names).
    """
    from . import zoo
    if weights == "random":
        return zoo.load(name, weights="random"), None
    if name.startswith("timm:"):
        return (zoo.load(name, weights="shipped"),
                f"{name}: random initialisation (timm weights are never downloaded)")
    try:
        return zoo.load(name, weights="shipped"), None
    except (FileNotFoundError, ValueError) as e:
        if name not in zoo.names():
            raise
        note = (f"{name}: shipped weights not usable ({str(e).split(';')[0]}); showing a RANDOM "
                f"initialisation. Make them with `python -m probe.train --model {name} "
                f"--out probe/weights`")
        return zoo.load(name, weights="random"), note


# ----------------------------------------------------------------------------- perturbations


@dataclass(frozen=True)
class Perturbation:
    """What to do to the input: ``kind`` is ``"none"``, ``"corruption"`` or ``"pgd"``."""

    kind: str = "none"
    corruption: str = "gaussian_noise"
    severity: int = 3
    epsilon: float = 0.03
    steps: int = 10
    seed: int = 0

    def label(self) -> str:
        if self.kind == "corruption":
            return f"{self.corruption.replace('_', ' ')} (severity {self.severity})"
        if self.kind == "pgd":
            return f"PGD Linf eps={self.epsilon:g} ({self.steps} steps)"
        return "clean"


def perturb(model, x: torch.Tensor, spec: Perturbation, *, label: Optional[int] = None
            ) -> torch.Tensor:
    """``x`` (already fitted to ``model``) corrupted or attacked as ``spec`` says.

    PGD attacks ``label`` (default: the model's clean prediction), seeded by ``spec.seed``.
    """
    from . import attacks, corruptions
    if spec.kind == "none":
        return x
    if spec.kind == "corruption":
        g = torch.Generator().manual_seed(spec.seed)
        return corruptions.corrupt(x, spec.corruption, int(spec.severity), generator=g)
    if spec.kind == "pgd":
        if label is None:
            with torch.no_grad():
                label = int(model(x).argmax(1)[0])
        y = torch.full((x.shape[0],), int(label), dtype=torch.long)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            return attacks.pgd_linf(model, x, y, float(spec.epsilon), steps=int(spec.steps))
    raise ValueError(f"unknown perturbation {spec.kind!r}; use none, corruption or pgd")


def top_k(model, x: torch.Tensor, k: int = 3) -> List[Tuple[str, float]]:
    """The ``k`` most probable classes of image 0 as ``(class name, probability)``."""
    with torch.no_grad():
        p = torch.softmax(model(x)[0].float(), 0)
    vals, idx = p.topk(min(k, p.numel()))
    return [(str(model.classes[int(i)]), float(v)) for v, i in zip(vals, idx)]


# ----------------------------------------------------------------------------- mixing figures


def select_head(m, head: Optional[int]):
    """The map restricted to one head (``None`` or out of range: all heads)."""
    if head is None or m.heads == 1 or not 0 <= head < m.heads:
        return m
    return replace(m, matrix=m.matrix[:, head:head + 1])


def default_query(m) -> int:
    """Class token when there is one, else the centre token (a matrix row)."""
    h, w = m.grid
    return 0 if m.prefix_tokens else (h // 2) * w + w // 2


def mixing_panel(image: torch.Tensor, m, *, title: str = "", query: Optional[int] = None):
    """One layer of one model: the query token's mixing over the image and the full matrix.

    Args:
        image: ``[C, H, W]`` in ``[0, 1]`` (the model's input).
        m: a MixingMap (image 0 is drawn; heads averaged unless one was selected).
        query: output token (matrix row, prefix included); default :func:`default_query`.
    """
    from .plots import new_figure
    img = image.detach().float().cpu()
    shown = img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img.mean(0).numpy()
    q = default_query(m) if query is None else int(query)
    mat = m.matrix[0].float().mean(0)                        # [T_out, T_in]
    p = m.prefix_tokens
    q = min(q, mat.shape[0] - 1)
    hi, wi = m.in_grid
    row = mat[q, p:].abs().reshape(1, 1, hi, wi)
    heat = F.interpolate(row, size=img.shape[-2:], mode="nearest")[0, 0]
    fig = new_figure(4.4, 2.2)
    ax_img, ax_mat = fig.subplots(1, 2, width_ratios=[1, 1.12])
    ax_img.imshow(shown, cmap="gray", vmin=0, vmax=1)
    ax_img.imshow(heat.numpy(), cmap="inferno", alpha=0.62)
    if q >= p:
        h, w = m.grid
        t = q - p
        sy, sx = img.shape[-2] / h, img.shape[-1] / w
        ax_img.add_patch(_rect(((t % w) * sx - 0.5, (t // w) * sy - 0.5), sx, sy))
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


def _rect(xy, w, h):
    from matplotlib.patches import Rectangle
    return Rectangle(xy, w, h, fill=False, edgecolor="cyan", lw=1.0)


# ----------------------------------------------------------------------------- tables and bytes


_METRICS = ("mean_mixing_distance", "locality_r1", "translation_equivariance",
            "entropy_normalized", "effective_rank")   # input_dependence needs > 1 image


def metric_rows(model_name: str, summaries: Sequence[dict], *, chosen: Optional[int] = None
                ) -> List[dict]:
    """Flat table rows (one per layer) from :func:`probe.mixing.summarize` output."""
    rows = []
    for s in summaries:
        row = {"model": model_name, "depth": s["depth"], "kind": s["kind"], "layer": s["layer"],
               "heads": s["heads"]}
        for k in _METRICS:
            if k in s:
                row[k] = round(float(s[k]), 4)
        if chosen is not None:
            row["shown"] = "◀" if s["depth"] == chosen else ""
        rows.append(row)
    return rows


SHORT_NAMES = {"mean_mixing_distance": "distance", "locality_r1": "locality",
               "translation_equivariance": "transl. equiv.", "entropy_normalized": "entropy",
               "effective_rank": "eff. rank", "input_dependence": "input dep."}


def display_rows(rows: Sequence[dict], *, drop: Sequence[str] = ("layer", "heads")) -> List[dict]:
    """Rows with short column names for on-screen tables (CSV keeps the full names)."""
    out = []
    for r in rows:
        row = {SHORT_NAMES.get(k, k): v for k, v in r.items() if k not in drop and k != "shown"}
        if r.get("shown"):                   # the layer on screen, in bold
            row = {k: (f"**{v}**" if k in ("model", "depth", "kind") else v) for k, v in row.items()}
        out.append(row)
    return out


def rows_to_csv(rows: Sequence[dict]) -> bytes:
    """CSV bytes (UTF-8) of dict rows; columns in first-seen order."""
    cols: List[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue().encode("utf-8")


def rows_to_markdown(rows: Sequence[dict], *, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table of dict rows (floats rounded, missing cells blank).

    The app renders tables as markdown rather than ``st.dataframe`` so that it
    does not depend on pyarrow (whose wheels may require a newer NumPy).
    """
    cols: List[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    if not cols:
        return ""

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
        return str(v).replace("|", "\\|")

    right = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in cols]
    lines = ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|" + "|".join("---:" if rt else "---" for rt in right) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def figure_bytes(fig, fmt: str = "pdf", *, dpi: int = 160) -> bytes:
    """A matplotlib figure as PDF/PNG bytes; a pyplot-managed figure is closed afterwards."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight" if fmt == "png" else None)
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)                   # no-op for figures made without pyplot
    return buf.getvalue()


def figure_pdf(fig) -> bytes:
    """A matplotlib figure as PDF bytes (for ``st.download_button``)."""
    return figure_bytes(fig, "pdf")


def build_pdf(build: Callable[[], object]) -> bytes:
    """PDF bytes of the figure ``build()`` makes (deferred downloads render on click)."""
    return figure_pdf(build())


def robust_accuracy_rows(results: Sequence[dict]) -> List[dict]:
    """One row per (attack, epsilon), one column per model: robust accuracy."""
    table: Dict[Tuple[str, str, float], dict] = {}
    for r in results:
        for row in r.get("adversarial", []):
            key = (row["attack"], row["norm"], float(row["epsilon"]))
            table.setdefault(key, {"attack": row["attack"], "norm": row["norm"],
                                   "epsilon": row["epsilon"]})[r["model"]] = round(
                row["robust_accuracy"], 3)
    return [table[k] for k in sorted(table)]


def corruption_error_rows(results: Sequence[dict]) -> List[dict]:
    """One row per corruption, one column per model: error (%) averaged over severities."""
    errors: Dict[str, Dict[str, List[float]]] = {}
    order: List[str] = []
    for r in results:
        for row in r.get("corruptions", []):
            c = row["corruption"]
            if c not in order:
                order.append(c)
            errors.setdefault(c, {}).setdefault(r["model"], []).append(100 * (1 - row["accuracy"]))
    rows = []
    for c in order:
        row = {"corruption": c}
        for model, vals in errors[c].items():
            row[model] = round(sum(vals) / len(vals), 1)
        rows.append(row)
    summary = {"corruption": "mCE (% of baseline)"}
    if any(r.get("mce") is not None for r in results):
        for r in results:
            summary[r["model"]] = round(r["mce"], 1) if r.get("mce") is not None else None
        rows.append(summary)
    clean = {"corruption": "clean error"}
    for r in results:
        clean[r["model"]] = round(100 * (1 - r["clean_accuracy"]), 1)
    return [clean] + rows


# ----------------------------------------------------------------------------- small robustness run

SMALL_RUN = dict(n=100, n_attack=50, attacks=["fgsm", "pgd"],
                 epsilons=[0.0, 0.01, 0.02, 0.05, 0.1],
                 corruptions=["gaussian_noise", "defocus_blur", "fog", "contrast",
                              "jpeg_compression"],
                 severities=[1, 3, 5], heatmap=False)


def small_run_config(model: str, *, weights: str = "shipped", **overrides):
    """A :class:`probe.robustness.RunConfig` small enough for the app's button."""
    from .robustness import RunConfig
    opts = {**SMALL_RUN, **overrides}
    return RunConfig(model=model, weights=weights, **opts)


def _units_done(path: Path) -> int:
    from .results import read_json
    try:
        return len((read_json(path) or {}).get("units", {}))
    except (OSError, ValueError):
        return 0


def run_small_robustness(models: Sequence[str], out: Path, *,
                         on_progress: Optional[Callable[[float, str], None]] = None,
                         weights: str = "shipped", **overrides) -> List[dict]:
    """Run :func:`probe.robustness.run` with :func:`small_run_config` for each model.

    Progress is reported as units finish (read from each model's resumable
    units file), so a caller can drive a progress bar: ``on_progress(fraction, text)``.
    """
    from . import robustness
    results: List[dict] = []
    for i, name in enumerate(models):
        cfg = small_run_config(name, weights=weights, **overrides)
        try:
            total = max(1, len(robustness._plan(cfg)))
        except Exception:            # private helper changed: fall back to per-model steps
            total = 1
        units = Path(out) / cfg.data / robustness._dirname(name) / "robustness.units.json"
        box: dict = {}

        def work(cfg=cfg):
            try:
                box["result"] = robustness.run(cfg, out=Path(out), progress=False)
            except BaseException as e:   # re-raised in the caller's thread
                box["error"] = e

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
            if on_progress is not None:
                frac = min(_units_done(units), total) / total if total > 1 else 0.0
                on_progress((i + frac) / len(models), f"{name}: {100 * frac:.0f}%")
        if "error" in box:
            raise box["error"]
        results.append(box["result"])
        if on_progress is not None:
            on_progress((i + 1) / len(models), f"{name}: done")
    return results


# ----------------------------------------------------------------------------- attribution


@dataclass
class AttributionAPI:
    """What :mod:`probe.attribution` offers, found defensively.

    ``error`` says why attributions are unavailable (``None`` when they are).
    """

    module: object = None
    methods: Tuple[str, ...] = ()
    deletion: Optional[Callable] = None
    error: Optional[str] = None


_FALLBACK_METHODS = ("saliency", "integrated_gradients", "input_x_gradient", "gradcam", "rollout")


def attribution_api() -> AttributionAPI:
    """Import :mod:`probe.attribution` if present and find ``attribute``, its methods and deletion AUC."""
    try:
        mod = importlib.import_module("probe.attribution")
    except ImportError as e:
        return AttributionAPI(error=f"probe.attribution is not available yet ({e})")
    except Exception as e:           # a half-written module must not take the page down
        return AttributionAPI(error=f"probe.attribution failed to import: {type(e).__name__}: {e}")
    if not callable(getattr(mod, "attribute", None)):
        return AttributionAPI(module=mod, error="probe.attribution has no attribute() function yet")
    methods = None
    for key in ("METHODS", "NAMES", "methods", "names"):
        v = getattr(mod, key, None)
        try:
            v = v() if callable(v) else v
            if v:
                methods = tuple(str(k) for k in v)
                break
        except Exception:
            continue
    deletion = None
    for key in ("deletion_curve", "deletion_auc"):
        if callable(getattr(mod, key, None)):
            deletion = getattr(mod, key)
            break
    return AttributionAPI(module=mod, methods=methods or _FALLBACK_METHODS, deletion=deletion)


def attribute_map(api: AttributionAPI, model, x: torch.Tensor, target: int, method: str
                  ) -> torch.Tensor:
    """``[H, W]`` attribution of image 0 for class ``target`` (errors propagate)."""
    a = api.module.attribute(model, x, torch.tensor([int(target)]), method)
    a = torch.as_tensor(a).detach().float()
    while a.ndim > 2:
        a = a[0] if a.shape[0] == 1 else a.mean(0)
    return a


def deletion_auc(api: AttributionAPI, model, x: torch.Tensor, target: int,
                 attribution: torch.Tensor) -> Optional[Tuple[float, Optional[float]]]:
    """``(deletion AUC, same for a random pixel order)`` of image 0, or ``None`` if unavailable.

    Uses :func:`probe.attribution.deletion_curve` (its result's ``auc`` and
    ``random_auc``) or a plain ``deletion_auc`` function returning numbers.
    """
    if api.deletion is None:
        return None
    t = torch.tensor([int(target)])
    a = attribution[None] if attribution.ndim == 2 else attribution
    out = api.deletion(model, x, target=t, maps=a)
    auc = getattr(out, "auc", out)
    rand = getattr(out, "random_auc", None)

    def scalar(v) -> Optional[float]:
        if v is None:
            return None
        value = float(torch.as_tensor(v, dtype=torch.float64).reshape(-1).mean())
        return value if math.isfinite(value) else None

    value = scalar(auc)
    return None if value is None else (value, scalar(rand))


def attribution_figure(image: torch.Tensor, attribution: torch.Tensor, *, title: str = ""):
    """The image and its attribution ``[H, W]`` overlaid (signed: red positive, blue negative)."""
    from .plots import new_figure
    img = image.detach().float().cpu()
    shown = img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img.mean(0).numpy()
    a = attribution.detach().float().cpu()
    if tuple(a.shape) != tuple(img.shape[-2:]):
        a = F.interpolate(a[None, None], size=img.shape[-2:], mode="bilinear",
                          align_corners=False)[0, 0]
    lim = float(a.abs().max()) or 1.0
    fig = new_figure(2.6, 2.6)
    ax = fig.subplots()
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
    ax.imshow(a.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.65)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return fig
