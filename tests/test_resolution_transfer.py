"""Resolution transfer (analyses/cells/transfer.py: image_size, resize_state; analyses.
resolution_transfer): resizing is the identity at 28 -> 28 and gives the 36-px shapes for every
family (only ViT's position embeddings and the token-mixing weights change), the token-axis
rule on known grids, the bilinear upsampling of the data, a 36-px cell starting from its 28-px
source; the claim on hand-made numbers, bad input, the quick run end to end."""
import json

import pytest
import torch
import torch.nn.functional as F

from analyses import cells, common
from analyses import resolution_transfer as rt
from analyses.cells import Store, committed_recipe, data_split
from analyses.cells import transfer as cell_transfer
from analyses.cells.training import PROTOCOL_FAMILIES, build_model, load_model
from analyses.cells.transfer import resize_state, resize_token_axis, upsample

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

CLAIM_KEYS = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
              "sensitivity"}
# the tensors with a token axis (49 tokens at 28 px, 81 at 36 px), per family
RESIZED = {"mixer": ("mlp_tokens.fc1.weight", "mlp_tokens.fc2.weight", "mlp_tokens.fc2.bias"),
           "resmlp": ("linear_tokens.weight", "linear_tokens.bias"),
           "gmlp": ("gate.proj.weight", "gate.proj.bias"), "vit": ("pos_embed",), "fnet": (), "cnn": ()}


def _prefix(net) -> int:
    return int(getattr(net, "num_prefix_tokens", 0))


# ----------------------------------------------------------------------------- resizing


@pytest.mark.parametrize("family", PROTOCOL_FAMILIES)
def test_resize_is_the_identity_at_28_and_gives_the_36px_shapes(family):
    small, big = common.build(family, seed=1).net, common.build(f"{family}_36px", seed=2).net
    state = small.state_dict()
    same, resized = resize_state(state, state, num_prefix_tokens=_prefix(small))
    assert resized == [] and all(torch.equal(same[k], v) for k, v in state.items())
    target = big.state_dict()
    new, resized = resize_state(state, target, num_prefix_tokens=_prefix(big))
    assert {k: tuple(v.shape) for k, v in new.items()} == {k: tuple(v.shape) for k, v in target.items()}
    assert sorted(resized) == sorted(k for k in state if k.endswith(RESIZED[family]))
    assert bool(resized) == bool(RESIZED[family])
    assert all(torch.equal(new[k], v) for k, v in state.items() if k not in resized)
    big.load_state_dict(new, strict=True)
    assert big.eval()(torch.rand(2, 1, 36, 36)).shape == (2, 10)


def test_the_token_axis_rule_on_known_grids():
    c = torch.full((3, 49), 0.7)                         # a weight [hidden, tokens], constant
    out = resize_token_axis(c, 1, 81, scale=49 / 81)
    assert out.shape == (3, 81) and torch.allclose(out, torch.full((3, 81), 0.7 * 49 / 81))
    assert torch.allclose(out.sum(1), c.sum(1))           # sum over input tokens kept
    # a grid seen as 7x7 row-major: resizing = F.interpolate of that image
    w = torch.randn(5, 49)
    want = F.interpolate(w.reshape(5, 1, 7, 7), size=(9, 9), mode="bilinear",
                         align_corners=False).reshape(5, 81)
    assert torch.allclose(resize_token_axis(w, 1, 81), want)
    assert torch.allclose(resize_token_axis(w.t(), 0, 81), want.t())
    m = torch.randn(49, 49)                               # [T, T]: both axes, input scaled
    got, _ = resize_state({"x": m}, {"x": torch.empty(81, 81)})
    both = resize_token_axis(resize_token_axis(m, 0, 81), 1, 81, scale=49 / 81)
    assert torch.allclose(got["x"], both)
    with pytest.raises(ValueError, match="not a square grid"):
        resize_token_axis(torch.randn(2, 48), 1, 81)


def test_vit_position_embeddings_are_resampled_by_timm_class_token_kept():
    from timm.layers import resample_abs_pos_embed
    small, big = common.build("vit", seed=0).net, common.build("vit_36px", seed=0).net
    pos = small.state_dict()["pos_embed"]
    new, _ = resize_state(small.state_dict(), big.state_dict(), num_prefix_tokens=1)
    assert torch.equal(new["pos_embed"][:, :1], pos[:, :1])
    assert torch.equal(new["pos_embed"], resample_abs_pos_embed(
        pos, new_size=[9, 9], old_size=[7, 7], num_prefix_tokens=1, interpolation="bilinear",
        antialias=False))


def test_bad_states_are_one_clear_error():
    mixer, cnn = common.build("mixer").net.state_dict(), common.build("cnn").net.state_dict()
    with pytest.raises(ValueError, match="not the target architecture"):
        resize_state(mixer, cnn)
    with pytest.raises(ValueError, match="cannot be resized"):
        resize_state({"w": torch.randn(2, 3, 49)}, {"w": torch.empty(2, 3, 81)})
    with pytest.raises(ValueError, match="training.data.image_size"):
        committed_recipe().variant({"training": {"data": {"image_size": 0}}})


# ----------------------------------------------------------------------------- data and cells


def test_images_are_upsampled_bilinearly_and_stay_in_range():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    y = upsample(x, 36)
    assert y.shape == (4, 1, 36, 36) and y.dtype == torch.float32 and 0 <= y.min() <= y.max() <= 1
    assert torch.equal(y, F.interpolate(x.float() / 255, size=(36, 36), mode="bilinear",
                                        align_corners=False, antialias=False))
    assert torch.equal(upsample(x, 28), x.float() / 255)
    assert torch.allclose(upsample(torch.full((1, 1, 28, 28), 0.3), 36), torch.full((1, 1, 36, 36), 0.3))


def _tiny():
    """Seconds-scale fp32 recipe (400 pool images) with plan t-36: mixer_36px from full."""
    return committed_recipe().variant({
        "training": {"data": {"val_n": 64, "pool_n": 400, "test_n": 200, "test_subset_n": 100},
                     "batch_size": 16, "steps": {"min_steps": 3, "epochs": 0.1}, "eval_every": 3,
                     "precision": {"train_autocast": None}},
        "lr_sweep": {"n_train": 96, "lrs": [0.001], "extend": None},
        "plans": {"full": {"seeds": [0]}, "data-efficiency": {"sizes": {"48": [0]}},
                  "t-36": {"families": ["mixer_36px"], "n_train": 48, "seeds": [0],
                           "data": {"image_size": 36}, "init_from": {"plan": "full", "head": "keep"}}},
        "checkpoint_every": 3})


def test_a_36px_cell_starts_from_its_resized_28px_source(tmp_path):
    recipe, store = _tiny(), Store(tmp_path / "runs", tmp_path / "models")
    store.sweep_path.parent.mkdir(parents=True)
    s = recipe.lr_sweep
    store.sweep_path.write_text(json.dumps({
        "recipe_hash": recipe.hash, "lrs": s["lrs"], "extend": s.get("extend"),
        "n_train": s["n_train"], "seed": s["seed"],
        "families": {f: {"val_accuracy": {}, "chosen_lr": 1e-3, "keys": []} for f in PROTOCOL_FAMILIES}}))
    (cell,) = cells.plan("t-36", recipe=recipe, store=store)
    (source,) = cells.plan("full", recipe=recipe, store=store, families=["mixer"])
    assert cell_transfer.source_cell(cell) == source and not cell.is_full and source.is_full
    split = data_split(cell.recipe)
    assert split.pool_images.shape[-2:] == (36, 36) and split.val_images.shape[-2:] == (36, 36)
    cells.train_cell(source, store=store, threads=1)
    model = build_model("mixer_36px", seed=0)
    loaded = cell_transfer.initialise(model, cell, store)
    state = load_model("mixer", store.weights_path(source)).net.state_dict()
    want, resized = resize_state(state, model.net.state_dict())
    assert loaded["resized"] == resized and len(resized) == 3 * 4
    assert all(torch.equal(v, want[k]) for k, v in model.net.state_dict().items())
    card = cells.train_cell(cell, store=store, threads=1)
    assert card["init_from"]["key"] == source.key and card["init_from"]["head"] == "keep"


# ----------------------------------------------------------------------------- the claim


def _results(kept):
    """``kept[family] = [36-px fine-tuned minus 28-px accuracy per seed]``."""
    rows = [{"family": f, "seed": s, "source_28px": 0.9, "finetuned_36px": 0.9 + k,
             "zero_shot_36px": 0.5, "initialisation_36px": 0.1}
            for f, values in kept.items() for s, k in enumerate(values)]
    return {"rows": rows, "image_size": 36, "source_size": 28, "n_train": 10000, "test_n": 10000,
            "reference": {"chance_accuracy": 0.1}}


def test_the_claim_averages_the_token_mixing_mlps_seed_by_seed():
    res = _results({"cnn": [0.0, 0.01, -0.005], "mixer": [-0.05, -0.04, -0.06],
                    "gmlp": [-0.03, -0.01, -0.02], "vit": [0.01, 0.0, 0.0]})
    assert rt.retained_gaps(res)["mixer"] == pytest.approx([0.05, 0.05, 0.055])
    (claim,) = (c.as_result() for c in rt.claims(res))
    assert claim["id"] == "resolution-transfer" and CLAIM_KEYS <= set(claim)
    # group = mean of Mixer's and gMLP's gaps per seed: 0.04, 0.035, 0.035
    assert claim["effect"] == pytest.approx(0.11 / 3) and claim["verdict"] == "supported"
    assert set(claim["per_family"]) == {"mixer", "gmlp", "vit"}
    with pytest.raises(ValueError, match="no token-mixing MLP"):
        rt.claims(_results({"cnn": [0.0], "vit": [0.0]}))
    with pytest.raises(ValueError, match="seed by seed"):
        rt.claims(_results({"cnn": [0.0, 0.0], "mixer": [0.0]}))
    with pytest.raises(ValueError, match="include cnn"):
        rt.compute({"quick": True, "families": ["mixer", "vit"]}, None, False)


# ----------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("resolution_transfer")
    args, code, results = quick_analysis(rt, out)
    assert code == 0
    return out, args, results


def test_quick_run_end_to_end(quick):
    out, args, res = quick
    fams = set(rt.SCALES["quick"]["families"])
    assert res["scale"] == "quick" and {r["family"] for r in res["rows"]} == fams
    assert res["image_size"] == 36 and res["source_size"] == 28
    for r in res["rows"]:
        assert all(0 <= r[k] <= 1 for k in ("source_28px", "finetuned_36px", "zero_shot_36px",
                                            "initialisation_36px"))
        assert sorted(r["resized_tensors"]) == sorted(
            k for k in build_model(r["family"], seed=0).net.state_dict() if k.endswith(RESIZED[r["family"]]))
    (claim,) = res["claims"]
    assert claim["id"] == "resolution-transfer" and CLAIM_KEYS <= set(claim)
    (check,) = res["checks"]
    assert check["id"] == "resize-identity" and check["holds"] and check["max_abs_error"] == 0
    pdf = out / "resolution_transfer.pdf"
    assert pdf.stat().st_size > 0
    pdf.unlink()
    assert rt.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
