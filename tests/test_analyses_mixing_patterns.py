"""analyses.mixing_patterns: the quick run's results (converged models, claims, checks), pixel
units and fractions of the image side, initialisation and per-layer reference values
(probe.mixing.controls), Mixer's first-layer templates, the finer 14x14 token grid (claims take
their effect from it and keep the 7x7 measurement), in-range intervals, the four verdicts of
each claim on constructed results, per-family effects and the by-construction checks,
--plot-only."""
import json
import math

import numpy as np
import pytest

from analyses import mixing_patterns as mp
from analyses.verdicts import VERDICTS

pytestmark = pytest.mark.usefixtures("one_thread")

CLAIMS = {"mixer_mixing_is_local", "cnn_reaches_less_far", "attention_reaches_far"}
CHECKS = {"cnn_mixing_within_receptive_field", "cnn_first_stage_reaches_less_far_at_init",
          "fnet_mixing_is_fixed_dft"}
FINE_CHECKS = {"cnn_mixing_within_receptive_field_finegrid",     # quick: no fnet_p2
               "cnn_first_stage_reaches_less_far_at_init_finegrid"}
FIGURES = ("mixing_patterns.pdf", "mixing_distance_by_depth.pdf", "mixer_templates.pdf",
           "mixing_patterns_14x14.pdf", "mixing_distance_by_depth_14x14.pdf",
           "mixer_templates_14x14.pdf", "mixing_grids.pdf")
CONTROLS = ("uniform", "random", "dft", "local")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("mixing_patterns")
    args, code, results = quick_analysis(mp, out)
    assert code == 0
    return out, args, results


def test_quick_run_writes_models_claims_checks(quick):
    out, _, res = quick
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000
    assert res["analysis"] == "mixing_patterns" and res["scale"] == "quick"
    fams, seeds = res["settings"]["families"], res["settings"]["seeds"]
    assert "cnn" in fams and "mixer" in fams and "vit" in fams
    # one row per converged model used, family-major then seed: the full-data models, then the
    # finer-grid variants and the 7x7 models trained on the same images
    fg = res["settings"]["finegrid"]
    n = res["finegrid"]["n_train"]
    used = [(r["family"], r["seed"]) for r in res["models"]]
    assert used == [(f, s) for f in fams + fg["variants"] + fg["coarse"] for s in seeds]
    assert {r["n_train"] for r in res["models"][len(fams) * len(seeds):]} == {n}
    for row in res["models"]:
        assert set(row) >= {"family", "n_train", "seed", "steps", "lr", "val_accuracy",
                            "test_accuracy", "weights"}
        assert (mp.common.ROOT / row["weights"]).is_file()
    acc = {(r["family"], r["seed"]): r["test_accuracy"]
           for r in res["models"][:len(fams) * len(seeds)]}
    for fam in fams:
        assert {r["seed"]: r["test_accuracy"] for r in res["mixing"][fam]["trained"]} == \
            {s: acc[fam, s] for s in seeds}
    claims = {c["id"]: c for c in res["claims"]}
    assert set(claims) == CLAIMS
    for c in claims.values():
        assert c["verdict"] in VERDICTS
        for control in ("initialisation", "uniform", "random", "DFT", "local Gaussian"):
            assert control in c["experiment"], (c["id"], control)
        # the effect comes from the 14x14 grid; the 7x7 full-data measurement stays beside it
        assert "14x14 tokens" in c["experiment"] and "7x7 tokens" in c["experiment"]
        assert c["figure"] == "mixing_grids.pdf"
        seven = c["details"]["grid_7x7"]
        assert seven["verdict"] in VERDICTS
        assert seven["ci_low"] <= seven["effect"] <= seven["ci_high"]
        assert c["details"]["grid"] == {"tokens": [14, 14], "patch_px": 2.0, "n_train": n}
        assert c["ci_low"] <= c["effect"] <= c["ci_high"]
        assert set(c["sensitivity"]) == {"half", "double"}
        for fe in c["per_family"].values():
            assert fe["ci_low"] <= fe["effect"] <= fe["ci_high"]
    tokens = [f for f in fams if f != "cnn"]
    fine = [mp.common.FINEGRID[v] for v in fg["variants"]]
    for key in ("cnn_reaches_less_far", "mixer_mixing_is_local"):
        assert set(claims[key]["per_family"]) == set(fine)
        assert set(claims[key]["details"]["grid_7x7"]["per_family"]) == set(tokens)
    assert set(claims["attention_reaches_far"]["per_family"]) == {"vit"}
    same = claims["attention_reaches_far"]["details"]["grid_14x14_minus_7x7_same_data"]
    assert set(same["per_family"]) == {"vit"} and same["layer"] == 0
    checks = {c["id"]: c for c in res["checks"]}
    assert set(checks) == CHECKS | FINE_CHECKS
    for c in checks.values():
        assert set(c) >= {"id", "what", "max_abs_error", "tolerance", "holds"}
        assert c["holds"] is True, c
    assert [c.as_result() for c in mp.checks(res)] == json.loads(json.dumps(res["checks"]))


def test_metrics_in_range_and_layers(quick):
    _, _, res = quick
    seeds = res["settings"]["seeds"]
    for fam, per in res["mixing"].items():
        for which in mp.WEIGHTS:
            recs = per[which]
            assert [r["seed"] for r in recs] == seeds
            for r in recs:
                assert len(r["layers"]) == (3 if fam == "cnn" else 4)
                for layer in r["layers"]:
                    assert 0 <= layer["locality"] <= 1 + 1e-6
                    assert -1e-6 <= layer["translation_equivariance"] <= 1 + 1e-6
                    assert layer["mean_mixing_distance_px"] >= 0
        assert len(res["maps"][fam]["panels"]) == mp.PANELS


def test_distances_are_in_pixels(quick):
    _, _, res = quick
    for per in res["mixing"].values():
        for layer in per["trained"][0]["layers"]:
            side = layer["input_grid"][1]
            assert layer["px_per_unit"] == pytest.approx(28 / side)
            assert layer["mean_mixing_distance_px"] == pytest.approx(
                layer["mean_mixing_distance_units"] * 28 / side)
    cnn = [lay["px_per_unit"] for lay in res["mixing"]["cnn"]["trained"][0]["layers"]]
    assert cnn == [1.0, 2.0, 4.0]                  # 28x28 -> 14x14 -> 7x7 input grids
    assert {lay["px_per_unit"] for lay in res["mixing"]["vit"]["trained"][0]["layers"]} == {4.0}
    # Fourier mixing is fixed: training changes nothing, and it is the DFT reference
    fnet = res["mixing"]["fnet"]
    assert [{k: v for k, v in lay.items() if k != "controls"}       # controls: trained only
            for lay in fnet["trained"][0]["layers"]] == fnet["init"][0]["layers"]
    assert fnet["trained"][0]["layers"][0]["mean_mixing_distance_px"] == pytest.approx(
        res["references"]["dft_7x7"]["mean_mixing_distance_px"], abs=1e-5)
    # the CNN's first stage reaches a few pixels, token mixers across the 28-px image
    assert res["mixing"]["cnn"]["trained"][0]["layers"][0]["mean_mixing_distance_px"] < 4
    assert res["mixing"]["vit"]["trained"][0]["layers"][0]["mean_mixing_distance_px"] > 8


def test_init_is_the_same_seed_build(quick):
    """The "init" values are the metrics of probe.zoo.build(family, seed) on the same images,
    and the CNN's first stage at init is its 1x1 stride-2 shortcut (zero-init residual)."""
    from probe import mixing, zoo
    _, _, res = quick
    x, _ = mp.common.test_set(res["settings"]["images"])
    seed = res["settings"]["seeds"][-1]
    net = zoo.build("vit", seed=seed).eval()
    expected = mp.layer_metrics(mixing.extract(net, x), 28, res["radius_px"], net)
    (rec,) = [r for r in res["mixing"]["vit"]["init"] if r["seed"] == seed]
    assert len(rec["layers"]) == len(expected)
    for got, want in zip(rec["layers"], expected):
        for metric in mp.METRICS:
            assert got[metric] == pytest.approx(want[metric], rel=1e-5, abs=1e-7)
    for r in res["mixing"]["cnn"]["init"]:
        # output centre (2i + 0.5, 2j + 0.5) from its one input pixel (2i, 2j): sqrt(0.5) px
        assert r["layers"][0]["mean_mixing_distance_px"] == pytest.approx(math.sqrt(0.5), abs=1e-5)


def test_reference_matrices():
    """The 7x7 references are probe.mixing.references' matrices; uniform and local Gaussian
    checked against numpy closed forms on the token positions (4-px cells)."""
    from probe import mixing
    ref = mp.references(28, 4.0)
    assert set(ref) == {f"{n}_7x7" for n in ("uniform", "random", "dft", "local", "identity")}
    yy, xx = np.meshgrid(np.arange(7) * 4.0, np.arange(7) * 4.0, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    assert ref["uniform_7x7"]["mean_mixing_distance_px"] == pytest.approx(d.mean(), rel=1e-5)
    assert ref["uniform_7x7"]["mean_mixing_distance_fraction"] == pytest.approx(d.mean() / 28,
                                                                               rel=1e-5)
    assert ref["uniform_7x7"]["locality"] == pytest.approx((d <= 4.0 + 1e-9).mean(), rel=1e-5)
    assert ref["uniform_7x7"]["translation_equivariance"] == pytest.approx(1.0)
    local = np.exp(-(d / 4.0) ** 2 / 2)                    # sigma = 1 token = 4 px
    local /= local.sum(1, keepdims=True)
    assert ref["local_7x7"]["mean_mixing_distance_px"] == pytest.approx(
        (local * d).sum() / local.sum(), rel=1e-5)
    assert ref["local_7x7"]["locality"] == pytest.approx(
        (local * (d <= 4.0 + 1e-9)).sum() / local.sum(), rel=1e-5)
    assert ref["identity_7x7"]["mean_mixing_distance_px"] == 0.0
    assert ref["identity_7x7"]["locality"] == 1.0
    assert ref["dft_7x7"]["translation_equivariance"] < 0.2
    assert ref["random_7x7"]["translation_equivariance"] < 0.2
    lib = mixing.references((7, 7), image_size=(28, 28), seed=mp.REFERENCE_SEED)
    for name in ("random", "dft"):
        assert ref[f"{name}_7x7"]["mean_mixing_distance_px"] == pytest.approx(
            float(mixing.mean_mixing_distance(lib[name], unit="px").mean()), rel=1e-6)


def test_layer_controls_on_every_layer(quick):
    """Every trained layer carries its controls (probe.mixing.controls on its own grid): the
    references, trained and init values equal to the layer's own metrics, fractions of the side."""
    _, _, res = quick
    for per in res["mixing"].values():
        for rec, rec0 in zip(per["trained"], per["init"]):
            for lay, lay0 in zip(rec["layers"], rec0["layers"]):
                ctrl = lay["controls"]
                assert ctrl["side_px"] == pytest.approx(28.0)
                for metric in mp.METRICS:
                    assert ctrl[metric]["trained"] == pytest.approx(lay[metric], rel=1e-5,
                                                                    abs=1e-7)
                    assert ctrl[metric]["init"] == pytest.approx(lay0[metric], rel=1e-5,
                                                                 abs=1e-7)
                    assert set(CONTROLS) <= set(ctrl[metric])
                for w, row in (("trained", lay), ("init", lay0)):
                    assert row["mean_mixing_distance_fraction"] == pytest.approx(
                        row["mean_mixing_distance_px"] / 28)
                    assert ctrl["mean_mixing_distance_fraction"][w] == pytest.approx(
                        row["mean_mixing_distance_fraction"], rel=1e-5, abs=1e-7)
                strided = lay["input_grid"] != lay.get("grid", lay["input_grid"])
                assert (ctrl["locality"]["dft"] is None) == strided
                # a local Gaussian is more local and reaches less far than uniform mixing
                assert ctrl["locality"]["local"] > ctrl["locality"]["uniform"]
                assert ctrl["mean_mixing_distance_px"]["local"] < \
                    ctrl["mean_mixing_distance_px"]["uniform"]
    fnet = res["mixing"]["fnet"]["trained"][0]["layers"][0]["controls"]
    assert fnet["mean_mixing_distance_px"]["trained"] == pytest.approx(
        fnet["mean_mixing_distance_px"]["dft"], abs=1e-5)
    cnn = res["mixing"]["cnn"]["trained"][0]["layers"]
    assert cnn[0]["controls"]["locality"]["dft"] is None         # 28x28 -> 14x14: no DFT


def test_mixer_first_layer_templates(quick):
    """Per-template locality of Mixer's fc1 templates, trained and at the same-seed init, equals
    probe.mixing.template_locality; their distribution and reference templates are kept."""
    from probe import mixing, zoo
    _, _, res = quick
    tpl = res["templates"]
    seeds = res["settings"]["seeds"]
    assert [r["seed"] for r in tpl["trained"]] == seeds == [r["seed"] for r in tpl["init"]]
    x, _ = mp.common.test_set(res["settings"]["images"])
    first = mixing.extract(zoo.build("mixer", seed=seeds[0]).eval(), x)[0]
    want = mixing.template_locality(first, tpl["radius_px"], templates="fc1")
    assert tpl["init"][0]["locality"] == pytest.approx(want.tolist(), abs=1e-5)
    assert len(tpl["trained"][0]["locality"]) == first.native["fc1"].shape[0]
    for which in mp.WEIGHTS:
        for rec in tpl[which]:
            assert all(0.0 <= v <= 1.0 + 1e-6 for v in rec["locality"])
            dist = rec["distribution"]
            assert dist["n"] == len(rec["locality"])
            assert dist["q05"] <= dist["q50"] <= dist["q95"]
            assert dist["q50"] == pytest.approx(np.median(rec["locality"]), abs=1e-5)
        assert len(tpl["panels"][which]) == mp.TEMPLATE_PANELS
    refs = tpl["references"]
    assert refs["local"] > refs["random_peak_centred"] > refs["uniform"]
    local = {c["id"]: c for c in res["claims"]}["mixer_mixing_is_local"]
    summary = local["details"]["grid_7x7"]["reference"]["first_layer_templates"]   # 7x7 kept
    assert summary["median_per_seed"]["init"][0] == pytest.approx(np.median(want.numpy()),
                                                                  abs=1e-5)
    assert "median_change" in summary


def test_finegrid_block(quick):
    """The 14x14 models: every layer on a 14x14 grid of 2-px cells, distances in pixels and as a
    fraction of the image side, init = the same-seed variant's metrics, the 14x14 references
    (uniform: closed form; local sigma = 1 token = 2 px), the 7x7 models on the same images,
    Mixer's 14x14 templates with their score per template, its distribution and the radius."""
    from probe import mixing
    _, _, res = quick
    fg, seeds = res["finegrid"], res["settings"]["seeds"]
    assert fg["grid"] == [14, 14] and fg["patch_px"] == 2.0 and fg["radius_tokens"] == 2.0
    assert fg["variants"] == {mp.common.FINEGRID[v]: v
                              for v in res["settings"]["finegrid"]["variants"]}
    assert set(fg["mixing"]) == set(fg["variants"]) | {"cnn"}
    assert set(fg["coarse"]) == set(res["settings"]["finegrid"]["coarse"]) - {"cnn"}
    for fam in fg["variants"]:
        for which in mp.WEIGHTS:
            assert [r["seed"] for r in fg["mixing"][fam][which]] == seeds
            for r in fg["mixing"][fam][which]:
                for lay in r["layers"]:
                    assert lay["input_grid"] == [14, 14] and lay["px_per_unit"] == 2.0
                    assert lay["mean_mixing_distance_px"] == pytest.approx(
                        2.0 * lay["mean_mixing_distance_units"], rel=1e-5)
                    assert lay["mean_mixing_distance_fraction"] == pytest.approx(
                        lay["mean_mixing_distance_px"] / 28, rel=1e-6)
        for lay in fg["mixing"][fam]["trained"][0]["layers"]:
            ctrl = lay["controls"]
            assert set(CONTROLS) <= set(ctrl["locality"]) and ctrl["side_px"] == 28.0
            assert ctrl["mean_mixing_distance_fraction"]["uniform"] == pytest.approx(
                fg["references"]["uniform_14x14"]["mean_mixing_distance_fraction"], rel=1e-5)
        for r in fg["coarse"][fam]["trained"]:
            assert {lay["px_per_unit"] for lay in r["layers"]} == {4.0}
    x, _ = mp.common.test_set(res["settings"]["images"])
    net = mp.common.build("vit_p2", seed=seeds[-1]).eval()
    want = mp.layer_metrics(mixing.extract(net, x), 28, res["radius_px"], net)
    got = fg["mixing"]["vit"]["init"][-1]["layers"]
    for g, w in zip(got, want):
        for metric in mp.METRICS:
            assert g[metric] == pytest.approx(w[metric], rel=1e-5, abs=1e-7)
    ref = fg["references"]
    assert set(ref) == {f"{n}_14x14" for n in ("uniform", "random", "dft", "local", "identity")}
    yy, xx = np.meshgrid(np.arange(14) * 2.0, np.arange(14) * 2.0, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    assert ref["uniform_14x14"]["mean_mixing_distance_px"] == pytest.approx(d.mean(), rel=1e-5)
    assert ref["uniform_14x14"]["locality"] == pytest.approx((d <= 4.0 + 1e-9).mean(), rel=1e-5)
    local = np.exp(-(d / 2.0) ** 2 / 2)
    local /= local.sum(1, keepdims=True)
    assert ref["local_14x14"]["mean_mixing_distance_px"] == pytest.approx(
        (local * d).sum() / local.sum(), rel=1e-5)
    # uniform, random and DFT mixing still look alike; the local reference now reaches ~6x less
    assert ref["local_14x14"]["mean_mixing_distance_px"] * 5 < \
        ref["uniform_14x14"]["mean_mixing_distance_px"]
    tpl = fg["templates"]
    assert tpl["grid"] == [14, 14] and tpl["radius_px"] == 4.0 and tpl["radius_tokens"] == 2.0
    first = mixing.extract(mp.common.build("mixer_p2", seed=seeds[0]).eval(), x)[0]
    score = mixing.template_locality(first, 4.0, templates="fc1")
    assert tpl["init"][0]["locality"] == pytest.approx(score.tolist(), abs=1e-5)
    for which in mp.WEIGHTS:
        for rec in tpl[which]:
            assert len(rec["locality"]) == 64 and rec["distribution"]["n"] == 64
            assert rec["distribution"]["q50"] == pytest.approx(np.median(rec["locality"]),
                                                               abs=1e-5)
    assert tpl["references"]["local"] > tpl["references"]["random_peak_centred"] > \
        tpl["references"]["uniform"]
    summary = {c["id"]: c for c in res["claims"]}["mixer_mixing_is_local"]["reference"]
    assert summary["first_layer_templates"]["radius_px"] == 4.0
    assert set(summary["first_layer_templates"]["distribution"]) == set(mp.WEIGHTS)
    assert summary["first_layer_templates"]["median_per_seed"]["init"][0] == pytest.approx(
        float(np.median(score.numpy())), abs=1e-5)                     # the 14x14 templates


def test_level_intervals_stay_in_range():
    m, lo, hi = mp.level_ci([0.05, 0.4, 3.0])
    assert 0 < lo < m < hi
    assert mp.level_ci([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)
    assert mp.level_ci([0.0, 0.1, 0.2])[1] == 0.0
    m, lo, hi = mp.share_ci([0.95, 0.999, 0.99])
    assert lo < m < hi < 1.0
    m, lo, hi = mp.share_ci([0.001, 0.03, 0.01])
    assert 0.0 < lo < m < hi
    assert mp.share_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_plot_only_redraws(quick):
    out, args, _ = quick
    for name in FIGURES:
        (out / name).unlink()
    assert mp.main(args + ["--plot-only"]) == 0
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000


# ----------------------------------------------------------------------------- constructed results

REFS = {"uniform_7x7": {"mean_mixing_distance_px": 14.44, "locality": 0.09,
                        "translation_equivariance": 1.0},
        "random_7x7": {"mean_mixing_distance_px": 14.35, "locality": 0.091,
                       "translation_equivariance": 0.07},
        "dft_7x7": {"mean_mixing_distance_px": 14.56, "locality": 0.095,
                    "translation_equivariance": 0.076},
        "local_7x7": {"mean_mixing_distance_px": 4.35, "locality": 0.62,
                      "translation_equivariance": 0.95}}
PIXEL_REFS = {"uniform": {"mean_mixing_distance_px": 14.58, "locality": 0.06,
                          "translation_equivariance": 1.0},
              "random": {"mean_mixing_distance_px": 14.58, "locality": 0.06,
                         "translation_equivariance": 0.02},
              "dft": {"mean_mixing_distance_px": None, "locality": None,
                      "translation_equivariance": None},
              "local": {"mean_mixing_distance_px": 1.23, "locality": 1.0,
                        "translation_equivariance": 0.99}}


SHORTCUT_PX = math.sqrt(0.5)   # the CNN's first stage at init: a 1x1 stride-2 shortcut


def _layer(name, dist_px, loc=0.1, equi=0.1, px=4.0, **extra):
    """A layer's metrics with its controls: the 7x7 token references (``px = 4``) or those of
    the CNN's pixel-grid stage (no DFT on a strided grid); trained = init = the layer's values."""
    refs = ({k[:-4]: v for k, v in REFS.items()} if px == 4.0 else PIXEL_REFS)
    values = {"mean_mixing_distance_px": dist_px, "locality": loc,
              "translation_equivariance": equi}
    controls = {m: {"trained": v, "init": v, **{r: refs[r][m] for r in refs}}
                for m, v in values.items()}
    controls["mean_mixing_distance_fraction"] = {
        k: None if v is None else v / 28 for k, v in controls["mean_mixing_distance_px"].items()}
    controls["side_px"] = 28.0
    return {"layer": name, "mean_mixing_distance_px": dist_px,
            "mean_mixing_distance_units": dist_px / px,
            "mean_mixing_distance_fraction": dist_px / 28,
            "mean_mixing_distance_px_per_head": [dist_px],
            "locality": loc, "translation_equivariance": equi, "px_per_unit": px,
            "controls": controls, **extra}


def _templates(gain=0.0):
    """Mixer first-layer template scores: 3 seeds, 8 templates each; trained = init + gain."""
    base = [0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.22, 0.3]
    recs = {w: [{"seed": s, "locality": [v + (gain if w == "trained" else 0.0) + 0.001 * s
                                         for v in base]} for s in range(3)] for w in mp.WEIGHTS}
    return {"radius_px": 4.0, "power": 2, **recs, "panels": {}, "grid": [7, 7],
            "references": {"uniform": 0.09, "dft": 0.097, "local": 0.83,
                           "random_peak_centred": 0.19}}


def _synthetic(first_px=None, *, mixer_gain=0.0, loc_spread=0.01, px_spread=0.05,
               cnn_init_px=SHORTCUT_PX, beyond=0.0, template_gain=0.0):
    """3 seeds of every family. Trained first-layer distances ``first_px[family]`` (CNN 2 px,
    token models 14 px +- px_spread over seeds by default); Mixer's locality = init + mixer_gain
    (+- loc_spread); token models at init 14.4 px, the CNN's first stage ``cnn_init_px``."""
    px = {"cnn": 2.0, **{f: 14.0 for f in mp.common.FAMILIES if f != "cnn"}, **(first_px or {})}
    noise = (0.0, 1.0, -1.0)
    mixing = {}
    for fam in mp.common.FAMILIES:
        mixing[fam] = {"trained": [], "init": []}
        for s, e in enumerate(noise):
            if fam == "fnet":
                dft = REFS["dft_7x7"]
                layer = _layer("mix", dft["mean_mixing_distance_px"], dft["locality"],
                               dft["translation_equivariance"])
                tr = it = [layer] * 4
            elif fam == "cnn":
                bound = {"beyond_receptive_field": beyond, "receptive_bound_px": 4.95}
                tr = [_layer("s0", px[fam], 1.0, 0.9, px=1.0, **bound),
                      _layer("s1", px[fam] - px_spread * e, 1.0, 0.9, px=2.0, **bound)]
                it = [_layer("s0", cnn_init_px, 1.0, 1.0, px=1.0, **bound),
                      _layer("s1", 2.8, 1.0, 1.0, px=2.0, **bound)]
            else:
                gain = mixer_gain + loc_spread * e if fam == "mixer" else 0.0
                tr = [_layer(f"b{i}", px[fam] + px_spread * e, 0.4 + gain) for i in range(4)]
                it = [_layer(f"b{i}", 14.4, 0.4) for i in range(4)]
            mixing[fam]["trained"].append({"seed": s, "layers": tr})
            mixing[fam]["init"].append({"seed": s, "layers": it})
    return {"settings": {"images": 4, "seeds": [0, 1, 2]}, "radius_px": 4.0, "mixing": mixing,
            "references": REFS, "image_size": 28, "templates": _templates(template_gain)}


def _claim(res, key):
    return {c.key: c for c in mp.claims(res)}[key]


@pytest.mark.parametrize("gain, spread, expected", [(0.3, 0.01, "supported"),
                                                    (0.0, 0.005, "negligible"),
                                                    (-0.3, 0.01, "opposite"),
                                                    (0.05, 0.05, "inconclusive")])
def test_mixer_locality_verdicts(gain, spread, expected):
    c = _claim(_synthetic(mixer_gain=gain, loc_spread=spread), "mixer_mixing_is_local")
    assert c.verdict == expected
    assert c.estimate == pytest.approx(gain)                   # trained minus same-seed init
    assert c.reference["locality"]["uniform_7x7"] == REFS["uniform_7x7"]["locality"]
    assert c.per_family["mixer"]["effect"] == pytest.approx(gain)
    assert c.per_family["fnet"]["effect"] == 0.0               # fixed DFT: nothing learned
    assert c.reference["locality"]["local_7x7"] == REFS["local_7x7"]["locality"]
    assert [lay["local"] for lay in c.reference["locality_by_layer"]] == [0.62] * 4
    # trained first-layer locality against the layer's local and uniform references
    assert c.details["first_layer_minus_local_reference"]["value"] == pytest.approx(
        0.4 + gain - 0.62)
    assert c.details["first_layer_minus_uniform_reference"]["value"] == pytest.approx(
        0.4 + gain - 0.09)


def test_template_summary_on_constructed_results():
    res = _synthetic(template_gain=0.2)
    c = _claim(res, "mixer_mixing_is_local")
    tpl = c.reference["first_layer_templates"]
    assert tpl["median_change"]["value"] == pytest.approx(0.2)
    assert tpl["distribution"]["trained"]["q50"] == pytest.approx(
        tpl["distribution"]["init"]["q50"] + 0.2, abs=0.002)
    assert tpl["references"]["local"] == 0.83
    del res["templates"]                                    # no Mixer templates: no summary
    assert _claim(res, "mixer_mixing_is_local").reference["first_layer_templates"] is None


@pytest.mark.parametrize("token_px, cnn_px, spread, expected", [(14.0, 2.0, 0.05, "supported"),
                                                                (2.0, 2.0, 0.05, "negligible"),
                                                                (2.0, 9.0, 0.05, "opposite"),
                                                                (3.0, 2.0, 1.0, "inconclusive")])
def test_cnn_reach_verdicts(token_px, cnn_px, spread, expected):
    tokens = {f: token_px for f in ("mixer", "resmlp", "gmlp", "vit")}
    c = _claim(_synthetic({**tokens, "cnn": cnn_px}, px_spread=spread), "cnn_reaches_less_far")
    assert c.verdict == expected
    assert c.estimate == pytest.approx(token_px - cnn_px)


@pytest.mark.parametrize("vit_px, cnn_px, spread, expected", [(14.0, 2.0, 0.05, "supported"),
                                                              (2.0, 2.0, 0.05, "negligible"),
                                                              (1.0, 8.0, 0.05, "opposite"),
                                                              (3.0, 2.0, 1.0, "inconclusive")])
def test_attention_reach_verdicts(vit_px, cnn_px, spread, expected):
    res = _synthetic({"vit": vit_px, "cnn": cnn_px}, px_spread=spread)
    c = _claim(res, "attention_reaches_far")
    assert c.verdict == expected
    assert c.estimate == pytest.approx(vit_px - cnn_px)
    assert set(c.per_family) == {"vit"}
    ctrl = c.reference["controls"]
    assert ctrl["depth"] == 0
    # ViT's first layer against uniform mixing on its own grid, the CNN's against its own
    assert ctrl["trained_minus_uniform_px"]["vit"]["value"] == pytest.approx(vit_px - 14.44,
                                                                            abs=0.05)
    assert ctrl["trained_minus_uniform_px"]["cnn"]["value"] == pytest.approx(cnn_px - 14.58)
    assert ctrl["px"]["cnn"]["references"]["dft"] is None
    assert ctrl["fraction_of_image_side"]["vit"]["trained"]["value"] == pytest.approx(
        c.reference["first_layer_px"]["vit"]["trained"]["value"] / 28)
    assert c.details["vit_trained_minus_init_px"]["value"] == pytest.approx(vit_px - 14.4)


def test_per_family_effects_keep_opposite_signs():
    """Mixer keeps a global reach, gMLP learns to mix more locally than the CNN: the group mean
    hides that, per_family shows it; FNet's fixed mixing is per family only, not in the group."""
    res = _synthetic({"mixer": 14.0, "resmlp": 6.0, "gmlp": 0.5, "vit": 9.5, "cnn": 2.0})
    c = _claim(res, "cnn_reaches_less_far")
    assert set(c.per_family) == {"mixer", "resmlp", "gmlp", "vit", "fnet"}
    assert c.per_family["mixer"]["ci_low"] > 0
    assert c.per_family["gmlp"]["ci_high"] < 0
    assert c.estimate == pytest.approx(np.mean([14.0, 6.0, 0.5, 9.5]) - 2.0)
    assert c.details["group"] == ["mixer", "resmlp", "gmlp", "vit"]
    assert c.reference["gap_at_init_px"]["gmlp"]["value"] == pytest.approx(14.4 - math.sqrt(0.5))
    res["references"] = {**REFS, "dft_7x7": {**REFS["dft_7x7"], "mean_mixing_distance_px": 30.0}}
    for r in res["mixing"]["fnet"]["trained"]:
        r["layers"] = [_layer("mix", 30.0)] * 4
    c2 = _claim(res, "cnn_reaches_less_far")
    assert c2.estimate == pytest.approx(c.estimate)                # FNet not in the group
    assert c2.per_family["fnet"]["effect"] == pytest.approx(28.0)


def test_checks_on_constructed_results():
    rows = {c.key: c for c in mp.checks(_synthetic())}
    assert set(rows) == CHECKS and all(c.holds for c in rows.values())
    # a CNN first stage reaching farther than a token layer at init breaks the by-construction gap
    rows = {c.key: c for c in mp.checks(_synthetic(cnn_init_px=15.0))}
    assert not rows["cnn_first_stage_reaches_less_far_at_init"].holds
    assert rows["cnn_first_stage_reaches_less_far_at_init"].max_abs_error == pytest.approx(0.6)
    rows = {c.key: c for c in mp.checks(_synthetic(beyond=0.01))}
    assert not rows["cnn_mixing_within_receptive_field"].holds
    res = _synthetic()
    res["mixing"]["fnet"]["trained"][1]["layers"] = [_layer("mix", 13.0)] * 4
    rows = {c.key: c for c in mp.checks(res)}
    assert not rows["fnet_mixing_is_fixed_dft"].holds
    assert rows["fnet_mixing_is_fixed_dft"].max_abs_error == pytest.approx(14.56 - 13.0)


def _fine(res, fine):
    """``res`` with a finegrid block made of the constructed results ``fine`` (its 7x7 models
    on the same images: ``res``'s own)."""
    fg = {"n_train": 10000, "grid": [14, 14], "patch_px": 2.0, "image_size": 28,
          "radius_px": 4.0, "radius_tokens": 2.0, "variants": {}, "maps": {},
          "mixing": fine["mixing"], "references": {k.replace("7x7", "14x14"): v
                                                   for k, v in fine["references"].items()},
          "coarse": {f: v for f, v in res["mixing"].items() if f != "cnn"},
          "templates": fine["templates"]}
    return {**res, "finegrid": fg}


@pytest.mark.parametrize("fine_gain, coarse_gain, fine_verdict, coarse_verdict",
                         [(0.3, 0.0, "supported", "negligible"),
                          (-0.3, 0.3, "opposite", "supported")])
def test_claims_take_the_finer_grid_and_keep_7x7(fine_gain, coarse_gain, fine_verdict,
                                                 coarse_verdict):
    """With a finegrid block the claim's effect and verdict are the 14x14 grid's; the 7x7
    measurement is kept with its own verdict, and the same-data grid difference per family."""
    res = _fine(_synthetic(mixer_gain=coarse_gain), _synthetic(mixer_gain=fine_gain))
    c = _claim(res, "mixer_mixing_is_local")
    assert c.estimate == pytest.approx(fine_gain) and c.verdict == fine_verdict
    seven = c.details["grid_7x7"]
    assert seven["effect"] == pytest.approx(coarse_gain) and seven["verdict"] == coarse_verdict
    assert "14x14 tokens" in c.experiment and coarse_verdict in c.experiment
    diff = c.details["grid_14x14_minus_7x7_same_data"]["per_family"]["mixer"]["difference"]
    assert diff["value"] == pytest.approx(fine_gain - coarse_gain)
    assert c.reference["locality"]["uniform_14x14"] == REFS["uniform_7x7"]["locality"]
    assert _claim({k: v for k, v in res.items() if k != "finegrid"},
                  "mixer_mixing_is_local").estimate == pytest.approx(coarse_gain)


def test_reach_claims_on_the_finer_grid():
    """On 14x14 tokens the CNN's reach comparison uses the CNN trained on the same images."""
    coarse = _synthetic({"vit": 14.0, "cnn": 2.0})
    fine = _synthetic({"vit": 9.0, "mixer": 6.0, "resmlp": 6.0, "gmlp": 6.0, "cnn": 3.0})
    res = _fine(coarse, fine)
    reach = _claim(res, "attention_reaches_far")
    assert reach.estimate == pytest.approx(6.0) and reach.details["grid_7x7"]["effect"] == \
        pytest.approx(12.0)
    same = reach.details["grid_14x14_minus_7x7_same_data"]["per_family"]["vit"]
    assert same["difference"]["value"] == pytest.approx(-5.0, abs=0.05)
    cnn = _claim(res, "cnn_reaches_less_far")
    assert cnn.estimate == pytest.approx(np.mean([6.0, 6.0, 6.0, 9.0]) - 3.0, abs=0.05)
    assert set(cnn.per_family) == {"mixer", "resmlp", "gmlp", "vit", "fnet"}


def test_finegrid_checks_on_constructed_results():
    """The by-construction checks also run on the 14x14 models (ids ending _finegrid), FNet's
    against the 14x14 DFT reference."""
    fine = _synthetic()
    res = _fine(_synthetic(), fine)
    rows = {c.key: c for c in mp.checks(res)}
    assert set(rows) == CHECKS | {f"{k}_finegrid" for k in CHECKS}
    assert all(c.holds for c in rows.values())
    res["finegrid"]["references"]["dft_14x14"] = {**REFS["dft_7x7"], "locality": 0.2}
    rows = {c.key: c for c in mp.checks(res)}
    assert rows["fnet_mixing_is_fixed_dft"].holds
    assert not rows["fnet_mixing_is_fixed_dft_finegrid"].holds
    assert rows["fnet_mixing_is_fixed_dft_finegrid"].max_abs_error == pytest.approx(
        0.2 - REFS["dft_7x7"]["locality"])


def test_claims_use_pixels_not_grid_units():
    """Equal grid-unit distances (2 cells) are 2 px on the CNN's 28x28 grid, 8 px on 7x7 tokens."""
    res = _synthetic({"vit": 8.0})
    for r in res["mixing"]["cnn"]["trained"]:
        r["layers"][0] = _layer("s0", 2.0, 0.5, 0.9, px=1.0)
    c = _claim(res, "attention_reaches_far")
    assert c.estimate == pytest.approx(6.0, abs=0.5)


def test_cnn_reach_compares_the_deepest_layers():
    """The CNN's reach grows with depth: the claim uses its last stage, not its first."""
    res = _synthetic({"cnn": 2.0})
    for rec in res["mixing"]["cnn"]["trained"]:
        rec["layers"][-1]["mean_mixing_distance_px"] = 12.0       # the last stage reaches far
    for fam in ("mixer", "resmlp", "gmlp", "vit"):
        for rec in res["mixing"][fam]["trained"]:
            rec["layers"][-1]["mean_mixing_distance_px"] = 12.5
    c = _claim(res, "cnn_reaches_less_far")
    assert c.estimate == pytest.approx(0.5) and c.verdict == "negligible"
