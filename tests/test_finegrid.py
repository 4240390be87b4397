"""The finer token grid (issue 16): the patch-2 variants of Mixer, ResMLP, gMLP, ViT and FNet
(14x14 tokens on 28 px), their token mixing, the ``finegrid`` training plan (15 cells, no other
plan or recipe hash changed), and the per-template locality score on hand-made 14x14 templates."""
import json

import pytest
import torch

from analyses import cells, common, converged
from analyses.cells import Cell, Store, committed_recipe
from analyses.cells.recipe import Recipe
from analyses.cells.training import PROTOCOL_FAMILIES, VARIANT_LR_FAMILY, plan_of
from probe import mixing, zoo

pytestmark = pytest.mark.usefixtures("one_thread")

VARIANTS = ("mixer_p2", "resmlp_p2", "gmlp_p2", "vit_p2", "fnet_p2")
OTHER_PLANS = ("sweep", "full", "data-efficiency", "precision-check", "synthetic")


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _patch(net):
    """The patch embedding (timm's ``stem`` of MlpMixer, ``patch_embed`` of ViT)."""
    return getattr(net, "patch_embed", None) or net.stem


def test_variants_are_the_zoo_families_with_patch_2():
    assert tuple(common.FINEGRID) == VARIANTS
    for variant, family in common.FINEGRID.items():
        assert VARIANT_LR_FAMILY[variant] == family and variant in cells.training.cell_families()
        fine, base = common.build(variant, seed=0), zoo.build(family, seed=0)
        assert (fine.name, fine.family, fine.input_size) == (variant, family, (1, 28, 28))
        assert _patch(fine.net).grid_size == (14, 14) and _patch(fine.net).num_patches == 196
        assert _patch(base.net).grid_size == (7, 7)
        # same modules, width and depth; only the patch embedding and the token-sized
        # parameters (token mixing, position embedding) change shape
        a, b = dict(fine.net.named_parameters()), dict(base.net.named_parameters())
        assert list(a) == list(b)
        changed = {k for k in a if a[k].shape != b[k].shape}
        embed = {k for k in a
                 if k.endswith("proj.weight") and k.split(".")[0] in ("stem", "patch_embed")}
        assert len(embed) == 1 and embed <= changed
        for k in changed - embed:
            assert any(d in (196, 197) for d in a[k].shape), (variant, k, a[k].shape)
            assert any(d in (49, 50) for d in b[k].shape), (variant, k, b[k].shape)
        assert [type(m).__name__ for m in fine.net.modules()] == \
            [type(m).__name__ for m in base.net.modules()]
        # seeded: the same seed gives the same network, another seed another one
        again, other = common.build(variant, seed=0), common.build(variant, seed=1)
        assert all(torch.equal(p, again.state_dict()[k]) for k, p in fine.state_dict().items())
        assert not torch.equal(_patch(fine.net).proj.weight, _patch(other.net).proj.weight)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_mix_196_tokens(variant, x):
    model = common.build(variant, seed=0).eval()
    assert model(x).shape == (3, 10)
    maps = mixing.extract(model, x)
    assert len(maps) == 4
    for m in maps:
        p = m.prefix_tokens
        assert m.grid == (14, 14) and m.in_grid == (14, 14) and m.px_per_token == (2.0, 2.0)
        assert tuple(m.matrix.shape[-2:]) == (196 + p, 196 + p)
        assert p == (1 if variant == "vit_p2" else 0)
        assert m.matrix.shape[0] in (1, 3)
    if variant == "fnet_p2":                    # the fixed 14x14 DFT, exactly FNet's matrix
        from probe.models.fnet import fourier_mixing_matrix
        torch.testing.assert_close(maps[0].matrix[0, 0], fourier_mixing_matrix((14, 14)))
    if variant == "mixer_p2":                   # Fig. 5 templates: fc1 rows on the 14x14 grid
        assert maps[0].native["fc1"].shape == (64, 14, 14)


def _store(path) -> Store:
    return Store(path / "runs", path / "models")


def _fake_sweep(store: Store, recipe, lrs) -> None:
    store.sweep_path.parent.mkdir(parents=True, exist_ok=True)
    s = recipe.lr_sweep
    store.sweep_path.write_text(json.dumps({
        "recipe_hash": recipe.hash, "lrs": s["lrs"], "extend": s.get("extend"),
        "n_train": s["n_train"], "seed": s["seed"],
        "families": {f: {"val_accuracy": {}, "chosen_lr": lr, "keys": []}
                     for f, lr in lrs.items()}}))


def test_finegrid_plan_lists_15_cells_and_changes_no_other_plan(tmp_path):
    recipe, store = committed_recipe(), _store(tmp_path)
    lrs = {f: [1e-3, 2e-3, 4e-3][i % 3] for i, f in enumerate(PROTOCOL_FAMILIES)}
    _fake_sweep(store, recipe, lrs)
    plan = cells.plan("finegrid", recipe=recipe, store=store)
    spec = recipe.plans["finegrid"]
    assert len(plan) == 15 and len(set(plan)) == 15
    assert [(c.family, c.seed) for c in plan] == [(v, s) for s in (0, 1, 2) for v in VARIANTS]
    assert spec["n_train"] == 10000 and {c.n_train for c in plan} == {10000}
    # the 7x7 models of the same data and seeds are data-efficiency cells
    assert set(spec["seeds"]) <= set(recipe.plans["data-efficiency"]["sizes"]["10000"])
    assert all(c.lr == lrs[common.FINEGRID[c.family]] and c.recipe is recipe for c in plan)
    # the mixing analyses load them: weights and card committed under models/finegrid/
    assert all(c.steps == 1500 and not c.is_full and c.commits_weights for c in plan)
    assert all(plan_of(c) == "finegrid" for c in plan)
    assert store.card_path(plan[0]) == tmp_path / "models" / "finegrid" / f"{plan[0].key}.json"
    assert store.weights_path(plan[0]) == tmp_path / "models" / "finegrid" / f"{plan[0].key}.safetensors"
    assert [c.family for c in cells.plan("finegrid", recipe=recipe, store=store,
                                         families=["vit_p2"], seeds=[1])] == ["vit_p2"]
    with pytest.raises(ValueError, match="mixer is not in the finegrid plan"):
        cells.plan("finegrid", recipe=recipe, store=store, families=["mixer"])
    # a recipe without plans.finegrid: the same hash and the same cells in every other plan
    spec_without = json.loads(cells.RECIPE_PATH.read_text())
    del spec_without["plans"]["finegrid"]
    without = Recipe(spec_without)
    assert without.hash == recipe.hash
    for name in OTHER_PLANS:
        assert [c.key for c in cells.plan(name, recipe=recipe, store=store)] == \
            [c.key for c in cells.plan(name, recipe=without, store=store)], name
    with pytest.raises(ValueError, match="no plans.finegrid"):
        cells.plan("finegrid", recipe=without, store=store)
    other = recipe.variant({"plans": {"finegrid": {"n_train": 5000}}})
    with pytest.raises(ValueError, match="plans.finegrid must use a size and seeds"):
        cells.plan("finegrid", recipe=other, store=store)
    with pytest.raises(ValueError, match="plans.finegrid.seeds must be integers"):
        recipe.variant({"plans": {"finegrid": {"seeds": [-1]}}})


def test_a_finegrid_cell_trains_and_loads(tmp_path):
    tiny = committed_recipe().variant({
        "training": {"data": {"dataset": "synthetic", "val_n": 64, "pool_n": 192, "test_n": 128,
                              "test_subset_n": 96},
                     "batch_size": 32, "steps": {"min_steps": 6, "epochs": 1}, "eval_every": 3},
        "lr_sweep": {"n_train": 96, "lrs": [0.001, 0.002], "extend": None},
        "plans": {"full": {"seeds": [0]}, "data-efficiency": {"sizes": {"48": [0, 1]}},
                  "finegrid": {"n_train": 48, "seeds": [0]}},
        "checkpoint_every": 3})
    store = _store(tmp_path)
    _fake_sweep(store, tiny, {f: 2e-3 for f in PROTOCOL_FAMILIES})
    (cell,) = cells.plan("finegrid", recipe=tiny, store=store, families=["mixer_p2"])
    card = cells.train_cell(cell, store=store, threads=1)
    assert (card["family"], card["n_train"], card["steps"]) == ("mixer_p2", 48, 6)
    assert card["command"].startswith("python -m analyses.cells run --plan finegrid "
                                      "--family mixer_p2")
    model = cells.training.load_model("mixer_p2", store.weights_path(cell))
    assert _patch(model.net).num_patches == 196 and not model.training
    init = common.build("mixer_p2", seed=0)
    assert not torch.equal(model.net.blocks[0].mlp_tokens.fc1.weight,
                           init.net.blocks[0].mlp_tokens.fc1.weight.half().float())


def test_missing_full_scale_finegrid_cell_names_its_make_target():
    with pytest.raises(ValueError, match="make cells-finegrid"):
        converged.models(["mixer_p2"], [99], n_train=10000)
    assert converged.plan_spec("finegrid", quick=True)["n_train"] == 512


# ----------------------------------------------------------------------------- template locality

# the area of a disc of radius r tokens on the token lattice, in tokens: the lattice points
# (i, j) with i^2 + j^2 <= r^2 (Gauss circle count; pi r^2 = 3.1, 12.6, 28.3, 78.5), around an
# interior token; r = 1, 2, 3, 5 tokens = 2, 4, 6, 10 px at 2 px per token
DISC = {1: 5, 2: 13, 3: 29, 5: 81}


def test_template_locality_of_hand_made_14x14_templates():
    """A delta scores 1 wherever it sits; a flat template scores the disc's share of the 196
    tokens (its lattice count), centred on the grid (tied peaks: the one nearest the centre)."""
    delta = torch.zeros(4, 14, 14)
    for k, (i, j) in enumerate([(0, 0), (7, 7), (13, 2), (5, 13)]):
        delta[k, i, j] = -3.0                                        # sign does not matter
    for r_px in (0.0, 2.0, 4.0):
        assert mixing.template_locality(delta, r_px, templates="fc1", image_size=28).tolist() \
            == [1.0] * 4
    flat = torch.ones(1, 14, 14)
    for r, count in DISC.items():
        px = mixing.template_locality(flat, 2.0 * r, templates="fc1", image_size=28)
        tokens = mixing.template_locality(flat, float(r), templates="fc1", unit="tokens")
        assert float(px) == pytest.approx(count / 196, abs=1e-6)
        assert float(tokens) == pytest.approx(count / 196, abs=1e-6)
    # power 1 (|w| mass) gives the same share for a flat template; half a flat template
    # plus a spike: the spike is the peak, the disc around it holds its energy
    assert float(mixing.template_locality(flat, 4.0, templates="fc1", image_size=28,
                                          power=1)) == pytest.approx(13 / 196, abs=1e-6)
    spiked = flat.clone()
    spiked[0, 2, 2] = 10.0
    want = (100 + (DISC[2] - 1)) / (100 + 195)        # the disc at (2, 2) lies inside the grid
    assert float(mixing.template_locality(spiked, 4.0, templates="fc1", image_size=28)) == \
        pytest.approx(want, abs=1e-6)
