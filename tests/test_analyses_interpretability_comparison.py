"""Tests of analyses.interpretability_comparison: the quick run end to end (models / claims /
checks rows, the initialisation beside every metric, the synthetic-data localisation, figures,
--plot-only), the chance-corrected localisation on hand-made maps, and the verdicts, per-family
effects and initialisation reference of each claim on hand-made results."""
import math

import numpy as np
import pytest
import torch

from analyses import common
from analyses import interpretability_comparison as ic
from analyses.verdicts import margin_of

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

METHODS = ["saliency", "integrated_gradients", "occlusion", "grad_cam"]
CLAIM_IDS = ["mlps_less_faithful", "mlp_maps_fail_sanity_check", "mlp_maps_localise_worse"]
MODEL_KEYS = {"family", "n_train", "seed", "steps", "lr", "val_accuracy", "test_accuracy", "weights"}
CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}
FIGURES = ("interpretability_comparison", "interpretability_synthetic", "interpretability_effects",
           "attribution_examples", "attribution_examples_synthetic")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, quick_analysis):
    """One quick run (the quick recipe's converged-model cells) shared by the tests."""
    out = tmp_path_factory.mktemp("interp")
    _, code, results = quick_analysis(ic, out)
    return code, out, results


def test_quick_run_writes_models_claims_checks_and_figures(quick):
    code, out, results = quick
    assert code == 0
    for name in FIGURES:
        assert (out / f"{name}.pdf").stat().st_size > 1000, name
    scale = ic.SCALES["quick"]
    assert results["scale"] == "quick" and "cnn" in scale["families"]
    triples = {(m["dataset"], m["family"], m["seed"]) for m in results["models"]}
    assert triples == {(d, f, s) for d in ("fashion-mnist", "synthetic") for f in scale["families"]
                       for s in scale["seeds"]}
    assert len(results["models"]) == len(triples)
    for m in results["models"]:
        assert MODEL_KEYS <= set(m) and 0.0 <= m["test_accuracy"] <= 1.0 and m["steps"] > 0
    # the synthetic models: the same (quick) recipe but their own data, so their own hash
    hashes = {d: {m["recipe_hash"] for m in results["models"] if m["dataset"] == d}
              for d in ("fashion-mnist", "synthetic")}
    assert len(hashes["synthetic"]) == 1 and hashes["synthetic"] != hashes["fashion-mnist"]
    assert results["synthetic"]["recipe"]["recipe_hash"] in hashes["synthetic"]
    assert [c["id"] for c in results["claims"]] == CLAIM_IDS
    for c in results["claims"]:
        assert CLAIM_KEYS <= set(c) and c["verdict"] in common.VERDICTS
        assert c["ci_low"] <= c["effect"] <= c["ci_high"] and c["test"] == "direction"
        assert set(c["per_family"]) == set(scale["families"]) - {"cnn"}       # ViT included
        assert set(c["sensitivity"]) == {"half", "double"}
        assert c["margin"] == margin_of(c["id"])["margin"]
        assert set(c["details"]["per_method"]) == set(METHODS)
    loc = results["claims"][2]
    assert "synthetic" in loc["experiment"] and "area share" in loc["experiment"]
    assert "initialisation" in loc["experiment"]
    assert set(loc["details"]["pointing_game"][ic.MEAN]["per_family"]) == {"mixer", "vit"}
    assert loc["reference"]["chance_mask_fraction"] == pytest.approx(100 / 784, abs=1e-6)
    assert "effect" in loc["reference"]["fashion_mnist_silhouette"]
    (check,) = results["checks"]
    assert check["id"] == "localization_chance_correction" and check["holds"]
    assert check["max_abs_error"] <= 1e-5


def test_quick_run_puts_the_initialisation_beside_every_metric(quick):
    _, _, results = quick
    scale = results["settings"]
    for row in results["rows"]:
        assert list(row["methods"]) == list(row["init"]["methods"]) == scale["methods"]
        assert len(row["predicted"]) == scale["n_images"]
        for state in (row["methods"], row["init"]["methods"]):
            for method, rec in state.items():
                for key in ("deletion_auc", "insertion_auc", "deletion_random_auc",
                            "insertion_random_auc"):
                    assert 0.0 <= rec[key] <= 1.0, (row["family"], method, key)
                assert len(rec["deletion_curve"]) == scale["curve_steps"] + 1
                # deletion starts from the full image, insertion ends at it: same probabilities
                assert rec["deletion_curve"][0] == pytest.approx(rec["insertion_curve"][-1], abs=1e-3)
                san = rec["sanity"]
                assert len(san["correlation_by_layer"]) == len(san["layers"]) >= 3
                loc = rec["localization"]["mass_inside"]
                assert math.isnan(loc) or 0.0 <= loc <= 1.0
        has_maps = row["seed"] == scale["seeds"][0]
        assert ("example_maps" in row["methods"][scale["example_method"]]) == has_maps
    # the initialisation is another model: the CNN's scores differ from the trained CNN's
    cnn = next(r for r in results["rows"] if r["family"] == "cnn")
    assert cnn["init"]["methods"]["saliency"]["deletion_curve"] != \
        cnn["methods"]["saliency"]["deletion_curve"]
    # timm zero-initialises the Mixer's head: its initial output ignores the input, so every
    # initial map is 0 and the claims say the initialisation's effect is undefined for it
    mixer = next(r for r in results["rows"] if r["family"] == "mixer")
    rec = mixer["init"]["methods"]["integrated_gradients"]
    assert rec["insertion_auc"] == pytest.approx(rec["deletion_auc"], abs=1e-6)
    sanity = next(c for c in results["claims"] if c["id"] == "mlp_maps_fail_sanity_check")
    assert "mixer" in sanity["reference"]["initialisation"]["undefined_for"]
    assert "init" in sanity["reference"]["levels"]["cnn"]


def test_quick_run_measures_chance_corrected_localisation_on_synthetic_models(quick):
    _, _, results = quick
    scale, syn = results["settings"], results["synthetic"]
    assert syn["images"]["n"] == scale["n_synthetic"] and syn["images"]["target"] == "true class"
    assert {(r["family"], r["seed"]) for r in syn["rows"]} == \
        {(f, s) for f in scale["families"] for s in scale["seeds"]}
    for row in syn["rows"]:
        assert list(row["methods"]) == list(row["init"]["methods"]) == scale["methods"]
        for method, rec in row["methods"].items():
            share = rec["chance"]
            assert share == pytest.approx(100 / 784, abs=1e-6)        # a 10x10 square on 28x28
            assert rec["mass_excess"] == pytest.approx(rec["mass_inside"] - share, abs=2e-6)
            assert -share <= rec["mass_excess"] <= 1 - share
            assert rec["n"] == scale["n_synthetic"]
    # a position-blind map of where squares fall beats the area share (squares favour the centre)
    assert syn["controls"]["prior_map"]["mask_mass_excess"] > 0
    # the Mixer's zero-initialised head: all-zero initial maps, localisation undefined (NaN)
    mixer = next(r for r in syn["rows"] if r["family"] == "mixer")
    assert math.isnan(mixer["init"]["methods"]["saliency"]["mass_excess"])


def test_chance_corrected_localization_on_hand_made_maps():
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, 2:4, 2:6] = True                                         # 8 of 64 pixels
    share = 8 / 64
    inside = masks.float() * torch.rand(3, 8, 8).add(0.1)             # all mass in the mask
    r = ic.chance_corrected_localization(inside, masks)
    assert r["mass_excess"] == pytest.approx(1 - share, abs=1e-6) and r["pointing_excess"] == pytest.approx(1 - share, abs=1e-6)
    assert r["chance"] == pytest.approx(share, abs=1e-6) and r["n"] == 3 and r["n_undefined"] == 0
    uniform = ic.chance_corrected_localization(torch.full((3, 8, 8), 0.7), masks)
    assert uniform["mass_excess"] == pytest.approx(0.0, abs=1e-7)
    assert math.isnan(uniform["pointing_excess"]) and uniform["n_pointing_undefined"] == 3
    outside = (~masks).float()
    outside[:, 7, 7] = 2.0                                            # argmax outside the mask
    r = ic.chance_corrected_localization(outside, masks)
    assert r["mass_excess"] == pytest.approx(-share, abs=1e-6) and r["pointing_excess"] == pytest.approx(-share, abs=1e-6)
    # argmax inside but most of the mass outside: the two readings differ
    mixed = (~masks).float() * 0.5
    mixed[:, 3, 3] = 1.0
    r = ic.chance_corrected_localization(mixed, masks)
    assert r["pointing_excess"] == pytest.approx(1 - share, abs=1e-6)
    assert r["mass_excess"] == pytest.approx(1.0 / (1.0 + 0.5 * 56) - share, abs=1e-6)
    # negative attribution does not count; a map without positive mass is undefined
    r = ic.chance_corrected_localization(-inside, masks)
    assert math.isnan(r["mass_excess"]) and r["n_undefined"] == 3
    controls = ic.localization_controls(masks[:, None])
    assert controls["uniform_map"]["mask_mass_excess"] == 0.0
    assert controls["mask_as_map"]["mask_mass_excess"] == pytest.approx(1 - share, abs=1e-6)


def test_plot_only_redraws(quick):
    _, out, _ = quick
    for name in FIGURES:
        (out / f"{name}.pdf").unlink()
    assert ic.main(["--plot-only", "--results", str(out), "--figures", str(out)]) == 0
    for name in FIGURES:
        assert (out / f"{name}.pdf").stat().st_size > 1000, name


def test_silhouettes_fill_holes():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 1:6, 1:6] = 0.8
    x[0, 0, 3, 3] = 0.0                      # a dark pixel inside the garment
    m = ic.silhouettes(x, 0.05)
    assert m.shape == (1, 8, 8) and m.dtype == torch.bool
    assert m[0, 3, 3] and m.sum() == 25 and not m[0, 7, 7]


# ----------------------------------------------------------------------------- claim rules


def _rec(faith: float, sanity: float, loc: float) -> dict:
    return {"insertion_auc": 0.5 + faith / 2, "deletion_auc": 0.5 - faith / 2,
            "deletion_random_auc": 0.5, "insertion_random_auc": 0.5,
            "sanity": {"final": sanity, "correlation_by_layer": [sanity]},
            "localization": {"mass_inside": loc}}


def _loc(excess: float, pointing: float) -> dict:
    share = 100 / 784
    return {"mass_excess": excess, "mass_inside": excess + share, "pointing_excess": pointing,
            "pointing_accuracy": pointing + share, "chance": share}


def _results(faith: dict, sanity: dict, loc: dict, *, seeds=(0, 1, 2), noise=0.0,
             init_nan=()) -> dict:
    """Hand-made results: per family a (faithfulness, sanity, localisation) level, the same for
    every method, plus per-seed noise of size ``noise``; the localisation level is the
    synthetic models' chance-corrected mass in the mask (pointing game: half of it) and, on
    Fashion-MNIST, a silhouette share near chance. The initialisation scores a tenth of the
    trained levels, with undefined (NaN) sanity and localisation for ``init_nan``."""
    rng = np.random.default_rng(0)
    rows, synthetic = [], []
    for fam in common.FAMILIES:
        for s in seeds:
            e = noise * rng.standard_normal(3)
            rec = _rec(faith[fam] + e[0], sanity[fam] + e[1], 0.5 + e[2])
            nan = fam in init_nan
            init = _rec(0.0 if nan else faith[fam] / 10, math.nan if nan else sanity[fam] / 10, 0.5)
            rows.append({"family": fam, "seed": s, "methods": {m: dict(rec) for m in METHODS},
                         "init": {"methods": {m: dict(init) for m in METHODS}}})
            trained = _loc(loc[fam] + e[2], (loc[fam] + e[2]) / 2)
            at_init = (_loc(math.nan, math.nan) if nan
                       else _loc(loc[fam] / 10 + 0.01 * s, loc[fam] / 20))
            synthetic.append({"family": fam, "seed": s,
                              "methods": {m: dict(trained) for m in METHODS},
                              "init": {"methods": {m: dict(at_init) for m in METHODS}}})
    controls = {"uniform_map": {"mask_mass_excess": 0.0, "expected": 0.0},
                "mask_as_map": {"mask_mass_excess": 1 - 100 / 784, "pointing_excess": 1 - 100 / 784,
                                "expected": 1 - 100 / 784},
                "prior_map": {"mask_mass_excess": 0.09, "pointing_excess": 0.2}}
    return {"rows": rows, "images": {"n": 48, "mask_fraction": 0.5},
            "synthetic": {"rows": synthetic, "controls": controls,
                          "images": {"n": 64, "mask_fraction": 100 / 784},
                          "recipe": {"n_train": 10000, "steps": 1500}}}


def _levels(reference: float, mlp: float, **family) -> dict:
    """CNN and ViT at ``reference``, the MLP families at ``mlp``, unless given in ``family``."""
    return {f: family.get(f, mlp if f in common.MLP_FAMILIES else reference) for f in common.FAMILIES}


def _verdicts(results: dict) -> dict:
    return {c.key: c.verdict for c in ic.claims(results)}


def test_claims_supported_when_mlps_clearly_worse():
    r = _results(_levels(0.5, 0.3), _levels(0.1, 0.6), _levels(0.8, 0.6), noise=0.01)
    assert _verdicts(r) == dict.fromkeys(CLAIM_IDS, "supported")
    faith = ic.claims(r)[0]
    assert faith.estimate == pytest.approx(0.2, abs=0.03)   # CNN - MLPs, > 0 = claim
    # deletion AUC relative to random: MLPs 0.35 / 0.5 vs CNN 0.25 / 0.5
    assert faith.details["relative_deletion"][ic.MEAN]["effect"] == pytest.approx(0.2, abs=0.03)
    assert set(faith.details["per_method"]) == set(METHODS)
    assert faith.confidence == 0.95


def test_claims_opposite_when_mlps_clearly_better():
    r = _results(_levels(0.3, 0.5), _levels(0.6, 0.1), _levels(0.6, 0.8), noise=0.01)
    assert _verdicts(r) == dict.fromkeys(CLAIM_IDS, "opposite")
    assert all(c.high < 0 for c in ic.claims(r))


def test_claims_negligible_when_difference_inside_the_margin():
    r = _results(_levels(0.40, 0.395), _levels(0.30, 0.31), _levels(0.70, 0.695), noise=0.001)
    assert _verdicts(r) == dict.fromkeys(CLAIM_IDS, "negligible")
    assert all(-c.margin <= c.low and c.high <= c.margin for c in ic.claims(r))


def test_claims_inconclusive_when_seeds_disagree():
    r = _results(_levels(0.45, 0.40), _levels(0.2, 0.3), _levels(0.75, 0.70), noise=0.2)
    assert _verdicts(r) == dict.fromkeys(CLAIM_IDS, "inconclusive")


def test_per_family_effects_show_opposite_signs_inside_the_group():
    # Mixer, ResMLP, gMLP less faithful than the CNN, FNet more, ViT in between
    faith = _levels(0.4, 0.2, fnet=0.6, vit=0.35)
    r = _results(faith, _levels(0.2, 0.2), _levels(0.7, 0.7), noise=0.005)
    c = ic.claims(r)[0]
    assert set(c.per_family) == set(common.FAMILIES) - {"cnn"}          # ViT included
    pf = c.per_family
    assert pf["fnet"]["ci_high"] < 0 < pf["mixer"]["ci_low"]
    assert pf["vit"]["effect"] == pytest.approx(0.05, abs=0.01)
    mlps = [f for f in common.MLP_FAMILIES]
    assert c.estimate == pytest.approx(np.mean([pf[f]["effect"] for f in mlps]), abs=1e-6)
    assert c.estimate == pytest.approx((3 * 0.2 - 0.2) / 4, abs=0.01)


def test_initialisation_reference_beside_each_claim():
    r = _results(_levels(0.5, 0.3), _levels(0.1, 0.6), _levels(0.8, 0.6), noise=0.01)
    for c in ic.claims(r):
        init = c.reference["initialisation"]
        # the initialisation scores a tenth of the trained levels: a tenth of the effect
        assert init["effect"] == pytest.approx(c.estimate / 10, abs=0.01)
        assert set(init["per_family"]) == set(c.per_family)
        assert set(c.reference["levels"]["cnn"]) == {"trained", "init"}
    undefined = _results(_levels(0.5, 0.3), _levels(0.1, 0.6), _levels(0.8, 0.6), noise=0.01,
                         init_nan=common.MLP_FAMILIES)
    faith, sanity, loc = ic.claims(undefined)
    assert faith.reference["initialisation"]["effect"] == pytest.approx(0.05, abs=1e-6)
    for c in (sanity, loc):
        init = c.reference["initialisation"]
        assert set(init["undefined_for"]) == set(common.MLP_FAMILIES) and "effect" not in init
        assert set(init["per_family"]) == {"vit"}
        assert c.reference["levels"]["mixer"]["init"]["value"] is None
        assert c.verdict == "supported"                    # the trained models still decide


def test_claims_need_cnn_and_an_mlp_family():
    r = _results(_levels(0.5, 0.3), _levels(0.1, 0.6), _levels(0.8, 0.6))
    r["rows"] = [row for row in r["rows"] if row["family"] != "cnn"]
    with pytest.raises(ValueError, match="CNN"):
        ic.claims(r)
    r = _results(_levels(0.5, 0.3), _levels(0.1, 0.6), _levels(0.8, 0.6))
    r["synthetic"]["rows"] = [row for row in r["synthetic"]["rows"] if row["family"] != "cnn"]
    with pytest.raises(ValueError, match="CNN"):
        ic.claims(r)


def test_localisation_claim_reads_the_synthetic_models_and_reports_the_pointing_game():
    # on Fashion-MNIST every family sits at the silhouette's chance; on synthetic data the CNN
    # localises (0.6 above chance), the MLPs barely (0.1), ViT in between (0.4)
    r = _results(_levels(0.5, 0.5), _levels(0.2, 0.2), _levels(0.6, 0.1, vit=0.4), noise=0.01)
    loc = ic.claims(r)[2]
    assert loc.key == "mlp_maps_localise_worse" and loc.verdict == "supported"
    assert loc.estimate == pytest.approx(0.5, abs=0.02)
    assert loc.per_family["vit"]["effect"] == pytest.approx(0.2, abs=0.02)
    assert loc.details["pointing_game"][ic.MEAN]["effect"] == pytest.approx(0.25, abs=0.02)
    assert loc.reference["fashion_mnist_silhouette"]["effect"] == pytest.approx(0.0, abs=0.02)
    assert loc.reference["controls"]["prior_map"]["mask_mass_excess"] == 0.09
    assert "synthetic" in loc.experiment and "10000" in loc.experiment


def test_chance_check_fails_when_the_correction_is_off():
    r = _results(_levels(0.5, 0.3), _levels(0.1, 0.6), _levels(0.8, 0.6))
    (check,) = ic.checks(r)
    assert check.holds and check.max_abs_error == pytest.approx(0.0, abs=1e-12)
    r["synthetic"]["controls"]["uniform_map"]["mask_mass_excess"] = 0.01    # a biased correction
    (check,) = ic.checks(r)
    assert not check.holds and check.max_abs_error == pytest.approx(0.01)
