"""analyses.equivariance: the shift operators, consistency on hand-made models, the quick run
on the converged (quick) models, the claim on constructed results, --plot-only."""
import copy

import pytest
import torch

from analyses import equivariance as eq
from analyses.cells import quick_recipe

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_shifts_move_pixels_and_fill_with_zeros_or_wrap():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    down = eq.shift(x, 1, 0, "zero")
    assert torch.equal(down[0, 0, 1:], x[0, 0, :4]) and down[0, 0, 0].abs().sum() == 0
    left = eq.shift(x, 0, -2, "zero")
    assert torch.equal(left[0, 0, :, :3], x[0, 0, :, 2:]) and left[0, 0, :, 3:].abs().sum() == 0
    assert torch.equal(eq.shift(x, 2, -1, "circular"), torch.roll(x, (2, -1), (-2, -1)))
    with pytest.raises(ValueError, match="circular"):
        eq.shift(x, 1, 0, "reflect")


class _ByPixel(torch.nn.Module):
    """Predicts from the brightest pixel's column (changes with every horizontal shift)."""

    def forward(self, x):
        col = x.flatten(1).argmax(1) % x.shape[-1]
        return torch.nn.functional.one_hot(col % 10, 10).float()


class _ByMean(torch.nn.Module):
    """Predicts from the mean intensity (unchanged by circular shifts)."""

    def forward(self, x):
        return torch.nn.functional.one_hot((x.mean((1, 2, 3)) * 10).long().clamp(0, 9), 10).float()


def test_consistency_is_one_for_a_shift_invariant_model_and_lower_otherwise():
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(64, dtype=torch.long)
    invariant = eq.measure(_ByMean(), x, y)
    assert all(invariant["circular"][str(d)]["consistency"] == 1.0 for d in eq.SHIFTS)
    sensitive = eq.measure(_ByPixel(), x, y)
    # vertical shifts keep the column, horizontal ones move it: half the directions change
    assert sensitive["circular"]["1"]["consistency"] == pytest.approx(0.5)
    assert sensitive["consistency"] < invariant["consistency"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("equivariance")
    args, code, results = quick_analysis(eq, out)
    assert code == 0
    return out, args, results


def test_quick_run_measures_every_model_beside_init(quick):
    out, _, res = quick
    recipe = quick_recipe()
    fams, seeds = eq.SCALES["quick"]["families"], recipe.plans["full"]["seeds"]
    assert sorted((r["family"], r["seed"]) for r in res["rows"]) == sorted((f, s) for f in fams for s in seeds)
    for r in res["rows"]:
        for row in (r, r["initialisation"]):
            assert set(row["circular"]) == set(row["zero"]) == {str(d) for d in eq.SHIFTS}
            assert 0 <= row["consistency"] <= 1
    claim = res["claims"][0]
    assert claim["id"] == "equivariance" and set(claim["per_family"]) == set(fams) - {"cnn"}
    assert (out / "equivariance.pdf").stat().st_size > 0


def test_claim_gives_each_family_its_sign(quick):
    _, _, res = quick
    fake = copy.deepcopy(res)
    base = {"cnn": 0.95, "mixer": 0.80, "vit": 0.97}
    rows = []
    for seed, jitter in enumerate((0.0, 0.003, -0.003)):
        for r in res["rows"]:
            row = copy.deepcopy(r)
            row["seed"], row["consistency"] = seed, base[r["family"]] + jitter
            rows.append(row)
    fake["rows"] = rows
    claim = eq.claims(fake)[0].as_result()
    assert claim["per_family"]["mixer"]["effect"] == pytest.approx(0.15)
    assert claim["per_family"]["vit"]["effect"] == pytest.approx(-0.02)
    assert claim["verdict"] == "supported"
    for r in fake["rows"]:
        if r["family"] == "mixer":
            r["consistency"] = 0.951
    assert eq.claims(fake)[0].as_result()["verdict"] == "negligible"


def test_plot_only_redraws(quick):
    out, args, _ = quick
    pdf = out / "equivariance.pdf"
    pdf.unlink()
    assert eq.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
