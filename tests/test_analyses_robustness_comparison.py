"""analyses.robustness_comparison: quick run end to end, --plot-only, the claims' verdict rules."""
import json
import math

import pytest

from analyses import common
from analyses import robustness_comparison as rc
from probe import corruptions

EPS = [0.01, 0.02, 0.05]


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("robustness_comparison")
    argv, code, results = quick_analysis(rc, out)
    return out, argv, code, results


def test_quick_run_writes_results_and_figures(quick):
    out, _, code, results = quick
    assert code == 0
    for name in ("robustness_comparison.pdf", "fourier_heatmaps.pdf"):
        pdf = out / name
        assert pdf.is_file() and pdf.stat().st_size > 1000
        assert pdf.read_bytes()[:4] == b"%PDF"
    s = rc.SCALES["quick"]
    assert results["analysis"] == rc.NAME and results["scale"] == "quick"
    assert results["middle_epsilon"] == 0.02
    rows = results["rows"]
    assert {(r["family"], r["seed"]) for r in rows} == {(f, seed) for f in s["families"]
                                                       for seed in s["seeds"]}
    assert "cnn" in s["families"] and "vit" in s["families"]
    assert len(set(s["families"]) & set(common.MLP_FAMILIES)) >= 2
    for r in rows:
        assert r["clean"]["n"] == s["n_clean"] and 0 <= r["clean"]["accuracy"] <= 1
        assert r["clean"]["ci_low"] <= r["clean"]["accuracy"] <= r["clean"]["ci_high"]
        assert [a["epsilon"] for a in r["adversarial"]] == EPS
        for a in r["adversarial"]:
            assert a["n"] == s["n_attack"] and 0 <= a["robust_accuracy"] <= 1
            # an attack cannot make an image correct that is counted as survived but was wrong
            assert a["survived"] <= a["clean_correct"] == r["clean_on_attack"]["correct"]
            if a["clean_correct"]:
                assert a["survival"] == pytest.approx(a["survived"] / a["clean_correct"])
        cells = {(c["corruption"], c["severity"]) for c in r["corruptions"]}
        assert cells == {(c, v) for c in corruptions.COMMON for v in s["severities"]}
        assert all(c["n"] == s["n_corrupt"] for c in r["corruptions"])
        hm = r["heatmap"]
        assert len(hm["error"]) == 28 and len(hm["error"][0]) == 28
        assert all(0 <= v <= 1 for line in hm["error"] for v in line)
        assert 0 <= hm["low"] <= 1 and 0 <= hm["high"] <= 1
        assert r["mce"] is not None and r["mce"] > 0
        if r["family"] == "cnn":                      # normalised by itself: 100 by definition
            assert r["mce"] == pytest.approx(100.0)
            assert r["relative_mce"] is None or r["relative_mce"] == pytest.approx(100.0)
        assert r["eval_time_s"] > 0
    assert set(results["timing"]["eval_s_by_part"]) == {"clean", "attack", "corruption", "heatmap"}


def test_mce_is_normalised_by_the_same_seed_cnn(quick):
    """Each model's stored mCE equals a hand computation from its and the same-seed CNN's errors."""
    _, _, _, results = quick
    rows = {(r["family"], r["seed"]): r for r in results["rows"]}
    checked = 0
    for (fam, seed), r in rows.items():
        if fam == "cnn":
            continue
        base = rows[("cnn", seed)]

        def errors(row):
            out = {}
            for c in row["corruptions"]:
                out.setdefault(c["corruption"], []).append(1 - c["accuracy"])
            return out

        ours, theirs = errors(r), errors(base)
        ces = [100 * sum(ours[c]) / sum(theirs[c]) for c in ours if sum(theirs[c]) > 0]
        assert len(ces) == len(ours)
        assert r["mce"] == pytest.approx(sum(ces) / len(ces), rel=1e-9)
        other = rows[("cnn", 1 - seed)] if ("cnn", 1 - seed) in rows else None
        if other is not None and errors(other) != theirs:   # the other seed's CNN gives another value
            ces_other = [100 * sum(ours[c]) / sum(errors(other)[c]) for c in ours]
            assert r["mce"] != pytest.approx(sum(ces_other) / len(ces_other), rel=1e-9)
        checked += 1
    assert checked >= 3


def test_plot_only_redraws(quick):
    out, argv, _, _ = quick
    for name in ("robustness_comparison.pdf", "fourier_heatmaps.pdf"):
        (out / name).unlink()
    assert rc.main(argv + ["--plot-only"]) == 0
    assert (out / "robustness_comparison.pdf").stat().st_size > 1000
    assert (out / "fourier_heatmaps.pdf").stat().st_size > 1000


def test_claims_on_quick_results(quick):
    _, _, _, results = quick
    cs = rc.claims(results)
    assert [c.key for c in cs] == ["mlps_less_robust_adversarial", "mlps_less_robust_corruptions"]
    for c in cs:
        assert c.verdict in common.VERDICTS
        assert c.figure == "robustness_comparison.pdf"
        json.dumps(c.as_dict())
    assert "vs_vit_survival_vit_minus_mlps" in cs[0].details
    assert "vs_vit_relative_mce_mlps_minus_vit" in cs[1].details


# ----------------------------------------------------------------------------- verdict rules


def _row(fam, seed, *, clean, robust, rel_mce, mce=None):
    """A hand-made model row: robust accuracy ``robust`` at every epsilon, survival robust/clean."""
    n = 1000
    ok = round(clean * n)
    adv = [{"epsilon": e, "robust_accuracy": robust, "ci_low": 0.0, "ci_high": 1.0, "n": n,
            "correct": round(robust * n), "survival": robust / clean, "survived": round(robust * n),
            "clean_correct": ok} for e in EPS]
    return {"family": fam, "seed": seed, "clean": {"accuracy": clean, "n": n, "correct": ok},
            "clean_on_corrupt": clean,
            "clean_on_attack": {"accuracy": clean, "n": n, "correct": ok}, "adversarial": adv,
            "corruptions": [{"corruption": "fog", "severity": 1, "accuracy": 0.5, "n": n}],
            "mce": rel_mce if mce is None else mce, "relative_mce": rel_mce,
            "relative_mce_corruptions": 15,
            "heatmap": {"low": 0.2, "high": 0.4, "mean": 0.3, "error": [[0.3]]}}


def _results(mlp_robust, mlp_mce):
    """CNN and ViT: clean 0.9, robust 0.45 (survival 0.5), mCE 100; MLPs: clean 0.9 and the given
    per-seed robust accuracy and (relative) mCE."""
    rows = []
    for seed, (rob, rel) in enumerate(zip(mlp_robust, mlp_mce)):
        rows.append(_row("cnn", seed, clean=0.9, robust=0.45, rel_mce=100.0))
        rows.append(_row("vit", seed, clean=0.9, robust=0.45, rel_mce=100.0))
        for fam in common.MLP_FAMILIES:
            rows.append(_row(fam, seed, clean=0.9, robust=rob, rel_mce=rel))
    return {"rows": rows, "middle_epsilon": 0.02,
            "settings": {**rc.SCALES["quick"], "seeds": list(range(len(mlp_robust)))}}


@pytest.mark.parametrize("robust, mce, expected", [
    ([0.18, 0.19, 0.17], [160.0, 150.0, 170.0], "supported"),        # MLPs clearly worse
    ([0.72, 0.70, 0.71], [60.0, 55.0, 65.0], "not supported"),        # MLPs clearly better
    ([0.45, 0.452, 0.449], [100.5, 99.8, 100.2], "not supported"),    # negligible difference
    ([0.10, 0.80, 0.45], [200.0, 20.0, 110.0], "inconclusive"),       # seeds disagree
])
def test_claim_verdict_rules(robust, mce, expected):
    cs = {c.key: c for c in rc.claims(_results(robust, mce))}
    adv, cor = cs["mlps_less_robust_adversarial"], cs["mlps_less_robust_corruptions"]
    assert adv.verdict == expected and cor.verdict == expected
    # orientation: > 0 when the MLPs are less robust
    assert adv.estimate == pytest.approx((0.45 - sum(robust) / 3) / 0.9)
    assert cor.estimate == pytest.approx(sum(mce) / 3 - 100.0)
    assert adv.low <= adv.estimate <= adv.high


def test_claim_uses_survival_not_absolute_accuracy():
    """MLPs with lower clean accuracy but the same survival rate are not 'less robust'
    adversarially; mCE (the corruption claim) counts their higher clean error."""
    res = _results([0.45] * 3, [100.0] * 3)
    for r in res["rows"]:
        if r["family"] in common.MLP_FAMILIES:
            r.update(_row(r["family"], r["seed"], clean=0.6, robust=0.3, rel_mce=100.0,
                          mce=140.0))
    adv, cor = rc.claims(res)
    assert adv.estimate == pytest.approx(0.0) and adv.verdict == "not supported"
    absolute = adv.details["robust_accuracy_cnn_minus_mlps"]
    assert absolute["estimate"] == pytest.approx(0.15) and absolute["verdict"] == "supported"
    assert cor.estimate == pytest.approx(40.0) and cor.verdict == "supported"
    assert cor.details["relative_mce_mlps_minus_cnn"]["estimate"] == pytest.approx(0.0)
    assert cor.details["clean_accuracy_on_corrupted_images_cnn_minus_mlps"]["estimate"] == \
        pytest.approx(0.3)


def test_band_errors_split_low_and_high_frequencies():
    h = w = 28
    r = rc.radius_grid(h, w)
    grid = (r > 7).astype(float).tolist()          # errors only at high frequencies
    b = rc.band_errors(grid)
    assert b["low"] == 0.0 and b["high"] == 1.0 and b["cut_radius"] == 7.0
    assert math.isclose(b["mean"], float((r > 7).mean()))
