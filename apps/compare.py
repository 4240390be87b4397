"""probe: compare how vision architectures mix tokens, and how robust they are.

Run from the repository root::

    streamlit run apps/compare.py

The page only arranges widgets and figures; every computation is a ``probe``
call: :mod:`probe.zoo` (models), :mod:`probe.data` (uploads),
:mod:`probe.perturbations` (perturbed inputs and their token mixing),
:mod:`probe.attribution`, :mod:`probe.robustness` (stored results and the small
run), :mod:`probe.results` (tables) and :mod:`probe.plots` (figures).
Environment: ``PROBE_RUNS`` (results folder, default ``runs``),
``PROBE_APP_THREADS`` (torch CPU threads, default up to 4, set once per process).
"""
from __future__ import annotations

import hashlib
import os
import sys
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # fallback when probe is not pip-installed
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
import torch  # noqa: E402

from probe import (attribution, claims, corruptions, data, mixing, perturbations,  # noqa: E402
                   plots, plots_robustness, results, robustness, zoo)
from probe.perturbations import InputAnalysis, Perturbation  # noqa: E402

DATASET = "fashion-mnist"
DEFAULT_MODELS = ["mixer", "vit", "cnn"]
TIMM_PREFIX = "timm:"
TIMM_WEIGHTS = ("pretrained", "random", "file")
MIN_MODELS, MAX_MODELS = 2, 4
RUNS = Path(os.environ.get("PROBE_RUNS", "runs"))
CLAIMS = Path(os.environ.get("PROBE_CLAIMS", ROOT / "analyses" / "results"))


# ----------------------------------------------------------------------------- process set-up and cached loaders


@st.cache_resource
def configure_torch() -> int:
    """Set torch's CPU threads once per process (not on every rerun); returns the count."""
    value = os.environ.get("PROBE_APP_THREADS", "").strip()
    if value and not (value.isdigit() and int(value) > 0):
        raise ValueError(f"PROBE_APP_THREADS must be a positive integer, got {value!r}; "
                         f"unset it for the default (up to 4)")
    threads = int(value) if value else min(4, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


@st.cache_resource(show_spinner="loading model ...", max_entries=16)
def get_model(name: str, weights: str, stamp: Optional[float]):
    """``(model, note)``; ``stamp`` (weights file mtime) reloads when shipped weights appear.

    Zoo families: :func:`probe.zoo.load_or_random`; ``timm:<arch>``: :func:`probe.zoo.load`
    (pretrained, random or a file; errors raised), with a RANDOM note for random weights.
    """
    if name.startswith(TIMM_PREFIX):
        note = (f"{name}: RANDOM initialisation (seeded); choose pretrained or a weights file "
                f"for a trained model" if weights == "random" else None)
        return zoo.load(name, weights=weights), note
    return zoo.load_or_random(name, weights=weights)


def model_for(name: str, weights: str):
    """:func:`get_model` under the current weights stamp."""
    return get_model(name, weights, zoo.weights_stamp(name))


@st.cache_resource(show_spinner="loading Fashion-MNIST ...")
def get_dataset():
    """The Fashion-MNIST test split."""
    return data.load(DATASET, "test")


@st.cache_data(show_spinner=False, max_entries=32)
def upload_tensor(content: bytes, size: tuple, invert: bool) -> torch.Tensor:
    """A checked upload as ``[1, C, H, W]`` (``ValueError`` with the reason otherwise)."""
    return data.load_upload(content, size, invert=invert)


@st.cache_data(show_spinner="extracting token mixing ...", max_entries=64)
def analyse(name: str, weights: str, stamp: Optional[float], image_key: str, _image: torch.Tensor,
            perturbation: Perturbation, label: Optional[int]) -> InputAnalysis:
    """Everything the page shows for one model and input (cached; layer switches reuse it)."""
    model, _ = get_model(name, weights, stamp)
    return perturbations.analyse_input(model, _image, perturbation, label=label,
                                       label_classes=data.FASHION_MNIST_CLASSES)


def runs_folder(weights: str) -> Path:
    """Where the robustness results of models with these weights live: ``RUNS`` for shipped
    and timm pretrained weights, ``RUNS/random-weights``, ``RUNS/file-weights`` for a file."""
    if weights in ("shipped", "pretrained"):
        return RUNS
    return RUNS / ("random-weights" if weights == "random" else "file-weights")


@st.cache_data(show_spinner=False, max_entries=64)
def robustness_result(folder: str, model: str, stamp: Optional[float]) -> Optional[dict]:
    """The stored results of ``model`` (``stamp``: the file's mtime, so new runs show up)."""
    return robustness.load_results(Path(folder), DATASET, model)


@st.cache_data(show_spinner="computing attributions ...", max_entries=64)
def attribution_for(key: tuple, _x: torch.Tensor, method: str, target: int) -> dict:
    """Attribution map ``[H, W]`` and deletion AUCs; ``key`` = (model, weights, stamp, input ...)."""
    name, weights, stamp = key[:3]
    model, _ = get_model(name, weights, stamp)
    t = torch.tensor([int(target)])
    maps = attribution.attribute(model, _x, t, method)
    curve = attribution.deletion_curve(model, _x, t, maps)
    return {"map": maps[0], "auc": float(curve.auc[0]), "random_auc": float(curve.random_auc[0])}


@st.cache_data(show_spinner=False, max_entries=256)
def figure_png(key: tuple, _build: Callable) -> bytes:
    """PNG bytes of the figure ``_build()`` makes, cached under ``key`` (everything it depends on)."""
    return plots.figure_bytes(_build(), "png")


def figure_pdf(build: Callable) -> bytes:
    """PDF bytes of the figure ``build()`` makes (downloads render when clicked)."""
    return plots.figure_pdf(build())


def show_figure(key: tuple, build: Callable, figures: Dict[str, Callable], name: str) -> None:
    """Show a cached figure and register its builder for the PDF downloads."""
    st.image(figure_png(key, build), width="stretch")
    figures[name] = build


# ----------------------------------------------------------------------------- sidebar sections


def sidebar_timm_weights() -> Optional[str]:
    """The weights of the ``timm:`` model, like ``--weights``: pretrained, random or a file path.

    ``None`` while "file" is chosen and no path is entered yet.
    """
    sb = st.sidebar
    kind = sb.radio("timm weights", TIMM_WEIGHTS, horizontal=True, key="timm_weights",
                    help="pretrained: timm's pretrained weights from the local Hugging Face "
                         "cache; random: seeded initialisation; file: a local checkpoint "
                         "(.safetensors or torch file)")
    if kind != "file":
        return kind
    path = sb.text_input("weights file", value="", key="timm_weights_path",
                         placeholder="/path/to/checkpoint.safetensors").strip()
    return path or None


def sidebar_models() -> Dict[str, object]:
    """Models to compare (2-4 zoo names and/or ``timm:<arch>``) and the weights of each."""
    sb = st.sidebar
    sb.header("Models")
    chosen = sb.multiselect("zoo models", zoo.names(), default=DEFAULT_MODELS, key="models",
                            max_selections=MAX_MODELS,
                            help="2-4 models; each is shown in its own column")
    weights = sb.radio("zoo weights", ["shipped", "random"], horizontal=True, key="weights",
                       help="shipped: trained on Fashion-MNIST; random: seeded initialisation")
    extra = sb.text_input("add a timm model", value="", key="timm",
                          placeholder="timm:deit_small_patch16_224",
                          help="any timm architecture (timm:<arch>), e.g. timm:mixer_b16_224, "
                               "timm:vit_base_patch16_224, timm:resnet50; input at its own size "
                               "(224 px)")
    names = list(chosen)
    weights_of = {name: weights for name in names}
    extra = extra.strip()
    if extra:
        name = extra if extra.startswith(TIMM_PREFIX) else f"{TIMM_PREFIX}{extra}"
        names.append(name)
        weights_of[name] = sidebar_timm_weights()
    return {"names": names[:MAX_MODELS], "weights": weights, "weights_of": weights_of,
            "dropped": names[MAX_MODELS:]}


def sidebar_input(*, photo_models: bool = False) -> Dict[str, object]:
    """The input image: a Fashion-MNIST test index, or an upload (PNG/JPEG <= 10 MB);
    ``photo_models``: a ``timm:`` model is chosen, so uploads are not inverted by default."""
    sb = st.sidebar
    sb.header("Input")
    source = sb.radio("image", ["Fashion-MNIST test", "upload"], horizontal=True, key="source")
    choice = {"source": source, "index": 0, "upload": None, "invert": False}
    if source == "upload":
        f = sb.file_uploader("PNG or JPEG, at most 10 MB", type=["png", "jpg", "jpeg"],
                             key="upload")
        choice["invert"] = sb.checkbox("invert (Fashion-MNIST is light on dark)",
                                       value=not photo_models, key="invert",
                                       help="for the zoo's Fashion-MNIST models; leave it off "
                                            "for photos and timm models")
        choice["upload"] = f.getvalue() if f is not None else None
    else:
        last = len(get_dataset()) - 1
        choice["index"] = int(sb.number_input("test image index", min_value=0, max_value=last,
                                              value=0, step=1, key="index"))
    choice["preview"] = sb.container()         # filled with the image once it is loaded
    return choice


def sidebar_perturbation() -> Perturbation:
    """Clean input, a corruption x severity, or a Linf PGD attack on each model."""
    sb = st.sidebar
    sb.header("Perturbation")
    kind = sb.radio("apply", ["none", "corruption", "pgd"], horizontal=True, key="perturbation",
                    format_func={"none": "none", "corruption": "corruption",
                                 "pgd": "PGD attack"}.get)
    if kind == "corruption":
        name = sb.selectbox("corruption", corruptions.NAMES, key="corruption",
                            format_func=lambda s: s.replace("_", " "))
        severity = sb.slider("severity", 1, 5, 3, key="severity")
        return Perturbation("corruption", corruption=name, severity=int(severity))
    if kind == "pgd":
        eps = sb.select_slider("epsilon (Linf, pixels in [0, 1])",
                               [0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2], value=0.03,
                               key="epsilon")
        steps = sb.slider("PGD steps", 1, 40, 10, key="steps")
        return Perturbation("pgd", epsilon=float(eps), steps=int(steps))
    return Perturbation()


def sidebar_mixing(depths: Dict[str, int], max_heads: int) -> Dict[str, object]:
    """A layer per model (depth slider), the head, and the view."""
    sb = st.sidebar
    sb.header("Mixing")
    view = sb.radio("view", ["token + matrix", "templates"], horizontal=True, key="view",
                    help="token + matrix: how one token mixes the image, and the full T x T map; "
                         "templates: rows (or Mixer hidden units) as grids")
    head = None
    if max_heads > 1:
        pick = sb.selectbox("attention head", ["mean of heads"] + list(range(max_heads)),
                            key="head")
        head = None if pick == "mean of heads" else int(pick)
    layers = {}
    for name, n in depths.items():
        if n <= 1:
            layers[name] = 0
            continue
        layers[name] = int(sb.slider(f"{name}: layer", 0, n - 1, min(n - 1, n // 2),
                                     key=f"layer_{name}"))
    return {"view": view, "head": head, "layers": layers}


def sidebar_attribution() -> str:
    """The attribution method (a :data:`probe.attribution.METHODS` name)."""
    sb = st.sidebar
    sb.header("Attributions")
    methods = list(attribution.METHODS)
    default = methods.index("integrated_gradients") if "integrated_gradients" in methods else 0
    return sb.selectbox("method", methods, index=default, key="attr_method",
                        format_func=lambda s: s.replace("_", " "))


# ----------------------------------------------------------------------------- page sections


def base_input(choice: Dict[str, object], size: tuple):
    """``(image [1, C, H, W], key, label, caption)`` or ``None`` (message shown).

    Uploads are read at ``size``, the largest input of the chosen models (each
    model then gets its own size and channels from :func:`probe.data.fit_to_model`).
    """
    if choice["source"] == "upload":
        content = choice["upload"]
        if content is None:
            st.info("Upload a PNG or JPEG in the sidebar (or switch back to a Fashion-MNIST image).")
            return None
        try:
            x = upload_tensor(content, tuple(size), bool(choice["invert"]))
        except ValueError as e:
            st.error(f"Upload refused: {e}")
            return None
        key = (f"upload:{hashlib.sha256(content).hexdigest()[:16]}:{choice['invert']}:"
               f"{'x'.join(map(str, size))}")
        return x, key, None, "uploaded image"
    ds = get_dataset()
    i = int(choice["index"])
    image, label = ds[i][:2]
    return image[None], f"fmnist:{i}", int(label), f"test #{i}: {ds.classes[label]}"


def prediction_block(res: InputAnalysis, perturbed: bool, label_name: Optional[str]) -> None:
    """Top-3 classes with probabilities (clean and perturbed side by side when perturbed)."""
    def bars(rows):
        for cls, p in rows:
            mark = " ✓" if label_name is not None and cls == label_name else ""
            st.progress(p, text=f"{cls} {100 * p:.0f}%{mark}")

    if not perturbed:
        bars(res.top_clean)
        return
    clean_col, pert_col = st.columns(2)
    with clean_col:
        st.caption("clean")
        bars(res.top_clean)
    with pert_col:
        st.caption("perturbed")
        bars(res.top)


def mixing_figure(res: InputAnalysis, depth: int, head: Optional[int], view: str,
                  clean: bool = False):
    """The chosen view of one layer's mixing (perturbed input, or the clean one)."""
    maps = res.maps_clean if clean else res.maps
    m = plots.select_head(maps[depth], head)
    if view == "templates":
        return plots.plot_templates([m], per_layer=8)
    img = (res.x if clean else res.perturbed)[0]
    head_txt = f", head {head}" if head is not None and maps[depth].heads > 1 else ""
    return plots.mixing_panel(img, m, title=f"{'clean input' if clean else 'layer ' + str(depth)}"
                                            f"{head_txt}")


def section_models(names: List[str], loaded: Dict[str, object], res: Dict[str, InputAnalysis],
                   keys: Dict[str, tuple], mix: Dict[str, object], perturbation: Perturbation,
                   weights_used: Dict[str, str], label_name: Optional[str],
                   figures: Dict[str, Callable]) -> None:
    """One column per model: the chosen layer's mixing, its metrics, and the predictions."""
    perturbed = perturbation.kind != "none"
    cols = st.columns(len(names), gap="medium")
    for col, name in zip(cols, names):
        r = res[name]
        depth = mix["layers"][name]
        m = r.maps[depth]
        with col:
            st.markdown(f"#### {name}")
            st.caption(f"weights: {zoo.describe_weights(loaded[name])}")
            st.caption(f"{mixing.KIND_LABELS.get(m.kind, m.kind)} · layer {depth} of "
                       f"{len(r.maps)} · {weights_used[name]} weights · input "
                       f"{'x'.join(map(str, loaded[name].input_size))}")
            view = (mix["head"], mix["view"])
            show_figure(("mixing", keys[name], depth) + view,
                        partial(mixing_figure, r, depth, *view),
                        figures, f"mixing_{name}_layer{depth}")
            s = r.summary[depth]
            text = (f"distance **{s['mean_mixing_distance']:.2f}** tokens · locality "
                    f"**{s['locality_r1']:.2f}** · eff. rank **{s['effective_rank']:.1f}**")
            if perturbed:
                c = r.summary_clean[depth]
                text += (f"  \nunder perturbation: distance {c['mean_mixing_distance']:.2f} → "
                         f"{s['mean_mixing_distance']:.2f}, map change "
                         f"**{100 * r.map_change(depth):.1f}%**"
                         + (" (static map)" if m.static else ""))
            st.caption(text)
            prediction_block(r, perturbed, label_name)
            if perturbed and not m.static:
                with st.expander("mixing on the clean input"):
                    show_figure(("mixing-clean", keys[name], depth) + view,
                                partial(mixing_figure, r, depth, *view, clean=True),
                                figures, f"mixing_{name}_layer{depth}_clean")


@st.cache_data(show_spinner="mixing at initialisation...", max_entries=32)
def init_distances(name: str, key: tuple, _x: torch.Tensor) -> List[float]:
    """Mean mixing distance per layer of ``name`` at its seed-0 random init, same input."""
    model = zoo.load(name, weights="random", seed=0)
    return [s["mean_mixing_distance"] for s in mixing.summarize(mixing.extract(model, _x))]


def reference_distances(m) -> Dict[str, float]:
    """Mean mixing distance of uniform and local reference mixing on ``m``'s token grid."""
    refs = mixing.references(like=m, names=("uniform", "local"))
    return {f"{k} mixing ({m.grid[0]}x{m.grid[1]} tokens)":
            float(mixing.mean_mixing_distance(v).mean()) for k, v in refs.items()}


def section_depth(names: List[str], res: Dict[str, InputAnalysis], keys: Dict[str, tuple],
                  mix: Dict[str, object], figures: Dict[str, Callable]) -> List[dict]:
    """Mean mixing distance vs depth for all models, and the per-layer metrics table."""
    rows: List[dict] = []
    for name in names:
        rows += results.metric_rows(name, res[name].summary, chosen=mix["layers"][name])
    left, right = st.columns([2, 3], gap="medium")
    with left:
        series = {n: [s["mean_mixing_distance"] for s in res[n].summary] for n in names}
        overlay = st.toggle("overlay initialisation and reference mixing", key="controls",
                            help="dashed: each model at its seed-0 random initialisation, same "
                                 "input; grey: uniform and local (Gaussian, sigma = 1 token) "
                                 "mixing on the first model's token grid")
        dashed = hlines = None
        if overlay:
            dashed = {n: init_distances(n, keys[n], res[n].x) for n in names}
            hlines = reference_distances(res[names[0]].maps[0])
        show_figure(("depth", overlay, tuple(keys[n] for n in names)),
                    partial(plots.plot_by_depth, series, ylabel="mean mixing distance (tokens)",
                            title="mean mixing distance vs depth", dashed=dashed, hlines=hlines),
                    figures, "mixing_distance_vs_depth")
    with right:
        st.markdown(results.rows_to_markdown(results.display_rows(rows), digits=2))
    return rows


def small_run_button(missing: List[str], weights_used: Dict[str, str]) -> None:
    """The button that runs :func:`probe.robustness.small_config` for the models without results."""
    small = robustness.SMALL_RUN
    label = (f"compute a small run now (n={small['n']}, attacks {', '.join(small['attacks'])} "
             f"on {small['n_attack']}, {len(small['corruptions'])} corruptions x "
             f"{len(small['severities'])} severities)")
    if not st.button(label, key="run_small"):
        return
    bar = st.progress(0.0, text="starting ...")
    try:
        for i, name in enumerate(missing):
            def show(done: int, total: int, unit: str, i: int = i) -> None:
                bar.progress((i + done / total) / len(missing),
                             text=f"model {i + 1} of {len(missing)} · {unit} ({done}/{total})")

            robustness.run(robustness.small_config(name, weights=weights_used[name]),
                           out=runs_folder(weights_used[name]), progress=False, on_progress=show)
    except (ValueError, FileNotFoundError, RuntimeError, PermissionError) as e:
        st.error(f"small run failed: {e}")
    else:
        bar.progress(1.0, text="done")
        st.rerun()


def section_robustness(names: List[str], weights_used: Dict[str, str],
                       figures: Dict[str, Callable]) -> List[dict]:
    """Stored robustness results side by side (tables and figures), or how to make them."""
    found, missing, stamps = [], [], []
    for name in names:
        folder = runs_folder(weights_used[name])
        stamp = robustness.results_stamp(folder, DATASET, name)
        r = robustness_result(str(folder), name, stamp)
        if r is None:
            missing.append(name)
        else:
            found.append(r)
            stamps.append((name, weights_used[name], stamp))
    if missing:
        cmds = "\n".join(f"python -m probe.robustness --model {n}" for n in missing)
        st.info(f"No robustness results under `{RUNS}/{DATASET}/` for {', '.join(missing)}. "
                f"The full run is:")
        st.code(cmds, language="bash")
        small_run_button(missing, weights_used)
    if not found:
        return []
    stamps = tuple(stamps)
    acc_rows = results.robust_accuracy_rows(found)
    ce_rows = results.corruption_error_rows(found)
    fig_col, table_col = st.columns([3, 2], gap="medium")
    with table_col:
        st.markdown("**robust accuracy vs epsilon**")
        st.markdown(results.rows_to_markdown(acc_rows))
    with fig_col:
        if any(r["adversarial"] for r in found):
            show_figure(("robust_accuracy", stamps),
                        partial(plots_robustness.robust_accuracy_figure, found), figures,
                        "robust_accuracy")
    fig_col, table_col = st.columns([3, 2], gap="medium")
    with table_col:
        st.markdown("**corruption error (%), mean over severities**")
        st.markdown(results.rows_to_markdown(ce_rows, digits=1))
    with fig_col:
        if any(r["corruptions"] for r in found):
            show_figure(("corruption_error", stamps),
                        partial(plots_robustness.corruption_figure, found), figures,
                        "corruption_error")
    return [dict(table="robust_accuracy", **r) for r in acc_rows] + \
           [dict(table="corruption_error", **r) for r in ce_rows]


def section_attributions(names: List[str], res: Dict[str, InputAnalysis], keys: Dict[str, tuple],
                         loaded: Dict[str, object], method: str,
                         figures: Dict[str, Callable]) -> None:
    """The chosen attribution method on each model's (perturbed) input, with its deletion AUC."""
    cols = st.columns(len(names))
    for col, name in zip(cols, names):
        r = res[name]
        target = r.prediction
        with col:
            st.markdown(f"**{name}** · target *{loaded[name].classes[target]}*")
            try:
                out = attribution_for(keys[name], r.perturbed, method, target)
            except ValueError as e:        # e.g. a ViT-only method on another family
                st.info(str(e).split(";")[0])
                continue
            show_figure(("attribution", keys[name], method, target),
                        partial(plots.attribution_figure, r.perturbed[0], out["map"],
                                title=f"{name}: {method.replace('_', ' ')}"),
                        figures, f"attribution_{name}_{method}")
            st.metric("deletion AUC (lower is better)", f"{out['auc']:.3f}",
                      delta=f"{out['auc'] - out['random_auc']:+.3f} vs random order",
                      delta_color="inverse")


def section_downloads(figures: Dict[str, Callable], metric_rows: List[dict],
                      robust_rows: List[dict]) -> None:
    """Every figure on the page as a PDF, and the tables as CSV."""
    st.caption("PDFs are rendered when you click.")
    cols = st.columns(3)
    for i, (name, build) in enumerate(figures.items()):
        cols[i % 3].download_button(f"{name}.pdf", partial(figure_pdf, build),
                                    file_name=f"{name.replace(':', '_')}.pdf",
                                    mime="application/pdf", key=f"dl_{name}", on_click="ignore")
    c1, c2 = st.columns(2)
    c1.download_button("mixing metrics (CSV)", results.rows_to_csv(metric_rows),
                       file_name="mixing_metrics.csv", mime="text/csv", key="dl_metrics",
                       on_click="ignore")
    if robust_rows:
        c2.download_button("robustness tables (CSV)", results.rows_to_csv(robust_rows),
                           file_name="robustness_tables.csv", mime="text/csv", key="dl_robust",
                           on_click="ignore")


# ----------------------------------------------------------------------------- page


def section_claims(figures: Dict[str, Callable]) -> None:
    """The claims report's verdicts and forest plot, from the committed analysis results."""
    found = claims.read(CLAIMS)
    if not found.claims:
        st.info(f"No claim results in the current format in `{CLAIMS}` yet: the claims are "
                f"re-measured on converged models (`make cells-full`, then the analyses, then "
                f"`make report`).")
        return
    counts = claims.verdict_counts(found.claims)
    st.markdown(f"**{len(found.claims)} claims** from {len(found.analyses)} analyses: "
                + ", ".join(f"{n} {v}" for v, n in counts.items()) + ". Verdicts are computed "
                "from each claim's interval and its committed margin (`analyses/margins.json`).")
    st.dataframe([{"claim": c["claim"], "verdict": c["verdict"],
                   "effect": round(c["effect"], 4),
                   "interval": f"[{c['ci_low']:.3g}, {c['ci_high']:.3g}]",
                   "margin": c["margin"], "at margin/2": c["sensitivity"].get("half"),
                   "at 2x margin": c["sensitivity"].get("double"), "analysis": c["analysis"]}
                  for c in found.claims], hide_index=True, width="stretch")
    stamp = tuple(sorted((p.name, p.stat().st_mtime) for p in Path(CLAIMS).glob("*.json")))
    show_figure(("claims", str(CLAIMS), stamp), partial(claims.forest_figure, found.claims),
                figures, "claims_forest")
    if found.checks:
        st.caption("Checks (true by construction, not counted as evidence): " + "; ".join(
            f"{k['id']} {'holds' if k['holds'] else 'FAILS'}" for k in found.checks))


def load_models(names: List[str], weights_of: Dict[str, Optional[str]]):
    """``(loaded, weights_used)`` for the names that load; errors and RANDOM notes shown.

    ``weights_of``: each name's weights (zoo: shipped/random; ``timm:``: pretrained, random
    or a file path; ``None``: no file path entered yet). ``weights_used``: the weights each
    loaded model carries (``"random"`` where shipped weights fell back to a random init).
    """
    loaded, weights_used, notes = {}, {}, {}
    for name in names:
        weights = weights_of[name]
        if weights is None:
            st.info(f"{name}: enter the path of a weights file in the sidebar (or choose "
                    f"pretrained or random timm weights).")
            continue
        try:
            model, note = model_for(name, weights)
        except (ValueError, FileNotFoundError, PermissionError) as e:
            st.error(f"{name}: {e}")
            continue
        if note:
            notes[name] = note
        loaded[name] = model
        weights_used[name] = "random" if (weights == "random" or note) else weights
    zoo_missing = [n for n in notes if not n.startswith("timm:")]
    if zoo_missing:
        cmd = " && ".join(f"python -m probe.train --model {n} --out probe/weights"
                          for n in zoo_missing)
        st.warning(f"No usable shipped weights for **{', '.join(zoo_missing)}** yet: showing a "
                   f"seeded RANDOM initialisation. Make them with `{cmd}`.", icon="⚠️")
    for n in notes:
        if n.startswith("timm:"):
            st.caption(notes[n])
    return loaded, weights_used


def main() -> None:
    """The page: sidebar choices, one column per model, then the tabs."""
    st.set_page_config(page_title="probe · compare", page_icon="🔬", layout="wide")
    configure_torch()

    models = sidebar_models()
    choice = sidebar_input(photo_models=any(n.startswith(TIMM_PREFIX) for n in models["names"]))
    perturbation = sidebar_perturbation()

    st.markdown("## probe · how architectures mix tokens")
    if models["dropped"]:
        st.warning(f"At most {MAX_MODELS} models: leaving out {', '.join(models['dropped'])}.")
    if len(models["names"]) < MIN_MODELS:
        st.info(f"Pick at least {MIN_MODELS} models in the sidebar to compare them.")
        if not models["names"]:
            return
    loaded, weights_used = load_models(models["names"], models["weights_of"])
    if not loaded:
        return

    size = tuple(max(m.input_size[i] for m in loaded.values()) for i in range(3))
    base = base_input(choice, size)
    if base is None:
        return
    image, image_key, label, caption = base
    choice["preview"].image(image[0].permute(1, 2, 0).squeeze(-1).numpy(), width=112, clamp=True,
                            caption=caption)

    res: Dict[str, InputAnalysis] = {}
    keys: Dict[str, tuple] = {}
    for name in loaded:
        stamp = zoo.weights_stamp(name)
        try:
            res[name] = analyse(name, models["weights_of"][name], stamp, image_key, image,
                                perturbation, label)
        except (ValueError, RuntimeError) as e:
            st.error(f"{name}: cannot analyse this input ({e})")
            continue
        keys[name] = (name, models["weights_of"][name], stamp, image_key, perturbation, label)
    names = list(res)
    if not names:
        return

    depths = {n: len(res[n].maps) for n in names}
    max_heads = max(m.heads for n in names for m in res[n].maps)
    mix = sidebar_mixing(depths, max_heads)
    method = sidebar_attribution()

    label_name = data.FASHION_MNIST_CLASSES[label] if label is not None else None
    st.caption(f"Input: **{caption}** · perturbation: **{perturbation.label()}**. Left: how "
               f"strongly one token (cyan box, or the class token) draws on every input token; "
               f"right: the layer's whole token-mixing matrix (row = output token).")
    figures: Dict[str, Callable] = {}
    section_models(names, loaded, res, keys, mix, perturbation, weights_used, label_name, figures)
    tab_depth, tab_rob, tab_attr, tab_claims, tab_dl = st.tabs(
        ["Depth & metrics", "Robustness", "Attributions", "Claims", "Downloads"])
    with tab_depth:
        metric_rows = section_depth(names, res, keys, mix, figures)
    with tab_rob:
        robust_rows = section_robustness(names, weights_used, figures)
    with tab_attr:
        section_attributions(names, res, keys, loaded, method, figures)
    with tab_claims:
        section_claims(figures)
    with tab_dl:
        section_downloads(figures, metric_rows, robust_rows)


if __name__ == "__main__":
    main()
