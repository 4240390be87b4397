"""Training cells (analyses.cells): recipe hash, bit-identical resume, cards, sweep choice, plans,
CLI, bf16 training with fp32 evaluation. Tiny recipes on synthetic data: seconds each."""
import hashlib
import json

import pytest
import torch

from analyses import cells
from analyses.cells import Cell, Store, committed_recipe
from analyses.cells import __main__ as cells_cli
from analyses.cells.training import PROTOCOL_FAMILIES, _locked
from probe import data, zoo

TINY = {
    "training": {"data": {"dataset": "synthetic", "val_n": 64, "pool_n": 192, "test_n": 128,
                          "test_subset_n": 96},
                 "batch_size": 32, "steps": {"min_steps": 12, "epochs": 1}, "eval_every": 4},
    "lr_sweep": {"n_train": 96, "lrs": [0.001, 0.002], "extend": None},
    "plans": {"full": {"seeds": [0, 1]}, "data-efficiency": {"sizes": {"48": [0, 1], "96": [0]}}},
    "checkpoint_every": 4,
}


@pytest.fixture(scope="module")
def tiny():
    return committed_recipe().variant(TINY)


def _store(path) -> Store:
    return Store(path / "runs", path / "models")


def test_recipe_hash_is_the_sha256_of_the_training_section(tiny):
    spec = json.loads(cells.RECIPE_PATH.read_text())
    canonical = json.dumps(spec["training"], sort_keys=True, separators=(",", ":"))
    recipe = committed_recipe()
    assert recipe.hash == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    changed = recipe.variant({"training": {"grad_clip_norm": 0.5}})
    assert changed.hash != recipe.hash
    assert recipe.variant({"training": {"optimizer": {"weight_decay": 0.1}}}).hash != recipe.hash
    # choosing which cells exist does not change how one cell trains
    assert recipe.variant({"plans": {"full": {"seeds": [0, 1, 2, 3, 4]}}}).hash == recipe.hash
    assert recipe.variant({"checkpoint_every": 100}).hash == recipe.hash
    a, b = Cell("mixer", 1000, 0, 1e-3), Cell("mixer", 1000, 0, 1e-3, changed)
    assert a.key.endswith(recipe.hash) and b.key.endswith(changed.hash) and a != b


def test_committed_recipe_states_the_protocol():
    r = committed_recipe()
    t = r.training
    assert t["optimizer"]["betas"] == [0.9, 0.999] and t["optimizer"]["weight_decay"] == 0.05
    assert t["batch_size"] == 128 and t["grad_clip_norm"] == 1.0 and t["label_smoothing"] == 0.0
    assert t["schedule"]["warmup_fraction"] == 0.05 and t["precision"]["train_autocast"] == "bfloat16"
    assert t["data"]["val_n"] == 5000 and r.full_n == 55000
    assert [r.steps(n) for n in (1000, 3000, 10000, 55000)] == [1500, 1500, 1500, 5157]
    assert r.lr_sweep["lrs"] == [1e-3, 2e-3, 4e-3]


def test_quick_recipe_trains_in_fp32_on_the_committed_protocol():
    # quick cells (what the tests train) must not depend on native bf16: emulated bf16 autocast
    # on an AVX2-only CPU is 5-15x slower and once pushed the suite past CI's 90 minutes
    q = cells.quick_recipe()
    assert q.training["precision"]["train_autocast"] is None
    assert committed_recipe().training["precision"]["train_autocast"] == "bfloat16"
    assert q.training["optimizer"] == committed_recipe().training["optimizer"]
    assert q.training["batch_size"] == 32 and q.training["steps"]["min_steps"] == 20
    assert q.hash != committed_recipe().hash


def test_bad_recipe_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="training.batch_size"):
        committed_recipe().variant({"training": {"batch_size": 0}})
    with pytest.raises(ValueError, match="train_autocast"):
        committed_recipe().variant({"training": {"precision": {"train_autocast": "float16"}}})
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        cells.load_recipe(bad)
    with pytest.raises(ValueError, match="unknown family"):
        Cell("resnet", 1000, 0, 1e-3)
    with pytest.raises(ValueError, match="n_train"):
        Cell("mixer", 60000, 0, 1e-3)


def test_schedule_warms_up_then_decays_to_zero():
    f = [cells.lr_factor(s, total=100, warmup=5) for s in range(100)]
    assert f[:5] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert all(a >= b for a, b in zip(f[5:], f[6:])) and f[-1] < 0.002


def test_batches_cover_each_epoch_once_and_depend_on_seed_and_epoch_only():
    n, b = 50, 16
    stream = torch.cat([cells.batch_indices(s, n=n, batch_size=b, seed=3) for s in range(25)])
    for e in range(len(stream) // n):
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n))
    assert torch.equal(cells.batch_indices(7, n=n, batch_size=b, seed=3), stream[7 * b:8 * b])
    assert not torch.equal(cells.batch_indices(0, n=n, batch_size=b, seed=4), stream[:b])


def test_training_step_runs_in_bf16_and_evaluation_in_fp32(tiny):
    model = zoo.build("mixer", seed=0)
    opt, _ = cells.make_optimizer(model, tiny, 1e-3, 10)
    seen = []
    handle = model.net.head.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    try:
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        cells.training_step(model, opt, x, y, recipe=tiny)
        assert seen == [(torch.bfloat16, torch.bfloat16)]
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(s["exp_avg"].dtype == torch.float32 for s in opt.state.values())
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):      # evaluation turns autocast off
            cells.accuracy(model, x, y)
        assert seen == [(torch.float32, torch.float32)]
        seen.clear()
        fp32 = tiny.variant({"training": {"precision": {"train_autocast": None}}})
        cells.training_step(model, opt, x, y, recipe=fp32)
        assert seen == [(torch.float32, torch.float32)]
    finally:
        handle.remove()


class _Stop(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("family,stop_at", [("cnn", 6), ("mixer", 8)])
def test_interrupted_cell_resumes_to_bit_identical_weights(tmp_path, tiny, family, stop_at):
    cell = Cell(family, 96, 1, 2e-3, tiny)
    whole = cells.train_cell(cell, store=_store(tmp_path / "a"), threads=1)

    def stop(step):
        if step == stop_at:
            raise _Stop
    store = _store(tmp_path / "b")
    with pytest.raises(_Stop):
        cells.train_cell(cell, store=store, threads=1, on_step=stop)
    assert store.checkpoint_path(cell).is_file() and not store.is_done(cell)
    status = cells.cell_status(cell, store)
    assert (status.state, status.step) == ("stopped", 8 if stop_at == 8 else 4)
    resumed = cells.train_cell(cell, store=store, threads=1)
    assert resumed["resumes"] == 1 and whole["resumes"] == 0
    assert resumed["sha256"] == whole["sha256"]
    assert (tmp_path / "a" / "runs" / cell.key / "model.safetensors").read_bytes() == \
        store.weights_path(cell).read_bytes()
    assert resumed["val_curve"] == whole["val_curve"]
    assert [step for step, _ in whole["val_curve"]] == [4, 8, 12]
    assert not store.checkpoint_path(cell).exists()
    assert "resumed at step" in store.log_path(cell).read_text()


def test_card_has_every_field_and_zoo_load_reproduces_it(tmp_path, tiny):
    cell = Cell("vit", tiny.full_n, 0, 1e-3, tiny)
    store = _store(tmp_path)
    card = cells.train_cell(cell, store=store, threads=1, command="python -m analyses.cells run")
    weights = store.weights_path(cell)
    assert weights == tmp_path / "models" / f"vit_n{tiny.full_n}_s0.safetensors"  # full-data name
    assert store.card_path(cell) == weights.with_suffix(".json")
    for k in ("family", "n_train", "seed", "steps", "lr", "recipe", "recipe_hash", "val_accuracy",
              "val_curve", "test_accuracy", "test_subset", "train_time_s", "img_per_s", "threads",
              "versions", "sha256", "command", "weights", "params"):
        assert k in card, k
    assert card["recipe"] == tiny.spec and card["recipe_hash"] == tiny.hash
    assert card["steps"] == 12 and card["threads"] == 1 and card["test_n"] == 128
    assert set(card["versions"]) >= {"torch", "timm"}
    assert card["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and card["cpu"]["model"]
    assert card["sha256"] == zoo.sha256_file(weights)
    from safetensors.torch import load_file
    assert {v.dtype for v in load_file(str(weights)).values() if v.is_floating_point()} == {torch.float16}
    model = zoo.load("vit", weights=weights)
    sub = data.load("synthetic", "test", n=card["test_subset"]["n"], seed=card["test_subset"]["seed"])
    assert cells.accuracy(model, *data.as_tensors(sub)) == pytest.approx(
        card["test_subset"]["accuracy"], abs=5e-5)
    assert cells.train_cell(cell, store=store) == card          # finished: not trained again


def test_a_cell_being_trained_elsewhere_is_refused(tmp_path, tiny):
    cell = Cell("cnn", 48, 0, 1e-3, tiny)
    store = _store(tmp_path)
    with _locked(store.lock_path(cell)):
        assert cells.cell_status(cell, store).state == "running"
        with pytest.raises(cells.CellBusy, match="another process"):
            cells.train_cell(cell, store=store)


def test_select_lr_takes_the_best_validation_accuracy_and_ties_go_to_the_smaller_lr():
    assert cells.select_lr({5e-4: 0.80, 1e-3: 0.85, 2e-3: 0.83}) == 1e-3
    assert cells.select_lr({2e-3: 0.86, 5e-4: 0.80, 1e-3: 0.85}) == 2e-3
    assert cells.select_lr({5e-4: 0.85, 1e-3: 0.85, 2e-3: 0.80}) == 5e-4
    assert cells.select_lr({2e-3: 0.9, 1e-3: 0.9, 5e-4: 0.7}) == 1e-3
    with pytest.raises(ValueError):
        cells.select_lr({})


def _fake_sweep(store: Store, recipe, lrs) -> None:
    store.sweep_path.parent.mkdir(parents=True, exist_ok=True)
    s = recipe.lr_sweep
    store.sweep_path.write_text(json.dumps({
        "recipe_hash": recipe.hash, "lrs": s["lrs"], "extend": s.get("extend"),
        "n_train": s["n_train"], "seed": s["seed"],
        "families": {f: {"val_accuracy": {}, "chosen_lr": lr, "keys": []} for f, lr in lrs.items()}}))


def test_plans_default_to_the_protocol_families_not_every_zoo_family(tmp_path):
    """A family registered in the zoo after the protocol (no sweep, no converged cells) joins no
    plan by default, so the running trainings' plans do not change; named, it has a sweep."""
    recipe, store = committed_recipe(), _store(tmp_path)
    later = [f for f in zoo.names() if f not in PROTOCOL_FAMILIES]
    assert set(PROTOCOL_FAMILIES) < set(zoo.names()) and {"extattn", "ffn", "repmlp", "mlp",
                                                          "fnet2d", "synth"} <= set(later)
    assert list(PROTOCOL_FAMILIES) == [f for f in zoo.names() if f in PROTOCOL_FAMILIES]
    for name in ("sweep", "full", "data-efficiency", "synthetic"):
        if name != "sweep":
            _fake_sweep(store, recipe, {f: 1e-3 for f in PROTOCOL_FAMILIES})
        assert {c.family for c in cells.plan(name, recipe=recipe, store=store)} == \
            set(PROTOCOL_FAMILIES), name
    from analyses import common
    assert common.FAMILIES == tuple(PROTOCOL_FAMILIES)
    assert set(common.MLP_FAMILIES) == {"mixer", "resmlp", "gmlp", "fnet"}
    swept = cells.plan("sweep", recipe=recipe, store=store, families=["extattn"])
    assert {c.family for c in swept} == {"extattn"} and len(swept) == 3
    with pytest.raises(ValueError, match="sweep .* not finished for extattn"):
        cells.plan("full", recipe=recipe, store=store, families=["extattn"])


def test_plans_hold_every_family_and_seed(tmp_path):
    recipe, store = committed_recipe(), _store(tmp_path)
    sweep = cells.plan("sweep", recipe=recipe, store=store)
    assert len(sweep) == 6 * 3 and {c.n_train for c in sweep} == {10000} and {c.seed for c in sweep} == {0}
    with pytest.raises(ValueError, match="sweep .* not finished for mixer"):
        cells.plan("full", recipe=recipe, store=store)
    lrs = {f: [5e-4, 1e-3, 2e-3][i % 3] for i, f in enumerate(PROTOCOL_FAMILIES)}
    _fake_sweep(store, recipe, lrs)
    full = cells.plan("full", recipe=recipe, store=store)
    assert [(c.family, c.seed) for c in full] == [(f, s) for s in (0, 1, 2) for f in PROTOCOL_FAMILIES]
    assert all(c.n_train == 55000 and c.lr == lrs[c.family] and c.steps == 5157 for c in full)
    eff = cells.plan("data-efficiency", recipe=recipe, store=store)
    assert len(eff) == 6 * (3 + 3 + 3) and len(set(eff)) == len(eff)
    assert [c.seed for c in eff] == sorted(c.seed for c in eff)            # seed-major
    assert {(c.n_train, c.seed) for c in eff} == {(n, s) for n in (1000, 3000, 10000) for s in (0, 1, 2)}
    assert [c.family for c in cells.plan("full", recipe=recipe, store=store, families=["cnn"])] == ["cnn"] * 3
    with pytest.raises(ValueError, match="unknown plan"):
        cells.plan("everything")


def test_sweep_choice_comes_from_the_finished_cells(tmp_path, tiny):
    store = _store(tmp_path)
    assert cells.run_cells(cells.plan("sweep", recipe=tiny, store=store, families=["cnn"]),
                           store=store, progress=False, echo=lambda s: None).failed == {}
    results = cells.sweep_results(recipe=tiny, store=store)
    accs = results["cnn"]["val_accuracy"]
    assert set(accs) == {0.001, 0.002} and results["cnn"]["chosen_lr"] == cells.select_lr(accs)
    cells.write_sweep(recipe=tiny, store=store)
    assert json.loads(store.sweep_path.read_text())["families"]["cnn"]["chosen_lr"] == \
        cells.select_lr(accs)
    eff = cells.plan("data-efficiency", recipe=tiny, store=store, families=["cnn"])
    assert [(c.n_train, c.seed) for c in eff] == [(48, 0), (96, 0), (48, 1)]
    assert eff[1] in cells.plan("sweep", recipe=tiny, store=store, families=["cnn"])  # shared cell
    assert store.is_done(eff[1])


def _fake_card(store: Store, cell: Cell, val: float) -> None:
    path = store.card_path(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": cell.key, "recipe_hash": cell.recipe.hash, "lr": cell.lr,
                                "seed": cell.seed, "n_train": cell.n_train, "val_accuracy": val,
                                "train_time_s": 1.0}))


def test_sweep_grid_extends_past_an_edge_until_the_best_is_inside(tmp_path, tiny):
    recipe = tiny.variant({"lr_sweep": {"lrs": [1e-3, 2e-3, 4e-3],
                                        "extend": {"factor": 2, "bounds": [2.5e-4, 1.6e-2]}}})
    store = _store(tmp_path)
    cell = lambda lr: Cell("cnn", 96, 0, lr, recipe)            # noqa: E731
    assert cells.sweep_grid(recipe, store, "cnn") == ([1e-3, 2e-3, 4e-3], False)
    for lr, acc in ((1e-3, 0.80), (2e-3, 0.82), (4e-3, 0.84)):
        _fake_card(store, cell(lr), acc)
    assert cells.sweep_grid(recipe, store, "cnn") == ([1e-3, 2e-3, 4e-3, 8e-3], False)
    assert "cnn" not in cells.sweep_results(recipe=recipe, store=store)
    assert [c.lr for c in cells.plan("sweep", recipe=recipe, store=store, families=["cnn"])
            ] == [1e-3, 2e-3, 4e-3, 8e-3]
    _fake_card(store, cell(8e-3), 0.85)                          # still rising: 1.6e-2 next
    assert cells.sweep_grid(recipe, store, "cnn") == ([1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2], False)
    _fake_card(store, cell(1.6e-2), 0.86)                        # at the bound: stop there
    assert cells.sweep_grid(recipe, store, "cnn")[1] is True
    assert cells.sweep_results(recipe=recipe, store=store)["cnn"]["chosen_lr"] == 1.6e-2
    _fake_card(store, Cell("vit", 96, 0, 1e-3, recipe), 0.80)    # best at the bottom edge
    _fake_card(store, Cell("vit", 96, 0, 2e-3, recipe), 0.79)
    _fake_card(store, Cell("vit", 96, 0, 4e-3, recipe), 0.78)
    assert cells.sweep_grid(recipe, store, "vit") == ([5e-4, 1e-3, 2e-3, 4e-3], False)
    _fake_card(store, Cell("vit", 96, 0, 5e-4, recipe), 0.79)   # interior best: done
    assert cells.sweep_grid(recipe, store, "vit") == ([5e-4, 1e-3, 2e-3, 4e-3], True)
    assert cells.sweep_results(recipe=recipe, store=store)["vit"]["chosen_lr"] == 1e-3
    with pytest.raises(ValueError, match="lr_sweep.extend"):
        tiny.variant({"lr_sweep": {"extend": {"factor": 0.5, "bounds": [1e-4, 1e-2]}}})


def test_recorded_sweep_choice_survives_a_retrained_sweep_cell(tmp_path, tiny):
    # A sweep cell trained again (by a plan that commits its weights, on another thread
    # count) can come back with a slightly different validation accuracy; the committed
    # lr_sweep.json keeps the choice every later cell was trained at.
    store = _store(tmp_path)
    cell = lambda lr: Cell("cnn", 96, 0, lr, tiny)               # noqa: E731
    _fake_card(store, cell(1e-3), 0.80)
    _fake_card(store, cell(2e-3), 0.82)
    assert cells.sweep_results(recipe=tiny, store=store)["cnn"]["chosen_lr"] == 2e-3
    cells.write_sweep(recipe=tiny, store=store)
    _fake_card(store, cell(2e-3), 0.79)                          # the retrained card
    assert cells.sweep_results(recipe=tiny, store=store)["cnn"]["chosen_lr"] == 2e-3
    assert all(c.lr == 2e-3 for c in cells.plan("data-efficiency", recipe=tiny, store=store,
                                                families=["cnn"]))
    store.sweep_path.unlink()                                    # no record: the cards decide
    assert cells.sweep_results(recipe=tiny, store=store)["cnn"]["chosen_lr"] == 1e-3


def test_cli_run_and_status(tmp_path, tiny, monkeypatch, capsys):
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(tiny.spec))
    monkeypatch.setattr(cells_cli, "default_store", lambda recipe, quick=False: _store(tmp_path))
    monkeypatch.setattr(cells_cli, "native_bf16", lambda: True)     # any CPU: see the bf16 test
    argv = ["--plan", "sweep", "--family", "fnet", "--recipe", str(recipe_file)]
    assert cells_cli.main(["run", *argv, "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("fnet_n96_s0_lr") for line in out.splitlines()) == 2
    assert "chosen by the sweep: fnet" in out
    assert cells_cli.main(["status", *argv]) == 0
    out = capsys.readouterr().out
    assert out.count(" done ") == 2 and "12/12" in out and "fnet: chosen lr" in out
    first = cells.plan("sweep", recipe=tiny, families=["fnet"], store=_store(tmp_path))[0]
    card_path = tmp_path / "models" / "cells" / f"{first.key}.json"   # committed location
    assert _store(tmp_path).card_path(first) == card_path
    assert (tmp_path / "runs" / first.key / "model.safetensors").is_file()
    card = json.loads(card_path.read_text())
    assert card["command"] == (f"python -m analyses.cells run --plan sweep --family fnet --n 96 --seed 0 "
                               f"--workers 1 --threads 1 --recipe {recipe_file}")


def test_cli_refuses_bf16_cells_on_a_cpu_without_native_bf16(tmp_path, tiny, monkeypatch, capsys):
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(tiny.spec))
    monkeypatch.setattr(cells_cli, "default_store", lambda recipe, quick=False: _store(tmp_path))
    monkeypatch.setattr(cells_cli, "native_bf16", lambda: False)
    argv = ["run", "--plan", "sweep", "--family", "fnet", "--recipe", str(recipe_file),
            "--workers", "1", "--no-progress"]
    assert cells_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 cell(s) train in bf16 autocast") and "--allow-slow-bf16" in err
    assert len(err.strip().splitlines()) == 1 and not any((tmp_path / "runs").glob("fnet*"))
    fp32 = tmp_path / "fp32.json"      # a recipe without bf16 autocast trains anywhere
    fp32.write_text(json.dumps(tiny.variant({"training": {"precision": {"train_autocast": None}}}).spec))
    assert cells_cli.main([*argv[:5], "--n", "96", "--seed", "0", "--recipe", str(fp32), *argv[7:]]) == 0
    assert cells_cli.main([*argv, "--allow-slow-bf16"]) == 0      # the override trains here anyway
    assert "2 cell(s) finished now" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["status", "--plan", "bogus"], ["run", "--plan", "full", "--workers", "0"],
                                  ["status", "--plan", "sweep", "--family", "resnet"], ["status"],
                                  ["status", "--plan", "sweep", "--n", "7"],
                                  ["run", "--plan", "sweep", "--family", "synth"]])
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    code = None
    try:
        code = cells_cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err


def test_synth_variant_trains_as_a_cell_at_mixers_swept_lr(tmp_path, tiny):
    """The Synthesizer-Random variant (analyses.common.build("synth")) trains under the same
    recipe at Mixer's swept learning rate; it joins a plan only when named; no zoo key changes."""
    from analyses.cells.training import load_model
    from probe.models.synthesizer import RandomSynthesizerMixing
    store = _store(tmp_path)
    lrs = {f: [1e-3, 2e-3][i % 2] for i, f in enumerate(PROTOCOL_FAMILIES)}
    _fake_sweep(store, tiny, lrs)
    zoo_full = cells.plan("full", recipe=tiny, store=store)
    assert {c.family for c in zoo_full} == set(PROTOCOL_FAMILIES)   # default: the swept families
    assert "synth" in zoo.names() and "synth" not in PROTOCOL_FAMILIES       # a zoo family too
    (cell,) = cells.plan("full", recipe=tiny, store=store, families=["synth"], seeds=[0])
    assert (cell.family, cell.lr, cell.n_train) == ("synth", lrs["mixer"], tiny.full_n)
    assert cell.key == f"synth_n{tiny.full_n}_s0_lr{lrs['mixer']:g}_{tiny.hash}"
    assert cells.sweep_results(recipe=tiny, store=store, families=["synth"])["synth"]["lr_from"] == "mixer"
    with pytest.raises(ValueError, match="synth has no learning-rate sweep.*mixer"):
        cells.plan("sweep", recipe=tiny, store=store, families=["synth"])
    card = cells.train_cell(cell, store=store, threads=1)
    assert card["family"] == "synth" and card["recipe_hash"] == tiny.hash and card["steps"] == 12
    assert card["command"].startswith("python -m analyses.cells run --plan full --family synth")
    model = load_model("synth", store.weights_path(cell))
    assert isinstance(model.net.blocks[0].mlp_tokens, RandomSynthesizerMixing) and not model.training
    init = dict(cells.training.build_model("synth", seed=0).net.named_parameters())
    assert not torch.equal(dict(model.net.named_parameters())["blocks.0.mlp_tokens.logits"],
                           init["blocks.0.mlp_tokens.logits"])                # it trained
    sub = data.load("synthetic", "test", n=card["test_subset"]["n"], seed=card["test_subset"]["seed"])
    assert cells.accuracy(model, *data.as_tensors(sub)) == pytest.approx(
        card["test_subset"]["accuracy"], abs=5e-5)
    with pytest.raises(ValueError, match="unknown family.*synth"):
        Cell("synthesizer", 48, 0, 1e-3, tiny)


def test_precision_check_pairs_bf16_and_fp32_cells_of_one_family(tmp_path, tiny):
    recipe = tiny.variant({"plans": {"precision-check": {"family": "cnn", "n_train": 48,
                                                         "seeds": [0, 1]}}})
    store = _store(tmp_path)
    _fake_sweep(store, recipe, {f: 1e-3 for f in PROTOCOL_FAMILIES})
    cells_ = cells.plan("precision-check", recipe=recipe, store=store)
    assert [(c.family, c.n_train, c.seed) for c in cells_] == [("cnn", 48, 0)] * 2 + [("cnn", 48, 1)] * 2
    bf16, fp32 = cells_[0], cells_[1]
    assert bf16.recipe == recipe and bf16.recipe.autocast_dtype == torch.bfloat16
    assert fp32.recipe.autocast_dtype is None and fp32.key != bf16.key
    assert fp32.recipe.training["data"] == recipe.training["data"]       # same images
    assert committed_recipe().plans["precision-check"]["training_overrides"]["precision"][
        "train_autocast"] is None
    report = cells.run_cells(cells_[:2], store=store, progress=False, echo=lambda s: None)
    assert report.failed == {} and store.is_done(fp32) and store.is_done(bf16)
    assert store.card(fp32)["recipe"]["training"]["precision"]["train_autocast"] is None


def test_synthetic_plan_changes_only_the_data_and_uses_the_swept_lrs(tmp_path):
    recipe, store = committed_recipe(), _store(tmp_path)
    lrs = {f: [1e-3, 2e-3, 4e-3][i % 3] for i, f in enumerate(PROTOCOL_FAMILIES)}
    _fake_sweep(store, recipe, lrs)
    plan = cells.plan("synthetic", recipe=recipe, store=store)
    spec = recipe.plans["synthetic"]
    assert [(c.family, c.seed) for c in plan] == [(f, s) for s in spec["seeds"] for f in PROTOCOL_FAMILIES]
    assert len(plan) == 6 * 3 and all(c.lr == lrs[c.family] for c in plan)
    synthetic = plan[0].recipe
    assert all(c.recipe == synthetic for c in plan) and synthetic.hash != recipe.hash
    # only training.data's dataset, pool_n and test_n differ from the committed recipe
    changed = {k for k, v in synthetic.training["data"].items() if recipe.training["data"][k] != v}
    assert changed == {"dataset", "pool_n", "test_n"} and synthetic.training["data"]["dataset"] == "synthetic"
    assert {k: v for k, v in synthetic.training.items() if k != "data"} == \
        {k: v for k, v in recipe.training.items() if k != "data"}
    assert all(c.n_train == spec["n_train"] < synthetic.full_n == spec["pool_n"] for c in plan)
    assert all(not c.is_full and c.steps == recipe.steps(spec["n_train"]) for c in plan)
    # committed with their weights (the interpretability analysis needs them), named by key
    assert store.card_path(plan[0]) == tmp_path / "models" / "synthetic" / f"{plan[0].key}.json"
    assert store.weights_path(plan[0]) == store.card_path(plan[0]).with_suffix(".safetensors")
    assert committed_recipe().hash == recipe.hash          # plans.synthetic is not hashed


def test_synthetic_plan_trains_a_cell_on_synthetic_images(tmp_path, tiny):
    recipe = tiny.variant({"training": {"data": {"dataset": "fashion-mnist"}},
                           "plans": {"synthetic": {"pool_n": 160, "test_n": 64, "n_train": 96,
                                                   "seeds": [0, 1]}}})
    store = _store(tmp_path)
    _fake_sweep(store, recipe, {f: 2e-3 for f in PROTOCOL_FAMILIES})
    plan = cells.plan("synthetic", recipe=recipe, store=store, families=["cnn"])
    assert [(c.family, c.n_train, c.seed) for c in plan] == [("cnn", 96, 0), ("cnn", 96, 1)]
    card = cells.train_cell(plan[0], store=store, threads=1)
    assert card["recipe"]["training"]["data"]["dataset"] == "synthetic" and card["test_n"] == 64
    assert card["recipe_hash"] == plan[0].recipe.hash != recipe.hash and card["steps"] == 12
    assert card["command"].startswith("python -m analyses.cells run --plan synthetic --family cnn")
    assert store.weights_path(plan[0]).parent == tmp_path / "models" / "synthetic"  # committed
    model = zoo.load("cnn", weights=store.weights_path(plan[0]))
    sub = data.load("synthetic", "test", n=card["test_subset"]["n"], seed=card["test_subset"]["seed"])
    assert cells.accuracy(model, *data.as_tensors(sub)) == pytest.approx(
        card["test_subset"]["accuracy"], abs=5e-5)
    with pytest.raises(ValueError, match="plans.synthetic.n_train"):
        recipe.variant({"plans": {"synthetic": {"n_train": 161}}})


def test_status_piped_into_a_closed_reader_exits_quietly():
    """`python -m analyses.cells status --plan sweep | head -1`: no BrokenPipeError traceback."""
    import subprocess
    import sys
    proc = subprocess.run(f"{sys.executable} -m analyses.cells status --plan sweep | head -1",
                          shell=True, capture_output=True, text=True, timeout=120,
                          cwd=str(cells.RECIPE_PATH.parents[1]))
    assert proc.stdout.startswith("plan sweep") and proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
