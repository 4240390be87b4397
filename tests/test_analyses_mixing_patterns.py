"""analyses.mixing_patterns: quick run end to end, --plot-only, pixel units, verdict rules."""
import json

import pytest

from analyses import mixing_patterns as mp

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("mixing_patterns")
    args, code, results = quick_analysis(mp, out)
    assert code == 0
    return out, args, results


def test_quick_run_writes_figures_and_results(quick):
    out, _, res = quick
    for name in ("mixing_patterns.pdf", "mixing_distance_by_depth.pdf"):
        assert (out / name).stat().st_size > 1000
    assert res["analysis"] == "mixing_patterns" and res["scale"] == "quick"
    assert res["image_size"] == 28
    seeds = res["settings"]["seeds"]
    for fam in mp.common.FAMILIES:
        for which in mp.WEIGHTS:
            recs = res["models"][fam][which]
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
    for per in res["models"].values():
        for layer in per["trained"][0]["layers"]:
            side = layer["input_grid"][1]
            assert layer["px_per_unit"] == pytest.approx(28 / side)
            assert layer["mean_mixing_distance_px"] == pytest.approx(
                layer["mean_mixing_distance_units"] * 28 / side)
    cnn = [l["px_per_unit"] for l in res["models"]["cnn"]["trained"][0]["layers"]]
    assert cnn == [1.0, 2.0, 4.0]                  # 28x28 -> 14x14 -> 7x7 input grids
    assert {l["px_per_unit"] for l in res["models"]["vit"]["trained"][0]["layers"]} == {4.0}
    # Fourier mixing is fixed: training changes nothing, and it spreads about uniformly
    fnet = res["models"]["fnet"]
    assert fnet["trained"][0]["layers"] == fnet["random"][0]["layers"]
    assert abs(fnet["trained"][0]["layers"][0]["mean_mixing_distance_px"]
               - res["references"]["uniform_7x7_tokens_px"]) < 1.0
    # the CNN's first stage reaches a few pixels, token mixers across the 28-px image
    assert res["models"]["cnn"]["trained"][0]["layers"][0]["mean_mixing_distance_px"] < 4
    assert res["models"]["vit"]["trained"][0]["layers"][0]["mean_mixing_distance_px"] > 8


def test_claims_from_quick_results(quick):
    _, _, res = quick
    cl = {c.key: c for c in mp.claims(res)}
    assert set(cl) == {"mixer_mixing_is_local", "cnn_reaches_less_far", "attention_reaches_far"}
    for c in cl.values():
        assert c.low <= c.estimate <= c.high
        assert c.verdict in mp.common.VERDICTS
        json.dumps(c.as_dict())
    assert cl["cnn_reaches_less_far"].verdict == "supported"


def test_plot_only_redraws(quick):
    out, args, _ = quick
    for name in ("mixing_patterns.pdf", "mixing_distance_by_depth.pdf"):
        (out / name).unlink()
    assert mp.main(args + ["--plot-only"]) == 0
    assert (out / "mixing_patterns.pdf").stat().st_size > 1000
    assert (out / "mixing_distance_by_depth.pdf").stat().st_size > 1000


# ----------------------------------------------------------------------------- verdict rules


def _layer(dist_px, loc, equi, px=4.0):
    return {"mean_mixing_distance_px": dist_px, "mean_mixing_distance_units": dist_px / px,
            "mean_mixing_distance_px_per_head": [dist_px], "locality": loc,
            "translation_equivariance": equi, "px_per_unit": px}


def _synthetic(mixer_gain, vit_px, cnn_px, token_px=14.0, noise=(0.0, 0.01, -0.01)):
    """3 seeds: Mixer locality trained = random + gain; chosen first-layer distances (px)."""
    models = {}
    for fam in mp.common.FAMILIES:
        models[fam] = {"trained": [], "random": []}
        for s, e in enumerate(noise):
            base = 0.09 + e
            if fam == "mixer":
                tr, rd = base + mixer_gain + e, base
            else:
                tr = rd = base
            d = {"vit": vit_px, "cnn": cnn_px}.get(fam, token_px) + 10 * e
            models[fam]["trained"].append({"seed": s, "layers": [_layer(d, tr, 0.1)] * 3})
            models[fam]["random"].append({"seed": s, "layers": [_layer(14.4, rd, 0.1)] * 3})
    return {"settings": {"images": 4, "n_train": 100, "seeds": [0, 1, 2]}, "radius_px": 4.0,
            "models": models, "references": {"conv3x3_px": 1.07, "uniform_7x7_tokens_px": 14.4}}


@pytest.mark.parametrize("gain, expected", [(0.3, "supported"), (-0.3, "not supported"),
                                            (0.0, "not supported"), (0.05, "inconclusive")])
def test_mixer_locality_rule(gain, expected):
    c = {c.key: c for c in mp.claims(_synthetic(gain, 14.0, 2.0))}["mixer_mixing_is_local"]
    assert c.verdict == expected


@pytest.mark.parametrize("vit, cnn, expected", [(14.0, 2.0, "supported"),
                                                (2.0, 14.0, "not supported"),
                                                (2.5, 2.0, "inconclusive")])
def test_attention_reach_rule(vit, cnn, expected):
    res = _synthetic(0.0, vit, cnn, noise=(0.0, 0.05, -0.05))
    c = {c.key: c for c in mp.claims(res)}["attention_reaches_far"]
    assert c.verdict == expected


@pytest.mark.parametrize("tokens, cnn, spread, expected", [(14.0, 2.0, 0.05, "supported"),
                                                           (2.0, 14.0, 0.05, "not supported"),
                                                           (2.0, 2.0, 0.01, "not supported"),
                                                           (3.0, 2.0, 0.05, "inconclusive")])
def test_cnn_reach_rule(tokens, cnn, spread, expected):
    res = _synthetic(0.0, tokens, cnn, token_px=tokens, noise=(0.0, spread, -spread))
    c = {c.key: c for c in mp.claims(res)}["cnn_reaches_less_far"]
    assert c.verdict == expected


def test_claims_use_pixels_not_grid_units():
    """Equal grid-unit distances (2 cells) are 2 px on the CNN's 28x28 grid, 8 px on 7x7 tokens."""
    res = _synthetic(0.0, 8.0, 2.0)
    for per in res["models"]["cnn"].values():
        for r in per:
            r["layers"] = [_layer(2.0, 0.5, 0.9, px=1.0)] * 3
    c = {c.key: c for c in mp.claims(res)}["attention_reaches_far"]
    assert c.estimate == pytest.approx(6.0, abs=0.5)
