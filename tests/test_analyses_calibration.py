"""analyses.calibration: ECE, selective accuracy and temperature scaling on hand-made cases,
the quick run on the converged (quick) models, the claim on constructed results, --plot-only."""
import copy

import pytest
import torch

from analyses import calibration as cal
from analyses.cells import quick_recipe

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def _probs(confidence: float, n: int) -> torch.Tensor:
    """``n`` rows whose top-1 (class 0) has ``confidence``, the rest spread evenly."""
    p = torch.full((n, 10), (1 - confidence) / 9, dtype=torch.float64)
    p[:, 0] = confidence
    return p


def test_ece_is_zero_when_confidence_matches_accuracy_and_the_gap_otherwise():
    probs = torch.cat([_probs(0.8, 100), _probs(0.35, 100)])
    labels = torch.cat([torch.tensor([0] * 80 + [1] * 20), torch.tensor([0] * 35 + [1] * 65)])
    assert cal.ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    overconfident = _probs(0.99, 200)
    half_right = torch.tensor([0, 1] * 100)
    assert cal.ece(overconfident, half_right) == pytest.approx(0.49, abs=1e-12)
    rel = cal.reliability(overconfident, half_right)
    assert sum(rel["count"]) == 200 and rel["accuracy"][-1] == pytest.approx(0.5)


def test_selective_accuracy_keeps_the_most_confident_share():
    confident_right = _probs(0.9, 90)
    unsure_wrong = _probs(0.2, 10)
    probs = torch.cat([unsure_wrong, confident_right])
    labels = torch.cat([torch.ones(10, dtype=torch.long), torch.zeros(90, dtype=torch.long)])
    assert cal.selective_accuracy(probs, labels, 0.9) == 1.0
    assert cal.selective_accuracy(probs, labels, 1.0) == pytest.approx(0.9)


def test_temperature_fit_recovers_the_temperature_that_made_the_labels():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 10, generator=g, dtype=torch.float64) * 3
    labels = torch.multinomial((z / 2.5).softmax(1), 1, generator=g)[:, 0]
    assert cal.fit_temperature(z, labels) == pytest.approx(2.5, rel=0.05)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("calibration")
    args, code, results = quick_analysis(cal, out)
    assert code == 0
    return out, args, results


def test_quick_run_measures_every_model_beside_init_and_temperature(quick):
    _, _, res = quick
    recipe = quick_recipe()
    fams, seeds = cal.SCALES["quick"]["families"], recipe.plans["full"]["seeds"]
    assert sorted((r["family"], r["seed"]) for r in res["rows"]) == sorted((f, s) for f in fams for s in seeds)
    models = {(m["family"], m["seed"]): m for m in res["models"]}
    for r in res["rows"]:
        # the clean accuracy is the model's own card's test accuracy (the same test set)
        assert r["accuracy"] == pytest.approx(models[(r["family"], r["seed"])]["test_accuracy"], abs=1e-9)
        assert 0 <= r["ece"] <= 1 and 0 <= r["ece_temperature_scaled"] <= 1 and r["temperature"] > 0
        assert 0 <= r["corrupted"]["ece"] <= 1 and 0 <= r["initialisation"]["ece"] <= 1
        assert sum(r["reliability"]["count"]) == res["test_n"]
    scale = cal.SCALES["quick"]
    assert len(res["corruption_cells"]) == len(scale["corruptions"]) * len(scale["severities"])
    claim = res["claims"][0]
    assert claim["id"] == "calibration" and set(claim["per_family"]) == set(fams) - {"cnn"}
    assert (quick[0] / "calibration.pdf").stat().st_size > 0


def test_claim_gives_each_family_its_sign(quick):
    _, _, res = quick
    fake = copy.deepcopy(res)
    base = {"cnn": 0.03, "mixer": 0.08, "vit": 0.01}
    rows = []
    for seed, jitter in enumerate((0.0, 0.002, -0.002)):
        for r in res["rows"]:
            row = copy.deepcopy(r)
            row["seed"], row["ece"] = seed, base[r["family"]] + jitter
            rows.append(row)
    fake["rows"] = rows
    claim = cal.claims(fake)[0].as_result()
    assert claim["per_family"]["mixer"]["effect"] == pytest.approx(0.05)
    assert claim["per_family"]["vit"]["effect"] == pytest.approx(-0.02)
    assert claim["verdict"] == "supported"  # the MLP group (Mixer here) is 5 points worse
    for r in fake["rows"]:
        if r["family"] == "mixer":
            r["ece"] = base["cnn"] - 0.03
    assert cal.claims(fake)[0].as_result()["verdict"] == "opposite"


def test_plot_only_redraws(quick, tmp_path):
    out, args, _ = quick
    pdf = out / "calibration.pdf"
    pdf.unlink()
    assert cal.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
