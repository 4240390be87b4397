"""analyses.equivalences: the quick run end to end, --plot-only, the checks and the verdict rule."""
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
    for s in res["per_seed"]:
        assert set(s["errors"]) == set(eqa.CHECKS)
        errs = s["errors"]
        assert set(errs["patch_embedding_as_linear"]) >= {"mixer", "resmlp", "gmlp", "vit", "fnet"}
        assert len(errs["attention_as_token_mixing"]) == 4          # every ViT block
        assert len(errs["fnet_is_dft"]) == 5                        # 4 blocks + a random module
        assert sum(k.startswith("cnn.") for k in errs["conv_as_token_mixing"]) == 10
        for check in errs.values():
            for e in check.values():
                assert 0 <= e < 1e-4                               # float32 rounding only


def test_claims_supported_on_real_models(quick):
    _, _, res = quick
    cl = {c.key: c for c in eqa.claims(res)}
    assert set(cl) == {"mlp_conv_attention_equivalent", "fnet_is_mixer_with_dft"}
    for c in cl.values():
        assert c.verdict == "supported"
        assert c.low == c.estimate <= c.high
        json.dumps(c.as_dict())


def test_plot_only_redraws(quick):
    out, args, _ = quick
    (out / "equivalences.pdf").unlink()
    assert eqa.main(args + ["--plot-only"]) == 0
    assert (out / "equivalences.pdf").stat().st_size > 1000


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


# ----------------------------------------------------------------------------- verdict rule


def _synthetic(errors_by_seed):
    """Results where every check of every seed has the given error."""
    return {"tolerance": 1e-4, "float32_eps": eqa.EPS32,
            "checks": {k: {"group": g, "label": l} for k, (g, l) in eqa.CHECKS.items()},
            "per_seed": [{"seed": i, "errors": {k: {"a": e, "b": e / 10} for k in eqa.CHECKS}}
                         for i, e in enumerate(errors_by_seed)]}


@pytest.mark.parametrize("errors, expected", [((1e-7, 3e-7, 0.0), "supported"),
                                              ((1e-2, 0.5, 3e-3), "not supported"),
                                              ((1e-7, 1e-2, 1e-7), "inconclusive")])
def test_verdict_rule(errors, expected):
    for c in eqa.claims(_synthetic(errors)):
        assert c.verdict == expected


def test_one_failing_check_is_enough_to_lose_support():
    res = _synthetic((1e-7, 1e-7))
    for s in res["per_seed"]:
        s["errors"]["fnet_as_token_linear"]["a"] = 1e-3
    cl = {c.key: c for c in eqa.claims(res)}
    assert cl["fnet_is_mixer_with_dft"].verdict == "not supported"
    assert cl["mlp_conv_attention_equivalent"].verdict == "supported"
    assert cl["fnet_is_mixer_with_dft"].estimate == pytest.approx(-1.0)


def test_shared_cli_options(tmp_path, capsys):
    """--out roots results and figures; a bad shared option is one line and exit 2."""
    assert eqa.main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "results" / "equivalences.json").is_file()
    assert (tmp_path / "figures" / "equivalences.pdf").is_file()
    capsys.readouterr()
    assert eqa.main(["--quick", "--out", str(tmp_path), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --threads must be positive, got 0"
