"""Transfer cells (analyses/cells/transfer.py: class subsets, init_from) and analyses.transfer:
the cell key changes with the source model and with the class subset, a class subset holds only
those classes (labels kept), a fine-tuning cell starts from its source's weights before step 0
(head re-initialised or kept), a missing source or a malformed setting is one clear error; the
claims on hand-made numbers and the quick run end to end."""
import json

import pytest
import torch

from analyses import cells
from analyses import transfer as tr
from analyses.cells import Store, committed_recipe, data_split, train_subset
from analyses.cells import test_sets as held_out_sets
from analyses.cells import transfer as cell_transfer
from analyses.cells.recipe import Recipe
from analyses.cells.training import PROTOCOL_FAMILIES, build_model, load_model

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}
LOW, HIGH = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
PRE = {"families": ["mixer", "cnn"], "n_train": "full", "seeds": [0], "data": {"classes": LOW},
       "commit_weights": True}
SCRATCH = {"families": ["mixer", "cnn"], "n_train": 48, "seeds": [0], "data": {"classes": HIGH}}
FT = {**SCRATCH, "init_from": {"plan": "t-pre", "head": "reinit"}}


def _tiny(**plans) -> Recipe:
    """A seconds-scale fp32 recipe on 400 pool images with the plans t-pre / t-ft / t-scratch."""
    return committed_recipe().variant({
        "training": {"data": {"val_n": 64, "pool_n": 400, "test_n": 200, "test_subset_n": 100},
                     "batch_size": 16, "steps": {"min_steps": 3, "epochs": 0.1}, "eval_every": 3,
                     "precision": {"train_autocast": None}},
        "lr_sweep": {"n_train": 96, "lrs": [0.001], "extend": None},
        "plans": {"full": {"seeds": [0]}, "data-efficiency": {"sizes": {"48": [0]}},
                  **{"t-pre": PRE, "t-ft": FT, "t-scratch": SCRATCH, **plans}},
        "checkpoint_every": 3})


def _store(path) -> Store:
    store = Store(path / "runs", path / "models")
    store.sweep_path.parent.mkdir(parents=True, exist_ok=True)
    return store


def _sweep(store: Store, recipe: Recipe) -> None:
    s = recipe.lr_sweep
    store.sweep_path.write_text(json.dumps({
        "recipe_hash": recipe.hash, "lrs": s["lrs"], "extend": s.get("extend"),
        "n_train": s["n_train"], "seed": s["seed"],
        "families": {f: {"val_accuracy": {}, "chosen_lr": 1e-3, "keys": []} for f in PROTOCOL_FAMILIES}}))


def _plan(name, recipe, store, family="mixer"):
    _sweep(store, recipe)
    (cell,) = cells.plan(name, recipe=recipe, store=store, families=[family])
    return cell


# ----------------------------------------------------------------------------- keys and data


def test_the_key_changes_with_the_source_and_the_class_subset(tmp_path):
    store = _store(tmp_path)
    base = _tiny()
    ft, scratch = _plan("t-ft", base, store), _plan("t-scratch", base, store)
    assert ft.key != scratch.key and ft.n_train == scratch.n_train == 48
    assert _plan("t-ft", _tiny(), store).key == ft.key                       # stable
    init = ft.recipe.training["init_from"]
    pre = _plan("t-pre", base, store)
    assert init["source_recipe_hash"] == pre.recipe.hash and init["source_n_train"] == pre.n_train
    assert not pre.is_full and pre.commits_weights and not ft.is_full
    others = [
        _tiny(**{"t-pre": {**PRE, "data": {"classes": [0, 1, 2, 3]}}}),      # source's data
        _tiny(**{"t-pre": {**PRE, "n_train": 100}}),                         # source's size
        _tiny(**{"t-ft": {**FT, "init_from": {"plan": "t-pre", "head": "keep"}}}),
        _tiny(**{"t-ft": {**FT, "data": {"classes": [5, 6, 7, 8]}}}),        # own classes
    ]
    keys = {_plan("t-ft", r, store).key for r in others}
    assert len(keys) == len(others) and ft.key not in keys
    assert _plan("t-scratch", _tiny(**{"t-scratch": {**SCRATCH, "data": {"classes": [5, 6]}}}),
                 store).key != scratch.key
    assert _tiny(**{"t-ft": {**FT, "n_train": 64}}).hash == base.hash    # plans are not hashed


def test_a_class_subset_holds_only_those_classes_with_their_ids():
    base = _tiny()
    sub = base.variant({"training": {"data": {"classes": HIGH}}})
    whole, part = data_split(base), data_split(sub)
    for labels_all, images_all, labels, images in (
            (whole.pool_labels, whole.pool_images, part.pool_labels, part.pool_images),
            (whole.val_labels, whole.val_images, part.val_labels, part.val_images)):
        keep = torch.isin(labels_all, torch.tensor(HIGH))
        assert 0 < len(labels) < len(labels_all) and set(labels.tolist()) <= set(HIGH)
        assert torch.equal(labels, labels_all[keep]) and torch.equal(images, images_all[keep])
    assert sub.full_n == part.pool_size
    for (x, y), (x_all, y_all) in zip(held_out_sets(sub), held_out_sets(base)):
        keep = torch.isin(y_all, torch.tensor(HIGH))
        assert set(y.tolist()) <= set(HIGH) and torch.equal(x, x_all[keep])
    x, y = train_subset(sub, 48, 0)
    assert len(y) == 48 and set(y.tolist()) <= set(HIGH)


# ----------------------------------------------------------------------------- init_from


class _Stop(Exception):
    pass


def test_init_from_loads_the_source_before_step_0(tmp_path, monkeypatch):
    store, recipe = _store(tmp_path), _tiny()
    pre = _plan("t-pre", recipe, store)
    ft = _plan("t-ft", recipe, store)
    with pytest.raises(ValueError, match="not trained yet; run `python -m analyses.cells run "
                                         "--plan t-pre --family mixer --seed 0`"):
        cells.train_cell(ft, store=store, threads=1)
    pre_card = cells.train_cell(pre, store=store, threads=1)
    source = load_model("mixer", store.weights_path(pre)).net.state_dict()
    seeded = build_model("mixer", seed=0).net.state_dict()
    seen = {}
    real = cell_transfer.initialise

    def spy(model, cell, store, log=None):
        seen["loaded"] = real(model, cell, store, log=log)
        seen["state"] = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        raise _Stop                                     # before the first optimiser step

    monkeypatch.setattr(cell_transfer, "initialise", spy)
    with pytest.raises(_Stop):
        cells.train_cell(ft, store=store, threads=1)
    state, heads = seen["state"], [k for k in source if k.startswith("head.")]
    assert heads and seen["loaded"]["key"] == pre.key and seen["loaded"]["resized"] == []
    for k, v in state.items():
        want = seeded[k] if k in heads else source[k]
        assert torch.equal(v, want.to(v.dtype)), k
    assert not torch.equal(state["head.weight"], source["head.weight"].to(torch.float32))
    monkeypatch.undo()
    card = cells.train_cell(ft, store=store, threads=1)   # the same cell, trained to the end
    assert card["init_from"] == {"plan": "t-pre", "key": pre.key, "sha256": pre_card["sha256"],
                                 "weights": pre_card["weights"], "head": "reinit"}
    keep = _plan("t-ft", _tiny(**{"t-ft": {**FT, "init_from": {"plan": "t-pre", "head": "keep"}}}),
                 store)
    model = build_model("mixer", seed=0)
    cell_transfer.initialise(model, keep, store)
    assert all(torch.equal(v, source[k].float()) for k, v in model.net.state_dict().items())


@pytest.mark.parametrize("make, match", [
    (lambda: _tiny().variant({"training": {"data": {"classes": []}}}), "training.data.classes"),
    (lambda: _tiny().variant({"training": {"data": {"classes": [5, 5]}}}), "training.data.classes"),
    (lambda: _tiny().variant({"training": {"data": {"classes": "5-9"}}}), "training.data.classes"),
    (lambda: _tiny().variant({"training": {"init_from": {"plan": "t-pre", "head": "drop"}}}),
     "training.init_from"),
    (lambda: _tiny(**{"t-ft": {**FT, "init_from": {"plan": "nope", "head": "reinit"}}}),
     "plans.t-ft.init_from"),
    (lambda: _tiny(**{"t-ft": {**FT, "init_from": {"plan": "t-pre"}}}), "plans.t-ft.init_from"),
])
def test_malformed_transfer_settings_are_one_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unusable_sources_and_classes_are_one_clear_error(tmp_path):
    store = _store(tmp_path)
    chained = _tiny(**{"t-2": {**FT, "init_from": {"plan": "t-ft", "head": "reinit"}}})
    _sweep(store, chained)
    with pytest.raises(ValueError, match="starts from another plan itself"):
        cells.plan("t-2", recipe=chained, store=store)
    with pytest.raises(ValueError, match="no image of classes"):
        data_split(_tiny().variant({"training": {"data": {"classes": [42]}}}))


# ----------------------------------------------------------------------------- the claims


def _results(gain, *, finetuned=0.8):
    """``gain[family] = [fine-tuned minus scratch per seed]``."""
    rows = [{"family": f, "seed": s, "finetuned": finetuned, "scratch": finetuned - g,
             "initialisation": 0.1, "pretrained_0to4": 0.7}
            for f, values in gain.items() for s, g in enumerate(values)]
    return {"rows": rows, "pretrain_classes": LOW, "classes": HIGH, "n_train": 1000,
            "test_n": 5000, "reference": {"chance_accuracy": 0.2}}


def test_gains_are_paired_by_seed_and_vit_is_the_reference():
    res = _results({"vit": [0.05, 0.06, 0.055], "mixer": [0.02, 0.021, 0.019],
                    "cnn": [0.04, 0.041, 0.039]})
    assert tr.gains(res)["mixer"] == pytest.approx([0.02, 0.021, 0.019])
    assert tr.gain_gaps(res)["mixer"] == pytest.approx([0.03, 0.039, 0.036])
    fixed, helps = (c.as_result() for c in tr.claims(res))
    assert fixed["id"] == "transfer-fixed-mixing" and CLAIM_KEYS <= set(fixed)
    assert fixed["effect"] == pytest.approx(0.035) and fixed["verdict"] == "supported"
    assert set(fixed["per_family"]) == {"mixer", "cnn"}
    assert helps["id"] == "pretraining-helps-all" and helps["verdict"] == "supported"
    assert helps["details"]["weakest_family"] == "mixer" and helps["effect"] == pytest.approx(0.02)


def test_every_family_must_gain_one_that_clearly_does_not_decides():
    # CNN clearly loses; FNet's wide interval reaches lower but says nothing
    res = _results({"vit": [0.05, 0.06, 0.055], "mixer": [0.02, 0.021, 0.019],
                    "cnn": [-0.05, -0.051, -0.049], "fnet": [0.0, 0.1, -0.08]})
    helps = tr.claims(res)[1].as_result()
    assert helps["details"]["weakest_family"] == "cnn" and helps["verdict"] == "opposite"
    res = _results({"vit": [0.05, 0.06, 0.055], "mixer": [0.0, 0.001, -0.001]})
    assert tr.claims(res)[1].as_result()["verdict"] == "negligible"
    res = _results({"vit": [0.05, 0.06, 0.055], "mixer": [0.02, 0.021]})
    with pytest.raises(ValueError, match="seed by seed"):
        tr.claims(res)
    with pytest.raises(ValueError, match="include vit"):
        tr.compute({"quick": True, "families": ["mixer", "cnn"]}, None, False)


# ----------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("transfer")
    args, code, results = quick_analysis(tr, out)
    assert code == 0
    return out, args, results


def test_quick_run_end_to_end(quick):
    out, args, res = quick
    fams = set(tr.SCALES["quick"]["families"])
    assert res["scale"] == "quick" and {r["family"] for r in res["rows"]} == fams
    assert {m["family"] for m in res["models"]} == fams and len(res["models"]) == 3 * len(fams)
    assert res["classes"] == HIGH and res["pretrain_classes"] == LOW
    for r in res["rows"]:
        assert all(0 <= r[k] <= 1 for k in ("finetuned", "scratch", "initialisation"))
    assert {c["id"] for c in res["claims"]} == {"transfer-fixed-mixing", "pretraining-helps-all"}
    assert all(CLAIM_KEYS <= set(c) for c in res["claims"])
    (check,) = res["checks"]
    assert check["id"] == "finetune-starts-from-pretrain" and check["holds"]
    pdf = out / "transfer.pdf"
    assert pdf.stat().st_size > 0
    pdf.unlink()
    assert tr.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
