"""analyses.edge_cost: int8 quantisation, the paired latency effects and the crossover on
constructed results, the quick run on the converged (quick) models, --plot-only."""
import copy

import pytest
import torch

from analyses import edge_cost as ec
from probe import zoo

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_int8_copy_quantises_linears_and_keeps_predictions_close():
    model = zoo.load("mixer").eval()  # shipped weights (a fresh Mixer's head is all zero)
    q = ec.quantized(model)
    assert any("quantized" in type(m).__module__ for m in q.modules())
    assert not any("quantized" in type(m).__module__ for m in model.modules())  # the original stays
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = model(x), q(x)
    assert (a - b).abs().max() < 0.1 * a.abs().max()


def _results(vit, others):
    rows = [{"family": "vit", "latency_ms_fp32": vit, "latency_ms_int8": vit,
             "latency_ms_by_size": {"28": [2.0], "56": [8.0], "112": [60.0]}, "params": 1,
             "flops_per_image_28px": 1}]
    for f, lat in others.items():
        rows.append({"family": f, "latency_ms_fp32": lat, "latency_ms_int8": lat,
                     "latency_ms_by_size": {"28": [2.5], "56": [6.0], "112": [20.0]}, "params": 1,
                     "flops_per_image_28px": 1})
    return {"rows": rows, "accuracy": [], "test_n": 10}


def test_latency_effects_are_paired_by_round_and_signs_stay_per_family():
    res = _results([2.0, 2.2, 1.8], {"mixer": [1.0, 1.1, 0.9], "cnn": [4.0, 4.4, 3.6]})
    effects = ec.latency_effects(res)
    assert effects["mixer"] == pytest.approx([1.0, 1.0, 1.0])
    assert effects["cnn"] == pytest.approx([-0.5, -0.5, -0.5])
    claim = ec.claims(res)[0].as_result()
    assert claim["verdict"] == "supported" and claim["per_family"]["cnn"]["effect"] == pytest.approx(-0.5)
    slow = _results([2.0, 2.2, 1.8], {"mixer": [4.0, 4.4, 3.6]})
    assert ec.claims(slow)[0].as_result()["verdict"] == "opposite"


def test_crossover_is_the_smallest_size_where_mixer_is_faster():
    res = _results([2.0], {"mixer": [2.5]})
    cross = ec.crossover(res)
    assert cross["family_faster_from_px"] == 56 and cross["vit_over_family"]["112"] == pytest.approx(3.0)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("edge_cost")
    args, code, results = quick_analysis(ec, out)
    assert code == 0
    return out, args, results


def test_quick_run_times_every_family_at_every_size(quick):
    out, _, res = quick
    scale = ec.SCALES["quick"]
    assert {r["family"] for r in res["rows"]} == set(scale["families"])
    for r in res["rows"]:
        assert len(r["latency_ms_fp32"]) == len(r["latency_ms_int8"]) == scale["rounds"]
        assert set(r["latency_ms_by_size"]) == {str(s) for s in scale["sizes"]}
        assert min(r["latency_ms_fp32"]) > 0
    assert {(a["family"], a["seed"]) for a in res["accuracy"]} == {(m["family"], m["seed"]) for m in res["models"]}
    assert all(0 <= a["int8"] <= 1 for a in res["accuracy"])
    assert res["claims"][0]["id"] == "cost-effective" and (out / "edge_cost.pdf").stat().st_size > 0


def test_plot_only_redraws(quick):
    out, args, _ = quick
    pdf = out / "edge_cost.pdf"
    pdf.unlink()
    assert ec.main(args + ["--plot-only"]) == 0 and pdf.stat().st_size > 0
