"""Tests of the comparison app (apps/compare.py) and the library calls it is made of.

- library: perturbations and their token mixing (:mod:`probe.perturbations`), model
  loading with a RANDOM fallback and cache stamps (:mod:`probe.zoo`, :mod:`probe.robustness`),
  the app's panels and figure bytes without pyplot (:mod:`probe.plots`,
  :mod:`probe.plots_robustness`), ``robustness.run(..., on_progress=...)``; uploads and
  tables are tested in ``test_data.py`` and ``test_results.py``;
- the page through ``streamlit.testing.v1.AppTest`` (default render, switching
  models, layers, views and perturbations, attributions, the small run, threads set once);
- one end-to-end run in a real headless Chromium (Debian ``chromium``) driven by
  ``playwright``: the page renders its figures, a PDF downloads, a bad upload is refused.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from probe import corruptions, data, mixing, plots, plots_robustness, robustness, zoo
from probe.perturbations import Perturbation, analyse_input, map_change, perturb, top_k

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "compare.py"
CHROMIUM = "/usr/bin/chromium"


# ----------------------------------------------------------------------------- library


def test_perturb_and_top_k():
    model = zoo.load("fnet", weights="random")
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert perturb(model, x, Perturbation()) is x
    spec = Perturbation("corruption", corruption="fog", severity=2, seed=5)
    expected = corruptions.corrupt(x, "fog", 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(perturb(model, x, spec), expected)
    pgd = Perturbation("pgd", epsilon=0.05, steps=2)
    xa = perturb(model, x, pgd)
    assert 0.0 < float((xa - x).abs().max()) <= 0.05 + 1e-6 and 0 <= float(xa.min())
    assert torch.equal(perturb(model, x, pgd), xa)                   # seeded by spec.seed
    with torch.no_grad():
        p = torch.softmax(model(x)[0], 0)
    top = top_k(model, x)
    best = p.topk(3)
    assert [c for c, _ in top] == [model.classes[int(i)] for i in best.indices]
    assert [v for _, v in top] == pytest.approx(best.values.tolist())
    with pytest.raises(ValueError, match="unknown perturbation 'blur'"):
        perturb(model, x, Perturbation("blur"))


def test_analyse_input_and_map_change():
    image = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    vit = zoo.load("vit", weights="random")
    clean = analyse_input(vit, image)
    assert clean.x.shape == (1, 1, 28, 28) and clean.perturbed is clean.x
    assert torch.equal(clean.x, data.fit_to_model(image, (1, 28, 28)))
    assert clean.maps is clean.maps_clean and len(clean.maps) == 4
    assert [s["depth"] for s in clean.summary] == [0, 1, 2, 3]
    assert clean.map_change(0) == 0.0
    fog = Perturbation("corruption", corruption="fog", severity=5)
    hit = analyse_input(vit, image, fog)
    assert not torch.equal(hit.perturbed, hit.x)
    with torch.no_grad():
        assert hit.prediction == int(vit(hit.perturbed).argmax(1)[0])
    assert hit.map_change(3) > 0.0                                   # attention adapts to the input
    fnet = analyse_input(zoo.load("fnet", weights="random"), image, fog)
    assert [fnet.map_change(d) for d in range(len(fnet.maps))] == [0.0] * len(fnet.maps)
    m = clean.maps[0]
    assert map_change(replace(m, matrix=1.1 * m.matrix), m) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="same layer"):
        map_change(replace(m, matrix=m.matrix[..., :5]), m)


def test_analyse_input_attacks_the_true_label_only_for_the_same_classes(monkeypatch):
    from probe import perturbations
    model = zoo.load("cnn", weights="random")
    attacked = []
    monkeypatch.setattr(perturbations.attacks, "pgd_linf",
                        lambda model, x, y, eps, steps: attacked.append(int(y[0])) or x)
    image = torch.rand(1, 1, 28, 28)
    pgd = Perturbation("pgd", epsilon=0.05, steps=1)
    analyse_input(model, image, pgd, label=7, label_classes=data.FASHION_MNIST_CLASSES)
    analyse_input(model, image, pgd, label=7, label_classes=["a", "b"])
    with torch.no_grad():
        clean_prediction = int(model(image).argmax(1)[0])
    assert attacked == [7, clean_prediction]


def test_load_or_random_says_random(monkeypatch, tmp_path):
    model, note = zoo.load_or_random("mixer")
    assert model.name == "mixer" and note is None
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)       # no shipped weights here
    model, note = zoo.load_or_random("gmlp")
    assert model.name == "gmlp" and "RANDOM" in note and "python -m probe.train --model gmlp" in note
    assert torch.equal(next(model.parameters()), next(zoo.load("gmlp", weights="random").parameters()))
    assert zoo.load_or_random("gmlp", weights="random")[1] is None
    _, note = zoo.load_or_random("timm:test_vit")
    assert note == "timm:test_vit: RANDOM initialisation (timm weights are never downloaded)"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        zoo.load_or_random("nope")
    with pytest.raises(ValueError, match="'shipped' or 'random'"):
        zoo.load_or_random("mixer", weights="best")


def test_weights_and_results_stamps(monkeypatch, tmp_path):
    shipped = zoo.WEIGHTS_DIR / "mixer.safetensors"
    assert zoo.weights_stamp("mixer") == shipped.stat().st_mtime
    assert zoo.weights_stamp("timm:resnet18") is None
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    assert zoo.weights_stamp("mixer") is None
    assert robustness.results_stamp(tmp_path, "fashion-mnist", "timm:resnet18") is None
    path = robustness.results_folder(tmp_path, "fashion-mnist", "timm:resnet18") / "robustness.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    assert robustness.results_stamp(tmp_path, "fashion-mnist", "timm:resnet18") == path.stat().st_mtime


def test_run_reports_every_unit_to_on_progress(tmp_path):
    cfg = robustness.small_config("resmlp", weights="random", n=8, n_attack=4, attacks=["fgsm"],
                                  epsilons=[0.0, 0.1], corruptions=["contrast"], severities=[1, 3])
    units = ["baseline cnn: clean", "baseline cnn: corruption:contrast@1",
             "baseline cnn: corruption:contrast@3", "resmlp: clean", "resmlp: attack:fgsm@0",
             "resmlp: attack:fgsm@0.1", "resmlp: corruption:contrast@1",
             "resmlp: corruption:contrast@3"]
    calls = []
    first = robustness.run(cfg, out=tmp_path, progress=False,
                           on_progress=lambda *a: calls.append(a))
    assert calls == [(i + 1, len(units), u) for i, u in enumerate(units)]
    assert calls[-1][0] == calls[-1][1] and len(calls) == len(units)
    resumed = []                                             # everything resumed from disk
    again = robustness.run(cfg, out=tmp_path, progress=False,
                           on_progress=lambda *a: resumed.append(a))
    assert resumed == calls and again == first


def test_small_config():
    cfg = robustness.small_config("vit", weights="random", n=10)
    assert (cfg.model, cfg.weights, cfg.n) == ("vit", "random", 10)
    assert cfg.attacks == robustness.SMALL_RUN["attacks"] and cfg.heatmap is False


def test_mixing_panel_every_family():
    x = torch.rand(1, 1, 28, 28)
    app_source = APP.read_text()
    assert "mixing.KIND_LABELS" in app_source                  # the app captions kinds from there
    for name in zoo.names():                                   # every registered family
        assert zoo.families()[name].mixing_kind in mixing.KIND_LABELS, name
        model = zoo.load(name, weights="random")
        m = mixing.extract(model, x)[-1]
        one = plots.select_head(m, 1)
        if m.heads > 1:
            assert one.heads == 1 and torch.equal(one.matrix, m.matrix[:, 1:2])
        else:
            assert one is m
        assert plots.select_head(m, None) is m and plots.select_head(m, 99) is m
        fig = plots.mixing_panel(x[0], one, title=name)
        assert len(fig.axes) == 3, name                       # image, matrix, colour bar
        assert fig.axes[1].get_images()[0].get_array().shape == tuple(m.matrix.shape[-2:])
        assert plots.figure_bytes(fig, "png").startswith(b"\x89PNG"), name


def test_default_query():
    vit = mixing.extract(zoo.load("vit", weights="random"), torch.rand(1, 1, 28, 28))[0]
    mixer = mixing.extract(zoo.load("mixer", weights="random"), torch.rand(1, 1, 28, 28))[0]
    assert plots.default_query(vit) == 0                       # the class token
    assert plots.default_query(mixer) == 3 * 7 + 3             # the centre of the 7 x 7 grid


def test_attribution_figure_and_bytes():
    image = torch.rand(1, 28, 28)
    fig = plots.attribution_figure(image, torch.randn(7, 7), title="saliency")
    overlay = fig.axes[0].get_images()[1]
    assert overlay.get_array().shape == (28, 28)               # resized to the image
    assert plots.figure_pdf(fig).startswith(b"%PDF")
    with pytest.raises(ValueError, match="one \\[H, W\\] map"):
        plots.attribution_figure(image, torch.randn(1, 28, 28))
    with pytest.raises(ValueError, match="'pdf' or 'png'"):
        plots.figure_bytes(fig, "svg")


def test_figures_need_no_pyplot(monkeypatch, tmp_path):
    """The app draws from Streamlit's script thread: no figure may go through pyplot."""
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("pyplot used")

    for name in ("figure", "subplots", "close", "get_cmap"):
        monkeypatch.setattr(plt, name, refuse)
    result = {"model": "m", "data": "fashion-mnist", "n": 8, "n_attack": 4, "clean_accuracy": 0.5,
              "mce": 100.0, "relative_mce": 90.0, "baseline": "cnn",
              "adversarial": [{"attack": "fgsm", "norm": "linf", "epsilon": e, "robust_accuracy": a,
                               "ci_low": 0.0, "ci_high": 1.0} for e, a in ((0.0, 0.5), (0.1, 0.25))],
              "corruptions": [{"corruption": "fog", "severity": 1, "accuracy": 0.5}],
              "fourier_heatmap": {"epsilon": 3.0, "n": 4, "error": [[0.1, 0.2], [0.3, 0.4]]}}
    paths = plots_robustness.robustness_figures([result], tmp_path)
    assert [p.name for p in paths] == list(plots_robustness.FIGURES)
    assert all(p.read_bytes().startswith(b"%PDF") for p in paths)
    m = mixing.extract(zoo.load("vit", weights="random"), torch.rand(1, 1, 28, 28))[0]
    assert plots.figure_pdf(plots.mixing_panel(torch.rand(1, 28, 28), m)).startswith(b"%PDF")


# ----------------------------------------------------------------------------- AppTest


@pytest.fixture()
def app_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBE_APP_THREADS", "1")
    monkeypatch.setenv("PROBE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PROBE_CLAIMS", str(tmp_path / "claims"))
    yield tmp_path


def _app():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(str(APP), default_timeout=180)


def _no_exception(at):
    assert not at.exception, [e.message for e in at.exception]


def _claim(cid: str, verdict: str, effect: float, low: float, high: float) -> dict:
    return {"id": cid, "claim": f"claim {cid}", "verdict": verdict, "effect": effect,
            "ci_low": low, "ci_high": high, "margin": 0.01, "confidence": 0.95,
            "per_family": {"mixer": {"effect": 0.1, "ci_low": 0.05, "ci_high": 0.15},
                           "fnet": {"effect": -0.1, "ci_low": -0.2, "ci_high": -0.02}},
            "sensitivity": {"half": verdict, "double": "inconclusive"}}


def test_app_claims_tab_shows_the_committed_verdicts(app_env):
    folder = app_env / "claims"
    folder.mkdir()
    (folder / "robustness_comparison.json").write_text(json.dumps({
        "models": [], "checks": [{"id": "patch_embed_is_conv", "what": "w", "max_abs_error": 1e-7,
                                  "tolerance": 1e-4, "holds": True}],
        "claims": [_claim("a", "supported", 0.05, 0.03, 0.07),
                   _claim("b", "opposite", -0.05, -0.07, -0.03)]}))
    (folder / "old_format.json").write_text(json.dumps({"rows": []}))    # skipped, no crash
    at = _app().run()
    _no_exception(at)
    tables = [d.value for d in at.dataframe]
    claims_table = next(t for t in tables if "verdict" in t.columns)
    assert list(claims_table["verdict"]) == ["supported", "opposite"]
    assert any("2 claims" in m.value and "1 supported" in m.value and "1 opposite" in m.value
               for m in at.markdown)
    assert any("patch_embed_is_conv holds" in c.value for c in at.caption)
    assert len(at.get("image")) == 9                      # the forest plot, beside the default 8


def test_depth_plot_overlays_init_and_references():
    fig = plots.plot_by_depth({"mixer": [3.0, 3.2], "cnn": [0.5, 1.0, 2.0]}, ylabel="d",
                              dashed={"mixer": [3.5, 3.6]}, hlines={"uniform": 3.6, "local": 1.1})
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["mixer", "mixer (init)", "cnn", "uniform", "local"]
    assert ax.get_lines()[1].get_linestyle() == "--"
    assert ax.get_lines()[1].get_color() == ax.get_lines()[0].get_color()
    assert list(ax.get_lines()[3].get_ydata()) == [3.6, 3.6]


def test_app_overlays_initialisation_and_references(app_env):
    at = _app().run()
    _no_exception(at)
    n_images = len(at.get("image"))
    at.toggle(key="controls").set_value(True).run()
    _no_exception(at)
    assert len(at.get("image")) == n_images               # the depth figure redrawn, not added
    from apps import compare
    from probe import mixing
    maps = mixing.extract(zoo.load("mixer"), torch.rand(1, 1, 28, 28))
    refs = compare.reference_distances(maps[0])
    assert refs["uniform mixing (7x7 tokens)"] > refs["local mixing (7x7 tokens)"] > 0


def test_app_default_render(app_env):
    at = _app().run()
    _no_exception(at)
    assert [t.label for t in at.tabs] == ["Depth & metrics", "Robustness", "Attributions",
                                          "Claims", "Downloads"]
    # no claim results: the Claims tab says how they are made
    assert any("make cells-full" in i.value for i in at.info)
    assert {s.key for s in at.slider} == {"layer_mixer", "layer_vit", "layer_cnn"}
    # the input preview, 3 mixing panels, the depth plot and 3 attribution maps
    assert len(at.get("image")) == 8
    # no results in the empty runs folder: the command that makes them and the button
    assert any("python -m probe.robustness --model mixer" in c.value for c in at.code)
    assert any(b.key == "run_small" for b in at.button)
    assert {d.key for d in at.get("download_button")} >= {"dl_metrics", "dl_mixing_mixer_layer2"}
    assert not at.warning                                       # shipped weights: no RANDOM note


def test_app_sets_torch_threads_once_per_process(app_env, monkeypatch):
    import streamlit as st
    st.cache_resource.clear()
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    at = _app().run()
    at.slider(key="layer_mixer").set_value(1).run()             # a rerun
    _app().run()                                                # another session
    _no_exception(at)
    assert calls == [1]                                         # PROBE_APP_THREADS=1, once


def test_app_switch_models_layers_views_and_perturbations(app_env):
    at = _app().run()
    at.slider(key="layer_mixer").set_value(3).run()
    _no_exception(at)
    at.multiselect(key="models").set_value(["resmlp", "fnet", "gmlp", "vit"]).run()
    _no_exception(at)
    assert {s.key for s in at.slider} == {"layer_resmlp", "layer_fnet", "layer_gmlp", "layer_vit"}
    at.slider(key="layer_fnet").set_value(0)
    at.radio(key="view").set_value("templates")
    at.selectbox(key="head").set_value(2).run()
    _no_exception(at)
    at.multiselect(key="models").set_value(["fnet", "vit"])
    at.radio(key="perturbation").set_value("corruption").run()
    at.selectbox(key="corruption").set_value("fog")
    at.slider(key="severity").set_value(5).run()
    _no_exception(at)
    changes = [c.value for c in at.caption if "map change" in c.value]
    assert len(changes) == 2
    assert "map change **0.0%** (static map)" in changes[0]      # FNet's Fourier mixing is fixed
    assert "(static map)" not in changes[1] and "map change **0.0%**" not in changes[1]
    assert [e.label for e in at.expander] == ["mixing on the clean input"]   # only for ViT
    at.radio(key="perturbation").set_value("pgd").run()
    at.select_slider(key="epsilon").set_value(0.1)
    at.number_input(key="index").set_value(7).run()
    _no_exception(at)
    at.multiselect(key="models").set_value(["vit"]).run()     # fewer than 2: a hint, no crash
    _no_exception(at)
    assert any("at least 2" in i.value for i in at.info)


def test_app_attributions(app_env):
    at = _app().run()
    metrics = [m for m in at.metric if m.label == "deletion AUC (lower is better)"]
    assert len(metrics) == 3 and all(0.0 <= float(m.value) <= 1.0 for m in metrics)
    at.multiselect(key="models").set_value(["cnn", "vit"])
    at.selectbox(key="attr_method").set_value("attention_rollout").run()
    _no_exception(at)
    assert len([m for m in at.metric if m.label.startswith("deletion AUC")]) == 1   # ViT only
    assert any("applies only to the families vit" in i.value for i in at.info)


def test_app_random_weights_fallback_is_announced(app_env, monkeypatch):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", app_env)          # no shipped weights here
    at = _app().run()
    _no_exception(at)
    assert len(at.warning) == 1 and "RANDOM" in at.warning[0].value
    assert "python -m probe.train --model mixer" in at.warning[0].value
    assert any("random weights" in c.value for c in at.caption)


def test_app_unknown_timm_model_is_a_message(app_env):
    at = _app().run()
    at.text_input(key="timm").set_value("timm:not_a_real_arch").run()
    _no_exception(at)
    assert any("unknown timm architecture" in e.value for e in at.error)


def test_app_timm_model_with_random_weights(app_env):
    """A timm model beside a zoo model: its mixing at 224 px and its attribution map render."""
    at = _app()
    at.session_state["models"] = ["fnet"]
    at.session_state["timm"] = "timm:mixer_s32_224"          # 7x7 tokens: a few seconds
    at.session_state["timm_weights"] = "random"
    at.session_state["attr_method"] = "saliency"
    at.run()
    _no_exception(at)
    assert not at.error
    assert {s.key for s in at.slider} == {"layer_fnet", "layer_timm:mixer_s32_224"}
    captions = [c.value for c in at.caption]
    assert any("token-mixing MLP (Jacobian) · layer 4 of 8" in c and "input 3x224x224" in c
               for c in captions), captions
    assert any("timm:mixer_s32_224: RANDOM initialisation" in c for c in captions)
    assert len([m for m in at.metric if m.label.startswith("deletion AUC")]) == 2
    at.radio(key="timm_weights").set_value("file").run()      # no path yet: a hint, no crash
    _no_exception(at)
    assert any("enter the path of a weights file" in i.value for i in at.info)


def test_app_upload_source_without_file(app_env):
    # AppTest (streamlit 1.67) cannot set a file_uploader's value; bad uploads are
    # tested on probe.data.load_upload (test_data.py) and in the browser (below).
    at = _app().run()
    at.radio(key="source").set_value("upload").run()
    _no_exception(at)
    assert any("Upload a PNG or JPEG" in i.value for i in at.info)


def test_app_small_robustness_button(app_env, monkeypatch):
    """The button runs a (here: tiny) robustness run and the tables appear."""
    monkeypatch.setattr(robustness, "SMALL_RUN", dict(n=8, n_attack=4, attacks=["fgsm"],
                                                      epsilons=[0.0, 0.1], corruptions=["contrast"],
                                                      severities=[1], heatmap=False))
    at = _app().run()
    at.radio(key="weights").set_value("random").run()      # independent of the shipped files
    at.multiselect(key="models").set_value(["resmlp", "fnet"]).run()
    at.button(key="run_small").click().run()
    _no_exception(at)
    runs = Path(os.environ["PROBE_RUNS"]) / "random-weights" / "fashion-mnist"
    assert sorted(p.parent.name for p in runs.rglob("robustness.json")) == ["fnet", "resmlp"]
    at.run()
    _no_exception(at)
    assert not any(b.key == "run_small" for b in at.button)
    assert any(m.value.startswith("| attack | norm | epsilon | resmlp | fnet |") for m in at.markdown)


# ----------------------------------------------------------------------------- real browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> bool:
    import urllib.request
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason=f"{CHROMIUM} is missing (install: apt-get install -y chromium)")
def test_app_in_headless_chromium(tmp_path):
    pw = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    port = _free_port()
    env = dict(os.environ, PROBE_APP_THREADS="1", PROBE_RUNS=str(tmp_path / "runs"))
    env.pop("PYTHONPATH", None)                  # the app finds probe by itself
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    shot = Path(os.environ.get("PROBE_APP_SCREENSHOT", tmp_path / "compare.png"))
    try:
        url = f"http://127.0.0.1:{port}"
        assert _wait_http(url + "/_stcore/health", 30), "streamlit did not come up"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
        with pw.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=flags, headless=True,
                accept_downloads=True, viewport={"width": 1600, "height": 1000})
            try:
                page = browser.new_page()
                page.goto(url, wait_until="domcontentloaded", timeout=20_000)
                page.wait_for_selector("[data-testid='stImage'] img, [data-testid='stPyplot'] img,"
                                       " [data-testid='stImageContainer'] img", timeout=45_000)
                page.wait_for_function(
                    "document.querySelectorAll(\"[data-testid='stPyplot'] img,"
                    " [data-testid='stImage'] img\").length >= 4", timeout=45_000)
                assert page.locator("[data-testid='stException']").count() == 0
                page.wait_for_timeout(800)                      # let images paint
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=False)
                # a figure downloads as a PDF rendered on click
                page.get_by_role("tab", name="Downloads").click()
                button = page.locator("[data-testid='stDownloadButton'] button").first
                button.wait_for(timeout=20_000)
                with page.expect_download(timeout=30_000) as download:
                    button.click()
                assert download.value.suggested_filename.endswith(".pdf")
                assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
                # a bad upload (AppTest cannot drive file_uploader; the browser can)
                bad = tmp_path / "not_an_image.png"
                bad.write_bytes(b"this is not a PNG")
                page.get_by_text("upload", exact=True).click()
                page.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(
                    str(bad), timeout=20_000)
                error = page.locator("[data-testid='stAlertContentError']").first
                error.wait_for(timeout=20_000)
                assert "not a PNG or JPEG" in error.inner_text()
                assert page.locator("[data-testid='stException']").count() == 0
            finally:
                browser.close()
        from PIL import Image, ImageStat
        img = Image.open(shot).convert("L")
        assert img.size[0] >= 1000
        std = ImageStat.Stat(img).stddev[0]
        assert std > 20, f"screenshot looks blank (pixel std {std:.1f})"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(profile, ignore_errors=True)
