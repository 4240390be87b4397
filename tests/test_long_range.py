"""analyses.long_range: the glyph distance of a dataset name, the measured receptive field on
known stacks, the seen-in-training fraction, the claim's arithmetic and verdicts on hand-made
accuracies, one clear error on bad input, and the quick run end to end."""
import pytest
import torch

from analyses import long_range as lr
from probe import data

pytestmark = pytest.mark.usefixtures("one_thread")


def test_distance_of_reads_the_dataset_name_or_says_what_is_wrong():
    assert lr.distance_of("glyph-pairs:12") == 12
    for bad in ("fashion-mnist", "glyph-pairs:", "glyph-pairs:x", None):
        with pytest.raises(ValueError, match="glyph-pairs:<d>"):
            lr.distance_of(bad)


class _Stack(torch.nn.Module):
    def __init__(self, *layers):
        super().__init__()
        self.body = torch.nn.Sequential(*layers)

    def forward_features(self, x):
        return self.body(x)


@pytest.mark.parametrize("layers, rf", [
    (lambda: [torch.nn.Conv2d(1, 2, 3, padding=1)], 3),
    (lambda: [torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(2, 2, 3, padding=1)], 5),
    (lambda: [torch.nn.Conv2d(1, 2, 3, stride=2, padding=1), torch.nn.BatchNorm2d(2),
              torch.nn.Conv2d(2, 2, 3, padding=1)], 7),          # 3 + (3 - 1) * 2
])
def test_receptive_field_matches_the_closed_form(layers, rf):
    assert lr.receptive_field_px(_Stack(*layers())) == rf


def test_receptive_field_too_large_for_the_probe_image_is_an_error():
    net = _Stack(torch.nn.Conv2d(1, 1, 9, padding=4), torch.nn.Conv2d(1, 1, 9, padding=4))
    with pytest.raises(ValueError, match="larger size"):
        lr.receptive_field_px(net, size=12)


def test_the_zoo_cnn_last_stage_sees_the_farthest_pair():
    from probe import zoo
    assert lr.receptive_field_px(zoo.build("cnn").net) >= 20 + data.GLYPH


def test_seen_fraction_ignores_noise_and_counts_repeated_patterns():
    x = data.glyph_pairs(64, 12, seed=0).images          # float in [0, 1]
    assert x.is_floating_point()
    noisy = (x + 0.05 * torch.rand_like(x)).clamp(0, 0.49).where(x <= 0.5, x)   # background noise only
    assert lr.seen_fraction(x, noisy) == 1.0
    moved = torch.roll(x, shifts=1, dims=-1)                 # glyphs one px to the right: new places
    assert lr.seen_fraction(x, moved) < 0.5
    assert lr.seen_fraction(x, x[:0]) == 0.0


def _rows(acc):
    """``acc``: {family: {distance: [accuracy per seed]}} -> result rows."""
    return [{"family": f, "seed": s, "distance": d, "test_accuracy": a, "val_accuracy": a, "params": 1000,
             "initialisation": {"test_accuracy": 0.1, "test_accuracy_two_logits": 0.5}}
            for f, per in acc.items() for d, seeds in per.items() for s, a in enumerate(seeds)]


def _results(acc):
    return {"rows": _rows(acc), "distances": sorted({d for per in acc.values() for d in per}),
            "reference": {"chance_accuracy": 0.5}, "test_n": {"20": 2000},
            "receptive_field": {"cnn_last_stage_px": 37, "glyph_px": 4, "farthest_pair_px": 24,
                                "image_px": 28}}


def test_a_cnn_that_loses_more_with_distance_supports_the_claim():
    acc = {"cnn": {4: [0.95, 0.96, 0.94], 20: [0.70, 0.72, 0.69]},
           "mixer": {4: [0.95, 0.95, 0.95], 20: [0.94, 0.95, 0.93]},
           "vit": {4: [0.90, 0.91, 0.90], 20: [0.89, 0.90, 0.91]}}
    (c,) = lr.claims(_results(acc))
    drops = {"cnn": [0.25, 0.24, 0.25], "mixer": [0.01, 0.0, 0.02], "vit": [0.01, 0.01, -0.01]}
    expected = [c_ - (m + v) / 2 for c_, m, v in zip(drops["cnn"], drops["mixer"], drops["vit"])]
    assert c.estimate == pytest.approx(sum(expected) / 3)
    assert c.verdict == "supported"
    assert c.per_family["cnn"]["effect"] == pytest.approx(sum(drops["cnn"]) / 3)
    assert c.per_family["mixer"]["cnn_drop_minus_family_drop"]["effect"] == pytest.approx(
        sum(a - b for a, b in zip(drops["cnn"], drops["mixer"])) / 3)


def test_equal_drops_are_negligible_and_a_cnn_that_keeps_up_is_opposite():
    same = {"cnn": {4: [0.9, 0.91, 0.92], 20: [0.9, 0.91, 0.92]},
            "vit": {4: [0.9, 0.92, 0.91], 20: [0.9, 0.92, 0.91]}}
    assert lr.claims(_results(same))[0].verdict == "negligible"
    worse = {"cnn": {4: [0.9, 0.91, 0.92], 20: [0.9, 0.91, 0.92]},
             "vit": {4: [0.9, 0.92, 0.91], 20: [0.6, 0.63, 0.61]}}
    assert lr.claims(_results(worse))[0].verdict == "opposite"


def test_unpaired_or_incomplete_results_are_one_clear_error():
    acc = {"cnn": {4: [0.9, 0.9], 20: [0.8, 0.8]}, "vit": {4: [0.9, 0.9, 0.9], 20: [0.8, 0.8, 0.8]}}
    with pytest.raises(ValueError, match="paired by seed"):
        lr.claims(_results(acc))
    with pytest.raises(ValueError, match="farthest distance"):
        lr.claims(_results({"cnn": {4: [0.9], 20: [0.8]}, "vit": {4: [0.9]}}))
    with pytest.raises(ValueError, match="'cnn'"):
        lr.claims(_results({"vit": {4: [0.9], 20: [0.8]}, "mixer": {4: [0.9], 20: [0.8]}}))
    with pytest.raises(ValueError, match="include it"):
        lr.compute({"quick": True, "families": ["vit"]}, None, False)


def test_receptive_field_check_fails_when_the_pair_is_wider():
    res = _results({"cnn": {4: [0.9], 20: [0.8]}, "vit": {4: [0.9], 20: [0.8]}})
    res["receptive_field"]["cnn_last_stage_px"] = 20
    (check,) = lr.checks(res)
    assert not check.holds and check.max_abs_error == 4.0


# ----------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("long_range")
    return out, *quick_analysis(lr, out)


def test_quick_run_end_to_end(quick):
    out, args, code, res = quick
    assert code == 0 and res["scale"] == "quick"
    fams = set(lr.SCALES["quick"]["families"])
    assert {r["family"] for r in res["rows"]} == fams and res["distances"] == [4, 12, 20]
    assert len(res["models"]) == len(fams) * 3 and len(set(res["recipe_hashes"].values())) == 3
    for r in res["rows"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["test_accuracy_measured"] == pytest.approx(
            r["test_accuracy"], abs=1e-3)          # the card's accuracy, re-measured from the weights
    (claim,) = res["claims"]
    assert claim["id"] == "long-range" and set(claim["per_family"]) == fams
    checks = {c["id"]: c for c in res["checks"]}
    assert checks["long-range-receptive-field"]["holds"]
    assert checks["long-range-two-logits"]["details"]["models"] == len(res["models"])
    assert (out / "long_range.pdf").is_file()
    assert lr.main(args + ["--plot-only"]) == 0
