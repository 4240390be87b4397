"""analyses.fewer_layers and ViT's ``depth``: the depth kwarg builds that many blocks and
nothing else changes, the variants and their plan are registered, the latency-matched depth and
the claim's effect on hand-made numbers, the quick run end to end, --plot-only."""
import pytest
import torch

from analyses import common
from analyses import fewer_layers as fl
from analyses.cells import plan
from analyses.cells.training import cell_families, lr_family
from probe import zoo

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


# ----------------------------------------------------------------------------- the models


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_depth_builds_that_many_blocks_and_nothing_else_changes(depth):
    builder = zoo.families()["vit"].builder
    full, net = builder(10, 1, 28), builder(10, 1, 28, depth=depth)
    assert len(full.blocks) == 4 and len(net.blocks) == depth
    shared = {k: v.shape for k, v in full.state_dict().items() if not k.startswith("blocks.")}
    assert {k: v.shape for k, v in net.state_dict().items() if not k.startswith("blocks.")} == shared
    block = sum(p.numel() for p in full.blocks[0].parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(net) == count(full) - (4 - depth) * block
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_default_depth_is_the_zoo_vit_and_bad_depth_is_an_error():
    a, b = zoo.build("vit", seed=0), common.build("vit_d2", seed=0)
    assert len(a.net.blocks) == 4 and len(b.net.blocks) == 2
    assert len(common.build("vit_d3", seed=0).net.blocks) == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="depth must be a positive integer"):
            zoo.families()["vit"].builder(10, 1, 28, depth=bad)


def test_variants_and_plan_are_registered():
    for v, d in (("vit_d2", 2), ("vit_d3", 3)):
        assert common.BUILDER_VARIANTS[v] == ("vit", {"depth": d})
        assert lr_family(v) == "vit" and v in cell_families() and v in common.LABELS
    cells = plan("fewer-layers")
    assert [(c.family, c.seed) for c in cells] == [(v, s) for s in (0, 1, 2) for v in ("vit_d2", "vit_d3")]
    assert all(c.is_full and c.commits_weights for c in cells)
    vit_lr = plan("full", families=["vit"])[0].lr
    assert {c.lr for c in cells} == {vit_lr}


# ----------------------------------------------------------------------------- the effect


def _results(acc, latency):
    """``acc[model] = [accuracy per seed]``; ``latency[setting][model] = [ms per round]``."""
    rows = [{"family": m, "seed": s, "test_accuracy": a, "init_accuracy": 0.1}
            for m, values in acc.items() for s, a in enumerate(values)]
    timing = [{"setting": name, "latency_ms": lat} for name, lat in latency.items()]
    return {"rows": rows, "timing": timing, "architecture": {}}


ACC = {"vit_d2": [0.80, 0.81, 0.79], "vit_d3": [0.85, 0.86, 0.84], "vit": [0.88, 0.88, 0.87],
       "mixer": [0.852, 0.858, 0.842]}


def test_matched_depth_is_the_deepest_vit_at_least_as_fast_as_mixer():
    assert fl.matched_depth({"vit_d2": [1, 1, 9], "vit_d3": [2, 2, 2], "vit": [4, 4, 4],
                             "mixer": [3, 1, 3]}) == "vit_d3"          # medians: 1, 2, 4 vs 3
    assert fl.matched_depth({"vit_d2": [1], "vit_d3": [2], "vit": [3], "mixer": [3]}) == "vit"
    assert fl.matched_depth({"vit_d2": [4], "vit_d3": [5], "vit": [6], "mixer": [3]}) is None


def test_setting_effects_pair_the_matched_vit_with_mixer_by_seed():
    res = _results(ACC, {"fast": {"vit_d2": [1.0, 1.1], "vit_d3": [2.0, 2.0], "vit": [4.0, 4.0],
                                  "mixer": [3.0, 3.0]},
                         "slow": {"vit_d2": [5.0, 5.0], "vit_d3": [6.0, 6.0], "vit": [7.0, 7.0],
                                  "mixer": [3.0, 3.0]}})
    eff = fl.setting_effects(res)
    assert eff["fast"]["vit"] == "vit_d3" and eff["fast"]["speed_matched"]
    assert eff["fast"]["effects"] == pytest.approx([-0.002, 0.002, -0.002])
    # no ViT as fast as Mixer: ViT-2 is compared and credited with no accuracy gain
    assert eff["slow"]["vit"] == "vit_d2" and not eff["slow"]["speed_matched"]
    assert eff["slow"]["effects"] == pytest.approx([-0.052, -0.048, -0.052])
    better = _results({**ACC, "vit_d2": [0.9, 0.9, 0.9]}, {"slow": res["timing"][1]["latency_ms"]})
    assert fl.setting_effects(better)["slow"]["effects"] == [0.0, 0.0, 0.0]


def test_claim_verdicts_on_hand_made_numbers():
    lat = {"vit_d2": [1.0, 1.0], "vit_d3": [2.0, 2.0], "vit": [4.0, 4.0], "mixer": [3.0, 3.0]}
    alike = fl.claims(_results(ACC, {"batch 1, 1 thread": lat}))[0].as_result()
    assert alike["id"] == "fewer-layers" and CLAIM_KEYS <= set(alike)
    assert alike["verdict"] == "supported" and alike["effect"] == pytest.approx(-0.002 / 3)
    assert alike["details"]["settings"]["batch 1, 1 thread"]["latency_matched_depth"] == 3
    sp = alike["details"]["settings"]["batch 1, 1 thread"]["speedup_over_vit4"]
    assert sp["vit_d2"]["median"] == pytest.approx(4.0) and sp["mixer"]["median"] == pytest.approx(4 / 3)
    worse = {**ACC, "vit_d3": [0.80, 0.80, 0.79]}                       # 5 points below Mixer
    assert fl.claims(_results(worse, {"b": lat}))[0].verdict == "opposite"
    # two settings: the claim's effect is their mean seed by seed, each setting in per_family
    two = fl.claims(_results(ACC, {"a": lat, "b": {**lat, "mixer": [1.5, 1.5]}}))[0].as_result()
    assert set(two["per_family"]) == {"a", "b"}
    assert two["per_family"]["b"]["effect"] == pytest.approx(-0.152 / 3)   # ViT-2 vs Mixer
    assert two["effect"] == pytest.approx((-0.002 / 3 - 0.152 / 3) / 2)


def test_seeds_must_match_for_the_pairing():
    acc = {**ACC, "vit_d2": [0.8, 0.8]}
    lat = {"vit_d2": [1.0], "vit_d3": [2.0], "vit": [4.0], "mixer": [3.0]}
    with pytest.raises(ValueError, match="seed by seed"):
        fl.claims(_results(acc, {"b": lat}))


def test_checks_catch_a_depth_that_changed_more_than_the_blocks():
    arch = {"vit": {"blocks": 4, "params": 1000, "block_params": 100},
            "vit_d2": {"blocks": 2, "params": 800, "block_params": 100},
            "vit_d3": {"blocks": 3, "params": 900, "block_params": 100}}
    assert fl.checks({"architecture": arch})[0].holds
    arch["vit_d3"]["params"] = 905
    check = fl.checks({"architecture": arch})[0]
    assert not check.holds and check.max_abs_error == 5


# ----------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("fewer_layers")
    args, code, results = quick_analysis(fl, out)
    assert code == 0
    return out, args, results


def test_quick_run_end_to_end(quick):
    out, _, res = quick
    scale = fl.SCALES["quick"]
    assert {m["family"] for m in res["models"]} == set(fl.MODELS)
    assert {r["family"] for r in res["rows"]} == set(fl.MODELS)
    assert all(0 <= r["test_accuracy"] <= 1 and 0 <= r["init_accuracy"] <= 1 for r in res["rows"])
    assert [(t["batch"], t["threads"]) for t in res["timing"]] == \
        [(b, t) for b in scale["batches"] for t in scale["threads"]]
    for t in res["timing"]:
        assert all(len(v) == scale["rounds"] and min(v) > 0 for v in t["latency_ms"].values())
    assert {a: res["architecture"][a]["blocks"] for a in fl.MODELS} == {"vit_d2": 2, "vit_d3": 3,
                                                                         "vit": 4, "mixer": 4}
    (claim,) = res["claims"]
    assert claim["id"] == "fewer-layers" and CLAIM_KEYS <= set(claim) and claim["test"] == "equivalence"
    assert set(claim["per_family"]) == {t["setting"] for t in res["timing"]}
    assert [c["id"] for c in res["checks"]] == ["fewer_layers_depth_only"] and res["checks"][0]["holds"]
    assert (out / "fewer_layers.pdf").stat().st_size > 0


def test_plot_only_redraws(quick):
    out, args, _ = quick
    pdf = out / "fewer_layers.pdf"
    pdf.unlink()
    assert fl.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
