"""Hooks: capture works, and no hook (or fused_attn change) survives, also when forward raises."""
import pytest
import torch
import torch.nn as nn

from probe import hooks, mixing, zoo

UNSET = "<unset>"


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_clean(model: nn.Module, fused=None) -> None:
    """No hook left anywhere; with ``fused``, every attention module's flag is that known value."""
    for name, m in model.named_modules():
        assert not m._forward_hooks, f"forward hook left on {name!r}"
        assert not m._forward_pre_hooks, f"forward pre-hook left on {name!r}"
        assert not m._backward_hooks, f"backward hook left on {name!r}"
        assert not getattr(m, "_forward_hooks_with_kwargs", {}), name
        assert not getattr(m, "_forward_pre_hooks_with_kwargs", {}), name
    if fused is not None:
        assert fused_flags(model) == fused


def fused_flags(model: nn.Module) -> dict:
    """``{attention module: its own fused_attn}``; ``UNSET`` when the instance has none."""
    return {n: m.__dict__.get("fused_attn", UNSET)
            for n, m in hooks.attention_modules(model).items()}


def set_flags(model: nn.Module, values) -> dict:
    """Give the attention modules known ``fused_attn`` values (cycled; ``UNSET`` deletes it).

    Returns the ``{module: value}`` the test expects to find after every hook.
    """
    expected = {}
    for i, (name, m) in enumerate(hooks.attention_modules(model).items()):
        value = values[i % len(values)]
        if value is UNSET:
            m.__dict__.pop("fused_attn", None)
        else:
            m.fused_attn = value
        expected[name] = value
    return expected


@pytest.fixture(scope="module")
def models():
    return {f: zoo.build(f).eval() for f in zoo.names()}


def restore_flags(model: nn.Module, saved: dict) -> None:
    """Put back flags saved with :func:`fused_flags` (test hygiene, not a check)."""
    for name, m in hooks.attention_modules(model).items():
        if saved[name] is UNSET:
            m.__dict__.pop("fused_attn", None)
        else:
            m.fused_attn = saved[name]


@pytest.fixture
def vit(models):
    """The attention family's model; its own flags are put back after the test."""
    model = models[next(f for f in zoo.names() if hooks.attention_modules(models[f]))]
    saved = fused_flags(model)
    yield model
    restore_flags(model, saved)


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


@pytest.mark.parametrize("known", [[True], [False], [True, False]])
def test_capture_attention_matches_manual_softmax_and_restores_fused(vit, known):
    model = vit
    expected = set_flags(model, known)
    x = torch.rand(2, 1, 28, 28)
    with hooks.capture(model, ["net.blocks.1.attn"]) as rec, \
            hooks.capture_attention(model) as probs:
        assert all(m.fused_attn is False for m in hooks.attention_modules(model).values())
        model(x)
    assert set(probs) == set(expected)
    attn = model.net.blocks[1].attn
    z = rec["net.blocks.1.attn"].input
    b, t, c = z.shape
    q, k, _ = attn.qkv(z).reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    ref = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)
    torch.testing.assert_close(probs["net.blocks.1.attn"], ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(probs["net.blocks.1.attn"].sum(-1),
                               torch.ones(b, attn.num_heads, t))
    assert_clean(model, expected)


def test_capture_attention_without_attention_is_a_clear_error(models, vit):
    without = next(m for m in models.values() if not hooks.attention_modules(m))
    with pytest.raises(ValueError, match="no timm Attention"):
        with hooks.capture_attention(without):
            pass
    expected = set_flags(vit, [True, False, UNSET])
    with pytest.raises(ValueError, match="not a timm Attention"):
        with hooks.capture_attention(vit, ["net.blocks.0.attn", "net.blocks.0.mlp"]):
            pass
    assert_clean(vit, expected)


def test_evaluating_restores_training_flags(models):
    model = models[next(f for f in zoo.names() if zoo.families()[f].mixing_kind == "conv")]
    model.train()
    model.net.head.eval()
    try:
        with hooks.evaluating(model):
            assert not any(m.training for m in model.modules())
        assert model.training and model.net.stages.training and not model.net.head.training
    finally:
        model.eval()


@pytest.mark.parametrize("family", zoo.names())
def test_no_hook_survives_extract_normal_bad_input_and_raising_module(family, models):
    model = models[family]
    saved = fused_flags(model)
    fused = set_flags(model, [True, False])     # known values, both kinds
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
            assert len(mixing.extract(model, x)) == len(mixing.layers(model))
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
        restore_flags(model, saved)
    assert model.training is False


@pytest.mark.parametrize("known", [[False], [UNSET], [True, UNSET, False]])
def test_attention_flag_restored_to_known_value_also_when_forward_raises(vit, known):
    model = vit
    x = torch.rand(1, 1, 28, 28)
    expected = set_flags(model, known)
    with hooks.capture_attention(model) as probs:
        assert all(m.fused_attn is False for m in hooks.attention_modules(model).values())
        model(x)
    assert len(probs) == len(expected)
    assert_clean(model, expected)        # an unset flag comes back unset (UNSET), not False

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    model.net.head.forward = boom
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with hooks.capture_attention(model):
                model(x)
        assert_clean(model, expected)
        with pytest.raises(RuntimeError, match="boom"):
            with hooks.unfused_attention(model):
                assert all(m.fused_attn is False for m in hooks.attention_modules(model).values())
                model(x)
        assert_clean(model, expected)
        with pytest.raises(RuntimeError, match="boom"):
            mixing.extract(model, x)
        assert_clean(model, expected)
    finally:
        del model.net.head.forward
