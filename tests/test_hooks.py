"""Hooks: capture works, and no hook (or fused_attn change) survives, also when forward raises."""
import pytest
import torch
import torch.nn as nn

from probe import hooks, mixing, zoo

FAMILIES = ["mixer", "resmlp", "gmlp", "vit", "fnet", "cnn"]


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_clean(model: nn.Module, fused=None) -> None:
    for name, m in model.named_modules():
        assert not m._forward_hooks, f"forward hook left on {name!r}"
        assert not m._forward_pre_hooks, f"forward pre-hook left on {name!r}"
        assert not m._backward_hooks, f"backward hook left on {name!r}"
        assert not getattr(m, "_forward_hooks_with_kwargs", {}), name
        assert not getattr(m, "_forward_pre_hooks_with_kwargs", {}), name
    if fused is not None:
        assert fused_flags(model) == fused


def fused_flags(model: nn.Module) -> dict:
    return {n: m.__dict__.get("fused_attn", "<unset>")
            for n, m in hooks.attention_modules(model).items()}


@pytest.fixture(scope="module")
def models():
    return {f: zoo.build(f).eval() for f in FAMILIES}


def test_capture_records_inputs_and_outputs(models):
    model = models["mixer"]
    x = torch.rand(2, 1, 28, 28)
    with hooks.capture(model, ["net.blocks.0.mlp_tokens", "net.stem"]) as rec:
        y = model(x)
    r = rec["net.blocks.0.mlp_tokens"]
    assert r.input.shape == (2, 128, 49) and r.output.shape == (2, 128, 49)
    assert r.calls == 1 and not r.input.requires_grad
    assert rec["net.stem"].output.shape == (2, 49, 128)
    assert y.shape == (2, 10)
    assert_clean(model)


def test_capture_unknown_module_names_the_fix(models):
    with pytest.raises(ValueError, match="named_modules"):
        with hooks.capture(models["mixer"], ["net.blocks.99"]):
            pass
    assert_clean(models["mixer"])


def test_capture_attention_matches_manual_softmax_and_restores_fused(models):
    model = models["vit"]
    before = fused_flags(model)
    x = torch.rand(2, 1, 28, 28)
    with hooks.capture(model, ["net.blocks.1.attn"]) as rec, \
            hooks.capture_attention(model) as probs:
        assert all(m.fused_attn is False for m in hooks.attention_modules(model).values())
        model(x)
    assert set(probs) == {f"net.blocks.{i}.attn" for i in range(4)}
    attn = model.net.blocks[1].attn
    z = rec["net.blocks.1.attn"].input
    b, t, c = z.shape
    q, k, _ = attn.qkv(z).reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    ref = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)
    torch.testing.assert_close(probs["net.blocks.1.attn"], ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(probs["net.blocks.1.attn"].sum(-1), torch.ones(b, 4, t))
    assert_clean(model, before)


def test_capture_attention_without_attention_is_a_clear_error(models):
    with pytest.raises(ValueError, match="no timm Attention"):
        with hooks.capture_attention(models["mixer"]):
            pass
    with pytest.raises(ValueError, match="not a timm Attention"):
        with hooks.capture_attention(models["vit"], ["net.blocks.0.mlp"]):
            pass
    assert_clean(models["vit"], fused_flags(models["vit"]))


def test_evaluating_restores_training_flags(models):
    model = models["cnn"]
    model.train()
    model.net.head.eval()
    try:
        with hooks.evaluating(model):
            assert not any(m.training for m in model.modules())
        assert model.training and model.net.stages.training and not model.net.head.training
    finally:
        model.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_no_hook_survives_extract_normal_bad_input_and_raising_module(family, models):
    model = models[family]
    fused = fused_flags(model)
    x = torch.rand(1, 1, 28, 28)
    mixing.extract(model, x)
    mixing.effective(model, x, 0)
    assert_clean(model, fused)

    with pytest.raises(ValueError, match=r"expects images of shape \[B, 1, 28, 28\]"):
        mixing.extract(model, torch.rand(2, 3, 28, 28))
    assert_clean(model, fused)

    # a module after the first token-mixing layer raises mid-forward
    target = model.net.head

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    target.forward = boom
    try:
        static = all(info.kind in mixing.STATIC_KINDS for info in mixing.layers(model))
        if static:  # static maps are read from the weights: no forward pass to fail
            assert len(mixing.extract(model, x)) == 4
        else:
            with pytest.raises(RuntimeError, match="boom"):
                mixing.extract(model, x)
        assert_clean(model, fused)
        with pytest.raises(RuntimeError, match="boom"):
            mixing.effective(model, x, 0)
        assert_clean(model, fused)
        if hooks.attention_modules(model):
            with pytest.raises(RuntimeError, match="boom"):
                with hooks.capture_attention(model):
                    model(x)
            assert_clean(model, fused)
    finally:
        del target.forward
    assert model.training is False


def test_attention_flag_restored_when_it_was_false(models):
    model = models["vit"]
    attn = model.net.blocks[0].attn
    old = attn.fused_attn
    attn.fused_attn = False
    try:
        with hooks.capture_attention(model):
            model(torch.rand(1, 1, 28, 28))
        assert attn.fused_attn is False
    finally:
        attn.fused_attn = old
