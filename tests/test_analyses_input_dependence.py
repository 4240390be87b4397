"""Tests of analyses.input_dependence: the quick run end to end (models / claims / checks rows,
the Synthesizer-Random cells (the ladder's rung (d)) at Mixer's learning rate, the
initialisation beside every value, per-channel distributions, gMLP's gate, ViT per head,
figure, --plot-only), the log-scale level of a non-negative quantity, the exact-zero check,
and the verdicts of its claim on hand-made results. The accuracy claims comparing Mixer,
Synthesizer-Random and attention are tested in test_analyses_synthesizer_ladder.py."""
import math

import numpy as np
import pytest

from analyses import common
from analyses import input_dependence as idep
from analyses.verdicts import margin_of

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

CLAIM_IDS = ["mixer_mixing_is_fixed"]
SYNTH = idep.VARIANT      # Synthesizer-Random as published (synth_random), the zero reference
MODEL_KEYS = {"family", "n_train", "seed", "steps", "lr", "val_accuracy", "test_accuracy", "weights",
              "recipe_hash"}
CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, quick_analysis):
    """One quick run (the quick recipe's cells, synth_random's trained on the spot) shared by the
    tests."""
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
        synth, mixer = by[SYNTH, s], by["mixer", s]
        assert (synth["lr"], synth["recipe_hash"], synth["steps"], synth["n_train"]) == \
            (mixer["lr"], mixer["recipe_hash"], mixer["steps"], mixer["n_train"])
        assert synth["weights"].endswith(f"{SYNTH}_n{synth['n_train']}_s{s}.safetensors")
    rows = {(r["name"], r["seed"]): r for r in results["rows"]}
    for s in scale["seeds"]:
        assert all(l["unit"] == "head" and len(l["values"]) > 1 for l in rows[SYNTH, s]["layers"])
        for layer in rows[SYNTH, s]["layers"] + rows["resmlp", s]["layers"]:
            for pre in ("", "init_"):       # fixed matrices: exactly 0, averaged and per unit
                assert layer[pre + "input_dependence"] == 0.0 and layer[pre + "median"] == 0.0
                assert set(layer[pre + "values"]) == {0.0}
        assert all(l["input_dependence"] > 1e-5 for l in rows["vit", s]["layers"])
        for layer in rows["vit", s]["layers"]:                    # ViT: per head and layer
            assert layer["unit"] == "head" and len(layer["per_head"]) == len(layer["values"]) > 1
            assert layer["median"] == pytest.approx(np.median(layer["per_head"]), rel=1e-5)
        for layer in rows["gmlp", s]["layers"]:                   # the gate is included
            assert layer["gated"] and layer["unit"] == "channel"
            assert layer["input_dependence"] > 1e-4 and layer["median"] > 1e-2
        for layer in rows["mixer", s]["layers"]:                  # every channel's Jacobian
            assert layer["unit"] == "channel" and len(layer["values"]) > 1
            dist = layer["distribution"]
            assert dist["n"] == len(layer["values"])
            assert dist["q05"] <= dist["q50"] <= dist["q95"]
            assert dist["q50"] == pytest.approx(layer["median"], rel=1e-3, abs=1e-6)
            # the channel average hides the per-channel variation (hundreds of times smaller)
            assert layer["median"] > 10 * layer["input_dependence"]
        for r in (rows[n, s] for n in names):
            assert all("init_input_dependence" in l and "init_median" in l for l in r["layers"])
            assert r["median"] == pytest.approx(np.mean([l["median"] for l in r["layers"]]))
            assert 0.0 <= r["init_accuracy"] <= 1.0
    assert len(results["examples"]["vit"]["image_0"]) == 7
    assert (out / "input_dependence.pdf").stat().st_size > 5000
    assert [c["id"] for c in results["claims"]] == CLAIM_IDS
    for c in results["claims"]:
        assert CLAIM_KEYS <= set(c) and c["verdict"] in common.VERDICTS
        assert c["ci_low"] <= c["effect"] <= c["ci_high"]
        assert c["margin"] == margin_of(c["id"])["margin"]
        assert c["confidence"] == common.CONFIDENCE[c["test"]]
        assert "controls" in c["experiment"] and "initialisation" in c["experiment"]
    fixed = results["claims"][0]
    for control in ("Synthesizer-Random", "gMLP with its gate", "ViT per head and layer",
                    "channel-averaged"):
        assert control in fixed["experiment"]
    assert "MEDIAN over channels" in fixed["effect_description"]
    assert set(fixed["per_family"]) == set(names)
    medians = [rows["mixer", s]["median"] for s in scale["seeds"]]
    assert fixed["effect"] == pytest.approx(float(np.exp(np.mean(np.log(medians)))), rel=1e-6)
    assert fixed["per_family"]["resmlp"]["effect"] == 0.0 and "note" in fixed["per_family"]["resmlp"]
    assert fixed["per_family"][SYNTH]["effect"] == 0.0
    assert fixed["per_family"]["vit"]["ci_low"] > 0 and fixed["per_family"]["gmlp"]["ci_low"] > 0
    assert set(fixed["reference"]["initialisation"]) == set(names)
    assert fixed["reference"]["channel_average"]["mixer"]["effect"] < fixed["effect"]
    checks = {c["id"]: c for c in results["checks"]}
    assert set(checks) == {"synthesizer_random_input_dependence_is_zero"}
    zero = checks["synthesizer_random_input_dependence_is_zero"]
    assert zero["holds"] is True and zero["max_abs_error"] == 0.0


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


def _layer(median, average, unit="channel", n=4):
    """One layer: per-unit values spread around ``median``, the channel average ``average``;
    the initialisation at half of each."""
    values = [median * f for f in np.linspace(0.5, 1.5, n)] if median else [0.0] * n
    return {"depth": 0, "kind": "k", "unit": unit, "input_dependence": average,
            "init_input_dependence": average / 2, "median": median, "init_median": median / 2,
            "per_head": [average], "init_per_head": [average / 2],
            "values": values, "init_values": [v / 2 for v in values]}


def _results(dep_mixer, average=None):
    """Hand-made results: Mixer's per-seed per-channel median input dependence (its channel
    average ``average`` or 1/300 of it), ViT 0.3, the rest 0."""
    rows = []
    for name in idep.MODELS:
        for s in range(3):
            dep = dep_mixer[s] if name == "mixer" else (0.3 if name == "vit" else 0.0)
            avg = (average[s] if average else dep / 300) if name == "mixer" else dep
            rows.append({"name": name, "seed": s, "test_accuracy": 0.85,
                         "init_accuracy": 0.1,
                         "layers": [_layer(dep, avg, "head" if name == "vit" else "channel")]})
    return {"rows": rows, "examples": {}}


def _verdict(dep_mixer):
    (fixed,) = idep.claims(_results(dep_mixer))
    return fixed.verdict


def test_claim_supported():
    (fixed,) = idep.claims(_results([0.01, 0.012, 0.011]))
    assert fixed.verdict == "supported" and fixed.test == "equivalence" and fixed.confidence == 0.9
    assert fixed.estimate == pytest.approx((0.01 * 0.012 * 0.011) ** (1 / 3))     # geometric mean
    assert fixed.reference["initialisation"]["mixer"]["effect"] == pytest.approx(fixed.estimate / 2)
    assert fixed.per_family[SYNTH]["effect"] == 0.0 and fixed.per_family["vit"]["effect"] == \
        pytest.approx(0.3)


def test_claim_opposite_and_inconclusive():
    assert _verdict([0.3, 0.32, 0.31]) == "opposite"
    assert _verdict([0.01, 0.09, 0.05]) == "inconclusive"


def test_exact_zero_mixing_is_fixed():
    (fixed,) = idep.claims(_results([0.0, 0.0, 0.0]))
    assert (fixed.estimate, fixed.low, fixed.high) == (0.0, 0.0, 0.0) and fixed.verdict == "supported"
    assert "note" in fixed.per_family["mixer"] and "floor_rule" in fixed.details


def test_accuracy_claims_moved_to_the_ladder():
    assert [c.key for c in idep.claims(_results([0.01] * 3))] == CLAIM_IDS


def test_claims_need_mixer_vit_and_synth():
    r = _results([0.01] * 3)
    r["rows"] = [row for row in r["rows"] if row["name"] != SYNTH]
    with pytest.raises(ValueError, match=SYNTH):
        idep.claims(r)
    assert math.isfinite(idep.claims(_results([0.01] * 3))[0].estimate)


def test_fixed_claim_uses_the_per_channel_median_not_the_channel_average():
    """Channels that each vary by ~30% across images average to a nearly fixed map (0.001):
    the claim reads the median channel, so it is opposite, not supported."""
    res = _results([0.3, 0.31, 0.29], average=[0.001, 0.0011, 0.0009])
    fixed = idep.claims(res)[0]
    assert fixed.verdict == "opposite"
    assert fixed.estimate == pytest.approx((0.3 * 0.31 * 0.29) ** (1 / 3))
    assert fixed.reference["channel_average"]["mixer"]["effect"] == pytest.approx(
        (0.001 * 0.0011 * 0.0009) ** (1 / 3))
    assert fixed.details["mixer_median_over_channel_average"][0] == pytest.approx(300)
    dist = fixed.details["distribution_per_layer"]["mixer"]
    assert dist["trained"][0]["q05"] < dist["trained"][0]["q50"] < dist["trained"][0]["q95"]
    assert dist["init"][0]["q50"] == pytest.approx(dist["trained"][0]["q50"] / 2)
    assert fixed.details["vit_per_head_per_layer"]["trained"] == [[0.3]]


def test_zero_check_on_constructed_results():
    res = _results([0.01] * 3)
    (zero,) = idep.checks(res)
    assert zero.key == "synthesizer_random_input_dependence_is_zero" and zero.holds
    synth = next(r for r in res["rows"] if r["name"] == SYNTH)
    synth["layers"][0]["init_values"][2] = 1e-7      # one channel of one init map varies
    (zero,) = idep.checks(res)
    assert not zero.holds and zero.max_abs_error == pytest.approx(1e-7)
    assert "init" in zero.details["worst"] and "per unit" in zero.details["worst"]


@pytest.fixture(scope="module")
def images():
    return common.test_set(4)[0]


def test_gmlp_gate_makes_its_mixing_input_dependent(images):
    """gMLP's spatial gating unit u * (P norm(v) + b) depends on the input through its gate u:
    measured with the gate, every layer's input dependence is > 0, per channel and averaged
    (the static projection P alone, the default extraction, reads exactly 0)."""
    from probe import mixing, zoo
    model = zoo.build("gmlp", seed=0).eval()
    _, layers = idep.layer_dependence(model, images)
    assert layers and all(l["gated"] and l["unit"] == "channel" for l in layers)
    for l in layers:
        assert l["input_dependence"] > 1e-4 and l["median"] > 1e-2
        assert min(l["values"]) > 0
    static = mixing.extract(model, images)
    assert all(float(mixing.input_dependence(m).max()) == 0.0 for m in static)


def test_fixed_matrices_read_exactly_zero(images):
    """Synthesizer-Random (per-head softmax(R_h)), the earlier single-head softmax(R) variant and
    ResMLP's linear token mixing: exactly 0, per unit too; Mixer's channels vary although their
    average barely does."""
    for name in (SYNTH, "synth", "resmlp"):
        _, layers = idep.layer_dependence(common.build(name, seed=0).eval(), images)
        for l in layers:
            assert l["input_dependence"] == 0.0 and l["median"] == 0.0
            assert set(l["values"]) == {0.0}
    _, layers = idep.layer_dependence(common.build("mixer", seed=0).eval(), images)
    for l in layers:
        assert len(l["values"]) > 1 and l["median"] > 10 * l["input_dependence"] > 0
