"""probe: compare how vision architectures mix tokens, and how robust they are.

Run from the repository root::

    streamlit run apps/compare.py

The page only arranges widgets and figures; every computation comes from the
``probe`` package (:mod:`probe.app_support` holds the app-specific helpers).
Environment: ``PROBE_RUNS`` (results folder, default ``runs``),
``PROBE_APP_THREADS`` (torch CPU threads, default up to 4).
"""
from __future__ import annotations

import hashlib
import os
import sys
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # fallback when probe is not pip-installed
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
import torch  # noqa: E402

from probe import app_support as sup  # noqa: E402
from probe import corruptions, data, mixing, plots, robustness, zoo  # noqa: E402

DATASET = "fashion-mnist"
DEFAULT_MODELS = ["mixer", "vit", "cnn"]
MIN_MODELS, MAX_MODELS = 2, 4
RUNS = Path(os.environ.get("PROBE_RUNS", "runs"))
KIND_LABEL = {"token-mlp": "token-mixing MLP (Jacobian)", "token-linear": "linear token mixing",
              "spatial-gating": "spatial gating projection", "attention": "self-attention",
              "fourier": "Fourier mixing Re(F)", "conv": "conv effective mixing"}


# ----------------------------------------------------------------------------- cached loaders


@st.cache_resource(show_spinner="loading model ...", max_entries=16)
def get_model(name: str, weights: str, stamp: Optional[float]):
    """``(model, note)``; ``stamp`` (weights file mtime) reloads when shipped weights appear."""
    return sup.load_model(name, weights)


def model_for(name: str, weights: str):
    return get_model(name, weights, sup.weights_stamp(name))


@st.cache_resource(show_spinner="loading Fashion-MNIST ...")
def get_dataset():
    return data.load(DATASET, "test")


@st.cache_data(show_spinner=False, max_entries=32)
def upload_tensor(content: bytes, size: tuple, invert: bool) -> torch.Tensor:
    return sup.load_upload(content, size, invert=invert)


@st.cache_data(show_spinner="extracting token mixing ...", max_entries=64)
def analyse(name: str, weights: str, stamp: Optional[float], image_key: str, _image: torch.Tensor,
            perturbation: sup.Perturbation, label: Optional[int]) -> dict:
    """Everything the page shows for one model and input (cached; layer switches reuse it)."""
    model, _ = get_model(name, weights, stamp)
    x = sup.fit_to_model(_image, model.input_size)
    fm_label = label if (label is not None and model.classes == data.FASHION_MNIST_CLASSES) else None
    xp = sup.perturb(model, x, perturbation, label=fm_label)
    with torch.no_grad():
        pred = int(model(xp).argmax(1)[0])
    out = {"x": x, "xp": xp, "top_clean": sup.top_k(model, x), "top": sup.top_k(model, xp),
           "pred": pred,
           "maps_clean": mixing.extract(model, x)}
    out["maps"] = out["maps_clean"] if perturbation.kind == "none" else mixing.extract(model, xp)
    out["summary"] = mixing.summarize(out["maps"])
    out["key"] = (name, weights, stamp, image_key, perturbation, label)
    out["summary_clean"] = (out["summary"] if perturbation.kind == "none"
                            else mixing.summarize(out["maps_clean"]))
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def robustness_result(folder: str, model: str, stamp: Optional[float]) -> Optional[dict]:
    return robustness.load_results(Path(folder), DATASET, model)


def results_stamp(folder: Path, model: str) -> Optional[float]:
    path = folder / DATASET / model.replace(":", "-").replace("/", "-") / "robustness.json"
    return path.stat().st_mtime if path.is_file() else None


@st.cache_data(show_spinner="computing attributions ...", max_entries=64)
def attribution_for(key: tuple, _x: torch.Tensor, method: str, target: int) -> dict:
    """Attribution map and deletion AUC; ``key`` = analyse()'s key (model, weights, input, perturbation)."""
    name, weights, stamp = key[:3]
    api = sup.attribution_api()
    model, _ = get_model(name, weights, stamp)
    amap = sup.attribute_map(api, model, _x, target, method)
    try:
        auc = sup.deletion_auc(api, model, _x, target, amap)
        auc_error = None
    except Exception as e:               # the metric is optional; the map still shows
        auc, auc_error = None, f"{type(e).__name__}: {e}"
    return {"map": amap, "deletion_auc": auc, "auc_error": auc_error}


@st.cache_data(show_spinner=False, max_entries=256)
def figure_png(key: tuple, _build) -> bytes:
    """PNG bytes of the figure ``_build()`` makes, cached under ``key`` (everything it depends on)."""
    return sup.figure_bytes(_build(), "png")


def show_figure(key: tuple, build, figures: Dict[str, object], name: str) -> None:
    """Show a cached figure and register its builder for the PDF downloads."""
    st.image(figure_png(key, build), width="stretch")
    figures[name] = build


# ----------------------------------------------------------------------------- sidebar sections


def sidebar_models() -> Dict[str, object]:
    """Models to compare (2-4 zoo names and/or ``timm:<arch>``) and which weights."""
    sb = st.sidebar
    sb.header("Models")
    chosen = sb.multiselect("zoo models", zoo.names(), default=DEFAULT_MODELS, key="models",
                            max_selections=MAX_MODELS,
                            help="2-4 models; each is shown in its own column")
    extra = sb.text_input("add a timm model", value="", key="timm", placeholder="timm:resnet18",
                          help="any timm architecture, random init (nothing is downloaded)")
    weights = sb.radio("weights", ["shipped", "random"], horizontal=True, key="weights",
                       help="shipped: trained on Fashion-MNIST; random: seeded initialisation")
    names = list(chosen)
    extra = extra.strip()
    if extra:
        names.append(extra if extra.startswith("timm:") else f"timm:{extra}")
    return {"names": names[:MAX_MODELS], "weights": weights, "dropped": names[MAX_MODELS:]}


def sidebar_input() -> Dict[str, object]:
    """The input image: a Fashion-MNIST test index, or an upload (PNG/JPEG <= 10 MB)."""
    sb = st.sidebar
    sb.header("Input")
    source = sb.radio("image", ["Fashion-MNIST test", "upload"], horizontal=True, key="source")
    choice = {"source": source, "index": 0, "upload": None, "invert": False}
    if source == "upload":
        f = sb.file_uploader("PNG or JPEG, at most 10 MB", type=["png", "jpg", "jpeg"],
                             key="upload")
        choice["invert"] = sb.checkbox("invert (Fashion-MNIST is light on dark)", value=True,
                                       key="invert")
        choice["upload"] = f.getvalue() if f is not None else None
    else:
        last = len(get_dataset()) - 1
        choice["index"] = int(sb.number_input("test image index", min_value=0, max_value=last,
                                              value=0, step=1, key="index"))
    choice["preview"] = sb.container()         # filled with the image once it is loaded
    return choice


def sidebar_perturbation() -> sup.Perturbation:
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
        return sup.Perturbation("corruption", corruption=name, severity=int(severity))
    if kind == "pgd":
        eps = sb.select_slider("epsilon (Linf, pixels in [0, 1])",
                               [0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2], value=0.03,
                               key="epsilon")
        steps = sb.slider("PGD steps", 1, 40, 10, key="steps")
        return sup.Perturbation("pgd", epsilon=float(eps), steps=int(steps))
    return sup.Perturbation()


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


def sidebar_attribution(api: sup.AttributionAPI) -> Optional[str]:
    """The attribution method (``None`` when probe.attribution is unavailable)."""
    sb = st.sidebar
    sb.header("Attributions")
    if api.error:
        sb.caption("unavailable: " + api.error)
        return None
    methods = list(api.methods)
    default = methods.index("integrated_gradients") if "integrated_gradients" in methods else 0
    return sb.selectbox("method", methods, index=default, key="attr_method",
                        format_func=lambda s: s.replace("_", " "))


# ----------------------------------------------------------------------------- page sections


def base_input(choice: Dict[str, object], size: tuple):
    """``(image [1, C, H, W], key, label, caption)`` or ``None`` (message shown).

    Uploads are read at ``size``, the largest input of the chosen models (each
    model then gets its own size and channels from :func:`probe.app_support.fit_to_model`).
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


def prediction_block(res: dict, perturbed: bool, label_name: Optional[str]) -> None:
    """Top-3 classes with probabilities (clean and perturbed side by side when perturbed)."""
    def bars(rows):
        for cls, p in rows:
            mark = " ✓" if label_name is not None and cls == label_name else ""
            st.progress(p, text=f"{cls} {100 * p:.0f}%{mark}")

    if not perturbed:
        bars(res["top_clean"])
        return
    clean_col, pert_col = st.columns(2)
    with clean_col:
        st.caption("clean")
        bars(res["top_clean"])
    with pert_col:
        st.caption("perturbed")
        bars(res["top"])


def mixing_figure(res: dict, name: str, depth: int, head: Optional[int], view: str,
                  clean: bool = False):
    maps = res["maps_clean"] if clean else res["maps"]
    m = sup.select_head(maps[depth], head)
    img = (res["x"] if clean else res["xp"])[0]
    if view == "templates":
        return plots.plot_templates([m], per_layer=8)
    head_txt = f", head {head}" if head is not None and maps[depth].heads > 1 else ""
    return sup.mixing_panel(img, m, title=f"{'clean input' if clean else ''}"
                            f"{'' if clean else 'layer ' + str(depth)}{head_txt}")


def section_models(names: List[str], loaded: Dict[str, object], results: Dict[str, dict],
                   mix: Dict[str, object], perturbation: sup.Perturbation,
                   weights_used: Dict[str, str], label_name: Optional[str],
                   figures: Dict[str, object]) -> None:
    """One column per model: the chosen layer's mixing, its metrics, and the predictions."""
    cols = st.columns(len(names), gap="medium")
    for col, name in zip(cols, names):
        res = results[name]
        depth = mix["layers"][name]
        m = res["maps"][depth]
        model = loaded[name]
        with col:
            st.markdown(f"#### {name}")
            st.caption(f"{KIND_LABEL.get(m.kind, m.kind)} · layer {depth} of "
                       f"{len(res['maps'])} · {weights_used[name]} weights · input "
                       f"{'x'.join(map(str, model.input_size))}")
            key = ("mixing", name, res["key"], depth, mix["head"], mix["view"])
            show_figure(key, partial(mixing_figure, res, name, depth, mix["head"], mix["view"]),
                        figures, f"mixing_{name}_layer{depth}")
            s = res["summary"][depth]
            text = (f"distance **{s['mean_mixing_distance']:.2f}** tokens · locality "
                    f"**{s['locality_r1']:.2f}** · eff. rank **{s['effective_rank']:.1f}**")
            if perturbation.kind != "none":
                c = res["summary_clean"][depth]
                mc = res["maps_clean"][depth].matrix.float()
                change = float((m.matrix.float() - mc).norm() / mc.norm().clamp_min(1e-12))
                text += (f"  \nunder perturbation: distance {c['mean_mixing_distance']:.2f} → "
                         f"{s['mean_mixing_distance']:.2f}, map change **{100 * change:.1f}%**"
                         + (" (static map)" if m.static else ""))
            st.caption(text)
            prediction_block(res, perturbation.kind != "none", label_name)
            if perturbation.kind != "none" and not m.static:
                with st.expander("mixing on the clean input"):
                    key = ("mixing-clean", name, res["key"], depth, mix["head"], mix["view"])
                    show_figure(key, partial(mixing_figure, res, name, depth, mix["head"],
                                             mix["view"], clean=True),
                                figures, f"mixing_{name}_layer{depth}_clean")


def section_depth(names: List[str], results: Dict[str, dict], mix: Dict[str, object],
                  figures: Dict[str, object]) -> List[dict]:
    """Mean mixing distance vs depth for all models, and the per-layer metrics table."""
    rows: List[dict] = []
    for name in names:
        rows += sup.metric_rows(name, results[name]["summary"], chosen=mix["layers"][name])
    left, right = st.columns([2, 3], gap="medium")
    with left:
        series = {n: [s["mean_mixing_distance"] for s in results[n]["summary"]] for n in names}
        key = ("depth", tuple(results[n]["key"] for n in names))
        show_figure(key, partial(plots.plot_by_depth, series,
                                 ylabel="mean mixing distance (tokens)",
                                 title="mean mixing distance vs depth"),
                    figures, "mixing_distance_vs_depth")
    with right:
        st.markdown(sup.rows_to_markdown(sup.display_rows(rows), digits=2))
    return rows


def section_robustness(names: List[str], weights_used: Dict[str, str],
                       figures: Dict[str, object]) -> List[dict]:
    from probe import plots_robustness
    found, missing = [], []
    for name in names:
        folder = RUNS if weights_used[name] == "shipped" else RUNS / "random-weights"
        r = robustness_result(str(folder), name, results_stamp(folder, name))
        (found if r is not None else missing).append((name, r))
    if missing:
        cmds = "\n".join(f"python -m probe.robustness --model {n}" for n, _ in missing)
        st.info(f"No robustness results under `{RUNS}/{DATASET}/` for "
                f"{', '.join(n for n, _ in missing)}. The full run is:")
        st.code(cmds, language="bash")
        small = sup.SMALL_RUN
        label = (f"compute a small run now (n={small['n']}, attacks {', '.join(small['attacks'])} "
                 f"on {small['n_attack']}, {len(small['corruptions'])} corruptions x "
                 f"{len(small['severities'])} severities)")
        if st.button(label, key="run_small"):
            bar = st.progress(0.0, text="starting ...")
            try:
                for group in ("shipped", "random"):
                    todo = [n for n, _ in missing if weights_used[n] == group]
                    if not todo:
                        continue
                    folder = RUNS if group == "shipped" else RUNS / "random-weights"
                    sup.run_small_robustness(todo, folder, weights=group,
                                             on_progress=lambda f, t: bar.progress(f, text=t))
            except (ValueError, FileNotFoundError, RuntimeError, PermissionError) as e:
                st.error(f"small run failed: {e}")
            else:
                bar.progress(1.0, text="done")
                st.rerun()
    results = [r for _, r in found]
    if not results:
        return []
    stamps = tuple((n, weights_used[n], results_stamp(RUNS, n)) for n, _ in found)
    acc_rows = sup.robust_accuracy_rows(results)
    ce_rows = sup.corruption_error_rows(results)
    fig_col, table_col = st.columns([3, 2], gap="medium")
    with table_col:
        st.markdown("**robust accuracy vs epsilon**")
        st.markdown(sup.rows_to_markdown(acc_rows))
    with fig_col:
        if any(r["adversarial"] for r in results):
            show_figure(("robust_accuracy", stamps),
                        partial(plots_robustness.robust_accuracy_figure, results), figures,
                        "robust_accuracy")
    fig_col, table_col = st.columns([3, 2], gap="medium")
    with table_col:
        st.markdown("**corruption error (%), mean over severities**")
        st.markdown(sup.rows_to_markdown(ce_rows, digits=1))
    with fig_col:
        if any(r["corruptions"] for r in results):
            show_figure(("corruption_error", stamps),
                        partial(plots_robustness.corruption_figure, results), figures,
                        "corruption_error")
    return [dict(table="robust_accuracy", **r) for r in acc_rows] + \
           [dict(table="corruption_error", **r) for r in ce_rows]


def section_attributions(names: List[str], results: Dict[str, dict], weights: str,
                         method: Optional[str], api: sup.AttributionAPI,
                         figures: Dict[str, object]) -> None:
    if api.error or method is None:
        st.warning(f"Attributions are not available: {api.error}. This section fills in once "
                   f"`probe/attribution.py` provides `attribute(model, x, target, method)`.")
        return
    cols = st.columns(len(names))
    for col, name in zip(cols, names):
        res = results[name]
        model, _ = model_for(name, weights)
        target = res["pred"]
        with col:
            st.markdown(f"**{name}** · target *{model.classes[target]}*")
            try:
                out = attribution_for(res["key"], res["xp"], method, target)
            except ValueError as e:        # e.g. a ViT-only method on another family
                st.info(str(e).split(";")[0])
                continue
            except Exception as e:         # a failing method must not take the page down
                st.warning(f"{method} failed on {name}: {type(e).__name__}: {e}")
                continue
            show_figure(("attribution", name, res["key"], method, target),
                        partial(sup.attribution_figure, res["xp"][0], out["map"],
                                title=f"{name}: {method.replace('_', ' ')}"),
                        figures, f"attribution_{name}_{method}")
            if out["deletion_auc"] is not None:
                auc, rand = out["deletion_auc"]
                delta = None if rand is None else f"{auc - rand:+.3f} vs random order"
                st.metric("deletion AUC (lower is better)", f"{auc:.3f}", delta=delta,
                          delta_color="inverse")
            else:
                st.caption("deletion AUC: n/a" + (f" ({out['auc_error']})" if out["auc_error"]
                                                  else " (probe.attribution offers none)"))


def section_downloads(figures: Dict[str, object], metric_rows: List[dict],
                      robust_rows: List[dict]) -> None:
    st.caption("PDFs are rendered when you click.")
    cols = st.columns(3)
    for i, (name, build) in enumerate(figures.items()):
        cols[i % 3].download_button(f"{name}.pdf", partial(sup.build_pdf, build),
                                    file_name=f"{name.replace(':', '_')}.pdf",
                                    mime="application/pdf", key=f"dl_{name}", on_click="ignore")
    c1, c2 = st.columns(2)
    c1.download_button("mixing metrics (CSV)", sup.rows_to_csv(metric_rows),
                       file_name="mixing_metrics.csv", mime="text/csv", key="dl_metrics",
                       on_click="ignore")
    if robust_rows:
        c2.download_button("robustness tables (CSV)", sup.rows_to_csv(robust_rows),
                           file_name="robustness_tables.csv", mime="text/csv", key="dl_robust",
                           on_click="ignore")


# ----------------------------------------------------------------------------- page


def main() -> None:
    st.set_page_config(page_title="probe · compare", page_icon="🔬", layout="wide")
    threads = int(os.environ.get("PROBE_APP_THREADS", "0")) or min(4, os.cpu_count() or 1)
    torch.set_num_threads(threads)

    models = sidebar_models()
    choice = sidebar_input()
    perturbation = sidebar_perturbation()

    st.markdown("## probe · how architectures mix tokens")
    names: List[str] = models["names"]
    if models["dropped"]:
        st.warning(f"At most {MAX_MODELS} models: leaving out {', '.join(models['dropped'])}.")
    if len(names) < MIN_MODELS:
        st.info(f"Pick at least {MIN_MODELS} models in the sidebar to compare them.")
        if not names:
            return

    loaded, weights_used, notes = {}, {}, {}
    for name in list(names):
        try:
            model, note = model_for(name, models["weights"])
        except (ValueError, FileNotFoundError) as e:
            st.error(f"{name}: {e}")
            names.remove(name)
            continue
        if note:
            notes[name] = note
        loaded[name] = model
        weights_used[name] = "random" if (models["weights"] == "random" or note) else "shipped"
    zoo_missing = [n for n in notes if not n.startswith("timm:")]
    if zoo_missing:
        cmd = " && ".join(f"python -m probe.train --model {n} --out probe/weights"
                          for n in zoo_missing)
        st.warning(f"No usable shipped weights for **{', '.join(zoo_missing)}** yet: showing a "
                   f"seeded RANDOM initialisation. Make them with `{cmd}`.", icon="⚠️")
    for n in notes:
        if n.startswith("timm:"):
            st.caption(notes[n])
    if not names:
        return

    size = (max(m.input_size[0] for m in loaded.values()),
            max(m.input_size[1] for m in loaded.values()),
            max(m.input_size[2] for m in loaded.values()))
    base = base_input(choice, size)
    if base is None:
        return
    image, image_key, label, caption = base
    choice["preview"].image(image[0].permute(1, 2, 0).squeeze(-1).numpy(), width=112, clamp=True,
                     caption=caption)

    results: Dict[str, dict] = {}
    for name in list(names):
        try:
            results[name] = analyse(name, models["weights"], sup.weights_stamp(name), image_key,
                                    image, perturbation, label)
        except (ValueError, RuntimeError) as e:
            st.error(f"{name}: cannot analyse this input ({e})")
            names.remove(name)
    if not names:
        return

    depths = {n: len(results[n]["maps"]) for n in names}
    max_heads = max(m.heads for n in names for m in results[n]["maps"])
    mix = sidebar_mixing(depths, max_heads)
    api = sup.attribution_api()
    method = sidebar_attribution(api)

    label_name = data.FASHION_MNIST_CLASSES[label] if label is not None else None
    st.caption(f"Input: **{caption}** · perturbation: **{perturbation.label()}**. Left: how "
               f"strongly one token (cyan box, or the class token) draws on every input token; "
               f"right: the layer's whole token-mixing matrix (row = output token).")
    figures: Dict[str, object] = {}
    section_models(names, loaded, results, mix, perturbation, weights_used, label_name, figures)
    tab_depth, tab_rob, tab_attr, tab_dl = st.tabs(["Depth & metrics", "Robustness",
                                                    "Attributions", "Downloads"])
    with tab_depth:
        metric_rows = section_depth(names, results, mix, figures)
    with tab_rob:
        robust_rows = section_robustness(names, weights_used, figures)
    with tab_attr:
        section_attributions(names, results, models["weights"], method, api, figures)
    with tab_dl:
        section_downloads(figures, metric_rows, robust_rows)


if __name__ == "__main__":
    main()
