"""analyses/: verdict rules, intervals, the committed margins, claims and checks, the report
(from made-up results files in the current format) and the committed report."""
import json
import math
from pathlib import Path

import pytest
import torch

from analyses import common, report, verdicts

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize("low, high, expected", [
    (0.03, 0.08, "supported"),            # above the margin
    (-0.004, 0.006, "negligible"),        # inside +-margin
    (-0.008, -0.001, "negligible"),       # below 0 but inside +-margin: negligible first
    (-0.08, -0.02, "opposite"),           # the other way, beyond the margin
    (-0.02, -0.001, "opposite"),          # below 0, partly beyond the margin
    (-0.02, 0.05, "inconclusive"),
    (0.005, 0.05, "inconclusive"),        # above 0, not above the margin
])
def test_direction_verdict_rule(low, high, expected):
    assert verdicts.direction_verdict(low, high, margin=0.01) == expected


@pytest.mark.parametrize("low, high, expected", [
    (-0.004, 0.006, "supported"), (0.02, 0.05, "opposite"), (-0.05, -0.02, "opposite"),
    (-0.005, 0.03, "inconclusive")])
def test_equivalence_verdict_rule(low, high, expected):
    assert verdicts.equivalence_verdict(low, high, margin=0.01) == expected


def test_sensitivity_recomputes_the_verdict_at_half_and_twice_the_margin():
    assert verdicts.sensitivity("direction", 0.015, 0.03, 0.01) == {"half": "supported",
                                                                    "double": "inconclusive"}
    assert verdicts.sensitivity("equivalence", -0.008, 0.008, 0.01) == {"half": "inconclusive",
                                                                        "double": "supported"}
    with pytest.raises(ValueError, match="test must be"):
        verdicts.decide("maybe", 0, 1, 0.1)


def _claim(key="mlps_need_more_data", estimate=0.05, low=0.03, high=0.07, **kw):
    return verdicts.Claim(key, "c", "w", "e", "f.pdf", "x", estimate, low, high, **kw)


def test_claim_takes_margin_and_test_from_the_margins_file():
    entry = verdicts.margin_of("mlps_need_more_data")
    c = _claim()
    assert (c.margin, c.test, c.verdict) == (entry["margin"], entry["test"], "supported")
    assert c.margin_reason == entry["reason"] and c.confidence == 0.95
    eq = _claim("mlps_similar_accuracy", 0.0, -0.002, 0.003)
    assert (eq.test, eq.confidence, eq.verdict) == ("equivalence", 0.90, "supported")
    with pytest.raises(TypeError):
        verdicts.Claim("mlps_need_more_data", "c", "w", "e", "f", "x", 0, -1, 1, margin=0.5)
    with pytest.raises(KeyError, match="no margin"):
        _claim("a_claim_without_a_margin")
    with pytest.raises(ValueError, match="outside its interval"):
        _claim(estimate=0.2)


def test_claim_result_row_has_the_issue_format():
    per = verdicts.family_effects({"mixer": [0.1, 0.12, 0.08], "fnet": [-0.2, -0.1, -0.15]})
    row = _claim(per_family=per).as_result()
    for key in ("id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
                "sensitivity"):
        assert key in row
    assert row["per_family"]["fnet"]["ci_high"] < 0 < row["per_family"]["mixer"]["ci_low"]
    assert set(row["sensitivity"]) == {"half", "double"}
    json.dumps(row)                                             # serialisable as is


def test_check_holds_only_within_tolerance():
    assert verdicts.Check("k", "w", 1e-7, 1e-4).holds
    assert not verdicts.Check("k", "w", 2e-4, 1e-4).holds


def test_margins_file_gives_every_claim_a_margin_and_a_reason():
    table = verdicts.margins()
    assert table and all(e["reason"].strip() and e["margin"] >= 0 for e in table.values())
    assert {e["test"] for e in table.values()} == {"direction", "equivalence"}
    # no orphan margins: every id is a claim some analysis makes
    source = "".join(p.read_text() for p in (ROOT / "analyses").glob("*.py"))
    assert [k for k in table if f'"{k}"' not in source] == []


def test_bad_margins_file_is_named(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"margins": {"x": {"margin": 0.1, "test": "direction"}}}))
    with pytest.raises(ValueError, match="one-line 'reason'"):
        verdicts.margins(bad)


# ----------------------------------------------------------------------------- intervals


def test_intervals():
    m, lo, hi = common.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    assert common.mean_ci([0.5]) == (0.5, 0.5, 0.5)
    _, lo90, hi90 = common.mean_ci([1.0, 2.0, 3.0], confidence=0.90)
    assert lo < lo90 < hi90 < hi                                # 90% is narrower
    d, lo, hi = common.diff_ci([1.0, 1.1, 0.9], [0.0, 0.1, -0.1])
    assert d == pytest.approx(1.0) and 0 < lo < 1 < hi
    assert common.diff_ci([1.0], [0.0]) == (1.0, 1.0, 1.0)


def test_positive_intervals_stay_positive():
    values = [0.01, 0.2, 0.003]                    # a t interval of these goes below 0
    assert common.mean_ci(values)[1] < 0
    g, lo, hi = verdicts.positive_ci(values)
    assert 0 < lo < g < hi and g == pytest.approx(math.exp(sum(map(math.log, values)) / 3))
    r, lo, hi = verdicts.ratio_ci([2.0, 2.2, 1.9], [1.0, 1.1, 0.95])
    assert 0 < lo < r < hi and r == pytest.approx(2.0, rel=0.01)
    with pytest.raises(ValueError, match="positive"):
        verdicts.positive_ci([0.0, 1.0])


def test_group_effect_averages_families_seed_by_seed_and_keeps_each_family():
    effects = {"mixer": [0.10, 0.12, 0.08], "fnet": [-0.20, -0.10, -0.15], "vit": [0.0, 0.01, 0.02]}
    est, lo, hi, per = verdicts.group_effect(effects, ["mixer", "fnet"])
    assert est == pytest.approx(-0.025) and lo < est < hi
    assert set(per) == {"mixer", "fnet", "vit"}                 # ViT listed though not in the group
    assert per["fnet"]["ci_high"] < 0 < per["mixer"]["ci_low"]  # opposite signs stay visible
    with pytest.raises(ValueError, match="different numbers of seeds"):
        verdicts.group_effect({"a": [1, 2], "b": [1, 2, 3]}, ["a", "b"])


def test_synthesizer_variant_mixing_is_softmax_matrix():
    from probe import mixing
    model = common.build("synth", seed=0).eval()
    block = model.net.blocks[0].mlp_tokens
    with torch.no_grad():
        block.logits.normal_(0, 1.0)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    maps = mixing.extract(model, x, layers=[0])
    expected = block.logits.softmax(-1)
    assert torch.allclose(maps[0].matrix[0, 0], expected, atol=1e-5)
    assert float(mixing.input_dependence(maps[0]).max()) < 1e-8
    assert torch.allclose(expected.sum(-1), torch.ones(49))


# ----------------------------------------------------------------------------- report


def test_multiplicity_statement_counts_the_claims():
    claims = [_claim(), _claim("mlps_similar_accuracy", 0.0, -0.002, 0.003)]
    text = report.multiplicity(claims)
    assert "tests 2 claims (1 directional at 95%, 1 equivalence at 90%)" in text
    assert f"about {0.05 + 0.10:.1f} of them" in text


def test_report_without_results_fails_cleanly(tmp_path, capsys):
    assert report.main(["--results", str(tmp_path), "--figures", str(tmp_path),
                        "--markdown", str(tmp_path / "R.md")]) == 2
    assert "no analysis results" in capsys.readouterr().err


def test_report_refuses_results_of_the_old_protocol(tmp_path, capsys):
    (tmp_path / "cost_accuracy.json").write_text(json.dumps({"rows": [], "scale": "full"}))
    assert report.main(["--results", str(tmp_path), "--figures", str(tmp_path),
                        "--markdown", str(tmp_path / "R.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "predates the converged-model protocol" in err
    assert err.count("\n") == 1


def test_committed_report_and_readme_match_committed_results():
    """REPORT.md and the README durations are what the committed results give (not hand-edited)."""
    paths = common.Paths(common.RESULTS, common.FIGURES, common.MODEL_CACHE)
    found, missing, _ = report.collect(paths, redraw=False)
    assert all(results["scale"] == "full" for _, results, _, _ in found)
    assert (common.ROOT / "REPORT.md").read_text() == report.markdown(found, missing)
    assert report.durations_table(found) in (common.ROOT / "README.md").read_text()


def test_committed_results_were_made_with_the_full_settings():
    """Each committed results file was computed at its script's current full scale."""
    import importlib
    paths = common.Paths(common.RESULTS, common.FIGURES, common.MODEL_CACHE)
    for name in report.ANALYSES:
        if not common.result_path(paths, name).is_file():
            continue
        module = importlib.import_module(f"analyses.{name}")
        results = common.load_results(paths, name)
        assert results["settings"] == json.loads(json.dumps(module.SCALES["full"])), name
        # the rows written at compute time are what the committed margins give now
        assert results["claims"] == json.loads(json.dumps(
            [c.as_result() for c in module.claims(results)])), name
