"""analyses.equivalences: the quick run's results (identities as checks, no claims, no trained
models), --plot-only, the check rows on constructed results and the identities themselves."""
import json

import pytest
import torch
import torch.nn as nn

from analyses import equivalences as eqa

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, one_thread, quick_analysis):
    out = tmp_path_factory.mktemp("equivalences")
    args, code, results = quick_analysis(eqa, out)
    assert code == 0
    return out, args, results


def test_quick_run_writes_figure_and_results(quick):
    out, _, res = quick
    assert (out / "equivalences.pdf").stat().st_size > 1000
    assert res["analysis"] == "equivalences" and res["scale"] == "quick"
    assert [s["seed"] for s in res["per_seed"]] == res["settings"]["seeds"]
    assert set(res["identities"]) == set(eqa.CHECKS)
    for s in res["per_seed"]:
        assert set(s["errors"]) == set(eqa.CHECKS)
        errs = s["errors"]
        assert set(errs["patch_embedding_as_linear"]) >= {"mixer", "resmlp", "gmlp", "vit", "fnet"}
        assert len(errs["attention_as_token_mixing"]) == 4          # every ViT block
        assert len(errs["fnet_is_dft"]) == 5                        # 4 blocks + a random module
        assert len(errs["fnet2d_is_dft"]) == 5                      # the published FNet too
        assert "mlp" not in errs["patch_embedding_as_linear"]       # no patches to embed
        assert sum(k.startswith("cnn.") for k in errs["conv_as_token_mixing"]) == 10
        for check in errs.values():
            for e in check.values():
                assert 0 <= e < 1e-4                               # float32 rounding only


def test_results_format_models_claims_checks(quick):
    """Identities need no trained model and are no evidence: models and claims are empty, and
    every identity is one check row whose error is its worst over seeds and places."""
    from probe import zoo
    _, _, res = quick
    assert res["models"] == [] and res["claims"] == []
    shipped = {r["family"]: r for r in res["zoo_weights"]}
    assert set(shipped) == set(zoo.names())
    for fam, row in shipped.items():
        assert row["sha256"] == zoo.card(fam)["sha256"]
        assert row["weights"] == f"probe/weights/{fam}.safetensors"
    rows = {c["id"]: c for c in res["checks"]}
    assert set(rows) == set(eqa.CHECKS)
    for key, row in rows.items():
        assert set(row) >= {"id", "what", "max_abs_error", "tolerance", "holds"}
        worst = max(e for s in res["per_seed"] for e in s["errors"][key].values())
        assert row["max_abs_error"] == worst
        assert row["tolerance"] == res["settings"]["tolerance"]
        assert row["holds"] is True
        assert row["details"]["seeds"] == len(res["settings"]["seeds"])
    assert rows["attention_as_token_mixing"]["details"]["places"] == 4
    # beside the checks: token-only FNet is one token matrix, the published FNet is not
    resid = rows["fnet2d_is_dft"]["details"]["token_matrix_residual"]
    assert resid["fnet (tokens)"] < 1e-6 and resid["fnet2d (tokens and channels)"] > 0.9
    # the rows in the file are what checks() computes from the raw results
    assert [c.as_result() for c in eqa.checks(res)] == json.loads(json.dumps(res["checks"]))


def test_plot_only_redraws(quick):
    out, args, _ = quick
    (out / "equivalences.pdf").unlink()
    assert eqa.main(args + ["--plot-only"]) == 0
    assert (out / "equivalences.pdf").stat().st_size > 1000


# ----------------------------------------------------------------------------- check rows


def _synthetic(errors_by_seed):
    """Results where every identity of every seed has the given error at place "a"."""
    return {"tolerance": 1e-4, "float32_eps": eqa.EPS32,
            "identities": {k: {"group": g, "label": l, "what": eqa.WHAT[k]}
                           for k, (g, l) in eqa.CHECKS.items()},
            "per_seed": [{"seed": i, "errors": {k: {"a": e, "b": e / 10} for k in eqa.CHECKS}}
                         for i, e in enumerate(errors_by_seed)]}


def test_one_broken_identity_fails_only_its_check():
    res = _synthetic((1e-7, 3e-7))
    res["per_seed"][1]["errors"]["fnet_as_token_linear"]["b"] = 2e-3
    rows = {c.key: c for c in eqa.checks(res)}
    assert set(rows) == set(eqa.CHECKS)
    assert not rows["fnet_as_token_linear"].holds
    assert rows["fnet_as_token_linear"].max_abs_error == 2e-3
    assert rows["fnet_as_token_linear"].details["worst_place"] == "b"
    assert all(c.holds for k, c in rows.items() if k != "fnet_as_token_linear")
    assert rows["conv_as_token_mixing"].max_abs_error == 3e-7      # worst seed, place "a"
    assert eqa.claims(res) == []


def test_error_at_the_tolerance_holds_just_above_fails():
    rows = {c.key: c for c in eqa.checks(_synthetic((1e-4,)))}
    assert all(c.holds for c in rows.values())
    rows = {c.key: c for c in eqa.checks(_synthetic((1.01e-4,)))}
    assert not any(c.holds for c in rows.values())


# ----------------------------------------------------------------------------- identities


def test_checks_detect_a_broken_equivalence():
    """The checks are small on true equivalences and large on a perturbed matrix."""
    from probe import zoo
    fnet = zoo.build("fnet", seed=0).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert eqa.fnet_as_token_linear(fnet, x) < 1e-4
    with pytest.raises(ValueError, match="FourierMixing"):
        eqa.fnet_as_token_linear(zoo.build("mixer", seed=0), x)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    ((_, side, m),) = eqa.conv_matrices(nn.Sequential(conv)).values()
    xc = torch.randn(2, 2, side, side)
    from probe import equivalences as eq
    assert eq.conv_as_token_mixing(conv, xc, matrix=m) < 1e-5
    assert eq.conv_as_token_mixing(conv, xc, matrix=m * 1.01) > 1e-4
    assert eq.conv_as_token_mixing(conv, xc) == eq.conv_as_token_mixing(conv, xc, matrix=m)
    with pytest.raises(ValueError, match="does not fit"):
        eq.conv_as_token_mixing(conv, xc, matrix=m[:, :1])
    vit = zoo.build("vit", seed=0).eval()
    assert max(eqa.attention_as_token_mixing(vit, x)) < 1e-4


def test_shared_cli_options(tmp_path, capsys):
    """--out roots results and figures; a bad shared option is one line and exit 2."""
    assert eqa.main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "results" / "equivalences.json").is_file()
    assert (tmp_path / "figures" / "equivalences.pdf").is_file()
    capsys.readouterr()
    assert eqa.main(["--quick", "--out", str(tmp_path), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --threads must be positive, got 0"
