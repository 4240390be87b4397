"""Tests of the comparison app (apps/compare.py) and its helpers (probe/app_support.py).

- helpers: upload validation, fitting, perturbations, tables, PDF bytes;
- the page through ``streamlit.testing.v1.AppTest`` (default render, switching
  models, layers, views and perturbations, an upload refused with a message);
- one end-to-end run in a real headless Chromium (Debian ``chromium``) driven by
  ``playwright``: the page renders its first figure and the screenshot is not blank.
"""
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest
import torch

from probe import app_support as sup

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "compare.py"
CHROMIUM = "/usr/bin/chromium"


def _png(w: int, h: int, mode: str = "L") -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- helpers


def test_load_upload_png_and_jpeg_to_model_size():
    from PIL import Image
    x = sup.load_upload(_png(40, 30), (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 128 / 255), atol=1e-6)
    buf = io.BytesIO()
    Image.new("RGB", (50, 60), (255, 0, 0)).save(buf, format="JPEG")
    rgb = sup.load_upload(buf.getvalue(), (3, 32, 32))
    assert rgb.shape == (1, 3, 32, 32) and rgb[0, 0].mean() > 0.9 and rgb[0, 1].mean() < 0.1
    inv = sup.load_upload(_png(8, 8), (1, 8, 8), invert=True)
    assert torch.allclose(inv, 1 - torch.full_like(inv, 128 / 255), atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"hello, I am not an image", b"%PDF-1.7 ...",
                                     b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_load_upload_rejects_non_images_with_a_message(content):
    with pytest.raises(ValueError, match="PNG|JPEG|empty"):
        sup.load_upload(content)


def test_load_upload_rejects_oversized_dimensions_before_decoding():
    # a 1-bit PNG of 20000 x 20000 pixels is tiny on disk (a decompression bomb)
    from PIL import Image
    buf = io.BytesIO()
    Image.new("1", (20000, 20000), 0).save(buf, format="PNG", optimize=True)
    data = buf.getvalue()
    assert len(data) < 1_000_000
    with pytest.raises(ValueError, match="20000 x 20000 pixels"):
        sup.load_upload(data)
    with pytest.raises(ValueError, match="at most 100 pixels"):
        sup.load_upload(_png(11, 10), max_pixels=100)
    buf = io.BytesIO()                                   # JPEG: PIL reads the size from the header
    Image.new("L", (300, 200), 0).save(buf, format="JPEG")
    with pytest.raises(ValueError, match="300 x 200 pixels"):
        sup.load_upload(buf.getvalue(), max_pixels=1000)


def test_load_upload_rejects_too_many_bytes():
    with pytest.raises(ValueError, match="limit is 10 MB"):
        sup.load_upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * (sup.MAX_UPLOAD_BYTES + 1))


def test_fit_to_model_channels_and_size():
    x = torch.rand(2, 1, 28, 28)
    assert sup.fit_to_model(x, (3, 32, 32)).shape == (2, 3, 32, 32)
    assert sup.fit_to_model(torch.rand(1, 3, 20, 20), (1, 28, 28)).shape == (1, 1, 28, 28)
    assert sup.fit_to_model(x, (1, 28, 28)) is not None


def test_perturb_and_top_k():
    from probe import zoo
    torch.manual_seed(0)
    model = zoo.load("fnet", weights="random")
    x = torch.rand(1, 1, 28, 28)
    assert sup.perturb(model, x, sup.Perturbation()) is x
    xc = sup.perturb(model, x, sup.Perturbation("corruption", corruption="fog", severity=2))
    assert xc.shape == x.shape and not torch.equal(xc, x)
    xa = sup.perturb(model, x, sup.Perturbation("pgd", epsilon=0.05, steps=2))
    assert float((xa - x).abs().max()) <= 0.05 + 1e-6 and 0 <= float(xa.min())
    top = sup.top_k(model, x)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1] and top[0][0] in model.classes
    with pytest.raises(ValueError, match="unknown perturbation"):
        sup.perturb(model, x, sup.Perturbation("blur"))


def test_load_model_falls_back_to_random_with_a_note(monkeypatch, tmp_path):
    from probe import zoo
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)       # no shipped weights here
    model, note = sup.load_model("gmlp")
    assert model.name == "gmlp" and "RANDOM" in note and "python -m probe.train --model gmlp" in note
    with pytest.raises(ValueError, match="unknown model"):
        sup.load_model("nope")


def test_tables_csv_markdown_and_pdf():
    rows = [{"model": "a", "x": 0.5}, {"model": "b|c", "y": 2}]
    assert sup.rows_to_csv(rows).decode().splitlines() == ["model,x,y", "a,0.5,", "b|c,,2"]
    md = sup.rows_to_markdown(rows)
    assert md.splitlines()[0] == "| model | x | y |" and "b\\|c" in md
    results = [
        {"model": "m1", "clean_accuracy": 0.9, "mce": None,
         "adversarial": [{"attack": "pgd", "norm": "linf", "epsilon": 0.0, "robust_accuracy": 0.9},
                         {"attack": "pgd", "norm": "linf", "epsilon": 0.1, "robust_accuracy": 0.2}],
         "corruptions": [{"corruption": "fog", "severity": 1, "accuracy": 0.8},
                         {"corruption": "fog", "severity": 5, "accuracy": 0.4}]},
        {"model": "m2", "clean_accuracy": 0.8, "mce": 90.0, "adversarial": [], "corruptions": []},
    ]
    acc = sup.robust_accuracy_rows(results)
    assert [r["epsilon"] for r in acc] == [0.0, 0.1] and acc[1]["m1"] == 0.2
    ce = sup.corruption_error_rows(results)
    assert ce[0] == {"corruption": "clean error", "m1": 10.0, "m2": 20.0}
    assert ce[1] == {"corruption": "fog", "m1": 40.0}
    from probe.plots import new_figure
    fig = new_figure(2, 2)
    fig.subplots().plot([0, 1])
    assert sup.figure_pdf(fig).startswith(b"%PDF")


def test_mixing_panel_every_kind():
    from probe import mixing, zoo
    x = torch.rand(1, 1, 28, 28)
    for name in ("vit",):
        model = zoo.load(name, weights="random")
        m = mixing.extract(model, x)[-1]
        one = sup.select_head(m, 1)
        assert one.heads == (1 if m.heads > 1 else m.heads)
        fig = sup.mixing_panel(x[0], one, title=name)
        assert len(fig.axes) == 3                              # image, matrix, colour bar


def test_attribution_api_is_defensive(monkeypatch):
    api = sup.attribution_api()
    assert api.error is None or "probe.attribution" in api.error
    if api.error is None:
        assert api.methods and callable(api.module.attribute)
    monkeypatch.setitem(sys.modules, "probe.attribution", None)   # the import now fails
    broken = sup.attribution_api()
    assert broken.error and "not available" in broken.error
    fake = types.ModuleType("probe.attribution")                  # a module without attribute()
    monkeypatch.setitem(sys.modules, "probe.attribution", fake)
    assert "no attribute() function" in sup.attribution_api().error


def test_app_without_attribution_module_says_so(app_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "probe.attribution", None)
    at = _app().run()
    _no_exception(at)
    assert any("Attributions are not available" in w.value for w in at.warning)


# ----------------------------------------------------------------------------- AppTest


@pytest.fixture()
def app_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBE_APP_THREADS", "1")
    monkeypatch.setenv("PROBE_RUNS", str(tmp_path / "runs"))
    yield tmp_path
    torch.set_num_threads(min(2, os.cpu_count() or 1))     # the app sets threads in-process


def _app():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(str(APP), default_timeout=180)


def _no_exception(at):
    assert not at.exception, [e.message for e in at.exception]


def test_app_default_render(app_env):
    at = _app().run()
    _no_exception(at)
    assert [t.label for t in at.tabs] == ["Depth & metrics", "Robustness", "Attributions",
                                          "Downloads"]
    assert {s.key for s in at.slider} >= {"layer_mixer", "layer_vit", "layer_cnn"}
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
    # no results in the empty runs folder: the command that makes them and the button
    assert any("python -m probe.robustness --model mixer" in c.value for c in at.code)
    assert any(b.key == "run_small" for b in at.button)
    assert any(d.key == "dl_metrics" for d in at.get("download_button"))


def test_app_switch_models_layers_views_and_perturbations(app_env):
    at = _app().run()
    at.slider(key="layer_mixer").set_value(3).run()
    _no_exception(at)
    at.multiselect(key="models").set_value(["resmlp", "fnet", "gmlp", "vit"]).run()
    _no_exception(at)
    assert {s.key for s in at.slider} >= {"layer_resmlp", "layer_fnet", "layer_gmlp", "layer_vit"}
    at.slider(key="layer_fnet").set_value(0)
    at.radio(key="view").set_value("templates")
    at.selectbox(key="head").set_value(2).run()
    _no_exception(at)
    at.multiselect(key="models").set_value(["fnet", "cnn"])
    at.radio(key="perturbation").set_value("corruption").run()
    at.selectbox(key="corruption").set_value("fog")
    at.slider(key="severity").set_value(5).run()
    _no_exception(at)
    assert any("map change" in c.value for c in at.caption)
    at.radio(key="perturbation").set_value("pgd").run()
    at.select_slider(key="epsilon").set_value(0.1)
    at.number_input(key="index").set_value(7).run()
    _no_exception(at)
    at.multiselect(key="models").set_value(["vit"]).run()     # fewer than 2: a hint, no crash
    _no_exception(at)
    assert any("at least 2" in i.value for i in at.info)


def test_app_unknown_timm_model_is_a_message(app_env):
    at = _app().run()
    at.text_input(key="timm").set_value("timm:not_a_real_arch").run()
    _no_exception(at)
    assert any("unknown timm architecture" in e.value for e in at.error)


def test_app_upload_source_without_file(app_env):
    # AppTest (streamlit 1.67) cannot set a file_uploader's value; bad uploads are
    # tested on probe.app_support.load_upload directly (above).
    at = _app().run()
    at.radio(key="source").set_value("upload").run()
    _no_exception(at)
    assert any("Upload a PNG or JPEG" in i.value for i in at.info)


def test_app_small_robustness_button(app_env, monkeypatch):
    """The button runs a (here: tiny) robustness run and the tables appear."""
    monkeypatch.setattr(sup, "SMALL_RUN", dict(n=8, n_attack=4, attacks=["fgsm"],
                                                epsilons=[0.0, 0.1], corruptions=["contrast"],
                                                severities=[1], heatmap=False))
    at = _app().run()
    at.radio(key="weights").set_value("random").run()      # independent of the shipped files
    at.multiselect(key="models").set_value(["resmlp", "fnet"]).run()
    at.button(key="run_small").click().run()
    _no_exception(at)
    runs = Path(os.environ["PROBE_RUNS"])
    assert list(runs.rglob("robustness.json")), "the small run wrote no results"
    at.run()
    _no_exception(at)
    assert not any(b.key == "run_small" for b in at.button)
    assert any("fgsm" in m.value for m in at.markdown)


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
