"""Tests of analyses.synthesizer_ladder: the quick run end to end (models / claims / checks rows,
every rung a cell of the same recipe at Mixer's learning rate, input dependence per rung with
the fixed rungs exactly 0, parameter counts, figure, --plot-only) and the verdicts of the two
claims on hand-made results, with both comparisons of each claim visible."""
import pytest

from analyses import common, converged
from analyses import synthesizer_ladder as sl
from analyses.verdicts import margin_of

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

CLAIM_IDS = ["mixer_is_synthesizer_random", "generated_attention_adapts_better"]
CHECK_IDS = {"ladder_fixed_rungs_input_dependence_is_zero", "ladder_parameter_band"}
MODEL_KEYS = {"family", "n_train", "seed", "steps", "lr", "val_accuracy", "test_accuracy", "weights",
              "recipe_hash"}
CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, quick_analysis):
    """One quick run (the quick recipe's cells, trained on the spot) shared by the tests."""
    out = tmp_path_factory.mktemp("synthesizer_ladder")
    _, code, results = quick_analysis(sl, out)
    return code, out, results


def test_quick_synthesizer_ladder(quick):
    code, out, results = quick
    assert code == 0
    scale = sl.SCALES["quick"]
    assert {(m["family"], m["seed"]) for m in results["models"]} == \
        {(n, s) for n in common.LADDER for s in scale["seeds"]}
    by = {(m["family"], m["seed"]): m for m in results["models"]}
    for m in results["models"]:
        assert MODEL_KEYS <= set(m) and 0.0 <= m["test_accuracy"] <= 1.0
        mixer = by["mixer", m["seed"]]        # the same recipe, at Mixer's learning rate
        assert (m["lr"], m["recipe_hash"], m["steps"], m["n_train"]) == \
            (mixer["lr"], mixer["recipe_hash"], mixer["steps"], mixer["n_train"])
    rows = {(r["name"], r["seed"]): r for r in results["rows"]}
    for s in scale["seeds"]:
        for name in sl.FIXED:
            for layer in rows[name, s]["layers"]:
                for pre in ("", "init_"):
                    assert layer[pre + "input_dependence"] == 0.0 and layer[pre + "median"] == 0.0
                    assert set(layer[pre + "values"]) == {0.0}
        for name in sl.GENERATED:
            assert all(l["unit"] == "head" and l["median"] > 1e-4 for l in rows[name, s]["layers"])
        assert all(l["unit"] == "channel" and l["median"] > 0 for l in rows["mixer", s]["layers"])
        assert all(0.0 <= rows[n, s]["init_accuracy"] <= 1.0 for n in common.LADDER)
    assert rows["synth_random", 0]["layers"][0]["unit"] == "head"
    params = results["params"]
    assert set(params) == set(common.LADDER) and params["mixer"]["ratio_to_mixer"] == 1.0
    assert all(0.75 <= p["ratio_to_mixer"] <= 1.25 for p in params.values())
    assert rows["dot_attention", 0]["params"] == params["dot_attention"]["count"]
    assert [c["id"] for c in results["claims"]] == CLAIM_IDS
    for c in results["claims"]:
        assert CLAIM_KEYS <= set(c) and c["verdict"] in common.VERDICTS
        assert c["ci_low"] <= c["effect"] <= c["ci_high"]
        assert c["margin"] == margin_of(c["id"])["margin"]
        assert c["confidence"] == common.CONFIDENCE[c["test"]]
        assert "controls" in c["experiment"] and "initialisation" in c["experiment"]
        assert len(c["per_family"]) == 2
    same, gen = results["claims"]
    assert list(same["per_family"]) == ["mixer - synth_random", "token_linear - token_softmax"]
    assert list(gen["per_family"]) == ["dot_attention - synth_random", "synth_dense - synth_random"]
    acc = {k: r["test_accuracy"] for k, r in rows.items()}
    seeds = scale["seeds"]
    assert same["effect"] == pytest.approx(
        sum(acc["mixer", s] - acc["synth_random", s] for s in seeds) / len(seeds))
    assert gen["per_family"]["synth_dense - synth_random"]["effect"] == pytest.approx(
        sum(acc["synth_dense", s] - acc["synth_random", s] for s in seeds) / len(seeds))
    assert same["details"]["without_softmax"]["verdict"] in common.VERDICTS
    assert set(same["reference"]["input_dependence"]) == set(common.LADDER)
    checks = {c["id"]: c for c in results["checks"]}
    assert set(checks) == CHECK_IDS and all(c["holds"] for c in checks.values())
    assert checks["ladder_fixed_rungs_input_dependence_is_zero"]["max_abs_error"] == 0.0
    assert (out / "synthesizer_ladder.pdf").stat().st_size > 5000


def test_plot_only_redraws(quick):
    _, out, _ = quick
    (out / "synthesizer_ladder.pdf").unlink()
    assert sl.main(["--plot-only", "--results", str(out), "--figures", str(out)]) == 0
    assert (out / "synthesizer_ladder.pdf").stat().st_size > 5000


def test_missing_full_scale_models_name_the_make_target(monkeypatch):
    from analyses.cells import Cell, quick_recipe

    class Store:
        def is_done(self, cell):
            return cell.family == "mixer"

    recipe = quick_recipe()
    monkeypatch.setattr(converged, "recipe_and_store", lambda quick: (recipe, Store()))
    monkeypatch.setattr(converged, "cells_for", lambda fams, seeds, **kw: [
        Cell(f, recipe.full_n, s, 1e-3, recipe) for f in fams for s in seeds])
    with pytest.raises(ValueError, match="make cells-ladder"):
        sl._models(list(common.LADDER), [0], quick=False, progress=False)


# ----------------------------------------------------------------------------- claim rules


def _results(acc, *, dep=None, params=None):
    """Hand-made results: per-rung per-seed test accuracies (default 0.85), input dependence
    (fixed rungs 0, the others 0.1), parameter ratios (default all 1)."""
    rows = []
    for name in common.LADDER:
        for s in range(3):
            d = (dep or {}).get(name, 0.0 if name in sl.FIXED else 0.1)
            layer = {"depth": 0, "unit": "head", "input_dependence": d, "median": d,
                     "values": [d] * 4, "init_input_dependence": d, "init_median": d,
                     "init_values": [d] * 4}
            rows.append({"name": name, "seed": s, "test_accuracy": acc.get(name, [0.85] * 3)[s],
                         "init_accuracy": 0.1, "median": d, "init_median": d, "layers": [layer]})
    ratio = params or {}
    return {"rows": rows, "params": {n: {"count": int(5e5 * ratio.get(n, 1.0)),
                                         "ratio_to_mixer": ratio.get(n, 1.0)}
                                     for n in common.LADDER}}


def _claims(acc, **kw):
    return {c.key: c for c in sl.claims(_results(acc, **kw))}


def test_claims_supported():
    acc = {"mixer": [0.850, 0.860, 0.855], "synth_random": [0.851, 0.859, 0.856],
           "token_linear": [0.84, 0.85, 0.845], "token_softmax": [0.842, 0.848, 0.846],
           "dot_attention": [0.90, 0.91, 0.905], "synth_dense": [0.851, 0.859, 0.856]}
    c = _claims(acc)
    same, gen = c["mixer_is_synthesizer_random"], c["generated_attention_adapts_better"]
    assert (same.verdict, gen.verdict) == ("supported", "supported")
    assert (same.test, gen.test) == ("equivalence", "direction")
    assert same.confidence == 0.9 and gen.confidence == 0.95
    assert same.details["without_softmax"]["verdict"] == "supported"
    assert gen.estimate == pytest.approx((0.049 + 0.051 + 0.049) / 3)   # paired by seed
    # Dense Synthesizer no better than Synthesizer-Random: its own interval says so
    assert gen.per_family["synth_dense - synth_random"]["effect"] == pytest.approx(0.0, abs=1e-12)
    assert gen.details["dense_minus_random"]["verdict"] == "negligible"


def test_claims_opposite_and_the_two_comparisons_can_disagree():
    acc = {"mixer": [0.88, 0.89, 0.885], "synth_random": [0.80, 0.81, 0.805],
           "token_linear": [0.80, 0.81, 0.805], "token_softmax": [0.801, 0.809, 0.806],
           "dot_attention": [0.75, 0.76, 0.755], "synth_dense": [0.83, 0.84, 0.835]}
    c = _claims(acc)
    same, gen = c["mixer_is_synthesizer_random"], c["generated_attention_adapts_better"]
    assert (same.verdict, gen.verdict) == ("opposite", "opposite")
    # the softmax alone changes nothing: the difference sits in the hidden layer / heads
    assert same.details["without_softmax"]["verdict"] == "supported"
    pair = same.per_family["token_linear - token_softmax"]
    assert pair["ci_low"] > -0.01 and pair["ci_high"] < 0.01
    # opposite signs stay visible: (f) below (d), (e) above it
    assert gen.per_family["dot_attention - synth_random"]["ci_high"] < 0
    assert gen.per_family["synth_dense - synth_random"]["ci_low"] > 0
    assert gen.details["dense_minus_random"]["verdict"] == "supported"


def test_claims_inconclusive_and_negligible():
    acc = {"mixer": [0.85, 0.86, 0.85], "synth_random": [0.80, 0.86, 0.90],
           "dot_attention": [0.80, 0.90, 0.85]}
    c = _claims(acc)
    assert c["mixer_is_synthesizer_random"].verdict == "inconclusive"
    assert c["generated_attention_adapts_better"].verdict == "inconclusive"
    acc = {"synth_random": [0.85, 0.86, 0.85], "dot_attention": [0.852, 0.861, 0.853]}
    assert _claims(acc)["generated_attention_adapts_better"].verdict == "negligible"


def test_claims_need_the_compared_rungs():
    r = _results({})
    r["rows"] = [row for row in r["rows"] if row["name"] != "token_softmax"]
    with pytest.raises(ValueError, match="token_softmax"):
        sl.claims(r)


def test_claims_reference_input_dependence_and_initialisation():
    c = _claims({})["mixer_is_synthesizer_random"]
    ref = c.reference
    assert ref["input_dependence"]["synth_random"]["effect"] == 0.0
    assert ref["input_dependence"]["dot_attention"]["effect"] == pytest.approx(0.1)
    assert ref["init_accuracy"]["mixer"]["effect"] == pytest.approx(0.1) and ref["chance"] == 0.1


def test_checks_on_constructed_results():
    rows = {c.key: c for c in sl.checks(_results({}))}
    assert set(rows) == CHECK_IDS and all(c.holds for c in rows.values())
    res = _results({})
    victim = next(r for r in res["rows"] if r["name"] == "token_softmax")
    victim["layers"][0]["init_values"][1] = 1e-7          # one unit of one init map varies
    zero = {c.key: c for c in sl.checks(res)}["ladder_fixed_rungs_input_dependence_is_zero"]
    assert not zero.holds and zero.max_abs_error == pytest.approx(1e-7)
    assert "token_softmax init" in zero.details["worst"]
    band = {c.key: c for c in sl.checks(_results({}, params={"dot_attention": 1.31}))}
    band = band["ladder_parameter_band"]
    assert not band.holds and band.details["worst"] == "dot_attention"
    assert band.max_abs_error == pytest.approx(0.31)
