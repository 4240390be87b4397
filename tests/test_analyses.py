"""analyses/: shared verdict rules and model cache, the data-efficiency, input-dependence and
cost analyses at --quick scale, their claims on hand-made results, and the report."""
import json

import pytest
import torch

from analyses import common, cost_accuracy, data_efficiency, input_dependence, report

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


# ----------------------------------------------------------------------------- rules


def test_direction_verdict_rule():
    assert common.verdict(0.03, 0.08, margin=0.01) == "supported"
    assert common.verdict(-0.08, -0.02, margin=0.01) == "not supported"      # opposite holds
    assert common.verdict(-0.004, 0.006, margin=0.01) == "not supported"     # negligible
    assert common.verdict(-0.02, 0.05, margin=0.01) == "inconclusive"
    assert common.verdict(0.005, 0.05, margin=0.01) == "inconclusive"        # above 0, not margin


def test_equivalence_verdict_rule():
    assert common.equivalence_verdict(-0.004, 0.006, margin=0.01) == "supported"
    assert common.equivalence_verdict(0.02, 0.05, margin=0.01) == "not supported"
    assert common.equivalence_verdict(-0.05, -0.02, margin=0.01) == "not supported"
    assert common.equivalence_verdict(-0.005, 0.03, margin=0.01) == "inconclusive"


def test_claim_verdict_is_computed_not_given():
    c = common.Claim("k", "c", "w", "e", "f.pdf", "x", 0.05, 0.03, 0.07, 0.01, "r")
    assert c.verdict == "supported"
    e = common.Claim("k", "c", "w", "e", "f.pdf", "x", 0.0, -0.002, 0.003, 0.01, "r",
                     test="equivalence")
    assert e.verdict == "supported"
    with pytest.raises(TypeError):
        common.Claim("k", "c", "w", "e", "f.pdf", "x", 0.0, -1, 1, 0.01, "r", verdict="supported")
    with pytest.raises(ValueError, match="test must be"):
        common.Claim("k", "c", "w", "e", "f.pdf", "x", 0.0, -1, 1, 0.01, "r", test="maybe")


def test_intervals():
    m, lo, hi = common.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and lo < 2.0 < hi
    # t(0.975, 2) * s / sqrt(3) with s = 1
    assert hi - m == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    assert common.mean_ci([0.5]) == (0.5, 0.5, 0.5)
    d, lo, hi = common.diff_ci([1.0, 1.1, 0.9], [0.0, 0.1, -0.1])
    assert d == pytest.approx(1.0) and 0 < lo < 1 < hi
    assert common.diff_ci([1.0], [0.0]) == (1.0, 1.0, 1.0)


def test_trained_is_cached_and_deterministic(tmp_path, one_thread):
    a, rec_a = common.trained("cnn", n_train=64, seed=3, epochs=1, test_n=50, cache=tmp_path / "a")
    b, rec_b = common.trained("cnn", n_train=64, seed=3, epochs=1, test_n=50, cache=tmp_path / "b")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert rec_a["test_accuracy"] == rec_b["test_accuracy"]
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["cnn_n64_e1_s3.json", "cnn_n64_e1_s3.safetensors"]
    stamp = (tmp_path / "a" / files[1]).stat().st_mtime_ns
    c, rec_c = common.trained("cnn", n_train=64, seed=3, epochs=1, test_n=50, cache=tmp_path / "a")
    assert (tmp_path / "a" / files[1]).stat().st_mtime_ns == stamp     # loaded, not retrained
    assert rec_c == rec_a
    assert torch.equal(next(iter(c.state_dict().values())), next(iter(a.state_dict().values())))


def test_synthesizer_variant_mixing_is_softmax_matrix():
    from probe import mixing
    model = common.build("synth", seed=0).eval()
    block = model.net.blocks[0].mlp_tokens
    with torch.no_grad():
        block.logits.normal_(0, 1.0)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    maps = mixing.extract(model, x, layers=[0])
    expected = block.logits.softmax(-1)
    assert torch.allclose(maps[0].matrix[0, 0], expected, atol=1e-5)
    assert float(mixing.input_dependence(maps[0]).max()) < 1e-8
    assert torch.allclose(expected.sum(-1), torch.ones(49))


def test_epochs_for_budget():
    assert common.epochs_for(1000, 20000) == 20
    assert common.epochs_for(30000, 20000) == 1
    assert common.epochs_for(3000, 20000) == 7


# ----------------------------------------------------------------------------- quick runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Quick runs of the three analyses, sharing one model cache."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("analyses")
    args = ["--quick", "--results", str(root / "results"), "--figures", str(root / "figures"),
            "--cache", str(root / "models"), "--no-progress"]
    codes = {m.NAME: m.main(args) for m in (data_efficiency, input_dependence, cost_accuracy)}
    return root, codes, args


def _load(root, name):
    return json.loads((root / "results" / f"{name}.json").read_text())


def test_quick_data_efficiency(quick):
    root, codes, _ = quick
    assert codes["data_efficiency"] == 0
    res = _load(root, "data_efficiency")
    assert res["scale"] == "quick" and res["duration_s"] > 0
    s = data_efficiency.SCALES["quick"]
    assert len(res["rows"]) == len(s["sizes"]) * len(s["seeds"]) * len(common.FAMILIES)
    assert {r["name"] for r in res["rows"]} == set(common.FAMILIES)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["test_n"] == 200 for r in res["rows"])
    assert (root / "figures" / "data_efficiency.pdf").stat().st_size > 5000
    # the 200-image models are the ones the other analyses reuse (no retraining)
    assert (root / "models" / "mixer_n200_e1_s0.safetensors").is_file()
    (c,) = data_efficiency.claims(res)
    assert c.verdict in common.VERDICTS and c.low <= c.estimate <= c.high


def test_quick_input_dependence(quick):
    root, codes, _ = quick
    assert codes["input_dependence"] == 0
    res = _load(root, "input_dependence")
    by = {(r["name"], r["seed"]): r for r in res["rows"]}
    assert set(n for n, _ in by) == set(input_dependence.MODELS)
    for seed in (0, 1):
        assert all(l["input_dependence"] < 1e-6 for l in by["synth", seed]["layers"])
        assert all(l["input_dependence"] < 1e-6 for l in by["resmlp", seed]["layers"])
        assert all(l["input_dependence"] > 1e-5 for l in by["vit", seed]["layers"])
    assert len(res["examples"]["vit"]["image_0"]) == 7
    assert (root / "figures" / "input_dependence.pdf").stat().st_size > 5000
    assert [c.key for c in input_dependence.claims(res)] == [
        "mixer_mixing_is_fixed", "mixer_is_synthesizer_random", "generated_attention_adapts_better"]


def test_quick_cost_accuracy(quick):
    root, codes, _ = quick
    assert codes["cost_accuracy"] == 0
    res = _load(root, "cost_accuracy")
    rows = {r["name"]: r for r in res["rows"]}
    assert set(rows) == set(common.FAMILIES)
    assert rows["cnn"]["params"] > 4e5 and rows["fnet"]["flops_per_image"] > 1e7
    assert all(len(r["throughput_img_s"]) == 3 and min(r["throughput_img_s"]) > 0
               for r in rows.values())
    assert (root / "figures" / "cost_accuracy.pdf").stat().st_size > 5000
    assert cost_accuracy._pareto([(1, 0.5), (2, 0.6), (3, 0.55)]) == [0, 1]


def test_plot_only_redraws_from_results(quick, tmp_path):
    root, _, args = quick
    figs = tmp_path / "redrawn"
    argv = args[:1] + ["--results", str(root / "results"), "--figures", str(figs), "--plot-only"]
    assert data_efficiency.main(argv) == 0
    assert (figs / "data_efficiency.pdf").is_file()


def test_missing_results_is_one_line_error(tmp_path, capsys):
    code = data_efficiency.main(["--plot-only", "--results", str(tmp_path), "--figures",
                                 str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no results") and err.count("\n") == 1


def test_report_from_quick_results(quick, tmp_path):
    root, _, _ = quick
    md = tmp_path / "REPORT.md"
    assert report.main(["--results", str(root / "results"), "--figures", str(root / "figures"),
                        "--markdown", str(md)]) == 0
    text = md.read_text()
    for m in (data_efficiency, input_dependence, cost_accuracy):
        for c in m.claims(_load(root, m.NAME)):
            assert c.claim in text
            assert f"**Verdict**: **{c.verdict}**" in text
    assert "Not run yet" in text and "`robustness_comparison`" in text
    assert "ImageNet scale" in text and "timm:" in text
    pdf = root / "figures" / "claims_report.pdf"
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 20000


def test_report_without_results_fails_cleanly(tmp_path, capsys):
    assert report.main(["--results", str(tmp_path), "--figures", str(tmp_path),
                        "--markdown", str(tmp_path / "R.md")]) == 2
    assert "no analysis results" in capsys.readouterr().err


# ----------------------------------------------------------------------------- claims on made-up results


def _de_results(acc):
    """acc: {family: {n: [per-seed accuracies]}}."""
    rows = [{"name": f, "n_train": n, "seed": s, "test_accuracy": a}
            for f, d in acc.items() for n, v in d.items() for s, a in enumerate(v)]
    return {"rows": rows, "settings": {"budget": 1000}}


def _de(cnn_small, mlp_small, cnn_large, mlp_large):
    acc = {f: {100: list(mlp_small), 1000: list(mlp_large)} for f in common.MLP_FAMILIES}
    acc["cnn"] = {100: list(cnn_small), 1000: list(cnn_large)}
    return _de_results(acc)


def test_data_efficiency_claim_cases():
    supported = _de([0.80, 0.81, 0.80], [0.60, 0.61, 0.62], [0.90, 0.90, 0.91], [0.89, 0.90, 0.90])
    refuted = _de([0.70, 0.71, 0.70], [0.70, 0.70, 0.71], [0.90, 0.91, 0.90], [0.80, 0.80, 0.81])
    unclear = _de([0.80, 0.60, 0.75], [0.70, 0.72, 0.71], [0.90, 0.91, 0.90], [0.88, 0.90, 0.89])
    assert data_efficiency.claims(supported)[0].verdict == "supported"
    assert data_efficiency.claims(refuted)[0].verdict == "not supported"
    assert data_efficiency.claims(unclear)[0].verdict == "inconclusive"


def _id_results(dep_mixer, acc):
    rows = []
    for name in input_dependence.MODELS:
        for s in range(3):
            dep = dep_mixer[s] if name == "mixer" else (0.3 if name == "vit" else 0.0)
            rows.append({"name": name, "seed": s, "test_accuracy": acc[name][s],
                         "layers": [{"depth": 0, "kind": "k", "input_dependence": dep}]})
    return {"rows": rows, "examples": {}}


def test_input_dependence_claim_cases():
    base = {n: [0.85, 0.86, 0.85] for n in input_dependence.MODELS}
    same = dict(base, vit=[0.89, 0.90, 0.89], synth=[0.85, 0.86, 0.852])
    fixed, syn, gen = input_dependence.claims(_id_results([0.01, 0.012, 0.011], same))
    assert (fixed.verdict, syn.verdict, gen.verdict) == ("supported", "supported", "supported")
    differ = dict(base, vit=[0.78, 0.785, 0.78], synth=[0.80, 0.81, 0.80])
    fixed, syn, gen = input_dependence.claims(_id_results([0.3, 0.32, 0.31], differ))
    assert (fixed.verdict, syn.verdict, gen.verdict) == ("not supported",) * 3
    noisy = dict(base, vit=[0.80, 0.90, 0.85], synth=[0.80, 0.86, 0.90])
    fixed, syn, gen = input_dependence.claims(_id_results([0.01, 0.09, 0.05], noisy))
    assert (fixed.verdict, syn.verdict, gen.verdict) == ("inconclusive",) * 3


def _ca_results(thr_mlp, thr_cnn, acc_mlp, acc_cnn):
    rows = [{"name": f, "params": 5e5, "flops_per_image": 5e7, "accuracy": list(acc_mlp),
             "latency_ms_batch1": [1.0, 1.0, 1.0], "throughput_img_s": list(thr_mlp)}
            for f in common.MLP_FAMILIES]
    rows.append({"name": "cnn", "params": 5e5, "flops_per_image": 6e7, "accuracy": list(acc_cnn),
                 "latency_ms_batch1": [1.0, 1.0, 1.0], "throughput_img_s": list(thr_cnn)})
    return {"rows": rows, "settings": {"batch": 256}}


def test_cost_accuracy_claim_cases():
    good = _ca_results([2000, 2100, 2050], [1000, 1010, 990], [0.85, 0.86, 0.85], [0.852, 0.861, 0.851])
    assert [c.verdict for c in cost_accuracy.claims(good)] == ["supported", "supported"]
    bad = _ca_results([500, 510, 490], [1000, 1010, 990], [0.80, 0.80, 0.81], [0.90, 0.91, 0.90])
    assert [c.verdict for c in cost_accuracy.claims(bad)] == ["not supported", "not supported"]
    noisy = _ca_results([900, 1400, 1100], [1000, 1010, 990], [0.80, 0.88, 0.85],
                        [0.85, 0.85, 0.85])
    assert [c.verdict for c in cost_accuracy.claims(noisy)] == ["inconclusive", "inconclusive"]


def test_committed_report_and_readme_match_committed_results():
    """REPORT.md and the README durations are what the committed results give (not hand-edited)."""
    paths = common.Paths(common.RESULTS, common.FIGURES, common.MODEL_CACHE)
    found, missing, _ = report.collect(paths, redraw=False)
    assert missing == [] and len(found) == len(report.ANALYSES)
    assert all(results["scale"] == "full" for _, results, _ in found)
    assert (common.ROOT / "REPORT.md").read_text() == report.markdown(found, missing)
    assert report.durations_table(found) in (common.ROOT / "README.md").read_text()


def test_committed_results_were_made_with_the_full_settings():
    """Each committed results file was computed at its script's current full scale."""
    import importlib
    for name in report.ANALYSES:
        module = importlib.import_module(f"analyses.{name}")
        results = common.load_results(common.Paths(common.RESULTS, common.FIGURES, common.MODEL_CACHE),
                                      name)
        assert results["settings"] == json.loads(json.dumps(module.SCALES["full"])), name
