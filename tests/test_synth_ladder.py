"""The Synthesizer ladder's models (probe/models/synth_ladder.py): Mixer's body with one
token-mixing change per rung, each rung's mixing as probe.mixing reads it, the parameter band,
and the variants' registration for the analyses and the training cells."""
import pytest
import torch

from analyses import common
from analyses.cells.training import VARIANT_LR_FAMILY, build_model, cell_families
from probe import hooks, mixing, zoo
from probe.models.synth_ladder import (DENSE_HIDDEN, HEADS, QK_DIM, RUNGS, DenseSynthesizer,
                                       DotProductAttention, LadderBlock, LinearTokenMixing,
                                       RandomSynthesizer, SoftmaxTokenMixing, ladder_mixer)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]

RUNG_NAMES = list(RUNGS)
FIXED = ["token_linear", "token_softmax", "synth_random"]
GENERATED = ["synth_dense", "dot_attention"]
T, C = 49, 128


@pytest.fixture(scope="module")
def x():
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def models():
    return {n: common.build(n, seed=0).eval() for n in RUNG_NAMES}


def test_ladder_is_registered_for_analyses_and_cells():
    assert common.LADDER == ("mixer", *RUNG_NAMES)
    for n in RUNG_NAMES:
        assert n in common.VARIANTS and n in common.LABELS and n in common.COLORS
        assert VARIANT_LR_FAMILY[n] == "mixer" and n in cell_families()
    assert len({common.COLORS[n] for n in common.LADDER}) == len(common.LADDER)
    # build_model (the cells) and common.build give the same seeded initialisation
    a, b = build_model("synth_random", seed=3), common.build("synth_random", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = common.build("synth_random", seed=4)
    assert not torch.equal(a.net.blocks[0].mixing.logits, c.net.blocks[0].mixing.logits)
    with pytest.raises(ValueError, match="unknown ladder rung"):
        ladder_mixer("mixer", 10, 1, 28)


def test_same_body_only_the_token_mixing_differs(models):
    mixer = zoo.build("mixer", seed=0).net
    shared = {k: v.shape for k, v in mixer.state_dict().items() if "mlp_tokens" not in k}
    for n, model in models.items():
        state = model.net.state_dict()
        body = {k: v.shape for k, v in state.items() if ".mixing." not in k}
        assert body == shared, n                       # stem, norms, channel MLPs, head: same
        assert all(isinstance(b, LadderBlock) for b in model.net.blocks)
        assert model.net.blocks[0].mlp_channels.fc1.weight.shape == (512, C)


@pytest.mark.parametrize("name", RUNG_NAMES)
def test_forward_shapes_and_gradients(models, x, name):
    model = common.build(name, seed=0).train()
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    # the head starts at zero (timm's Mixer init): use a loss that reaches every layer
    model.net.head.weight.data.normal_(0, 0.1)
    model(x).logsumexp(-1).sum().backward()
    dead = [k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    block = models[name].net.blocks[0]
    with torch.no_grad():
        tokens = torch.randn(2, T, C)
        assert block.mixing(tokens).shape == (2, T, C)


def test_parameter_counts_lie_in_the_band(models):
    base = zoo.count_params(zoo.build("mixer", seed=0))
    counts = {n: zoo.count_params(m) for n, m in models.items()}
    for n, count in counts.items():
        assert 0.75 * base <= count <= 1.25 * base, (n, count, base)
    # each rung's token mixer per block, counted by hand
    per_block = {"token_linear": T * T + T, "token_softmax": T * T + T,
                 "synth_random": C * C + C + HEADS * T * T,
                 "synth_dense": C * C + C + T * C + C * DENSE_HIDDEN + DENSE_HIDDEN
                 + DENSE_HIDDEN * HEADS * T + HEADS * T,
                 "dot_attention": C * C + C + T * C + 2 * (C * QK_DIM + QK_DIM)}
    token_mlp = 2 * T * 64 + 64 + T
    for n, extra in per_block.items():
        assert counts[n] == base - 4 * token_mlp + 4 * extra, n


def test_linear_rung_starts_like_mixers_layers():
    """(b): R xavier-uniform (gain 1 on a square matrix: the tokens' variance is kept), bias 0."""
    torch.manual_seed(0)
    m = LinearTokenMixing(C, T)
    bound = (6 / (2 * T)) ** 0.5
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound
    assert torch.equal(m.bias, torch.zeros(T))
    tokens = torch.randn(64, T, C)
    assert m(tokens).var().item() == pytest.approx(1.0, rel=0.15)
    torch.testing.assert_close(m(tokens), m.weight @ tokens)


def test_softmax_rungs_rows_sum_to_one_and_logits_are_standard_normal(models):
    logits = torch.cat([b.mixing.weight.flatten() for b in models["token_softmax"].net.blocks])
    assert logits.mean().item() == pytest.approx(0.0, abs=0.03)
    assert logits.std().item() == pytest.approx(1.0, abs=0.03)      # N(0, 1), not N(0, 0.02)
    r_logits = torch.cat([b.mixing.logits.flatten() for b in models["synth_random"].net.blocks])
    assert r_logits.std().item() == pytest.approx(1.0, abs=0.03)
    for name in ("token_softmax", "synth_random", "synth_dense", "dot_attention"):
        mod = models[name].net.blocks[1].mixing
        tokens = torch.randn(3, T, C)
        a = mod.token_mixing(tokens)
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
    # softmax(R) with N(0, 1) logits is far from the plain average N(0, 0.02) logits give
    a = models["token_softmax"].net.blocks[0].mixing.token_mixing()[0, 0]
    assert (a.max(-1).values > 3 / T).all()
    old = common.build("synth", seed=0).net.blocks[0].mlp_tokens.mixing_matrix()
    assert (old.max(-1).values < 1.2 / T).all()


def test_softmax_rung_is_the_linear_rung_with_a_softmax():
    torch.manual_seed(0)
    lin, soft = LinearTokenMixing(C, T), SoftmaxTokenMixing(C, T)
    with torch.no_grad():
        lin.weight.copy_(soft.weight.softmax(-1))
        lin.bias.normal_()
        soft.bias.copy_(lin.bias)
    tokens = torch.randn(2, T, C)
    torch.testing.assert_close(soft(tokens), lin(tokens))


def test_synthesizer_random_is_per_head_over_a_value_projection():
    torch.manual_seed(0)
    m = RandomSynthesizer(C, T)
    assert m.logits.shape == (HEADS, T, T) and m.value.weight.shape == (C, C)
    tokens = torch.randn(2, T, C)
    v = m.value(tokens)
    d = C // HEADS
    expected = torch.cat([m.logits[h].softmax(-1) @ v[..., h * d:(h + 1) * d]
                          for h in range(HEADS)], -1)
    torch.testing.assert_close(m(tokens), expected)
    assert not torch.allclose(m.logits[0].softmax(-1), m.logits[1].softmax(-1))   # heads differ


def test_generated_rungs_logits_come_from_the_tokens():
    torch.manual_seed(0)
    tokens = torch.randn(2, T, C)
    dense = DenseSynthesizer(C, T)
    z = tokens + dense.position
    h = torch.relu(dense.generate[0](z))
    logits = dense.generate[2](h).reshape(2, T, HEADS, T).transpose(1, 2)
    torch.testing.assert_close(dense.token_mixing(tokens), logits.softmax(-1))
    attn = DotProductAttention(C, T)
    z = tokens + attn.position
    q = attn.query(z).reshape(2, T, HEADS, -1).transpose(1, 2)
    k = attn.key(z).reshape(2, T, HEADS, -1).transpose(1, 2)
    probs = (q @ k.transpose(-1, -2) / (QK_DIM // HEADS) ** 0.5).softmax(-1)
    torch.testing.assert_close(attn.token_mixing(tokens), probs)
    v = attn.value(tokens).reshape(2, T, HEADS, -1).transpose(1, 2)
    torch.testing.assert_close(attn(tokens), (probs @ v).transpose(1, 2).reshape(2, T, C))
    with pytest.raises(ValueError, match="depends on the input"):
        attn.token_mixing(None)


@pytest.mark.parametrize("name", RUNG_NAMES)
def test_extract_reads_each_rungs_mixing(models, x, name):
    model = models[name]
    maps = mixing.extract(model, x)
    assert [m.layer for m in maps] == [f"net.blocks.{i}.mixing" for i in range(4)]
    assert [m.block for m in maps] == [f"net.blocks.{i}" for i in range(4)]
    heads = 1 if name in ("token_linear", "token_softmax") else HEADS
    for i, m in enumerate(maps):
        module = dict(model.named_modules())[m.layer]
        assert m.grid == (7, 7) and m.prefix_tokens == 0 and m.heads == heads
        if name in FIXED:
            assert m.kind == "token-linear" and m.static and m.matrix.shape == (1, heads, T, T)
            torch.testing.assert_close(m.matrix, module.token_mixing().detach())
        else:
            assert m.kind == "attention" and not m.static and m.matrix.shape == (4, heads, T, T)
    # the map is what the layer applies: rebuild the layer's output from its captured input
    m = maps[2]
    module = dict(model.named_modules())[m.layer]
    with hooks.capture(model, [m.layer]) as rec, torch.no_grad():
        model(x)
    z, y = rec[m.layer].input, rec[m.layer].output
    if heads == 1:
        torch.testing.assert_close(m.apply(z), y, atol=1e-5, rtol=1e-4)
    else:
        v = module.value(z).reshape(4, T, heads, -1).transpose(1, 2)
        out = m.apply(v).transpose(1, 2).reshape(4, T, C)
        torch.testing.assert_close(out, y, atol=1e-5, rtol=1e-4)


def test_fixed_rungs_have_input_dependence_exactly_zero_generated_ones_above(models, x):
    for name in FIXED:
        for m in mixing.extract(models[name], x, per_channel=True):
            assert set(mixing.input_dependence(m).tolist()) == {0.0}
            assert set(mixing.input_dependence(m, per_channel=True).tolist()) == {0.0}
    for name in GENERATED:
        for m in mixing.extract(models[name], x):
            dep = mixing.input_dependence(m)
            assert dep.shape == (HEADS,) and (dep > 1e-4).all(), (name, dep)


def test_effective_view_of_the_ladder(models, x):
    """mixing.effective works on the ladder's [B, T, C] modules: for the channel-wise rungs it
    equals the matrix, for the value-projected ones it is the channel-mean response."""
    for name in ("token_linear", "token_softmax"):
        (m,) = mixing.extract(models[name], x[:2], layers=[1])
        e = mixing.effective(models[name], x[:2], 1)
        torch.testing.assert_close(e, m.matrix.expand(2, -1, -1, -1), atol=1e-6, rtol=1e-5)
    e = mixing.effective(models["dot_attention"], x[:2], 0)
    assert e.shape == (2, 1, T, T) and torch.isfinite(e).all()
