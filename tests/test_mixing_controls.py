"""Controls for mixing metrics: references with closed forms, input dependence where it lives
(per channel, gMLP's gate, per head), per-template locality and the controls table."""
import copy
import itertools
import math

import numpy as np
import pytest
import torch

from probe import hooks, mixing, zoo
from probe.models.fnet import FourierMixing
from probe.models.synthesizer import synthesizer_mixer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def x():
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _pairwise_mean_px(h, w, py, px):
    """Mean distance over all ordered pairs of token centres, by plain loops (numpy)."""
    cells = [(i * py, j * px) for i in range(h) for j in range(w)]
    return float(np.mean([math.hypot(a[0] - b[0], a[1] - b[1])
                          for a, b in itertools.product(cells, cells)]))


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize("grid,image", [((7, 7), (28, 28)), ((5, 8), (20, 40))])
def test_uniform_distance_and_locality_are_their_closed_forms(grid, image):
    u = mixing.references(grid, image_size=image)["uniform"]
    py, px = image[0] / grid[0], image[1] / grid[1]
    assert float(mixing.mean_mixing_distance(u, unit="px")) == pytest.approx(
        _pairwise_mean_px(*grid, py, px), rel=1e-6)
    # locality = share of token pairs within the radius; per row = share of tokens near it
    cells = [(i * py, j * px) for i in range(grid[0]) for j in range(grid[1])]
    near = np.array([[math.hypot(a[0] - b[0], a[1] - b[1]) <= 8.0 for b in cells] for a in cells])
    assert float(mixing.locality(u, radius=8.0, unit="px")) == pytest.approx(near.mean(), rel=1e-6)
    rows = mixing.template_locality(u, 8.0)[0, 0]
    torch.testing.assert_close(rows.double(), torch.from_numpy(near.mean(1)), atol=1e-6, rtol=1e-6)


def test_uniform_on_the_zoo_grid_is_the_issue_number():
    u = mixing.references((7, 7), image_size=(28, 28))["uniform"]
    assert float(mixing.mean_mixing_distance(u, unit="px")) == pytest.approx(14.44, abs=0.005)


def _gauss_mass_within(radius):
    """|w| mass of a unit Gaussian on the unbounded integer grid within ``radius`` tokens."""
    ks = range(-12, 13)
    w = {(i, j): math.exp(-(i * i + j * j) / 2) for i in ks for j in ks}
    return sum(v for k, v in w.items() if math.hypot(*k) <= radius + 1e-9) / sum(w.values())


def test_local_reference_is_local():
    refs = mixing.references((15, 15), image_size=(30, 30))
    local = refs["local"]
    torch.testing.assert_close(local.matrix.sum(-1), torch.ones(1, 1, 225))
    # the centre row sits far from the borders: its mass within r is the unbounded closed form
    for r_tokens in (1, 2, 3):
        rows = mixing.template_locality(local, 2.0 * r_tokens, power=1)[0, 0]
        assert float(rows[7 * 15 + 7]) == pytest.approx(_gauss_mass_within(r_tokens), abs=1e-6)
        assert float(rows.min()) >= _gauss_mass_within(r_tokens) - 1e-6     # borders only add
    assert _gauss_mass_within(2) == pytest.approx(0.866, abs=1e-3)
    assert float(mixing.locality(local, radius=2.0, unit="tokens")) > 0.86
    assert float(mixing.locality(local, radius=3.0, unit="tokens")) > 0.98
    assert float(mixing.locality(refs["uniform"], radius=2.0, unit="tokens")) < 0.06
    assert float(mixing.mean_mixing_distance(refs["identity"])) == 0.0
    assert float(mixing.locality(refs["identity"], radius=0.0)) == 1.0


def test_dft_reference_is_the_matrix_fnet_applies():
    for grid in [(7, 7), (4, 6)]:
        dft = mixing.references(grid, names=["dft"])["dft"]
        tokens = torch.randn(2, grid[0] * grid[1], 5, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(dft.apply(tokens), FourierMixing(grid)(tokens),
                                   atol=1e-5, rtol=1e-5)
        assert float(mixing.input_dependence(dft)) == 0.0
    fnet = zoo.build("fnet", seed=0).eval()
    (m,) = mixing.extract(fnet, torch.rand(1, 1, 28, 28), layers=[0])
    ref = mixing.references(like=m, names=["dft"])["dft"]
    torch.testing.assert_close(ref.matrix, m.matrix)
    assert ref.image_size == (28, 28) and ref.kind == "fourier" and ref.static


def test_random_reference_has_the_requested_norm_and_is_seeded():
    like = torch.randn(3, 2, 50, 50) * 0.3
    like[:, :, 0] = 100.0                                       # prefix row: not in the norm
    m = mixing.MixingMap("l", "attention", like, (7, 7), 1, image_size=(28, 28))
    want = float(like[..., 1:, 1:].double().pow(2).sum((-2, -1)).mean().sqrt())
    a = mixing.references(like=m, seed=3)["random"]
    assert a.matrix.shape == (1, 1, 49, 49) and a.image_size == (28, 28)
    assert float(a.matrix.double().norm()) == pytest.approx(want, rel=1e-5)
    b = mixing.references(like=m, seed=3)["random"]
    c = mixing.references(like=m, seed=4)["random"]
    assert torch.equal(a.matrix, b.matrix) and not torch.equal(a.matrix, c.matrix)
    plain = mixing.references((10, 10), seed=0)["random"].matrix
    assert abs(float(plain.mean())) < 0.05 and float(plain.std()) == pytest.approx(1.0, abs=0.05)


def test_references_on_a_strided_grid_and_bad_input():
    refs = mixing.references((4, 4), input_grid=(8, 8), image_size=(8, 8))
    assert set(refs) == {"uniform", "random", "local"}          # dft/identity need a square map
    assert refs["local"].matrix.shape == (1, 1, 16, 64) and refs["local"].in_grid == (8, 8)
    with pytest.raises(ValueError, match="unknown reference"):
        mixing.references((3, 3), names=["fourier"])
    with pytest.raises(ValueError, match="pass grid"):
        mixing.references()


# ----------------------------------------------------------------------------- input dependence


def test_fixed_matrix_has_input_dependence_exactly_zero(x):
    net = synthesizer_mixer(10, 1, 28).eval()
    with torch.no_grad():
        for blk in net.blocks:
            blk.mlp_tokens.logits.normal_(0, 1.0)
    maps = mixing.extract(net, x, per_channel=True)
    assert maps[0].matrix.shape[0] == len(x)                      # one map per image...
    for m in maps:
        assert mixing.input_dependence(m).tolist() == [0.0]       # ...all equal: exactly 0
        assert set(mixing.input_dependence(m, per_channel=True).tolist()) == {0.0}
    for ref in mixing.references((7, 7), image_size=(28, 28)).values():
        copies = ref.matrix.expand(5, -1, -1, -1)                # one fixed matrix, 5 inputs
        assert mixing.input_dependence(copies).tolist() == [0.0]
    # the bitwise check matters: the mean of identical float64 values is not always exact
    val = torch.full((3, 1, 2, 2), 0.1, dtype=torch.float64)
    assert mixing.input_dependence(val).tolist() == [0.0]


def test_attention_is_input_dependent_per_head_and_layer(x):
    vit = zoo.build("vit", seed=0).eval()
    maps = mixing.extract(vit, x)
    heads = vit.net.blocks[0].attn.num_heads
    per_layer = [mixing.input_dependence(m) for m in maps]
    assert all(d.shape == (heads,) and (d > 0).all() for d in per_layer)
    rows = mixing.summarize(maps)
    assert [len(r["input_dependence_per_head"]) for r in rows] == [heads] * len(maps)
    torch.testing.assert_close(torch.tensor(rows[1]["input_dependence_per_head"]), per_layer[1])
    with pytest.raises(ValueError, match="per-head values"):
        mixing.input_dependence(maps[0], per_channel=True)


def test_per_channel_jacobians_average_back_to_the_channel_mean(x):
    mixer = zoo.build("mixer", seed=0).eval()
    plain = mixing.extract(mixer, x[:2], layers=[1])[0]
    m = mixing.extract(mixer, x[:2], layers=[1], per_channel=True)[0]
    c = mixer.net.embed_dim
    assert m.channels.shape == (2, c, 49, 49)
    torch.testing.assert_close(m.matrix, plain.matrix)
    torch.testing.assert_close(m.channels.mean(1), m.matrix[:, 0], atol=1e-6, rtol=1e-5)
    # independent path: autograd row Jacobians of the module on the captured input
    mlp = mixer.net.blocks[1].mlp_tokens
    with hooks.capture(mixer, [m.layer]) as rec:
        mixer(x[:2])
    z = rec[m.layer].input
    rows = mixing.channel_jacobian(lambda v: mlp(v[None])[0], z.reshape(-1, 49))
    torch.testing.assert_close(m.channels, rows.reshape(2, c, 49, 49), atol=1e-6, rtol=1e-5)
    grouped = mixing.extract(mixer, x[:2], layers=[1], per_channel=8)[0]
    assert grouped.channels.shape == (2, 8, 49, 49)
    torch.testing.assert_close(grouped.channels[:, 2], m.channels[:, 32:48].mean(1),
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grouped.channels.mean(1), m.matrix[:, 0], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="divide the 128 channels"):
        mixing.extract(mixer, x[:2], layers=[1], per_channel=7)


def test_per_channel_input_dependence_and_its_distribution(x):
    mixer = zoo.build("mixer", seed=0).eval()
    (m,) = mixing.extract(mixer, x, layers=[0], per_channel=True)
    per = mixing.input_dependence(m, per_channel=True)
    assert per.shape == (128,) and (per > 0).all()
    d = mixing.distribution(per)
    assert d["n"] == 128 and d["min"] <= d["q05"] <= d["q25"] <= d["q50"] <= d["q75"] <= d["max"]
    assert d["mean"] == pytest.approx(float(per.double().mean()), rel=1e-6)
    assert d["q50"] == pytest.approx(float(per.double().median()), rel=0.2)
    row = mixing.summarize([m])[0]
    assert row["input_dependence_per_channel"] == d
    assert "input_dependence_per_channel" not in mixing.summarize(mixing.extract(mixer, x[:2]))[0]
    resmlp = mixing.extract(zoo.build("resmlp", seed=0).eval(), x, layers=[0])[0]
    assert mixing.input_dependence(resmlp, per_channel=True).tolist() == [0.0]   # static kind


# ----------------------------------------------------------------------------- gMLP's gate


def _sgu_output_given_vhat(sgu, z, vhat):
    """The real SGU's output with its norm's output replaced by ``vhat`` (a forward hook)."""
    handle = sgu.norm.register_forward_hook(lambda mod, inp, out: vhat)
    try:
        return sgu(z)
    finally:
        handle.remove()


def test_gmlp_gated_map_is_the_jacobian_of_its_token_path(x):
    model = zoo.build("gmlp", seed=0).eval()
    with torch.no_grad():      # timm initialises proj ~ N(0, 1e-6): give the mixing a visible size
        for blk in model.net.blocks:
            blk.mlp_channels.gate.proj.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    (m,) = mixing.extract(model, x[:2], layers=[1], gated=True, per_channel=True)
    assert m.gated and not m.static and m.matrix.shape == (2, 1, 49, 49)
    sgu = dict(model.named_modules())[m.layer]
    with hooks.capture(model, [m.layer]) as rec:
        model(x[:2])
    z = rec[m.layer].input.double()[:1]                                       # [1, T, 2D]
    sgu64 = copy.deepcopy(sgu).double()
    vhat = sgu64.norm(z.chunk(2, -1)[1]).detach()
    d = vhat.shape[-1]
    for c in (0, 17, d - 1):
        def column(col, c=c):
            v = vhat.clone()
            v[0, :, c] = col
            return _sgu_output_given_vhat(sgu64, z, v)[0]                      # [T, D]
        jac = torch.autograd.functional.jacobian(column, vhat[0, :, c], vectorize=True,
                                                 strategy="forward-mode").detach()   # [T, D, T]
        torch.testing.assert_close(jac[:, c, :], m.channels[0, c].double(), atol=1e-6, rtol=1e-5)
        others = torch.cat([jac[:, :c], jac[:, c + 1:]], 1)
        assert float(others.abs().max()) == 0.0                 # block diagonal over channels
        # and a finite difference through the real module for one input token
        eps, s = 1e-6, 20
        up, down = vhat.clone(), vhat.clone()
        up[0, s, c] += eps
        down[0, s, c] -= eps
        with torch.no_grad():
            fd = (_sgu_output_given_vhat(sgu64, z, up)
                  - _sgu_output_given_vhat(sgu64, z, down))[0, :, c]
        torch.testing.assert_close(fd / (2 * eps), m.channels[0, c, :, s].double(),
                                   atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(m.channels.mean(1), m.matrix[:, 0], atol=1e-6, rtol=1e-5)
    # the vmap(jacrev) effective view agrees over all channels
    torch.testing.assert_close(mixing.effective(model, x[:2], m.layer), m.matrix,
                               atol=1e-6, rtol=1e-4)


def test_gmlp_input_dependence_is_positive_only_with_the_gate(x):
    model = zoo.build("gmlp", seed=0).eval()            # timm's init, not perturbed
    static = mixing.extract(model, x)
    gated = mixing.extract(model, x, gated=True)
    assert all(m.static and float(mixing.input_dependence(m)) == 0.0 for m in static)
    deps = [float(mixing.input_dependence(m)) for m in gated]
    assert all(d > 1e-4 for d in deps), deps
    for s, g in zip(static, gated):                      # same layers, same projection
        assert s.layer == g.layer and torch.equal(s.matrix[0, 0], g.native["projection"])
    with pytest.raises(ValueError, match="per_channel=True"):
        mixing.input_dependence(gated[0], per_channel=True)


# ----------------------------------------------------------------------------- templates


def test_template_locality_per_template(x):
    spike = torch.zeros(3, 7, 7)
    spike[0, 3, 3] = 1.0                                 # one token: fully local
    spike[1] = 1.0                                       # flat: tied peaks, centre (3, 3)
    spike[2, 0, 0], spike[2, 6, 6] = 1.0, 1.0            # two far tokens: half the energy
    loc = mixing.template_locality(spike, 4.0, templates="fc1", image_size=28)
    disc = sum(1 for i in range(7) for j in range(7) if math.hypot(i - 3, j - 3) <= 1.0)
    torch.testing.assert_close(loc, torch.tensor([1.0, disc / 49, 0.5]))
    mixer = zoo.build("mixer", seed=0).eval()
    (m,) = mixing.extract(mixer, x[:1], layers=[0])
    per = mixing.template_locality(m, 4.0, templates="fc1")
    assert per.shape == (64,) and ((per > 0) & (per <= 1)).all()
    assert mixing.distribution(per)["n"] == 64
    rows = mixing.template_locality(m, 4.0)
    assert rows.shape == (1, 1, 49)
    with pytest.raises(ValueError, match="no first-layer token templates"):
        mixing.template_locality(mixing.references((7, 7))["uniform"], 1.0, templates="fc1",
                                 unit="tokens")


# ----------------------------------------------------------------------------- controls table


def test_controls_table_trained_init_references(x):
    trained = mixing.extract(zoo.build("mixer", seed=1).eval(), x[:2])
    init = mixing.extract(zoo.build("mixer", seed=0).eval(), x[:2])
    rows = mixing.controls(trained, init)
    assert [r["layer"] for r in rows] == [m.layer for m in trained]
    refs = mixing.references((7, 7), image_size=(28, 28))
    r = rows[0]
    assert r["metric"] == "mean_mixing_distance" and r["unit"] == "px" and r["side"] == 28.0
    assert r["trained"] == pytest.approx(float(mixing.mean_mixing_distance(trained[0], unit="px")
                                               .mean()), rel=1e-6)
    assert r["init"] == pytest.approx(float(mixing.mean_mixing_distance(init[0], unit="px")
                                            .mean()), rel=1e-6)
    for name in ("uniform", "dft", "local"):
        assert r[name] == pytest.approx(float(mixing.mean_mixing_distance(refs[name], unit="px")),
                                        rel=1e-6)
        assert r[name + "_fraction"] == pytest.approx(r[name] / 28, rel=1e-9)
    assert r["trained_fraction"] == pytest.approx(r["trained"] / 28)
    dep = mixing.controls(trained, init, metric="input_dependence")[0]
    assert dep["trained"] > 0 and [dep[k] for k in ("uniform", "random", "dft", "local")] == [0.0] * 4
    loc = mixing.controls(trained, metric="locality", radius=4.0, references=["local", "identity"])[0]
    assert loc["init"] is None and loc["identity"] == 1.0 and loc["radius"] == 4.0
    with pytest.raises(ValueError, match="needs radius"):
        mixing.controls(trained, metric="locality")
    with pytest.raises(ValueError, match="no layer"):
        mixing.controls(trained, init[:1])
    with pytest.raises(ValueError, match="unknown metric"):
        mixing.controls(trained, metric="reach")


def test_controls_per_head_and_on_a_conv_stage(x):
    vit = zoo.build("vit", seed=0).eval()
    maps = mixing.extract(vit, x[:2], layers=[0])
    (row,) = mixing.controls(maps, metric="entropy_normalized")
    assert len(row["trained_per_head"]) == vit.net.blocks[0].attn.num_heads
    assert row["uniform"] == pytest.approx(1.0)
    cnn = zoo.build("cnn", seed=0).eval()
    stage = mixing.extract(cnn, x[:1], layers=[0])
    (crow,) = mixing.controls(stage, unit="tokens")
    assert crow["dft"] is None and crow["dft_fraction"] is None and crow["side"] == 28.0
    assert 0 < crow["local"] < crow["uniform"]
