"""The committed full-data models (analyses/models/<family>_n<n>_s<seed>.safetensors): their
weights give the accuracy their cards and the analyses' results state.

One model per family is re-evaluated on the recipe's 1000-image test subset (seconds); every
results file's model rows are checked against the cards and the weights' sha256. Families
with no committed model yet are skipped with the command that trains them.
"""
import hashlib
import json
from pathlib import Path

import pytest

from analyses.cells import committed_recipe
from analyses.cells import test_sets as recipe_test_sets
from analyses.cells.training import PROTOCOL_FAMILIES, accuracy
from probe import zoo

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "analyses" / "models"
RESULTS = ROOT / "analyses" / "results"


def _committed(family: str):
    recipe = committed_recipe()
    cards = sorted(MODELS.glob(f"{family}_n{recipe.full_n}_s*.json"))
    return [(c, json.loads(c.read_text())) for c in cards if c.with_suffix(".safetensors").is_file()]


@pytest.mark.parametrize("family", PROTOCOL_FAMILIES)   # the zoo's swept families
def test_committed_weights_give_the_card_accuracy(family, one_thread):
    found = _committed(family)
    # the full plan is complete (every protocol family, 3 seeds): a missing model is a failure
    assert len(found) == len(committed_recipe().plans["full"]["seeds"]), \
        f"committed full-data {family} models: {[c.name for c, _ in found]} (make cells-full)"
    card_path, card = found[0]
    weights = card_path.with_suffix(".safetensors")
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"]
    assert card["recipe_hash"] == committed_recipe().hash
    model = zoo.load(family, weights=str(weights))
    assert model.weights_info["kind"] == "file" and model.weights_info["sha256"] == card["sha256"]
    _, (x, y) = recipe_test_sets(committed_recipe())
    assert len(y) == card["test_subset"]["n"] == 1000
    # fp32 evaluation of the stored weights; a different CPU may round one borderline logit
    # the other way, so one image of slack
    assert accuracy(model, x, y) == pytest.approx(card["test_subset"]["accuracy"], abs=0.0011)


def test_results_rows_match_the_committed_cards():
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        rows += [(path.name, m) for m in json.loads(path.read_text()).get("models", [])]
    for name, m in rows:
        card_path = ROOT / Path(m["weights"]).with_suffix(".json")
        if not card_path.is_file():          # data-efficiency cells: cards under models/cells
            card_path = MODELS / "cells" / f"{m['family']}_n{m['n_train']}_s{m['seed']}_lr{m['lr']:g}_" \
                                           f"{m['recipe_hash']}.json"
        card = json.loads(card_path.read_text())
        for key in ("test_accuracy", "val_accuracy", "steps", "lr", "seed", "n_train"):
            assert m[key] == card[key], (name, m["family"], key)
