"""analyses.external_attention: the double normalisation by hand, the check (and its failure on a
perturbed formula), the position arithmetic and verdicts on hand-made results, the quick run end
to end, clear errors on bad input."""
import copy
import importlib

import pytest
import torch

from analyses import external_attention as ea
from probe.models.extattn import ExternalAttention

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def _block(seed: int = 0) -> torch.nn.Module:
    """A small External Attention block with O(1) weights (so formulas that differ, differ
    visibly), in a container like the zoo's blocks."""
    torch.manual_seed(seed)
    block = ExternalAttention(16, num_heads=2, memory_units=8)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0.0, 1.0)
    return torch.nn.Sequential(block).eval()


def test_double_normalisation_by_hand():
    torch.manual_seed(0)
    v = torch.randn(5, 3)
    # zero logits: softmax over 4 tokens gives 1/4 everywhere, L1 over 5 units gives 1/5:
    # every token reads the plain mean of the values
    out = ea.double_normalised_attention(torch.zeros(1, 1, 4, 3), torch.randn(5, 3), v)
    assert torch.allclose(out, v.mean(0).expand(1, 1, 4, 3), atol=1e-6)
    # one key that only token 0 matches: its column of the softmax over tokens puts all
    # weight on token 0, so token 0 reads that unit's value and the others the other unit's
    q = torch.tensor([[[[50.0], [0.0], [0.0]]]])
    k = torch.tensor([[1.0], [0.0]])
    v2 = torch.tensor([[1.0], [-1.0]])
    out = ea.double_normalised_attention(q, k, v2)[0, 0, :, 0]
    # P = softmax over tokens: unit 0 -> [1, 0, 0], unit 1 -> [1/3, 1/3, 1/3]
    # A rows: token 0 [1, 1/3] / (4/3) = [3/4, 1/4]; tokens 1, 2: [0, 1]
    assert out.tolist() == pytest.approx([0.75 - 0.25, -1.0, -1.0], abs=1e-6)


def test_block_is_attention_with_memory_keys_and_values_and_a_perturbed_formula_fails():
    model, x = _block(), torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(1))
    errors = ea.attention_form_errors(model, x, ea.FORMULAS)
    assert max(errors["double_normalised"]) <= ea.TOLERANCE
    assert min(errors["softmax_over_keys"]) > 1e-2      # ordinary attention's normalisation differs

    def l1_over_tokens(q, k, v):          # the normalisations' axes swapped: not EA
        p = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return (p / p.sum(dim=-2, keepdim=True)) @ v

    def no_l1(q, k, v):                   # the L1 over memory left out
        return (q @ k.transpose(-2, -1)).softmax(dim=-2) @ v

    for wrong in (l1_over_tokens, no_l1, ea.softmax_attention):
        bad = ea.attention_form_errors(model, x, {"double_normalised": wrong,
                                                  "softmax_over_keys": ea.softmax_attention})
        rows = [{"seed": 0, "model": "trained", **bad}]
        (check,) = ea.checks({"attention_form": rows, "check_images": 3})
        assert not check.holds and check.max_abs_error > 1e-2
    good = [{"seed": 0, "model": "trained", **errors}]
    (check,) = ea.checks({"attention_form": good, "check_images": 3})
    assert check.holds and check.key == "external_attention_is_attention_with_learned_keys_values"


def test_the_check_needs_an_external_attention_model():
    with pytest.raises(ValueError, match="no External Attention block"):
        ea.attention_form_errors(torch.nn.Linear(4, 4), torch.randn(2, 4), ea.FORMULAS)


def _results(medians, layers=4):
    """Hand-made results: ``medians = {model: [per-seed median]}`` (the same in every layer)."""
    rows = []
    for name, values in medians.items():
        for seed, v in enumerate(values):
            rows.append({"family": name, "seed": seed, "median": v, "init_median": v / 10,
                         "test_accuracy": {"extattn": 0.9, "vit": 0.88, "synth": 0.86}[name] + 0.001 * seed,
                         "init_accuracy": 0.1,
                         "layers": [{"median": v} for _ in range(layers)]})
    return {"rows": rows, "n_images": 8}


def test_position_and_claim_arithmetic():
    assert ea.position(0.05, 0.0, 0.1) == pytest.approx(0.5)
    assert ea.position(0.03, 0.01, 0.11) == pytest.approx(0.2)
    res = _results({"extattn": [0.08, 0.09, 0.085], "vit": [0.1, 0.1, 0.1], "synth": [0.0, 0.0, 0.0]})
    claim = ea.claims(res)[0].as_result()
    assert claim["id"] == "external-attention"
    assert claim["effect"] == pytest.approx(0.35)                 # mean(0.8, 0.9, 0.85) - 1/2
    assert claim["verdict"] == "supported"
    assert claim["details"]["position_per_seed"] == pytest.approx({0: 0.8, 1: 0.9, 2: 0.85})
    assert [r["effect"] for r in claim["details"]["position_per_layer"]] == pytest.approx([0.85] * 4)
    gaps = claim["details"]["accuracy_differences"]
    assert gaps["extattn - vit"]["effect"] == pytest.approx(0.02)
    assert gaps["extattn - synth"]["effect"] == pytest.approx(0.04)
    assert claim["reference"]["input_dependence"]["synth"]["effect"] == 0.0
    # near the fixed matrix: the opposite of the claim
    near = _results({"extattn": [0.001, 0.002, 0.0015], "vit": [0.1, 0.1, 0.1], "synth": [0.0] * 3})
    assert ea.claims(near)[0].verdict == "opposite"
    # half-way: negligible
    middle = _results({"extattn": [0.049, 0.051, 0.05], "vit": [0.1] * 3, "synth": [0.0] * 3})
    assert ea.claims(middle)[0].verdict == "negligible"


def test_bad_results_give_one_clear_error():
    res = _results({"extattn": [0.08], "vit": [0.1], "synth": [0.0]})
    without = copy.deepcopy(res)
    without["rows"] = [r for r in res["rows"] if r["family"] != "synth"]
    with pytest.raises(ValueError, match="no 'synth' rows"):
        ea.claims(without)
    flat = _results({"extattn": [0.08], "vit": [0.0], "synth": [0.0]})
    with pytest.raises(ValueError, match="must exceed"):
        ea.claims(flat)
    uneven = _results({"extattn": [0.08, 0.07], "vit": [0.1], "synth": [0.0]})
    with pytest.raises(ValueError, match="seed by seed"):
        ea.positions(uneven)


def test_full_scale_without_the_sweep_names_the_commands(tmp_path, monkeypatch, capsys):
    plan = importlib.import_module("analyses.cells.plan")   # analyses.cells.plan is also a function
    monkeypatch.setattr(plan, "sweep_results", lambda **kwargs: {})
    code = ea.main(["--results", str(tmp_path), "--figures", str(tmp_path), "--cache",
                    str(tmp_path / "models"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--plan sweep --family extattn" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("external_attention")
    args, code, results = quick_analysis(ea, out)
    assert code == 0
    return out, args, results


def test_quick_run_writes_claim_check_and_models(quick):
    out, _, res = quick
    assert [c["id"] for c in res["claims"]] == ["external-attention"]
    assert {m["family"] for m in res["models"]} == set(ea.MODELS)
    (check,) = res["checks"]
    assert check["holds"] and check["max_abs_error"] <= ea.TOLERANCE
    assert {r["model"] for r in check["details"]["per_model"]} == {"trained", "init"}
    for r in res["rows"]:
        assert 0 <= r["median"] <= 1 and 0 <= r["init_median"] <= 1 and len(r["layers"]) == 4
    claim = res["claims"][0]
    assert set(claim["per_family"]) == {"extattn"} and claim["verdict"] in \
        ("supported", "negligible", "opposite", "inconclusive")
    assert (out / "external_attention.pdf").stat().st_size > 0


def test_plot_only_redraws(quick):
    out, args, _ = quick
    pdf = out / "external_attention.pdf"
    pdf.unlink()
    assert ea.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
