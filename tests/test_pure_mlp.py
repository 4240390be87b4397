"""analyses.pure_mlp: the recipe's pure-mlp plan and the patch-7 Mixer, the effect arithmetic and
verdicts on hand-made results, the quick run end to end, clear errors on bad input."""
import copy
import importlib

import pytest
import torch

from analyses import common
from analyses import pure_mlp as pm
from analyses.cells import committed_recipe
from analyses.cells.groups import group_sizes

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_plan_and_patch_7_mixer():
    recipe = committed_recipe()
    spec = recipe.plans["pure-mlp"]
    assert spec["families"] == ["mlp", "mixer_p7"] and spec["seeds"] == [0, 1, 2]
    assert group_sizes(recipe, spec) == [1000, 10000, recipe.full_n]
    p7, p4 = common.build("mixer_p7", seed=0), common.build("mixer", seed=0)
    assert p7.net.stem.num_patches == 16 and p4.net.stem.num_patches == 49
    assert p7.net.stem.proj.kernel_size == (7, 7) and p7.net.stem.proj.stride == (7, 7)
    assert p7(torch.rand(2, 1, 28, 28)).shape == (2, 10)


SIZES = [1000, 10000, 55000]


def _results(acc):
    """Hand-made results: ``acc = {family: {n: [per-seed accuracy]}}``; shift consistency
    0.9 (Mixer), 0.85 (patch 7), 0.7 (MLP)."""
    models = [{"family": f, "n_train": n, "seed": s, "test_accuracy": a}
              for f, by_n in acc.items() for n, values in by_n.items() for s, a in enumerate(values)]
    level = {"mixer": 0.9, "mixer_p7": 0.85, "mlp": 0.7}
    shift = [{"family": f, "seed": s, "consistency": level[f] + 0.001 * s,
              "initialisation": {"consistency": 0.99}}
             for f in acc for s in range(len(acc[f][SIZES[-1]]))]
    return {"models": models, "sizes": SIZES, "families": list(acc), "shift": shift,
            "shift_n": 100, "initialisation_accuracy": {f: {"0": 0.1} for f in acc}}


def test_effect_arithmetic_and_verdicts():
    acc = {"mixer": {1000: [0.80, 0.81, 0.82], 10000: [0.88, 0.88, 0.89], 55000: [0.92, 0.92, 0.93]},
           "mlp": {1000: [0.75, 0.76, 0.76], 10000: [0.86, 0.86, 0.87], 55000: [0.90, 0.90, 0.90]},
           "mixer_p7": {1000: [0.78, 0.78, 0.79], 10000: [0.87, 0.87, 0.87], 55000: [0.91, 0.91, 0.91]}}
    claim = pm.claims(_results(acc))[0].as_result()
    assert claim["id"] == "pure-mlp"
    assert claim["effect"] == pytest.approx((0.05 + 0.05 + 0.06) / 3)
    assert claim["verdict"] == "supported"
    assert claim["per_family"]["mixer_p7"]["effect"] == pytest.approx((0.03 + 0.02 + 0.03) / 3)
    per_size = claim["details"]["gap_per_size"]["mixer"]
    assert per_size["55000"]["effect"] == pytest.approx((0.02 + 0.02 + 0.03) / 3)
    shrink = claim["details"]["gap_shrinkage"]["mixer"]["effect"]
    assert shrink == pytest.approx((0.05 + 0.05 + 0.06) / 3 - (0.02 + 0.02 + 0.03) / 3)
    shift = claim["details"]["shift_consistency_minus_mlp"]
    assert shift["mixer"]["effect"] == pytest.approx(0.2) and shift["mixer_p7"]["effect"] == pytest.approx(0.15)
    # the MLP ahead on 1k: opposite; level: negligible
    swapped = copy.deepcopy(acc)
    swapped["mixer"][1000], swapped["mlp"][1000] = acc["mlp"][1000], acc["mixer"][1000]
    assert pm.claims(_results(swapped))[0].verdict == "opposite"
    level = copy.deepcopy(acc)
    level["mixer"][1000] = [0.751, 0.759, 0.762]
    assert pm.claims(_results(level))[0].verdict == "negligible"


def test_bad_results_give_one_clear_error():
    acc = {"mixer": {n: [0.8, 0.8] for n in SIZES}, "mlp": {n: [0.7, 0.7] for n in SIZES}}
    res = _results(acc)
    no_mlp = copy.deepcopy(res)
    no_mlp["models"] = [m for m in res["models"] if not (m["family"] == "mlp" and m["n_train"] == 1000)]
    with pytest.raises(ValueError, match="no 'mlp' models on 1000 images"):
        pm.claims(no_mlp)
    uneven = copy.deepcopy(res)
    uneven["models"] = [m for m in res["models"] if not (m["family"] == "mlp" and m["seed"] == 1)]
    with pytest.raises(ValueError, match="seed by seed"):
        pm.claims(uneven)
    no_mixer = copy.deepcopy(res)
    no_mixer["families"] = ["mlp"]
    with pytest.raises(ValueError, match="no 'mixer' models"):
        pm.claims(no_mixer)


def test_full_scale_without_the_sweep_names_the_commands(tmp_path, monkeypatch, capsys):
    plan = importlib.import_module("analyses.cells.plan")   # analyses.cells.plan is also a function
    monkeypatch.setattr(plan, "sweep_results", lambda **kwargs: {})
    code = pm.main(["--results", str(tmp_path), "--figures", str(tmp_path), "--cache",
                    str(tmp_path / "models"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--plan sweep --family mlp" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("pure_mlp")
    args, code, results = quick_analysis(pm, out)
    assert code == 0
    return out, args, results


def test_quick_run_writes_the_claim_models_and_shifts(quick):
    from analyses.cells import quick_recipe
    out, _, res = quick
    recipe = quick_recipe()
    sizes = group_sizes(recipe, recipe.plans["pure-mlp"])
    seeds = recipe.plans["pure-mlp"]["seeds"]
    assert res["sizes"] == sizes and res["families"] == ["mixer", "mlp", "mixer_p7"]
    assert sorted((m["family"], m["n_train"], m["seed"]) for m in res["models"]) == \
        sorted((f, n, s) for f in res["families"] for n in sizes for s in seeds)
    assert sorted((r["family"], r["seed"]) for r in res["shift"]) == \
        sorted((f, s) for f in res["families"] for s in seeds)
    for r in res["shift"]:
        assert 0 <= r["consistency"] <= 1 and 0 <= r["initialisation"]["consistency"] <= 1
    (claim,) = res["claims"]
    assert claim["id"] == "pure-mlp" and set(claim["per_family"]) == {"mixer", "mixer_p7"}
    assert set(res["initialisation_accuracy"]) == set(res["families"])
    assert (out / "pure_mlp.pdf").stat().st_size > 0


def test_plot_only_redraws(quick):
    out, args, _ = quick
    pdf = out / "pure_mlp.pdf"
    pdf.unlink()
    assert pm.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
