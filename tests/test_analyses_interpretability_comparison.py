"""Tests of analyses.interpretability_comparison: the quick run end to end (JSON, figures,
--plot-only) and the verdict rule of each claim on hand-made results."""
import json
import math

import numpy as np
import pytest
import torch

from analyses import common
from analyses import interpretability_comparison as ic

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ["saliency", "integrated_gradients", "occlusion", "grad_cam"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run (trains 12 tiny models into a temporary cache) shared by the tests."""
    root = tmp_path_factory.mktemp("interp")
    res, fig, cache = root / "results", root / "figures", root / "cache"
    rc = ic.main(["--quick", "--results", str(res), "--figures", str(fig), "--cache", str(cache),
                  "--no-progress"])
    results = json.loads((res / f"{ic.NAME}.json").read_text()) if rc == 0 else None
    return rc, res, fig, results


def test_quick_run_writes_results_and_figures(quick):
    rc, _, fig, results = quick
    assert rc == 0
    for name in ("interpretability_comparison", "attribution_examples"):
        pdf = fig / f"{name}.pdf"
        assert pdf.is_file() and pdf.stat().st_size > 1000
    scale = ic.SCALES["quick"]
    assert results["analysis"] == ic.NAME and results["scale"] == "quick"
    assert len(results["rows"]) == len(scale["seeds"]) * len(scale["families"])
    assert "cnn" in scale["families"] and set(scale["families"]) & set(common.MLP_FAMILIES)
    assert {(r["family"], r["seed"]) for r in results["rows"]} == {
        (f, s) for f in scale["families"] for s in scale["seeds"]}
    assert 0.0 < results["images"]["mask_fraction"] < 1.0
    assert len(results["images"]["examples"]) == scale["n_examples"]


def test_quick_run_metrics_are_sane(quick):
    _, _, _, results = quick
    scale = results["settings"]
    for row in results["rows"]:
        assert list(row["methods"]) == scale["methods"]
        assert len(row["predicted"]) == scale["n_images"]
        for method, rec in row["methods"].items():
            for key in ("deletion_auc", "insertion_auc", "deletion_random_auc",
                        "insertion_random_auc"):
                assert 0.0 <= rec[key] <= 1.0, (row["family"], method, key)
            assert len(rec["deletion_curve"]) == scale["curve_steps"] + 1
            # deletion starts from the full image, insertion ends at it: same probabilities
            assert rec["deletion_curve"][0] == pytest.approx(rec["insertion_curve"][-1], abs=1e-3)
            assert ("deletion_auc_black" in rec) == (method in scale["secondary_methods"])
            loc = rec["localization"]
            assert math.isnan(loc["mass_inside"]) or 0.0 <= loc["mass_inside"] <= 1.0
            assert loc["chance"] == pytest.approx(results["images"]["mask_fraction"], abs=0.05)
            san = rec["sanity"]
            assert len(san["correlation_by_layer"]) == len(san["layers"]) >= 3
            assert san["final"] == san["correlation_by_layer"][-1]
            assert all(math.isnan(c) or -1.0 <= c <= 1.0 for c in san["correlation_by_layer"])
            has_maps = row["seed"] == scale["seeds"][0] and method == scale["example_method"]
            assert ("example_maps" in rec) == has_maps
            if has_maps:
                assert np.array(rec["example_maps"]).shape == (scale["n_examples"], 28, 28)


def test_quick_run_claims(quick):
    _, _, _, results = quick
    out = ic.claims(results)
    assert [c.key for c in out] == [k for k, *_ in ic._CLAIMS]
    for c in out:
        assert c.verdict in common.VERDICTS
        assert math.isfinite(c.estimate) and c.low <= c.estimate <= c.high
        assert c.figure == "interpretability_comparison.pdf"
        assert set(c.details["per_method"]) == set(METHODS)
        json.dumps(c.as_dict())


def test_plot_only_redraws(quick):
    _, res, fig, _ = quick
    for pdf in fig.glob("*.pdf"):
        pdf.unlink()
    rc = ic.main(["--plot-only", "--results", str(res), "--figures", str(fig)])
    assert rc == 0
    assert (fig / "interpretability_comparison.pdf").stat().st_size > 1000
    assert (fig / "attribution_examples.pdf").stat().st_size > 1000


def test_silhouettes_fill_holes():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 1:6, 1:6] = 0.8
    x[0, 0, 3, 3] = 0.0                      # a dark pixel inside the garment
    m = ic.silhouettes(x, 0.05)
    assert m.shape == (1, 8, 8) and m.dtype == torch.bool
    assert m[0, 3, 3] and m.sum() == 25 and not m[0, 7, 7]


# ----------------------------------------------------------------------------- claim rules


def _results(faith: dict, sanity: dict, loc: dict, *, seeds=(0, 1, 2), noise=0.0) -> dict:
    """Hand-made results: per family a (faithfulness, sanity, localisation) level, the same
    for every method, plus per-seed noise of size ``noise`` (family-specific pattern)."""
    rng = np.random.default_rng(0)
    rows = []
    for fam in common.FAMILIES:
        for s in seeds:
            e = noise * rng.standard_normal(3)
            rec = {"insertion_auc": 0.5 + faith[fam] / 2 + e[0] / 2,
                   "deletion_auc": 0.5 - faith[fam] / 2 - e[0] / 2, "deletion_random_auc": 0.5,
                   "sanity": {"final": sanity[fam] + e[1], "correlation_by_layer": [sanity[fam]]},
                   "localization": {"mass_inside": loc[fam] + e[2]}}
            rows.append({"family": fam, "seed": s, "methods": {m: dict(rec) for m in METHODS}})
    return {"rows": rows, "settings": {"n_train": 30000}, "images": {"n": 64, "mask_fraction": 0.5}}


def _levels(reference: float, mlp: float) -> dict:
    """CNN and ViT at ``reference``, the MLP families at ``mlp``."""
    return {f: (mlp if f in common.MLP_FAMILIES else reference) for f in common.FAMILIES}


def _verdicts(results: dict) -> dict:
    return {c.key: c.verdict for c in ic.claims(results)}


def test_claims_supported_when_mlps_clearly_worse():
    r = _results(_levels(0.5, 0.3), _levels(0.1, 0.6), _levels(0.8, 0.6), noise=0.01)
    assert set(_verdicts(r).values()) == {"supported"}
    faith = ic.claims(r)[0]
    assert faith.estimate == pytest.approx(0.2, abs=0.03)   # CNN - MLPs, > 0 = claim
    # deletion AUC relative to random: MLPs 0.35 / 0.5 vs CNN 0.25 / 0.5
    assert faith.details["relative_deletion"]["mean"]["estimate"] == pytest.approx(0.2, abs=0.03)
    assert faith.details["relative_deletion"]["mean"]["verdict"] == "supported"
    assert faith.details["vs_vit"]["mean"]["verdict"] == "supported"
    assert set(faith.details["per_method"]) == set(METHODS)


def test_claims_not_supported_when_mlps_clearly_better():
    r = _results(_levels(0.3, 0.5), _levels(0.6, 0.1), _levels(0.6, 0.8), noise=0.01)
    assert set(_verdicts(r).values()) == {"not supported"}
    assert all(c.estimate < 0 for c in ic.claims(r))


def test_claims_not_supported_when_difference_negligible():
    r = _results(_levels(0.40, 0.395), _levels(0.30, 0.31), _levels(0.70, 0.695), noise=0.001)
    assert set(_verdicts(r).values()) == {"not supported"}


def test_claims_inconclusive_when_seeds_disagree():
    r = _results(_levels(0.45, 0.40), _levels(0.2, 0.3), _levels(0.75, 0.70), noise=0.2)
    assert set(_verdicts(r).values()) == {"inconclusive"}
