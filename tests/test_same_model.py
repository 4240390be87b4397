"""The ResMLP ladder (probe/models/resmlp_ladder.py) and analyses.same_model: each rung changes
exactly one thing (module types, parameter names and counts), rung (d) is the zoo ResMLP's
architecture, the rungs and their plan are registered, the claim's effects on hand-made numbers
(paired by seed, intersection-union over ResMLP and FF-only), the quick run end to end."""
from collections import Counter

import pytest
import torch
import torch.nn as nn
from timm.models.mlp_mixer import Affine

from analyses import common
from analyses import same_model as sm
from analyses.cells import plan
from analyses.cells.training import VARIANT_LR_FAMILY, build_model, cell_families
from probe import zoo
from probe.models.resmlp_ladder import (LAYERSCALE_INIT, RUNGS, LayerScaleLadderBlock,
                                        as_resmlp_state_dict, resmlp_ladder_mixer)
from probe.models.synth_ladder import LadderBlock, LinearTokenMixing

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

T, C, BLOCKS = 49, 128, 4
CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}


@pytest.fixture(scope="module")
def nets():
    out = {n: common.build(n, seed=0).net for n in common.RESMLP_LADDER}
    out["resmlp"] = zoo.build("resmlp", seed=0).net
    return out


def _types(net: nn.Module) -> Counter:
    return Counter(type(m).__name__ for m in net.modules())


def _shapes(net: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- the rungs


def test_b_replaces_only_the_token_mlp(nets):
    a, b = nets["mixer"], nets["token_linear"]
    assert {k: v for k, v in _shapes(a).items() if "mlp_tokens" not in k} == \
        {k: v for k, v in _shapes(b).items() if ".mixing." not in k}
    assert all(isinstance(blk.mixing, LinearTokenMixing) for blk in b.blocks)
    hidden = int(0.5 * C)
    assert _count(a) - _count(b) == BLOCKS * ((2 * T * hidden + T + hidden) - (T * T + T))
    assert _types(b)["LayerNorm"] == _types(a)["LayerNorm"] == 2 * BLOCKS + 1


def test_c_replaces_only_the_norms(nets):
    b, c = nets["token_linear"], nets["linear_affine"]
    tb, tc = _types(b), _types(c)
    assert tb["LayerNorm"] == tc["Affine"] == 2 * BLOCKS + 1 and tc["LayerNorm"] == tb["Affine"] == 0
    others = lambda t: {k: v for k, v in t.items() if k not in ("LayerNorm", "Affine")}  # noqa: E731
    assert others(tb) == others(tc)
    assert _count(b) == _count(c)                        # 2C per norm either way
    rename = {"weight": "alpha", "bias": "beta"}
    norm_keys = [k for k in _shapes(b) if k.rsplit(".", 1)[0].endswith(("norm1", "norm2", "norm"))]
    assert len(norm_keys) == 2 * (2 * BLOCKS + 1)
    renamed = {(k.rsplit(".", 1)[0] + "." + rename[k.rsplit(".", 1)[1]] if k in norm_keys else k): v
               for k, v in _shapes(b).items()}
    assert {k: int(torch.Size(v).numel()) for k, v in renamed.items()} == \
        {k: int(torch.Size(v).numel()) for k, v in _shapes(c).items()}


def test_d_adds_only_layerscale(nets):
    c, d = nets["linear_affine"], nets["linear_affine_layerscale"]
    extra = set(_shapes(d)) - set(_shapes(c))
    assert extra == {f"blocks.{i}.ls{j}" for i in range(BLOCKS) for j in (1, 2)}
    assert set(_shapes(c)) <= set(_shapes(d))
    assert _count(d) - _count(c) == 2 * C * BLOCKS
    assert _types(d) - _types(c) == Counter({"LayerScaleLadderBlock": BLOCKS})
    assert _types(c) - _types(d) == Counter({"LadderBlock": BLOCKS})
    assert all(torch.equal(blk.ls1, torch.full((C,), LAYERSCALE_INIT)) for blk in d.blocks)


def test_layerscale_block_at_one_is_the_plain_block():
    torch.manual_seed(0)
    plain = LadderBlock(C, T, norm_layer=Affine, mixing=LinearTokenMixing)
    scaled = LayerScaleLadderBlock(C, T, norm_layer=Affine, mixing=LinearTokenMixing, init_values=1.0)
    scaled.load_state_dict({**plain.state_dict(), "ls1": torch.ones(C), "ls2": torch.ones(C)})
    x = torch.randn(2, T, C)
    assert torch.allclose(plain(x), scaled(x), atol=1e-6)
    scaled.ls1.data.zero_()
    scaled.ls2.data.zero_()
    assert torch.equal(scaled(x), x)                     # both branches scaled away


def test_d_is_the_zoo_resmlp_architecture(nets):
    d, resmlp = nets["linear_affine_layerscale"], nets["resmlp"]
    assert _count(d) == _count(resmlp)
    model = common.build("linear_affine_layerscale", seed=1)
    for p in model.parameters():                         # any weights, not only the init's
        p.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(p.numel()))
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert sm.architecture_error(model, x) < 1e-5
    with pytest.raises(RuntimeError):                    # rung (c) is not: no LayerScale
        zoo.build("resmlp").load_state_dict(as_resmlp_state_dict(common.build("linear_affine").state_dict()))


def test_rungs_are_registered_and_bad_rung_is_an_error():
    assert common.RESMLP_LADDER == ("mixer", "token_linear", "linear_affine", "linear_affine_layerscale")
    assert list(RUNGS) == list(common.RESMLP_LADDER[1:])
    for n in common.RESMLP_LADDER[2:]:
        assert n in common.VARIANTS and n in common.LABELS and n in common.COLORS
        assert VARIANT_LR_FAMILY[n] == "mixer" and n in cell_families() and n not in zoo.names()
    a, b = build_model("linear_affine", seed=3), common.build("linear_affine", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    base = zoo.count_params(zoo.build("mixer"))
    for n in (*common.RESMLP_LADDER, "resmlp", "ffn"):
        assert 0.75 * base <= zoo.count_params(common.build(n, seed=0)) <= 1.25 * base, n
    with pytest.raises(ValueError, match="unknown ResMLP-ladder rung"):
        resmlp_ladder_mixer("mixer", 10, 1, 28)
    cells = plan("same-model")
    assert [(c.family, c.seed) for c in cells] == \
        [(f, s) for s in (0, 1, 2) for f in ("linear_affine", "linear_affine_layerscale")]
    mixer_lr = plan("full", families=["mixer"])[0].lr
    assert all(c.is_full and c.commits_weights and c.lr == mixer_lr for c in cells)


# ----------------------------------------------------------------------------- the claim


def _results(acc):
    return {"rows": [{"name": n, "seed": s, "test_accuracy": a, "init_accuracy": 0.1}
                     for n, values in acc.items() for s, a in enumerate(values)]}


MIXER = [0.900, 0.905, 0.895]


def _acc(**diffs):
    out = {"mixer": MIXER}
    for n in sm.RUNGS[1:]:
        d = diffs.get(n, [0.001, -0.001, 0.0])
        out[n] = [m + e for m, e in zip(MIXER, d)]
    return out


def test_every_rung_is_paired_with_mixer_by_seed():
    res = _results(_acc(resmlp=[0.002, 0.004, 0.003]))
    claim = sm.claims(res)[0].as_result()
    assert claim["id"] == "same-model" and CLAIM_KEYS <= set(claim) and claim["test"] == "equivalence"
    assert set(claim["per_family"]) == set(sm.RUNGS[1:])
    assert claim["per_family"]["resmlp"]["effect"] == pytest.approx(0.003)
    assert claim["details"]["per_rung"]["resmlp"]["per_seed_effect"] == pytest.approx([0.002, 0.004, 0.003])
    step = claim["details"]["steps"]["resmlp - linear_affine_layerscale"]
    assert step["per_seed_effect"] == pytest.approx([0.001, 0.005, 0.003])
    assert claim["verdict"] == "supported" and claim["details"]["claim_row"] == "resmlp"


def test_the_claim_row_is_the_least_equivalent_named_model():
    # ResMLP alike, FF-only 3 points below: the claim fails on FF-only
    claim = sm.claims(_results(_acc(ffn=[-0.03, -0.031, -0.029])))[0].as_result()
    assert claim["details"]["claim_row"] == "ffn" and claim["verdict"] == "opposite"
    assert claim["effect"] == pytest.approx(-0.03)
    # a rung the claim does not name never sets the verdict (it stays in per_family)
    claim = sm.claims(_results(_acc(linear_affine=[-0.05, -0.05, -0.05])))[0].as_result()
    assert claim["verdict"] == "supported"
    assert claim["details"]["per_rung"]["linear_affine"]["verdict"] == "opposite"
    # inconclusive beats supported; among equals, the interval reaching farther from 0
    wide = sm.claims(_results(_acc(resmlp=[0.0, 0.02, -0.02], ffn=[0.004, 0.005, 0.006])))[0]
    assert wide.details["claim_row"] == "resmlp" and wide.verdict == "inconclusive"
    per = {"a": {"ci_low": -0.002, "ci_high": 0.004}, "b": {"ci_low": -0.006, "ci_high": 0.001}}
    assert sm.least_equivalent(per, ["a", "b"], test="equivalence", margin=0.01) == "b"


def test_bad_results_are_clear_errors():
    acc = _acc()
    acc["ffn"] = acc["ffn"][:2]
    with pytest.raises(ValueError, match="seed by seed"):
        sm.claims(_results(acc))
    with pytest.raises(ValueError, match="no 'ffn' rows"):
        sm.claims(_results({k: v for k, v in _acc().items() if k != "ffn"}))
    with pytest.raises(ValueError, match="unknown rung"):
        sm.compute({"quick": True, "rungs": ["mixer", "gmlp"], "check_images": 4}, None, False)
    with pytest.raises(ValueError, match="include 'mixer'"):
        sm.compute({"quick": True, "rungs": ["resmlp"], "check_images": 4}, None, False)


def test_checks_flag_a_rung_outside_the_band():
    res = {"params": {"mixer": {"count": 100, "ratio_to_mixer": 1.0},
                      "ffn": {"count": 130, "ratio_to_mixer": 1.3}},
           "resmlp_architecture_error": {"0": 0.0}}
    band, arch = sm.checks(res)
    assert not band.holds and band.max_abs_error == pytest.approx(0.3) and arch.holds


# ----------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("same_model")
    args, code, results = quick_analysis(sm, out)
    assert code == 0
    return out, args, results


def test_quick_run_end_to_end(quick):
    out, _, res = quick
    assert {m["family"] for m in res["models"]} == set(sm.RUNGS)
    by = {m["family"]: m for m in res["models"]}
    for n in ("token_linear", "linear_affine", "linear_affine_layerscale"):
        assert by[n]["lr"] == by["mixer"]["lr"] and by[n]["recipe_hash"] == by["mixer"]["recipe_hash"]
    assert all(0 <= r["test_accuracy"] <= 1 and 0 <= r["init_accuracy"] <= 1 for r in res["rows"])
    assert set(res["params"]) == set(sm.RUNGS) and res["params"]["mixer"]["ratio_to_mixer"] == 1.0
    (claim,) = res["claims"]
    assert claim["id"] == "same-model" and CLAIM_KEYS <= set(claim)
    assert set(claim["per_family"]) == set(sm.RUNGS[1:])
    checks = {c["id"]: c for c in res["checks"]}
    assert set(checks) == {"same_model_parameter_band", "same_model_layerscale_rung_is_resmlp"}
    assert all(c["holds"] for c in checks.values())
    assert (out / "same_model.pdf").stat().st_size > 0


def test_plot_only_redraws(quick):
    out, args, _ = quick
    pdf = out / "same_model.pdf"
    pdf.unlink()
    assert sm.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
