"""analyses.cost_accuracy: the quick run on the converged (quick) full-data models, the paired
timing comparison, both claims' verdicts on constructed results, per-family effects, --plot-only."""
import pytest

from analyses import common
from analyses import cost_accuracy as ca
from analyses.cells import quick_recipe

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("cost_accuracy")
    args, code, results = quick_analysis(ca, out)
    assert code == 0
    return out, args, results


def test_quick_run_uses_the_full_data_models(quick):
    out, _, res = quick
    recipe = quick_recipe()
    fams = ca.SCALES["quick"]["families"]
    seeds = recipe.plans["full"]["seeds"]
    assert sorted((r["family"], r["seed"]) for r in res["models"]) == \
        sorted((f, s) for f in fams for s in seeds)
    assert all(r["n_train"] == recipe.full_n and r["steps"] == recipe.steps(recipe.full_n)
               for r in res["models"])
    rows = {r["family"]: r for r in res["rows"]}
    assert set(rows) == set(fams)
    for f, r in rows.items():
        # accuracy is the models' own test accuracy (their cards), in seed order
        mine = sorted((m for m in res["models"] if m["family"] == f), key=lambda m: m["seed"])
        assert r["accuracy"] == [m["test_accuracy"] for m in mine] and r["seeds"] == seeds
        assert len(r["throughput_img_s"]) == len(r["latency_ms_batch1"]) == ca.SCALES["quick"]["rounds"]
        assert min(r["throughput_img_s"]) > 0 and min(r["latency_ms_batch1"]) > 0
    assert rows["cnn"]["params"] > 4e5 and rows["mixer"]["flops_per_image"] > 1e7
    assert res["checks"] == []
    assert (out / "cost_accuracy.pdf").stat().st_size > 5000


def test_quick_claim_rows(quick):
    _, _, res = quick
    by_id = {c["id"]: c for c in res["claims"]}
    assert set(by_id) == {"mlps_cheaper", "mlps_similar_accuracy"}
    assert (by_id["mlps_cheaper"]["test"], by_id["mlps_cheaper"]["confidence"]) == ("direction", 0.95)
    assert (by_id["mlps_similar_accuracy"]["test"],
            by_id["mlps_similar_accuracy"]["confidence"]) == ("equivalence", 0.90)
    for c in by_id.values():
        assert set(c) >= CLAIM_KEYS and c["verdict"] in common.VERDICTS
        assert c["ci_low"] <= c["effect"] <= c["ci_high"]
        assert set(c["per_family"]) == set(ca.SCALES["quick"]["families"]) - {"cnn"}
        assert set(c["reference"]["initialisation_accuracy"]) == set(ca.SCALES["quick"]["families"])


def test_plot_only_redraws(quick):
    out, args, _ = quick
    (out / "cost_accuracy.pdf").unlink()
    assert ca.main(args + ["--plot-only"]) == 0
    assert (out / "cost_accuracy.pdf").stat().st_size > 5000


def test_pareto_front():
    assert ca._pareto([(1, 0.5), (2, 0.6), (3, 0.55)]) == [0, 1]


# ----------------------------------------------------------------------------- claims


def _results(thr, acc):
    """Constructed results: ``thr`` / ``acc`` map a family to its throughput per timing round /
    accuracy per seed (seeds 0, 1, 2); families missing from them copy the CNN."""
    rows = []
    for f in common.FAMILIES:
        rows.append({"family": f, "params": 5e5, "flops_per_image": 5e7, "seeds": [0, 1, 2],
                     "accuracy": list(acc.get(f, acc["cnn"])),
                     "latency_ms_batch1": [1.0, 1.1, 0.9],
                     "throughput_img_s": list(thr.get(f, thr["cnn"]))})
    return {"rows": rows, "settings": {"batch": 256}}


CNN_THR = [1000.0, 1200.0, 800.0]          # machine drift between rounds
CNN_ACC = [0.90, 0.91, 0.90]


def _mlps(values):
    return {f: values for f in common.MLP_FAMILIES}


@pytest.mark.parametrize("ratios, verdict", [
    ([1.5, 1.6, 1.55], "supported"),
    ([1.01, 0.99, 1.0], "negligible"),
    ([0.6, 0.5, 0.55], "opposite"),
    ([0.9, 1.4, 1.1], "inconclusive"),
])
def test_cheaper_gives_each_verdict(ratios, verdict):
    thr = {"cnn": CNN_THR, **_mlps([r * c for r, c in zip(ratios, CNN_THR)])}
    cheaper, _ = ca.claims(_results(thr, {"cnn": CNN_ACC}))
    assert cheaper.key == "mlps_cheaper" and cheaper.verdict == verdict
    assert cheaper.estimate == pytest.approx(sum(ratios) / 3 - 1)


def test_throughput_is_paired_by_timing_round():
    """A family twice as fast as the CNN in every round: the drift between rounds cancels."""
    thr = {"cnn": CNN_THR, **_mlps([2 * c for c in CNN_THR])}
    cheaper, _ = ca.claims(_results(thr, {"cnn": CNN_ACC}))
    assert (cheaper.estimate, cheaper.low, cheaper.high) == pytest.approx((1.0, 1.0, 1.0))


@pytest.mark.parametrize("mlp_acc, verdict", [
    ([0.899, 0.912, 0.899], "supported"),
    ([0.85, 0.86, 0.85], "opposite"),
    ([0.90, 0.88, 0.86], "inconclusive"),
])
def test_similar_accuracy_gives_each_verdict_at_90_percent(mlp_acc, verdict):
    acc = {"cnn": CNN_ACC, **_mlps(mlp_acc)}
    _, similar = ca.claims(_results({"cnn": CNN_THR}, acc))
    assert similar.key == "mlps_similar_accuracy" and similar.verdict == verdict
    gaps = [c - m for c, m in zip(CNN_ACC, mlp_acc)]
    assert (similar.estimate, similar.low, similar.high) == \
        pytest.approx(common.mean_ci(gaps, confidence=0.90))


def test_per_family_effects_keep_opposite_signs_and_vit():
    thr = {"cnn": CNN_THR, **_mlps(CNN_THR), "mixer": [2 * c for c in CNN_THR],
           "fnet": [0.5 * c for c in CNN_THR], "vit": [0.25 * c for c in CNN_THR]}
    acc = {"cnn": CNN_ACC, "mixer": [0.95, 0.96, 0.95], "fnet": [0.80, 0.81, 0.80]}
    cheaper, similar = ca.claims(_results(thr, acc))
    for c in (cheaper, similar):
        assert set(c.per_family) == set(common.FAMILIES) - {"cnn"}
    assert cheaper.per_family["mixer"]["effect"] == pytest.approx(1.0)
    assert cheaper.per_family["fnet"]["effect"] == pytest.approx(-0.5)
    assert cheaper.per_family["vit"]["effect"] == pytest.approx(-0.75)
    # the group is the four MLP families only (ViT does not enter it)
    assert cheaper.estimate == pytest.approx((1.0 - 0.5 + 0 + 0) / 4)
    assert similar.per_family["mixer"]["effect"] < 0 < similar.per_family["fnet"]["effect"]


def test_accuracy_needs_the_same_seeds_as_the_cnn():
    res = _results({"cnn": CNN_THR}, {"cnn": CNN_ACC})
    res["rows"][0]["seeds"] = [0, 1, 5]
    with pytest.raises(ValueError, match="seed by seed"):
        ca.claims(res)
