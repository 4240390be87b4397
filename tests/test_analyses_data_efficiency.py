"""analyses.data_efficiency: the quick run on the recipe's cells (format, step rule, curves),
the claim's pairing and verdicts on constructed results, per-family effects, --plot-only."""
import json
import math

import pytest

from analyses import common, converged
from analyses import data_efficiency as de
from analyses.cells import RECIPE_PATH, Store, committed_recipe, quick_recipe

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

MODEL_KEYS = {"family", "n_train", "seed", "steps", "lr", "val_accuracy", "test_accuracy", "weights",
              "sha256", "recipe_hash"}
CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("data_efficiency")
    args, code, results = quick_analysis(de, out)
    assert code == 0
    return out, args, results


# ----------------------------------------------------------------------------- quick run


def test_quick_run_uses_every_cell_of_the_quick_plan(quick):
    out, _, res = quick
    recipe = quick_recipe()
    fams = de.SCALES["quick"]["families"]
    plan = {int(n): s for n, s in recipe.plans["data-efficiency"]["sizes"].items()}
    plan[recipe.full_n] = recipe.plans["full"]["seeds"]
    assert res["sizes"] == sorted(plan) and res["scale"] == "quick"
    got = sorted((r["family"], r["n_train"], r["seed"]) for r in res["models"])
    assert got == sorted((f, n, s) for f in fams for n, seeds in plan.items() for s in seeds)
    for r in res["models"]:
        assert set(r) >= MODEL_KEYS and r["recipe_hash"] == recipe.hash
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert (common.ROOT / r["weights"]).is_file()
    assert res["checks"] == []
    assert (out / "data_efficiency.pdf").stat().st_size > 5000
    assert (out / "training_curves.pdf").stat().st_size > 5000


def test_quick_steps_follow_the_recipe_rule_and_are_the_same_for_every_family(quick):
    _, _, res = quick
    rule = quick_recipe().training["steps"]
    batch = quick_recipe().batch_size
    for r in res["models"]:
        expected = max(rule["min_steps"], math.ceil(rule["epochs"] * r["n_train"] / batch))
        assert r["steps"] == expected == res["steps"][str(r["n_train"])]
    by_size = {}
    for r in res["models"]:
        by_size.setdefault(r["n_train"], set()).add(r["steps"])
    assert all(len(s) == 1 for s in by_size.values())


def test_full_plan_is_the_committed_recipe_with_its_step_rule():
    spec = json.loads(RECIPE_PATH.read_text())
    train = spec["training"]
    full_n = 60000 - train["data"]["val_n"]
    expected = {int(n): sorted(s) for n, s in spec["plans"]["data-efficiency"]["sizes"].items()}
    expected[full_n] = sorted(spec["plans"]["full"]["seeds"])
    assert de.plan(quick=False) == expected
    recipe = committed_recipe()
    for n in expected:
        rule = max(train["steps"]["min_steps"],
                   math.ceil(train["steps"]["epochs"] * n / train["batch_size"]))
        assert recipe.steps(n) == rule
    assert sorted(expected)[-1] == recipe.full_n


def test_quick_claim_row_has_every_family_and_the_curves(quick):
    _, _, res = quick
    (row,) = res["claims"]
    assert set(row) >= CLAIM_KEYS and row["id"] == "mlps_need_more_data"
    assert row["verdict"] in common.VERDICTS and row["ci_low"] <= row["effect"] <= row["ci_high"]
    fams = de.SCALES["quick"]["families"]
    assert set(row["per_family"]) == set(fams) - {"cnn"}          # ViT included
    assert set(row["sensitivity"]) == {"half", "double"}
    assert row["confidence"] == 0.95 and row["test"] == "direction"
    assert set(row["reference"]["initialisation_accuracy"]) == set(fams)
    # a validation curve and a plateau measure for every model
    assert len(res["curves"]) == len(res["models"])
    for c in res["curves"]:
        assert c["val_curve"][-1][0] == c["steps"]
        assert c["plateau"]["final"] == c["val_curve"][-1][1]
    full = str(res["sizes"][-1])
    for f in fams:
        assert set(res["summary"]["plateau"][f][full]) == {"gain_last_20pct", "gain_previous_20pct",
                                                           "final_val_accuracy"}
        if f != "cnn":
            assert set(res["summary"]["gap_to_cnn"][f]) == {str(n) for n in res["sizes"]}


def test_plot_only_redraws_both_figures(quick):
    out, args, _ = quick
    for name in ("data_efficiency.pdf", "training_curves.pdf"):
        (out / name).unlink()
    assert de.main(args + ["--plot-only"]) == 0
    assert (out / "data_efficiency.pdf").stat().st_size > 5000
    assert (out / "training_curves.pdf").stat().st_size > 5000


def test_missing_full_scale_cells_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    recipe = committed_recipe()
    monkeypatch.setattr(converged, "recipe_and_store",
                        lambda quick: (recipe, Store(tmp_path / "runs", tmp_path / "models")))
    monkeypatch.setattr(converged, "lrs", lambda families, quick: {f: 1e-3 for f in families})
    code = de.main(["--results", str(tmp_path), "--figures", str(tmp_path), "--cache",
                    str(tmp_path / "cache"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not trained yet" in err
    assert "make cells-data-efficiency" in err and "make cells-full" in err


# ----------------------------------------------------------------------------- plateau


def test_plateau_is_the_gain_over_the_last_fifth_of_the_steps():
    flat = [[250, 0.5], [500, 0.9], [750, 0.9], [1000, 0.9]]
    p = de.plateau(flat, 1000)
    assert p["last"] == pytest.approx(0.0) and p["final"] == 0.9
    rising = [[s, s / 1000] for s in range(100, 1001, 100)]
    p = de.plateau(rising, 1000)
    assert p["last"] == pytest.approx(0.2) and p["previous"] == pytest.approx(0.2)
    between = [[250, 0.6], [500, 0.8], [750, 0.85], [1000, 0.9]]   # 800 lies between evaluations
    assert de.plateau(between, 1000)["last"] == pytest.approx(0.9 - (0.85 + 0.05 * 50 / 250))


# ----------------------------------------------------------------------------- claims


SMALL, FULL = 1000, 55000
SMALL_SEEDS, FULL_SEEDS = [0, 1, 2, 3, 4], [0, 1, 2]


def _results(shrink, *, extra_gap=0.0, other=None):
    """Constructed results: every family's (CNN - family) gap is 0.01 at the full size and
    ``0.01 + shrink[family][seed]`` at the smallest (seeds 0-2); seeds 3, 4 (smallest size
    only) get a gap of ``extra_gap``. ``shrink`` is one list for all families or a dict."""
    fams = [f for f in common.FAMILIES if f != "cnn"]
    per = shrink if isinstance(shrink, dict) else {f: shrink for f in fams}
    models = []
    for seed in SMALL_SEEDS:
        models.append({"family": "cnn", "n_train": SMALL, "seed": seed, "test_accuracy": 0.80})
        for f in fams:
            gap = 0.01 + per[f][seed] if seed in FULL_SEEDS else extra_gap
            models.append({"family": f, "n_train": SMALL, "seed": seed, "test_accuracy": 0.80 - gap})
    for seed in FULL_SEEDS:
        models.append({"family": "cnn", "n_train": FULL, "seed": seed, "test_accuracy": 0.92})
        for f in fams:
            models.append({"family": f, "n_train": FULL, "seed": seed, "test_accuracy": 0.91})
    return {"models": models, "steps": {str(SMALL): 1500, str(FULL): 5157}}


@pytest.mark.parametrize("shrink, verdict", [
    ([0.05, 0.06, 0.055], "supported"),
    ([0.001, -0.001, 0.0], "negligible"),
    ([-0.05, -0.06, -0.055], "opposite"),
    ([0.0, 0.05, 0.02], "inconclusive"),
])
def test_claim_gives_each_verdict(shrink, verdict):
    (c,) = de.claims(_results(shrink))
    assert c.key == "mlps_need_more_data" and c.verdict == verdict
    assert c.estimate == pytest.approx(sum(shrink) / 3)
    lo, hi = common.mean_ci(shrink, confidence=0.95)[1:]
    assert (c.low, c.high) == pytest.approx((lo, hi))


def test_claim_pairs_by_the_seeds_trained_at_both_sizes():
    shrink = [0.02, 0.03, 0.025]
    a = de.claims(_results(shrink, extra_gap=0.0))[0]
    b = de.claims(_results(shrink, extra_gap=0.30))[0]     # seeds 3, 4 only change the unpaired view
    assert (a.estimate, a.low, a.high) == (b.estimate, b.low, b.high)
    assert a.details["paired_seeds"] == FULL_SEEDS
    assert a.details["unpaired_all_seeds"]["seeds"] == {str(SMALL): 5, str(FULL): 3}
    assert b.details["unpaired_all_seeds"]["effect"] > a.details["unpaired_all_seeds"]["effect"] + 0.1
    assert "seeds trained at both sizes (0, 1, 2)" in a.effect and "(3, 4)" in a.effect


def test_per_family_effects_keep_opposite_signs_and_vit():
    shrink = {f: [0.0, 0.0, 0.0] for f in common.FAMILIES if f != "cnn"}
    shrink["mixer"] = [0.06, 0.05, 0.055]
    shrink["fnet"] = [-0.06, -0.05, -0.055]
    shrink["vit"] = [0.10, 0.11, 0.09]
    (c,) = de.claims(_results(shrink))
    pf = c.per_family
    assert set(pf) == set(common.FAMILIES) - {"cnn"}
    assert pf["mixer"]["ci_low"] > 0 > pf["fnet"]["ci_high"]
    assert pf["vit"]["effect"] == pytest.approx(0.10)
    # the group is the MLP families only: ViT's large effect does not enter it
    assert c.estimate == pytest.approx(0.0)
    row = c.as_result()
    assert set(row) >= CLAIM_KEYS and row["per_family"]["fnet"]["effect"] < 0


def test_gap_to_cnn_per_size_is_paired_by_seed():
    s = de.summary(_results([0.05, 0.06, 0.055], extra_gap=0.02))
    gap_small = s["gap_to_cnn"]["vit"][str(SMALL)]
    assert gap_small["n"] == 5
    assert gap_small["effect"] == pytest.approx((0.06 + 0.07 + 0.065 + 0.02 + 0.02) / 5)
    assert s["gap_to_cnn"]["vit"][str(FULL)]["effect"] == pytest.approx(0.01)
    assert s["accuracy"]["cnn"][str(FULL)]["effect"] == pytest.approx(0.92)


def test_full_scale_reads_the_cells_cards(tmp_path, monkeypatch):
    """Full scale end to end on hand-written cards (no weights needed but the full-data files
    the store checks for): every planned cell is read, the step rule is the committed one."""
    from probe.results import atomic_write_json
    recipe = committed_recipe()
    store = Store(tmp_path / "runs", tmp_path / "models")
    monkeypatch.setattr(converged, "recipe_and_store", lambda quick: (recipe, store))
    monkeypatch.setattr(converged, "lrs", lambda families, quick: {f: 2e-3 for f in families})
    monkeypatch.setattr(de, "_initial_accuracy",       # covered by the quick run; slow here
                        lambda fams, seeds, quick: {f: {str(s): 0.1 for s in seeds} for f in fams})
    target = {f: 0.90 - 0.01 * i for i, f in enumerate(common.FAMILIES)}
    for n, seeds in de.plan(quick=False).items():
        for cell in converged.cells_for(common.FAMILIES, seeds, n_train=n):
            steps = recipe.steps(n)
            final = target[cell.family] - 0.1 * (recipe.full_n - n) / recipe.full_n + 0.001 * cell.seed
            curve = [[s, round(final * (1 - math.exp(-5 * s / steps)), 4)]
                     for s in list(range(250, steps, 250)) + [steps]]
            if cell.is_full:
                store.weights_path(cell).parent.mkdir(parents=True, exist_ok=True)
                store.weights_path(cell).write_bytes(b"")
            atomic_write_json(store.card_path(cell), {
                "family": cell.family, "n_train": n, "seed": cell.seed, "lr": cell.lr,
                "steps": steps, "recipe_hash": recipe.hash, "val_accuracy": curve[-1][1],
                "test_accuracy": final, "val_curve": curve, "sha256": "0" * 64})
    out = tmp_path / "out"
    assert de.main(["--results", str(out), "--figures", str(out), "--cache", str(out / "c"),
                    "--no-progress"]) == 0
    res = json.loads((out / "data_efficiency.json").read_text())
    assert len(res["models"]) == len(common.FAMILIES) * sum(len(s) for s in de.plan(False).values())
    assert res["steps"] == {str(n): recipe.steps(n) for n in de.plan(False)}
    (row,) = res["claims"]
    assert set(row["per_family"]) == set(common.FAMILIES) - {"cnn"}
    assert row["details"]["paired_seeds"] == sorted(recipe.plans["full"]["seeds"])
    # the constructed curves have flattened by the last fifth of the steps
    full = str(recipe.full_n)
    for f in common.FAMILIES:
        p = res["summary"]["plateau"][f][full]
        assert 0 < p["gain_last_20pct"]["effect"] < p["gain_previous_20pct"]["effect"]
        assert p["final_val_accuracy"]["effect"] == pytest.approx(
            (target[f] + 0.001) * (1 - math.exp(-5)), abs=2e-4)
    assert (out / "training_curves.pdf").stat().st_size > 5000
