import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from probe import attacks, data, robustness, zoo
from probe.robustness import RunConfig

MODEL = "fnet"   # the fastest shipped model


def _cfg(**kw):
    base = dict(model=MODEL, n=60, n_attack=20, n_heatmap=8, attacks=["fgsm", "pgd"],
                epsilons=[0.0, 0.03, 0.1], l2_epsilons=[0.0, 1.0], steps=5,
                corruptions=["gaussian_noise", "contrast"], severities=[1, 5], heatmap=True,
                baseline="cnn")
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = robustness.run(_cfg(), out=out, progress=False)
    return out, result


def test_json_schema_and_files(finished):
    out, result = finished
    folder = out / "fashion-mnist" / MODEL
    stored = json.loads((folder / "robustness.json").read_text())
    assert stored == json.loads(json.dumps(result))
    for key in ("schema_version", "model", "data", "n", "seed", "clean_accuracy", "adversarial",
                "corruptions", "mce", "relative_mce", "fourier_heatmap"):
        assert key in stored, key
    assert stored["schema_version"] == robustness.SCHEMA_VERSION and stored["n"] == 60
    for row in stored["adversarial"]:
        assert set(row) >= {"attack", "norm", "epsilon", "robust_accuracy", "ci_low", "ci_high"}
        assert row["ci_low"] <= row["robust_accuracy"] <= row["ci_high"]
    assert len(stored["adversarial"]) == 6
    assert {(r["corruption"], r["severity"]) for r in stored["corruptions"]} == {
        ("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5)}
    for row in stored["corruptions"]:
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    assert stored["mce"] is not None and stored["mce"] > 0
    heat = stored["fourier_heatmap"]
    assert len(heat["error"]) == 28 and len(heat["error"][0]) == 28
    assert all(0 <= v <= 1 for row in heat["error"] for v in row)
    # k and -k are the same basis image, so the heat map is point-symmetric about the centre
    grid = torch.tensor(heat["error"])
    assert torch.equal(grid[1:, 1:], grid[1:, 1:].flip(0).flip(1))
    csv = (folder / "robustness.csv").read_text().splitlines()
    assert csv[0].startswith("kind,name") and len(csv) == 1 + 1 + 6 + 4 + 2
    for pdf in ("robust_accuracy.pdf", "corruption_error.pdf", "fourier_heatmap.pdf"):
        assert (folder / pdf).read_bytes()[:4] == b"%PDF"


def test_eps_zero_is_clean_accuracy_and_pgd_beats_fgsm(finished):
    _, result = finished
    model = zoo.load(MODEL)
    x, y = data.as_tensors(data.load("fashion-mnist", "test", n=60, seed=0))
    clean_attacked = float((model(x[:20]).argmax(1) == y[:20]).float().mean())
    rows = {(r["attack"], r["epsilon"]): r["robust_accuracy"] for r in result["adversarial"]}
    assert rows[("fgsm", 0.0)] == rows[("pgd", 0.0)] == pytest.approx(clean_attacked)
    assert result["clean_accuracy"] == pytest.approx(float((model(x).argmax(1) == y).float().mean()))
    for eps in (0.03, 0.1):
        assert rows[("pgd", eps)] <= rows[("fgsm", eps)]
    for attack in ("fgsm", "pgd"):   # an attack that does nothing would fail here
        assert rows[(attack, 0.1)] < rows[(attack, 0.0)]
    assert rows[("pgd", 0.1)] < rows[("fgsm", 0.1)] or rows[("pgd", 0.1)] == 0.0
    acc = {(r["corruption"], r["severity"]): r["accuracy"] for r in result["corruptions"]}
    assert acc[("gaussian_noise", 5)] < acc[("gaussian_noise", 1)]
    assert acc[("contrast", 5)] < acc[("contrast", 1)]


def test_resume_after_interruption_gives_identical_json(tmp_path, finished, monkeypatch):
    out_ref, reference = finished
    calls = {"n": 0}
    real = robustness._run_unit

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:   # 5 baseline units (clean + 2x2 corruptions), then 2 of ours
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(robustness, "_run_unit", dying)
    with pytest.raises(KeyboardInterrupt):
        robustness.run(_cfg(), out=tmp_path, progress=False)
    units = json.loads((tmp_path / "fashion-mnist" / MODEL / "robustness.units.json").read_text())
    assert 0 < len(units["units"]) < 10
    assert not (tmp_path / "fashion-mnist" / MODEL / "robustness.json").exists()
    monkeypatch.setattr(robustness, "_run_unit", real)
    resumed = robustness.run(_cfg(), out=tmp_path, progress=False)
    assert resumed == reference
    assert ((tmp_path / "fashion-mnist" / MODEL / "robustness.json").read_text()
            == (out_ref / "fashion-mnist" / MODEL / "robustness.json").read_text())


def test_stored_units_are_reused_and_fresh_starts_over(tmp_path, finished, monkeypatch):
    out_ref, _ = finished
    shutil.copytree(out_ref, tmp_path / "r")
    ran = []
    real = robustness._run_unit
    monkeypatch.setattr(robustness, "_run_unit", lambda *a, **k: ran.append(a[2]) or real(*a, **k))
    robustness.run(_cfg(), out=tmp_path / "r", progress=False)
    assert ran == []
    robustness.run(_cfg(corruptions=[], heatmap=False, attacks=["fgsm"]), out=tmp_path / "r",
                   progress=False, fresh=True)
    assert ran == ["clean", "attack:fgsm@0", "attack:fgsm@0.03", "attack:fgsm@0.1"]


def test_half_written_units_file_is_ignored(tmp_path, finished):
    _, reference = finished
    folder = tmp_path / "fashion-mnist" / MODEL
    folder.mkdir(parents=True)
    (folder / "robustness.units.json").write_text('{"identity": {"model": "fn')
    result = robustness.run(_cfg(attacks=[], corruptions=[], heatmap=False), out=tmp_path,
                            progress=False)
    assert result["clean_accuracy"] == reference["clean_accuracy"]
    stored = json.loads((folder / "robustness.units.json").read_text())
    assert set(stored["units"]) == {"clean"}


def test_apgd_follows_the_seed():
    """APGD's own random start is seeded by ``seed`` (it used to be reseeded with 0)."""
    model = zoo.load(MODEL)
    x, y = data.as_tensors(data.load("synthetic", "test", n=8, seed=0, input_size=(1, 28, 28)))
    runner = attacks.get("apgd-ce").runner
    a0 = runner(model, x, y, [0.05], 3, 0)[0]
    a0_again = runner(model, x, y, [0.05], 3, 0)[0]
    a1 = runner(model, x, y, [0.05], 3, 1)[0]
    assert torch.equal(a0, a0_again)
    assert not torch.equal(a0, a1)


def test_our_pgd_matches_foolbox():
    model = zoo.load(MODEL)
    x, y = data.as_tensors(data.load("fashion-mnist", "test", n=40, seed=1))
    ours = attacks.run(model, x, y, "pgd", [0.02, 0.05], steps=7, seed=11)
    ref = attacks.run(model, x, y, "pgd-foolbox", [0.02, 0.05], steps=7, seed=11)
    assert torch.equal(ours.sum(1), ref.sum(1))
    torch.manual_seed(3)
    a = attacks.pgd_linf(model, x, y, 0.05, steps=7)
    import foolbox as fb
    torch.manual_seed(3)
    _, b, _ = fb.attacks.LinfPGD(steps=7, abs_stepsize=2.5 * 0.05 / 7)(
        fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=0.05)
    assert (a - b).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["fgsm", "pgd", "pgd-l2", "deepfool-l2", "cw-l2", "apgd-ce"])
def test_every_attack_stays_in_budget_and_hurts(name):
    model = zoo.load(MODEL)
    x, y = data.as_tensors(data.load("fashion-mnist", "test", n=12, seed=2))
    eps = [0.0, 0.1] if attacks.get(name).norm == "linf" else [0.0, 2.0]
    correct = attacks.run(model, x, y, name, eps, steps=5)   # run() checks the budget itself
    assert correct.shape == (2, 12)
    assert correct[1].sum() <= correct[0].sum()


def test_budget_check_rejects_out_of_ball_examples():
    x = torch.full((2, 1, 4, 4), 0.5)
    attacks.check_budget(x, x + 0.1, 0.1, "linf")
    with pytest.raises(RuntimeError, match="ball"):
        attacks.check_budget(x, x + 0.11, 0.1, "linf")
    with pytest.raises(RuntimeError, match="box"):
        attacks.check_budget(x, x + 0.6, 1.0, "linf")
    with pytest.raises(RuntimeError, match="ball"):
        attacks.check_budget(x, x + 0.1, 0.3, "l2")   # L2 norm of the delta is 0.4


def test_mce_by_hand():
    rows = [{"corruption": "fog", "severity": s, "accuracy": a} for s, a in [(1, 0.8), (2, 0.6)]]
    base = [{"corruption": "fog", "severity": s, "accuracy": a} for s, a in [(1, 0.6), (2, 0.4)]]
    m, rel, per = robustness.mce(rows, 0.9, base, 0.8)
    assert m == pytest.approx(100 * (0.2 + 0.4) / (0.4 + 0.6))
    assert rel == pytest.approx(100 * ((0.2 - 0.1) + (0.4 - 0.1)) / ((0.4 - 0.2) + (0.6 - 0.2)))
    assert per["fog"]["ce"] == pytest.approx(m)


def test_fourier_basis_is_orthonormal_and_centred():
    basis = robustness.fourier_basis(8, 8).reshape(64, 64)
    assert torch.allclose(basis.norm(dim=1), torch.ones(64), atol=1e-5)
    assert torch.allclose(basis.reshape(8, 8, 8, 8)[4, 4], torch.full((8, 8), 1 / 8))


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "probe.robustness", *args], capture_output=True,
                          text=True, env=env)


@pytest.mark.parametrize("args,message", [
    (["--model", "transformer"], "unknown model 'transformer'; valid names: mixer"),
    (["--attacks", "pgd,boom"], "unknown attack boom; valid: fgsm"),
    (["--corruptions", "rain"], "unknown corruption rain; valid: gaussian_noise"),
    (["--epsilons", "0,-0.1"], "epsilons must be >= 0"),
    (["--severities", "0,6"], "severities must be in 1..5"),
    (["--n", "0"], "--n must be positive"),
])
def test_cli_errors_are_one_line(args, message, tmp_path):
    proc = _cli(*args, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_cli_unwritable_out_fails_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = _cli("--out", str(blocker / "runs"))
    assert proc.returncode == 2 and "not writable" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_nan_images_are_refused_before_computing(tmp_path, monkeypatch):
    real = data.decode

    def with_nan(ds, indices, **kw):
        x = real(ds, indices, **kw)
        x[0, 0, 0, 0] = float("nan")
        return x

    monkeypatch.setattr(data, "decode", with_nan)
    with pytest.raises(ValueError, match="NaN"):
        robustness.run(_cfg(), out=tmp_path, progress=False)
    assert not (tmp_path / "fashion-mnist" / MODEL).exists()


def test_cli_runs_and_prints_summary(tmp_path):
    proc = _cli("--model", MODEL, "--model", "cnn", "--n", "20", "--n-attack", "10", "--attacks", "fgsm",
                "--epsilons", "0,0.05", "--corruptions", "contrast", "--severities", "3",
                "--no-heatmap", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "20 test images" in proc.stderr and "mCE" in proc.stdout
    assert (tmp_path / "fashion-mnist" / "compare" / "robust_accuracy.pdf").is_file()
    assert (tmp_path / "fashion-mnist" / "cnn" / "robustness.json").is_file()


def test_torchrun_two_processes_match_one(tmp_path):
    args = ["--model", MODEL, "--num-images", "120", "--n-attack", "60", "--n-heatmap", "6", "--attacks", "fgsm,pgd",
            "--epsilons", "0,0.05", "--steps", "3", "--corruptions", "gaussian_noise,fog",
            "--severities", "2", "--no-progress"]
    single = _cli(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29533", "-m",
                           "probe.robustness", *args, "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "fashion-mnist" / MODEL / "robustness.json").read_text())
    two = json.loads((tmp_path / "two" / "fashion-mnist" / MODEL / "robustness.json").read_text())
    assert one == two


def test_baseline_weights_follow_the_run():
    """A timm baseline gets timm's default (pretrained) weights, or random ones when the run is
    random; an explicit baseline_weights wins."""
    bw = robustness._baseline_weights
    assert bw(RunConfig(model="timm:resnet18", baseline="timm:resnet50")) == zoo.DEFAULT_WEIGHTS
    assert zoo.resolve_weights("timm:resnet50", bw(RunConfig(
        model="timm:resnet18", baseline="timm:resnet50"))) == "pretrained"
    assert bw(RunConfig(model="timm:resnet18", weights="random", baseline="timm:resnet50")) == "random"
    assert bw(RunConfig(model="mixer", baseline="cnn")) == zoo.DEFAULT_WEIGHTS
    assert zoo.resolve_weights("cnn", bw(RunConfig(model="mixer", baseline="cnn"))) == "shipped"
    assert bw(RunConfig(model="mixer", baseline="cnn", baseline_weights="w.pt")) == "w.pt"


def test_each_process_decodes_only_its_own_chunks(monkeypatch):
    """Under torchrun a process holds 1/world of the images: its chunks, nothing else."""
    from probe.units import CHUNK, Dist, ShardImages
    ds = data.load("synthetic", "test", n=3 * CHUNK + 7, seed=0)
    decoded = []

    def load(d, idx):
        decoded.extend(idx)
        return data.decode(d, idx)

    monkeypatch.setenv("WORLD_SIZE", "1")
    dist = Dist("cpu")
    dist.world, dist.rank = 2, 1                     # pretend: rank 1 of 2, no process group
    x = ShardImages(ds, dist, fit=lambda t: t, device="cpu", load=load)
    assert sorted(decoded) == list(range(CHUNK, 2 * CHUNK)) + list(range(3 * CHUNK, 3 * CHUNK + 7))
    full = data.as_tensors(ds)[0]
    assert torch.equal(x[slice(CHUNK, 2 * CHUNK)], full[CHUNK:2 * CHUNK])
    assert torch.equal(x[slice(3 * CHUNK, 3 * CHUNK + 5)], full[3 * CHUNK:3 * CHUNK + 5])
    assert len(x) == len(ds) and tuple(x.shape) == tuple(full.shape)
    with pytest.raises(IndexError, match="not in one of this process's chunks"):
        x[slice(0, CHUNK)]
