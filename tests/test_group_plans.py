"""Group plans (analyses/cells/groups.py): a recipe ``plans`` entry with its own ``families``
lists its cells (sizes, seeds, data variants), keys them like every cell, commits their
weights on request, is trained by ``python -m analyses.cells run --plan <name>`` and loaded by
``converged.plan_rows`` / ``plan_models``; builder variants (analyses.common.BUILDER_VARIANTS)
train at their family's swept learning rate."""
import json
import subprocess
import sys

import pytest
import torch

from analyses import cells, common, converged
from analyses.cells import Store, committed_recipe
from analyses.cells.groups import group_plans, membership, quick_group
from analyses.cells.training import PROTOCOL_FAMILIES, lr_family, plan_of

pytestmark = pytest.mark.usefixtures("one_thread")

GROUP = {"families": ["mixer", "cnn"], "n_train": [2000, "full"], "seeds": [0, 1],
         "data_variants": [{"dataset": "synthetic", "pool_n": 3000, "test_n": 500},
                           {"dataset": "synthetic", "pool_n": 4000, "test_n": 500}],
         "commit_weights": True, "why": "a test plan"}


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


def test_a_group_plan_lists_its_cells_seed_major_with_their_own_data(tmp_path):
    recipe = committed_recipe().variant({"plans": {"test-group": GROUP}})
    assert recipe.hash == committed_recipe().hash          # plans are not hashed
    store = _store(tmp_path)
    _fake_sweep(store, recipe, {"mixer": 4e-3, "cnn": 8e-3})
    plan = cells.plan("test-group", recipe=recipe, store=store)
    assert len(plan) == 2 * 2 * 2 * 2 and len({c.key for c in plan}) == 16
    # seed-major, then size, data variant, family
    assert [(c.seed, c.family) for c in plan[:4]] == [(0, "mixer"), (0, "cnn")] * 2
    assert [c.n_train for c in plan[:8]] == [2000] * 4 + [3000, 3000, 4000, 4000]  # "full" = pool
    pools = {c.recipe.training["data"]["pool_n"] for c in plan}
    assert pools == {3000, 4000} and len({c.recipe.hash for c in plan}) == 2
    assert all(c.recipe.hash != recipe.hash and c.recipe.root is recipe for c in plan)
    assert all(c.lr == {"mixer": 4e-3, "cnn": 8e-3}[c.family] for c in plan)
    part = [c for c in plan if not c.is_full]
    assert all(c.commits_weights and c.group_plan == "test-group" and plan_of(c) == "test-group"
               for c in part)
    assert store.weights_path(part[0]) == tmp_path / "models" / "test-group" / f"{part[0].key}.safetensors"
    assert store.card_path(part[0]).parent == tmp_path / "models" / "test-group"
    full = [c for c in plan if c.is_full]
    assert store.weights_path(full[0]).name == f"mixer_n3000_s0.safetensors"
    # filters; a family the plan does not hold is an error that lists the plan's
    assert {c.family for c in cells.plan("test-group", recipe=recipe, store=store,
                                         families=["cnn"], seeds=[1])} == {"cnn"}
    with pytest.raises(ValueError, match="vit is not in the test-group plan; its families are mixer, cnn"):
        cells.plan("test-group", recipe=recipe, store=store, families=["vit"])
    with pytest.raises(ValueError, match="unknown plan 'nope'; valid: sweep, full, .*test-group"):
        cells.plan("nope", recipe=recipe, store=store)


def test_membership_needs_family_size_seed_and_data(tmp_path):
    recipe = committed_recipe().variant({"plans": {"test-group": dict(GROUP, commit_weights=False)}})
    data = recipe.variant({"training": {"data": GROUP["data_variants"][0]}})
    assert membership("mixer", 2000, 1, data) == "test-group"
    assert membership("mixer", 2000, 2, data) is None           # seed not in the plan
    assert membership("vit", 2000, 0, data) is None             # family not in the plan
    assert membership("mixer", 1000, 0, data) is None           # size not in the plan
    assert membership("mixer", 2000, 0, recipe) is None         # the recipe's own data: not its
    cell = cells.Cell("mixer", 2000, 0, 4e-3, data)
    assert cell.group_plan == "test-group" and not cell.commits_weights
    assert _store(tmp_path).card_path(cell).parent.name == "cells"


def test_cards_without_weights_count_for_numbers_not_for_models(tmp_path):
    """A committed-weights cell with only a card (e.g. from before its plan committed weights)
    is done for the sweep and the accuracy tables, and trained again for an analysis that
    loads models."""
    spec = dict(GROUP)
    del spec["data_variants"]
    recipe = committed_recipe().variant({"plans": {"test-group": spec}})
    store = _store(tmp_path)
    cell = cells.Cell("mixer", 2000, 0, 4e-3, recipe)
    assert cell.commits_weights
    legacy = tmp_path / "models" / "cells" / f"{cell.key}.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"recipe_hash": recipe.hash, "lr": 4e-3, "seed": 0,
                                  "n_train": 2000, "val_accuracy": 0.5, "train_time_s": 1.0}))
    assert store.card(cell, need_weights=False)["val_accuracy"] == 0.5
    assert store.card(cell) is None and not store.is_done(cell)
    assert cells.cell_status(cell, store).state == "pending"
    assert cells.cell_status(cell, store, need_weights=False).state == "done"


@pytest.mark.parametrize("bad, match", [
    ({"families": []}, "families must be a non-empty list"),
    ({"n_train": [100, "half"]}, "n_train must be positive integers or \"full\""),
    ({"seeds": [-1]}, "seeds must be integers >= 0"),
    ({"data": {"dataset": "synthetic"}}, "has both data and data_variants"),
    ({"commit_weights": "yes"}, "commit_weights must be true or false"),
])
def test_a_malformed_group_plan_is_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        committed_recipe().variant({"plans": {"test-group": dict(GROUP, **bad)}})


def test_quick_versions_of_group_plans_are_small():
    quick = quick_group(GROUP, 512)
    assert quick["n_train"] == [512, "full"] and quick["seeds"] == [0]
    assert [d["pool_n"] for d in quick["data_variants"]] == [1024, 1024]
    assert quick_group(dict(GROUP, quick={"seeds": [1]}), 512)["seeds"] == [1]
    q, own = cells.quick_recipe(), group_plans(committed_recipe())
    for name, spec in group_plans(q).items():
        if "quick" in own[name]:            # the plan sets its own quick version
            continue
        assert all(n in (512, "full") for n in (spec["n_train"] if isinstance(spec["n_train"], list)
                                                 else [spec["n_train"]])), name
        assert len(spec["seeds"]) == 1, name


def test_committed_group_plans_and_builder_variants():
    recipe = committed_recipe()
    groups = group_plans(recipe)
    assert {"finegrid", "finegrid-7x7"} <= set(groups)
    # the 7x7 companions are the data-efficiency plan's 10k cells, weights committed
    seven = groups["finegrid-7x7"]
    assert seven["commit_weights"] and seven["families"] == list(PROTOCOL_FAMILIES)
    assert set(seven["seeds"]) == set(recipe.plans["data-efficiency"]["sizes"]["10000"])
    for name, (body, kwargs) in common.BUILDER_VARIANTS.items():
        assert lr_family(name) == body
        model = common.build(name, seed=0)
        assert model.family == body and model(torch.rand(2, *model.input_size)).shape == (2, 10)
    assert "status" in subprocess.run(
        [sys.executable, "-m", "analyses.cells", "status", "--help"], capture_output=True,
        text=True, check=True).stdout
    out = subprocess.run([sys.executable, "-m", "analyses.cells", "status", "--plan", "finegrid-7x7"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "18 cells" not in out.stderr and "cnn" in out.stdout


def test_a_group_cell_trains_commits_its_weights_and_loads(tmp_path, monkeypatch):
    tiny = committed_recipe().variant({
        "training": {"data": {"val_n": 64, "test_subset_n": 96},
                     "batch_size": 32, "steps": {"min_steps": 4, "epochs": 1}, "eval_every": 2},
        "lr_sweep": {"n_train": 96, "lrs": [0.001, 0.002], "extend": None},
        "plans": {"full": {"seeds": [0]}, "data-efficiency": {"sizes": {"48": [0]}},
                  "tiny-group": {"families": ["mixer_p2"], "n_train": 48, "seeds": [0],
                                 "data": {"dataset": "synthetic", "pool_n": 192, "test_n": 128},
                                 "commit_weights": True}},
        "checkpoint_every": 2})
    store = _store(tmp_path)
    _fake_sweep(store, tiny, {f: 2e-3 for f in PROTOCOL_FAMILIES})
    (cell,) = cells.plan("tiny-group", recipe=tiny, store=store)
    assert cell.lr == 2e-3 and cell.recipe.training["data"]["dataset"] == "synthetic"
    card = cells.train_cell(cell, store=store, threads=1)
    assert card["command"].startswith("python -m analyses.cells run --plan tiny-group")
    assert store.weights_path(cell).is_file() and store.is_done(cell)
    assert store.weights_path(cell).parent == tmp_path / "models" / "tiny-group"
    # converged.plan_models / plan_rows read the same cells through the analyses' recipe
    monkeypatch.setattr(converged, "recipe_and_store", lambda quick: (tiny, store))
    [(model, row, got)] = converged.plan_models("tiny-group")
    assert got == cell and row["test_accuracy"] == card["test_accuracy"] and not model.training
    [(row2, _)] = converged.plan_rows("tiny-group")
    assert row2 == row
    store.weights_path(cell).unlink()
    with pytest.raises(ValueError, match="run `python -m analyses.cells run --plan tiny-group"):
        converged.plan_models("tiny-group")


def test_background_training_covers_every_plan_prerequisites_first():
    """`make cells-background` trains every plan of the recipe, a fine-tuning plan after its source."""
    from pathlib import Path
    import re
    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    order = re.search(r"cells-background:.*?\$\(MAKE\) ([^']+)'", text, re.S).group(1).split()
    recipe = committed_recipe()
    for name in cells.plan_names(recipe):
        assert f"cells-{name}" in order or name in {"precision-check"}, name
    assert "cells-precision" in order
    for name, spec in recipe.spec["plans"].items():
        source = (spec.get("init_from") or {}).get("plan") if isinstance(spec, dict) else None
        if source:
            assert order.index(f"cells-{source}") < order.index(f"cells-{name}"), (source, name)
    assert order.index("cells-extra-sweep") < order.index("cells-extra-full") < order.index("cells-same-model")
