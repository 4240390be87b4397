"""Tests of analyses.input_dependence: the quick run end to end (models / claims / checks rows,
the Synthesizer-Random cells at Mixer's learning rate, the initialisation beside every value,
figure, --plot-only), the log-scale level of a non-negative quantity, and the verdicts of the
three claims on hand-made results."""
import math

import pytest

from analyses import common
from analyses import input_dependence as idep
from analyses.verdicts import margin_of

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

CLAIM_IDS = ["mixer_mixing_is_fixed", "mixer_is_synthesizer_random", "generated_attention_adapts_better"]
MODEL_KEYS = {"family", "n_train", "seed", "steps", "lr", "val_accuracy", "test_accuracy", "weights",
              "recipe_hash"}
CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, quick_analysis):
    """One quick run (the quick recipe's cells, synth's trained on the spot) shared by the tests."""
    out = tmp_path_factory.mktemp("input_dependence")
    _, code, results = quick_analysis(idep, out)
    return code, out, results


def test_quick_input_dependence(quick):
    code, out, results = quick
    assert code == 0
    scale = idep.SCALES["quick"]
    names = scale["families"] + scale["variants"]
    assert {(m["family"], m["seed"]) for m in results["models"]} == \
        {(n, s) for n in names for s in scale["seeds"]}
    for m in results["models"]:
        assert MODEL_KEYS <= set(m) and 0.0 <= m["test_accuracy"] <= 1.0
    # Synthesizer-Random: a cell of the same recipe at Mixer's (swept) learning rate
    by = {(m["family"], m["seed"]): m for m in results["models"]}
    for s in scale["seeds"]:
        synth, mixer = by["synth", s], by["mixer", s]
        assert (synth["lr"], synth["recipe_hash"], synth["steps"], synth["n_train"]) == \
            (mixer["lr"], mixer["recipe_hash"], mixer["steps"], mixer["n_train"])
        assert synth["weights"].endswith(f"synth_n{synth['n_train']}_s{s}.safetensors")
    rows = {(r["name"], r["seed"]): r for r in results["rows"]}
    for s in scale["seeds"]:
        for layer in rows["synth", s]["layers"] + rows["resmlp", s]["layers"]:
            assert layer["input_dependence"] < 1e-6 and layer["init_input_dependence"] < 1e-6
        assert all(l["input_dependence"] > 1e-5 for l in rows["vit", s]["layers"])
        for r in (rows[n, s] for n in names):
            assert all("init_input_dependence" in l for l in r["layers"])
            assert 0.0 <= r["init_accuracy"] <= 1.0
    assert len(results["examples"]["vit"]["image_0"]) == 7
    assert (out / "input_dependence.pdf").stat().st_size > 5000
    assert [c["id"] for c in results["claims"]] == CLAIM_IDS
    for c in results["claims"]:
        assert CLAIM_KEYS <= set(c) and c["verdict"] in common.VERDICTS
        assert c["ci_low"] <= c["effect"] <= c["ci_high"]
        assert c["margin"] == margin_of(c["id"])["margin"]
        assert c["confidence"] == common.CONFIDENCE[c["test"]]
    fixed = results["claims"][0]
    assert set(fixed["per_family"]) == set(names)
    assert fixed["per_family"]["resmlp"]["effect"] == 0.0 and "note" in fixed["per_family"]["resmlp"]
    assert fixed["per_family"]["vit"]["ci_low"] > 0
    assert set(fixed["reference"]["initialisation"]) == set(names)
    assert results["checks"] == []


def test_plot_only_redraws(quick):
    _, out, _ = quick
    (out / "input_dependence.pdf").unlink()
    assert idep.main(["--plot-only", "--results", str(out), "--figures", str(out)]) == 0
    assert (out / "input_dependence.pdf").stat().st_size > 5000


def test_level_stays_in_range_and_says_how_zeros_were_handled():
    lv = idep.level([0.01, 0.012, 0.011], confidence=0.9)
    assert 0 < lv["ci_low"] < lv["effect"] < lv["ci_high"] < 0.02 and lv["floored"] == 0
    assert lv["effect"] == pytest.approx((0.01 * 0.012 * 0.011) ** (1 / 3))
    # a log-scale interval: symmetric in ratio around the geometric mean
    assert lv["effect"] / lv["ci_low"] == pytest.approx(lv["ci_high"] / lv["effect"])
    zero = idep.level([0.0, 0.0, 1e-9], confidence=0.9)
    assert (zero["effect"], zero["ci_low"], zero["ci_high"]) == (0.0, 0.0, 0.0) and "note" in zero
    some = idep.level([0.0, 0.01, 0.02], confidence=0.9)       # one exact zero: floored, said
    assert some["floored"] == 1 and 0 < some["ci_low"] <= idep.FLOOR * 10
    wide = idep.level([0.02, 0.9], confidence=0.9)
    assert wide["ci_high"] == 1.0 and "capped" in wide and wide["ci_low"] > 0
    with pytest.raises(ValueError):
        idep.level([-0.1, 0.2], confidence=0.9)


# ----------------------------------------------------------------------------- claim rules


def _results(dep_mixer, acc):
    """Hand-made results: Mixer's per-seed input dependence, ViT 0.3, the rest 0; accuracies."""
    rows = []
    for name in idep.MODELS:
        for s in range(3):
            dep = dep_mixer[s] if name == "mixer" else (0.3 if name == "vit" else 0.0)
            rows.append({"name": name, "seed": s, "test_accuracy": acc.get(name, [0.85] * 3)[s],
                         "init_accuracy": 0.1,
                         "layers": [{"depth": 0, "kind": "k", "input_dependence": dep,
                                     "init_input_dependence": dep / 2}]})
    return {"rows": rows, "examples": {}}


def _verdicts(results):
    return tuple(c.verdict for c in idep.claims(results))


def test_claims_supported():
    acc = {"mixer": [0.85, 0.86, 0.85], "synth": [0.85, 0.86, 0.852], "vit": [0.89, 0.90, 0.89]}
    fixed, syn, gen = idep.claims(_results([0.01, 0.012, 0.011], acc))
    assert (fixed.verdict, syn.verdict, gen.verdict) == ("supported",) * 3
    assert (fixed.test, syn.test, gen.test) == ("equivalence", "equivalence", "direction")
    assert fixed.confidence == 0.9 and gen.confidence == 0.95
    assert fixed.estimate == pytest.approx((0.01 * 0.012 * 0.011) ** (1 / 3))     # geometric mean
    assert fixed.reference["initialisation"]["mixer"]["effect"] == pytest.approx(fixed.estimate / 2)
    assert fixed.per_family["synth"]["effect"] == 0.0 and fixed.per_family["vit"]["effect"] == \
        pytest.approx(0.3)


def test_claims_opposite():
    acc = {"mixer": [0.85, 0.86, 0.85], "synth": [0.80, 0.81, 0.80], "vit": [0.78, 0.785, 0.78]}
    assert _verdicts(_results([0.3, 0.32, 0.31], acc)) == ("opposite",) * 3


def test_claims_inconclusive():
    acc = {"mixer": [0.85, 0.86, 0.85], "synth": [0.80, 0.86, 0.90], "vit": [0.80, 0.90, 0.85]}
    assert _verdicts(_results([0.01, 0.09, 0.05], acc)) == ("inconclusive",) * 3


def test_generated_attention_negligible_and_exact_zero_mixing_is_fixed():
    acc = {"synth": [0.85, 0.86, 0.85], "vit": [0.852, 0.861, 0.853]}
    fixed, _, gen = idep.claims(_results([0.0, 0.0, 0.0], acc))
    assert gen.verdict == "negligible"
    assert (fixed.estimate, fixed.low, fixed.high) == (0.0, 0.0, 0.0) and fixed.verdict == "supported"
    assert "note" in fixed.per_family["mixer"] and "floor_rule" in fixed.details


def test_claims_need_mixer_vit_and_synth():
    r = _results([0.01] * 3, {})
    r["rows"] = [row for row in r["rows"] if row["name"] != "synth"]
    with pytest.raises(ValueError, match="synth"):
        idep.claims(r)
    assert math.isfinite(idep.claims(_results([0.01] * 3, {}))[0].estimate)
