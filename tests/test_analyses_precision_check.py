"""analyses.precision_check: bf16 vs fp32 training of one family, a check of the protocol."""
import pytest

from analyses import precision_check as pc


def _results(bf16, fp32, tolerance=0.01):
    models = []
    for s, (a, b) in enumerate(zip(bf16, fp32)):
        models.append({"seed": s, "test_accuracy": a, "train_autocast": "bfloat16", "train_time_s": 100.0})
        models.append({"seed": s, "test_accuracy": b, "train_autocast": None, "train_time_s": 180.0})
    return {"models": models, "family": "cnn", "n_train": 10000, "settings": {"tolerance": tolerance}}


def test_check_holds_when_bf16_and_fp32_agree_within_seed_noise():
    (c,) = pc.checks(_results([0.900, 0.905, 0.898], [0.901, 0.903, 0.899]))
    assert c.holds and c.key == "bf16_training_matches_fp32"
    assert c.details["mean_difference"] == pytest.approx(0.0, abs=1e-3)
    assert c.details["time_ratio_fp32_over_bf16"] == pytest.approx(1.8)
    assert pc.claims(_results([0.9], [0.9])) == []              # a check, never evidence


def test_check_fails_when_bf16_costs_accuracy():
    (c,) = pc.checks(_results([0.880, 0.882, 0.879], [0.900, 0.903, 0.899]))
    assert not c.holds and c.details["ci_high"] < -0.01


def test_check_fails_when_seeds_disagree_too_much_to_tell():
    (c,) = pc.checks(_results([0.90, 0.86, 0.93], [0.90, 0.91, 0.88]))
    assert not c.holds                                          # interval wider than +-1 point


def test_quick_run_pairs_the_cells_by_seed(quick_analysis, tmp_path):
    _, code, res = quick_analysis(pc, tmp_path)
    assert code == 0 and res["claims"] == []
    autocast = sorted((m["seed"], m["train_autocast"] or "fp32") for m in res["models"])
    assert autocast == [(0, "bfloat16"), (0, "fp32"), (1, "bfloat16"), (1, "fp32")]
    assert {m["recipe_hash"] for m in res["models"] if m["train_autocast"]} != \
        {m["recipe_hash"] for m in res["models"] if not m["train_autocast"]}
    (row,) = res["checks"]
    assert row["id"] == "bf16_training_matches_fp32" and set(row) >= {"max_abs_error", "tolerance", "holds"}
    assert (tmp_path / "precision_check.pdf").is_file()
