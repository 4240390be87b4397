"""analyses.robustness_comparison: quick run end to end (models, claims, checks, effective
robustness, initialisation rows), --plot-only, the claims' four verdicts, per-family effects and
the effective-robustness fit on constructed results."""
import json
import math

import numpy as np
import pytest
import torch

from analyses import common, verdicts
from analyses import robustness_comparison as rc
from probe import corruptions, robustness, zoo

EPS = [0.01, 0.02, 0.05]
FIGURES = ("robustness_comparison.pdf", "fourier_heatmaps.pdf", "effective_robustness.pdf")
MODEL_KEYS = {"family", "n_train", "seed", "steps", "lr", "val_accuracy", "test_accuracy",
              "weights"}
CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("robustness_comparison")
    argv, code, results = quick_analysis(rc, out)
    return out, argv, code, results


def test_quick_run_writes_models_claims_checks_and_figures(quick):
    out, _, code, results = quick
    assert code == 0
    for name in FIGURES:
        pdf = out / name
        assert pdf.is_file() and pdf.stat().st_size > 1000
        assert pdf.read_bytes()[:4] == b"%PDF"
    s = rc.SCALES["quick"]
    assert results["analysis"] == rc.NAME and results["scale"] == "quick"
    assert "cnn" in s["families"] and len(set(s["families"]) & set(common.MLP_FAMILIES)) >= 2
    pairs = {(f, seed) for f in s["families"] for seed in s["seeds"]}
    # models: one converged-model row per (family, seed), its weights on disk
    assert {(m["family"], m["seed"]) for m in results["models"]} == pairs
    for m in results["models"]:
        assert MODEL_KEYS <= set(m) and 0 <= m["test_accuracy"] <= 1
        assert rc._weights_file(m).is_file()
    # claims in the results format, margins from the committed file
    assert [c["id"] for c in results["claims"]] == [rc.ADV, rc.COR]
    mlps = [f for f in common.MLP_FAMILIES if f in s["families"]]
    for c in results["claims"]:
        assert CLAIM_KEYS <= set(c)
        assert c["verdict"] in verdicts.VERDICTS
        assert c["margin"] == verdicts.margin_of(c["id"])["margin"]
        assert set(c["sensitivity"]) == {"half", "double"}
        assert c["ci_low"] <= c["effect"] <= c["ci_high"]
        assert set(c["per_family"]) == set(s["families"]) - {"cnn"}
        assert c["details"]["group"] == mlps
        assert set(c["reference"]["initialisation"]) == set(s["families"])
    er_gap = results["claims"][0]["details"]["effective_robustness_cnn_minus_family"]
    assert set(er_gap["per_family"]) == set(s["families"]) - {"cnn"}
    # checks: the CNN normalised by itself
    assert [c["id"] for c in results["checks"]] == ["robustness_cnn_mce_is_100"]
    assert results["checks"][0]["holds"] and results["checks"][0]["max_abs_error"] < 1e-9
    # effective robustness: every trained model in the fit, every family summarised
    for kind in rc.ER_KINDS:
        er = results["effective_robustness"][kind]
        assert {(m["family"], m["seed"]) for m in er["models"]} == pairs
        assert er["fit"]["n_models"] == len(pairs)
        assert set(er["by_family"]) == set(s["families"])
        assert abs(sum(m["residual_logit"] for m in er["models"])) < 1e-9
        assert {(m["family"], m["seed"]) for m in er["init"]} == pairs


def test_quick_rows_hold_the_robustness_measurements(quick):
    _, _, _, results = quick
    s = rc.SCALES["quick"]
    rows = results["rows"]
    assert {(r["family"], r["seed"]) for r in rows} == {(f, seed) for f in s["families"]
                                                       for seed in s["seeds"]}
    assert results["middle_epsilon"] == rc._middle(s["epsilons"])
    for r in rows:
        assert r["n"] == s["n_clean"] and 0 <= r["clean_accuracy"] <= 1
        assert r["clean_ci_low"] <= r["clean_accuracy"] <= r["clean_ci_high"]
        assert [a["epsilon"] for a in r["adversarial"]] == EPS
        for a in r["adversarial"]:
            assert a["attack"] == "pgd" and a["n"] == s["n_attack"]
            assert 0 <= a["robust_accuracy"] <= 1
            assert a["survived"] <= a["clean_correct"]
            assert a["clean_correct"] == round(r["clean_accuracy_attacked"] * s["n_attack"])
            if a["clean_correct"]:
                assert a["survival"] == pytest.approx(a["survived"] / a["clean_correct"])
        cells = {(c["corruption"], c["severity"]) for c in r["corruptions"]}
        assert cells == {(c, v) for c in corruptions.COMMON for v in s["severities"]}
        assert all(c["n"] == s["n_corrupt"] for c in r["corruptions"])
        hm = r["fourier_heatmap"]["error"]
        assert len(hm) == 28 and len(hm[0]) == 28
        assert all(0 <= v <= 1 for line in hm for v in line)
        assert r["heatmap_bands"] == pytest.approx(rc.band_errors(hm))
        assert r["mce"] is not None and r["mce"] > 0
        assert r["eval_time_s"] > 0


def test_rows_are_the_public_results_of_robustness_run(quick):
    """Each row's numbers are those ``probe.robustness.run`` wrote for that model (no copy)."""
    out, _, _, results = quick
    for r in results["rows"]:
        stored = robustness.load_results(out / "robustness_runs" / f"s{r['seed']}",
                                         "fashion-mnist", r["family"])
        assert stored is not None
        for key in ("clean_accuracy", "clean_ci_low", "clean_ci_high", "corruptions", "mce",
                    "relative_mce", "clean_accuracy_attacked", "clean_accuracy_corrupted"):
            assert r[key] == stored[key]
        assert r["adversarial"] == [a for a in stored["adversarial"] if a["attack"] == "pgd"]
        model = next(m for m in results["models"]
                     if (m["family"], m["seed"]) == (r["family"], r["seed"]))
        assert r["weights"] == str(rc._weights_file(model))


def test_initialisation_rows_are_the_same_seed_random_init(quick):
    _, _, _, results = quick
    s = rc.SCALES["quick"]
    init = results["init_rows"]
    assert {(r["family"], r["seed"]) for r in init} == {(f, seed) for f in s["families"]
                                                       for seed in s["seeds"]}
    for r in init:
        assert r["init"] is True and r["fourier_heatmap"] is None
        assert [a["epsilon"] for a in r["adversarial"]] == [results["middle_epsilon"]]
        assert r["n"] == s["init"]["n_clean"] and r["n_corrupt"] == s["init"]["n_corrupt"]
        # the same-seed trained CNN is the mCE baseline, not the initialised one
        cnn = next(m for m in results["models"]
                   if m["family"] == "cnn" and m["seed"] == r["seed"])
        assert r["baseline_weights"] == str(rc._weights_file(cnn))
    r = next(r for r in init if r["family"] == "mixer" and r["seed"] == 1)
    saved = zoo.load("mixer", weights=r["weights"]).net.state_dict()
    built = zoo.build("mixer", seed=1).net.state_dict()
    other = zoo.build("mixer", seed=0).net.state_dict()
    assert all(torch.equal(saved[k], built[k]) for k in built)
    assert not all(torch.equal(saved[k], other[k]) for k in other)


def test_mce_is_normalised_by_the_same_seed_cnn(quick):
    """Each model's stored mCE equals a hand computation from its and the same-seed CNN's errors."""
    _, _, _, results = quick
    rows = {(r["family"], r["seed"]): r for r in results["rows"]}

    def errors(row):
        out = {}
        for c in row["corruptions"]:
            out.setdefault(c["corruption"], []).append(1 - c["accuracy"])
        return out

    checked = 0
    for (fam, seed), r in rows.items():
        if fam == "cnn":
            continue
        ours, theirs = errors(r), errors(rows[("cnn", seed)])
        ces = [100 * sum(ours[c]) / sum(theirs[c]) for c in ours if sum(theirs[c]) > 0]
        assert len(ces) == len(ours)
        assert r["mce"] == pytest.approx(sum(ces) / len(ces), rel=1e-9)
        other = rows.get(("cnn", 1 - seed))
        if other is not None and errors(other) != theirs:   # the other seed's CNN gives another value
            ces_other = [100 * sum(ours[c]) / sum(errors(other)[c]) for c in ours]
            assert r["mce"] != pytest.approx(sum(ces_other) / len(ces_other), rel=1e-9)
        checked += 1
    assert checked >= 3


def test_plot_only_redraws(quick):
    out, argv, _, _ = quick
    for name in FIGURES:
        (out / name).unlink()
    assert rc.main(argv + ["--plot-only"]) == 0
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000


def test_full_scale_uses_every_family_and_three_seeds():
    full = rc.SCALES["full"]
    assert full["families"] == list(common.FAMILIES) and full["seeds"] == [0, 1, 2]
    assert not full["quick"] and rc.SCALES["quick"]["quick"]


# ----------------------------------------------------------------------------- constructed results


def _row(fam, seed, *, clean, robust, mce, corrupted=None, n=1000):
    """A hand-made model row: robust accuracy ``robust`` at every epsilon (survival robust/clean),
    one corruption cell at ``corrupted`` (default ``robust``)."""
    adv = [{"attack": "pgd", "norm": "linf", "epsilon": e, "robust_accuracy": robust,
            "ci_low": 0.0, "ci_high": 1.0, "n": n, "survival": robust / clean,
            "survived": round(robust * n), "clean_correct": round(clean * n)} for e in EPS]
    return {"family": fam, "seed": seed, "init": False, "n": n, "n_attack": n, "n_corrupt": n,
            "clean_accuracy": clean, "clean_ci_low": clean, "clean_ci_high": clean,
            "clean_accuracy_attacked": clean, "clean_accuracy_corrupted": clean,
            "adversarial": adv,
            "corruptions": [{"corruption": "fog", "severity": 1, "n": n,
                             "accuracy": robust if corrupted is None else corrupted}],
            "mce": mce, "relative_mce": mce, "relative_mce_corruptions": 15, "ce": {},
            "fourier_heatmap": {"epsilon": 3.0, "n": 1, "error": [[0.3]]},
            "heatmap_bands": {"low": 0.2, "high": 0.4, "mean": 0.3}}


def _results(rows):
    seeds = sorted({r["seed"] for r in rows})
    return {"rows": rows, "middle_epsilon": 0.02,
            "settings": {**rc.SCALES["full"], "seeds": seeds}}


def _uniform(mlp_robust, mlp_mce):
    """CNN and ViT: clean 0.9, robust 0.45 (survival 0.5), mCE 100; every MLP: clean 0.9 and
    the given per-seed robust accuracy and mCE."""
    rows = []
    for seed, (rob, m) in enumerate(zip(mlp_robust, mlp_mce)):
        rows.append(_row("cnn", seed, clean=0.9, robust=0.45, mce=100.0))
        rows.append(_row("vit", seed, clean=0.9, robust=0.45, mce=100.0))
        for fam in common.MLP_FAMILIES:
            rows.append(_row(fam, seed, clean=0.9, robust=rob, mce=m))
    return _results(rows)


@pytest.mark.parametrize("robust, mce, expected", [
    ([0.18, 0.19, 0.17], [160.0, 150.0, 170.0], "supported"),        # MLPs clearly worse
    ([0.72, 0.70, 0.71], [60.0, 55.0, 65.0], "opposite"),             # MLPs clearly better
    ([0.45, 0.452, 0.449], [100.5, 99.8, 100.2], "negligible"),       # no difference
    ([0.10, 0.80, 0.45], [200.0, 20.0, 110.0], "inconclusive"),       # seeds disagree
])
def test_claim_verdicts(robust, mce, expected):
    cs = {c.key: c for c in rc.claims(_uniform(robust, mce))}
    adv, cor = cs[rc.ADV], cs[rc.COR]
    assert adv.verdict == expected and cor.verdict == expected
    # orientation: > 0 when the MLPs are less robust; the group is the mean over seeds
    assert adv.estimate == pytest.approx((0.45 - sum(robust) / 3) / 0.9)
    assert cor.estimate == pytest.approx(sum(mce) / 3 - 100.0)
    for c in (adv, cor):
        assert c.low <= c.estimate <= c.high
        assert set(c.per_family) == set(common.MLP_FAMILIES) | {"vit"}
        assert c.per_family["vit"]["effect"] == pytest.approx(0.0)
        json.dumps(c.as_result())


def test_claim_interval_level_comes_from_the_margins_file():
    cs = rc.claims(_uniform([0.10, 0.80, 0.45], [200.0, 20.0, 110.0]))
    per_seed = [(0.45 - r) / 0.9 for r in (0.10, 0.80, 0.45)]
    level = verdicts.CONFIDENCE[verdicts.margin_of(rc.ADV)["test"]]
    _, lo, hi = verdicts.mean_ci(per_seed, confidence=level)
    assert (cs[0].low, cs[0].high) == pytest.approx((lo, hi))
    assert cs[0].margin == verdicts.margin_of(rc.ADV)["margin"]


def test_per_family_effects_show_opposite_signs_inside_the_group():
    """FNet far less robust than the CNN and gMLP far more: the group mean is negligible, the
    per-family effects show both signs beyond the margin."""
    rows = []
    for seed, (low, high) in enumerate(zip([0.18, 0.19, 0.17], [0.72, 0.70, 0.71])):
        rows += [_row("cnn", seed, clean=0.9, robust=0.45, mce=100.0),
                 _row("vit", seed, clean=0.9, robust=0.45, mce=100.0),
                 _row("mixer", seed, clean=0.9, robust=0.45, mce=100.0),
                 _row("resmlp", seed, clean=0.9, robust=0.45, mce=100.0),
                 _row("fnet", seed, clean=0.9, robust=low, mce=160.0 + seed),
                 _row("gmlp", seed, clean=0.9, robust=high, mce=40.0 - seed)]
    adv, cor = rc.claims(_results(rows))
    for c in (adv, cor):
        assert c.verdict == "negligible"
        assert c.per_family["fnet"]["ci_low"] > c.margin
        assert c.per_family["gmlp"]["ci_high"] < -c.margin
        assert set(c.per_family) == {"mixer", "resmlp", "gmlp", "fnet", "vit"}
        group = np.mean([c.per_family[f]["effect"] for f in common.MLP_FAMILIES])
        assert c.estimate == pytest.approx(group)


def test_adversarial_claim_uses_survival_not_absolute_accuracy():
    """MLPs with lower clean accuracy but the same survival rate are not 'less robust'
    adversarially; mCE (the corruption claim) counts their higher clean error."""
    rows = []
    for seed in range(3):
        rows += [_row("cnn", seed, clean=0.9, robust=0.45, mce=100.0),
                 _row("vit", seed, clean=0.9, robust=0.45, mce=100.0)]
        rows += [_row(f, seed, clean=0.6, robust=0.3, mce=140.0) for f in common.MLP_FAMILIES]
    adv, cor = rc.claims(_results(rows))
    assert adv.estimate == pytest.approx(0.0) and adv.verdict == "negligible"
    absolute = adv.details["robust_accuracy_cnn_minus_family"]
    assert absolute["effect"] == pytest.approx(0.15)
    assert all(v["effect"] == pytest.approx(0.15) for f, v in absolute["per_family"].items()
               if f != "vit")
    assert cor.estimate == pytest.approx(40.0) and cor.verdict == "supported"
    gap = cor.details["clean_accuracy_on_corrupted_images_cnn_minus_family"]
    assert gap["effect"] == pytest.approx(0.3)


def test_claims_need_a_cnn_and_an_mlp():
    rows = [_row(f, s, clean=0.9, robust=0.45, mce=100.0) for f in ("cnn", "vit") for s in range(3)]
    with pytest.raises(ValueError, match="MLP"):
        rc.claims(_results(rows))
    rows = [_row(f, s, clean=0.9, robust=0.45, mce=100.0) for f in ("mixer", "vit") for s in range(3)]
    with pytest.raises(ValueError, match="cnn"):
        rc.claims(_results(rows))


def test_cnn_mce_check():
    rows = [_row("cnn", s, clean=0.9, robust=0.45, mce=100.0) for s in range(3)]
    assert rc.checks(_results(rows))[0].holds
    rows[1]["mce"] = 100.5
    check = rc.checks(_results(rows))[0]
    assert not check.holds and check.max_abs_error == pytest.approx(0.5)


# ----------------------------------------------------------------------------- effective robustness

INTERCEPT, SLOPE = 0.4, 1.3
CLEAN = {"cnn": 0.92, "vit": 0.90, "gmlp": 0.88, "fnet": 0.86, "resmlp": 0.84, "mixer": 0.80}


def _sigmoid(z):
    return 1 / (1 + math.exp(-z))


def _logit(p):
    return math.log(p / (1 - p))


def _on_line(offsets):
    """Rows whose PGD and corrupted accuracies lie on ``logit(y) = INTERCEPT + SLOPE logit(x)``
    shifted by ``offsets[family]`` in logit space; clean accuracy differs by family and seed."""
    rows = []
    for seed in range(3):
        for fam, clean in CLEAN.items():
            x = clean + 0.01 * seed
            y = _sigmoid(INTERCEPT + SLOPE * _logit(x) + offsets.get(fam, 0.0))
            rows.append(_row(fam, seed, clean=x, robust=y, mce=100.0, n=100000))
    return _results(rows)


@pytest.mark.parametrize("kind", rc.ER_KINDS)
def test_effective_robustness_is_zero_on_the_line(kind):
    """Models on one logit line: the fit recovers it and every residual is 0, so Mixer's lower
    robust accuracy - which only follows its lower clean accuracy - is not lower robustness."""
    res = _on_line({})
    er = rc.effective_robustness(res, kind)
    assert er["fit"]["slope"] == pytest.approx(SLOPE, abs=1e-9)
    assert er["fit"]["intercept"] == pytest.approx(INTERCEPT, abs=1e-9)
    assert er["fit"]["r2"] == pytest.approx(1.0)
    for m in er["models"]:
        assert m["effective_robustness"] == pytest.approx(0.0, abs=1e-9)
        assert m["predicted"] == pytest.approx(m["robust"])
    adv = rc.claims(res)[0]
    mixer_rob = adv.details["robust_accuracy_cnn_minus_family"]["per_family"]["mixer"]["effect"]
    mixer_er = adv.details["effective_robustness_cnn_minus_family"]["per_family"]["mixer"]
    assert mixer_rob > 0.05 and mixer_er["effect"] == pytest.approx(0.0, abs=1e-9)


def test_effective_robustness_residuals_against_a_least_squares_line():
    """Off-line families: the line is the least-squares fit in logit space (numpy's polyfit),
    its logit residuals sum to 0, and the family shifted up has positive effective robustness."""
    res = _on_line({"gmlp": 0.6, "fnet": -0.9, "vit": 0.2})
    er = rc.effective_robustness(res, "adversarial")
    x = [_logit(m["clean"]) for m in er["models"]]
    y = [_logit(m["robust"]) for m in er["models"]]
    slope, intercept = np.polyfit(x, y, 1)
    assert er["fit"]["slope"] == pytest.approx(slope)
    assert er["fit"]["intercept"] == pytest.approx(intercept)
    assert sum(m["residual_logit"] for m in er["models"]) == pytest.approx(0.0, abs=1e-9)
    for m in er["models"]:
        line = intercept + slope * _logit(m["clean"])
        assert m["residual_logit"] == pytest.approx(_logit(m["robust"]) - line)
        assert m["effective_robustness"] == pytest.approx(m["robust"] - _sigmoid(line))
    fam = er["by_family"]
    assert fam["gmlp"]["ci_low"] > 0 and fam["fnet"]["ci_high"] < 0
    assert fam["gmlp"]["effect"] > fam["vit"]["effect"] > fam["cnn"]["effect"] \
        > fam["fnet"]["effect"]
    # the claim's details: CNN minus family, > 0 where the family is less robust than its
    # clean accuracy predicts
    gap = rc.claims(res)[0].details["effective_robustness_cnn_minus_family"]["per_family"]
    assert gap["fnet"]["effect"] > 0 > gap["gmlp"]["effect"]


def test_fit_line_handles_equal_clean_accuracies():
    slope, intercept = rc.fit_line([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])
    assert slope == 0.0 and intercept == pytest.approx(2.0)


def test_logit_clips_to_half_an_image():
    z = rc.logit([0.0, 1.0], [100, 100])
    assert z[0] == pytest.approx(_logit(0.005)) and z[1] == pytest.approx(_logit(0.995))


def test_band_errors_split_low_and_high_frequencies():
    h = w = 28
    r = rc.radius_grid(h, w)
    grid = (r > 7).astype(float).tolist()          # errors only at high frequencies
    b = rc.band_errors(grid)
    assert b["low"] == 0.0 and b["high"] == 1.0 and b["cut_radius"] == 7.0
    assert math.isclose(b["mean"], float((r > 7).mean()))
