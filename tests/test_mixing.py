"""Token-mixing extraction: every family, the linear-kind invariants, metrics on hand-made maps."""
import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from probe import hooks, mixing, plots, zoo
from probe.mixing import __main__ as mixing_cli
from probe.mixing import grid, jacobian

GRID = (7, 7)   # every zoo family: 28x28 input, 4x4 patches (the CNN's last stage: 7x7 too)
LAYER_PATH = {"token-mlp": "net.blocks.{}.mlp_tokens", "token-linear": "net.blocks.{}.linear_tokens",
              "spatial-gating": "net.blocks.{}.mlp_channels.gate", "attention": "net.blocks.{}.attn",
              "fourier": "net.blocks.{}.mixing"}
MODULE_TYPE = {"token-mlp": "Mlp", "token-linear": "Linear", "spatial-gating": "SpatialGatingUnit",
               "attention": "Attention", "fourier": "FourierMixing"}
# families whose token-mixing module differs from their kind's first family's
FAMILY_LAYER = {"extattn": ("net.blocks.{}.attn", "ExternalAttention"),
                "repmlp": ("net.blocks.{}.mixing", "RepTokenMixing"),
                "fnet2d": ("net.blocks.{}.mixing", "TokenChannelFourierMixing"),
                "synth": ("net.blocks.{}.mlp_tokens", "RandomSynthesizerMixing")}
HEADS = {"fnet2d": 2}       # Re F_s and Im F_s (probe.models.fnet2d)


def kind_of(family: str) -> str:
    return zoo.families()[family].mixing_kind


def family_of_kind(kind: str) -> str:
    """The zoo family whose token mixing is ``kind``."""
    return next(f for f in zoo.names() if kind_of(f) == kind)


TOKEN_FAMILIES = [f for f in zoo.names() if kind_of(f) not in ("conv", "dense")]
DENSE_FAMILIES = [f for f in zoo.names() if kind_of(f) == "dense"]
CONV_FAMILIES = [f for f in zoo.names() if kind_of(f) == "conv"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    return {f: zoo.build(f, seed=1).eval() for f in zoo.names()}


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_every_zoo_kind_is_covered():
    assert {kind_of(f) for f in TOKEN_FAMILIES} <= set(LAYER_PATH)
    assert {kind_of(f) for f in zoo.names()} <= set(mixing.KINDS)


@pytest.mark.parametrize("family", TOKEN_FAMILIES)
def test_extract_token_families(family, models, x):
    kind = kind_of(family)
    model = models[family]
    depth = len(model.net.blocks)
    heads = model.net.blocks[0].attn.num_heads if kind == "attention" else HEADS.get(family, 1)
    prefix = int(getattr(model.net, "num_prefix_tokens", 0))
    path, module_type = FAMILY_LAYER.get(family, (LAYER_PATH[kind], MODULE_TYPE[kind]))
    maps = mixing.extract(model, x)
    assert [m.layer for m in maps] == [path.format(i) for i in range(depth)]
    assert [m.depth for m in maps] == list(range(depth))
    named = dict(model.named_modules())
    t = GRID[0] * GRID[1] + prefix
    for m in maps:
        assert m.kind == kind and m.grid == GRID and m.prefix_tokens == prefix
        assert type(named[m.layer]).__name__ == module_type
        b = 1 if m.static else len(x)
        assert m.matrix.shape == (b, heads, t, t)
        assert torch.isfinite(m.matrix).all()
        assert m.block == ".".join(m.layer.split(".")[:3])
        assert m.image_size == (28, 28) and m.px_per_token == (4.0, 4.0)


@pytest.mark.parametrize("family", CONV_FAMILIES)
def test_extract_cnn_stages(family, models, x):
    model = copy.deepcopy(models[family])
    with torch.no_grad():   # zero-initialised residual branches would make every stage ~identity
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(0.5)
    maps = mixing.extract(model, x[:1])
    assert [m.layer for m in maps] == ["net.stages.0", "net.stages.1", "net.stages.2"]
    assert [m.grid for m in maps] == [(14, 14), (7, 7), (7, 7)]
    assert [m.in_grid for m in maps] == [(28, 28), (14, 14), (7, 7)]
    assert [m.px_per_token for m in maps] == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert maps[1].matrix.shape == (1, 1, 49, 196)
    assert all(m.kind == "conv" for m in maps)
    assert set(maps[0].native) == {"0.conv1", "0.conv2", "0.downsample.0"}
    # a conv stage mixes locally: nothing beyond its receptive field (two 3x3 convs,
    # the first with stride 2: at most 3.5 input pixels from the output token's centre)
    d = mixing.mean_mixing_distance(maps[0])
    assert 0 < float(d) < 3.5
    assert float(mixing.locality(maps[0], radius=3.5 * math.sqrt(2) + 1e-6)) == pytest.approx(1.0)
    assert float(mixing.locality(maps[2], radius=2 * math.sqrt(2) + 1e-6)) == pytest.approx(1.0)


# ---------------------------------------------------------------- invariants of the linear kinds


def test_token_linear_reproduces_resmlp_output(models, x):
    model = models[family_of_kind("token-linear")]
    maps = mixing.extract(model, x)
    names = [m.layer for m in maps]
    with hooks.capture(model, names) as rec:
        model(x)
    for m in maps:
        z, y = rec[m.layer].input, rec[m.layer].output          # [B, C, T]
        torch.testing.assert_close(m.apply(z.transpose(1, 2)), y.transpose(1, 2),
                                   atol=1e-5, rtol=1e-5)


def test_spatial_gating_reproduces_gmlp_projection(models, x):
    model = copy.deepcopy(models[family_of_kind("spatial-gating")])
    with torch.no_grad():  # random init has proj ~ 1e-6: give it a visible mixing
        for blk in model.net.blocks:
            blk.mlp_channels.gate.proj.weight.normal_(0, 0.2)
    maps = mixing.extract(model, x)
    names = [m.layer for m in maps] + [m.layer + ".proj" for m in maps]
    with hooks.capture(model, names) as rec:
        model(x)
    for m in maps:
        sgu = dict(model.named_modules())[m.layer]
        u, v = rec[m.layer].input.chunk(2, dim=-1)
        vn = sgu.norm(v)
        mixed = m.apply(vn)                                       # [B, T, C/2]
        torch.testing.assert_close(mixed, rec[m.layer + ".proj"].output.transpose(1, 2),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(u * mixed, rec[m.layer].output, atol=1e-5, rtol=1e-5)
        # the effective (Jacobian) view of the gate is the projection scaled by the mean gate
        eff = mixing.effective(model, x, m.layer)[:, 0]
        torch.testing.assert_close(eff, m.matrix[:, 0] * u.mean(-1)[:, :, None],
                                   atol=1e-5, rtol=1e-4)


def test_attention_probabilities_reproduce_vit_attention_output(models, x):
    model = models[family_of_kind("attention")]
    maps = mixing.extract(model, x)
    names = [m.layer for m in maps]
    with hooks.capture(model, names) as rec:   # fused path: probabilities came from the unfused one
        model(x)
    for m in maps:
        attn = dict(model.named_modules())[m.layer]
        z = rec[m.layer].input
        b, t, c = z.shape
        _, _, v = attn.qkv(z).reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        heads = m.apply(v)                                         # [B, H, T, D]
        out = attn.proj(heads.transpose(1, 2).reshape(b, t, c))
        torch.testing.assert_close(out, rec[m.layer].output, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(m.matrix.sum(-1), torch.ones(b, attn.num_heads, t))
        assert float(mixing.input_dependence(m).min()) > 0


def test_fourier_reproduces_fnet_mixing(models, x):
    model = models[family_of_kind("fourier")]
    maps = mixing.extract(model, x)
    with hooks.capture(model, [m.layer for m in maps]) as rec:
        model(x)
    # independent reference: column s = numpy's orthonormal 2-D DFT of the one-hot grid image e_s
    h, w = GRID
    basis = np.eye(h * w).reshape(h * w, h, w)
    dft = np.stack([np.fft.fft2(e, norm="ortho").ravel() for e in basis], 1)   # [T_out, T_in]
    for m in maps:
        torch.testing.assert_close(m.matrix[0, 0].double(), torch.from_numpy(dft.real),
                                   atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(m.native["dft"], torch.from_numpy(dft), atol=1e-12, rtol=1e-9)
        torch.testing.assert_close(m.apply(rec[m.layer].input), rec[m.layer].output,
                                   atol=1e-5, rtol=1e-5)


def _loop_jacobian(module, z):
    """Reference: channel-averaged Jacobian row by row with plain autograd. z [B, C, T]."""
    b, c, t = z.shape
    out = torch.zeros(b, t, t)
    for bi in range(b):
        for ci in range(c):
            v = z[bi, ci].clone().requires_grad_(True)
            y = module(v[None])[0]
            for ti in range(t):
                (g,) = torch.autograd.grad(y[ti], v, retain_graph=True)
                out[bi, ti] += g / c
    return out


def test_token_mlp_is_channel_averaged_jacobian(models, x):
    model = models[family_of_kind("token-mlp")]
    maps = mixing.extract(model, x[:2])
    m = maps[1]
    mlp = dict(model.named_modules())[m.layer]
    with hooks.capture(model, [m.layer]) as rec:
        model(x[:2])
    z = rec[m.layer].input[:1, :3]                         # 3 channels keep the loop quick
    ref = _loop_jacobian(mlp, z)
    rows = mixing.channel_jacobian(lambda v: mlp(v[None])[0], z.reshape(-1, 49))
    torch.testing.assert_close(rows.reshape(1, 3, 49, 49).mean(1), ref, atol=1e-5, rtol=1e-4)
    # analytic (extract) == vmap(jacrev) (effective) over all channels
    eff = mixing.effective(model, x[:2], m.layer)
    torch.testing.assert_close(m.matrix, eff, atol=1e-5, rtol=1e-4)
    assert set(m.native) == {"fc1", "fc2"} and m.native["fc1"].shape == (64, 7, 7)
    assert float(mixing.input_dependence(m)) > 0


@pytest.mark.parametrize("kind", ["token-linear", "fourier"])
def test_effective_equals_matrix_for_static_channelwise_kinds(kind, models, x):
    model = models[family_of_kind(kind)]
    m = mixing.extract(model, x)[2]
    eff = mixing.effective(model, x[:2], 2)
    torch.testing.assert_close(eff, m.matrix.expand(2, -1, -1, -1), atol=1e-5, rtol=1e-4)


def _uniform_shift_reference(fn, z, eps=1e-4):
    """Reference E[t, s] by central differences in float64; z [T, C], fn: [T, C] -> [T, C']."""
    cols = []
    for s in range(z.shape[0]):
        d = torch.zeros_like(z)
        d[s] = eps
        cols.append(((fn(z + d) - fn(z - d)) / (2 * eps)).mean(-1))
    return torch.stack(cols, 1)


def test_effective_attention_uniform_shift_definition(models, x):
    model = models[family_of_kind("attention")]
    eff = mixing.effective(model, x[:1], 0)
    with hooks.capture(model, ["net.blocks.0.attn"]) as rec:
        model(x[:1])
    z = rec["net.blocks.0.attn"].input[0].double()
    attn = copy.deepcopy(model.net.blocks[0].attn).double()
    with torch.no_grad():
        ref = _uniform_shift_reference(lambda v: attn(v[None])[0], z)
    torch.testing.assert_close(eff[0, 0].double(), ref, atol=1e-5, rtol=1e-4)


def test_conv_effective_is_the_exact_jacobian(models):
    stage = copy.deepcopy(models[family_of_kind("conv")].net.stages[1]).double()
    with torch.no_grad():
        for mod in stage.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(0.5)
    z = torch.randn(1, 48, 10, 10, generator=torch.Generator().manual_seed(3)).double()
    got = jacobian.conv_effective(stage, z)
    with torch.no_grad():
        ref = _uniform_shift_reference(
            lambda v: stage(v.t().reshape(1, 48, 10, 10))[0].reshape(96, 25).t(),
            z[0].reshape(48, 100).t(), eps=1e-7)   # tiny step: no ReLU kink crossed
    torch.testing.assert_close(got[0], ref, atol=1e-6, rtol=1e-5)
    assert got[0].abs().sum() > 0


def test_conv_effective_on_resnet50_bottlenecks():
    model = zoo.build("timm:resnet50").eval()
    assert [(f.layer, f.kind) for f in mixing.layers(model)] == [
        (f"net.layer{i}", "conv") for i in range(1, 5)]
    z = torch.randn(1, 1024, 6, 6, generator=torch.Generator().manual_seed(0))
    got = jacobian.conv_effective(model.net.layer4, z)          # 6x6 -> 3x3
    assert got.shape == (1, 9, 36) and torch.isfinite(got).all() and got.abs().sum() > 0


# ---------------------------------------------------------------- bad input


def test_model_without_token_mixing_names_what_is_supported():
    with pytest.raises(ValueError, match="no token-mixing layer.*MixerBlock.*Attention"):
        mixing.extract(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), torch.rand(1, 1, 28, 28))


def test_wrong_shape_gives_expected_shape(models):
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        mixing.extract(models[family_of_kind("token-mlp")], torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        mixing.effective(models[family_of_kind("attention")], torch.rand(2, 1, 32, 32), 0)


def test_layer_selection(models, x):
    model = models[family_of_kind("token-mlp")]
    maps = mixing.extract(model, x, layers=[-1, "net.blocks.0.mlp_tokens"])
    assert [m.layer for m in maps] == ["net.blocks.3.mlp_tokens", "net.blocks.0.mlp_tokens"]
    with pytest.raises(ValueError, match="not a token-mixing layer"):
        mixing.extract(model, x, layers=["net.blocks.0"])
    with pytest.raises(ValueError, match="out of range"):
        mixing.effective(model, x, 7)


# ---------------------------------------------------------------- timm ImageNet models


@pytest.fixture(scope="module")
def image224():
    return torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch,kind,n,heads,prefix", [
    ("mixer_b16_224", "token-mlp", 12, 1, 0),
    ("resmlp_12_224", "token-linear", 12, 1, 0),
    ("gmlp_s16_224", "spatial-gating", 30, 1, 0),
    ("vit_base_patch16_224", "attention", 12, 12, 1),
    ("deit_tiny_patch16_224", "attention", 12, 3, 1),
    ("resnet50", "conv", 4, 1, 0),            # layer4 only: 49 batched VJPs (~3 s)
])
def test_timm_imagenet_models(arch, kind, n, heads, prefix, image224):
    model = zoo.build("timm:" + arch).eval()
    found = mixing.layers(model)
    assert len(found) == n and {f.kind for f in found} == {kind}
    which = [-1] if kind == "conv" else None   # conv Jacobians of all ResNet-50 stages: slow
    maps = mixing.extract(model, image224, layers=which)
    m = maps[-1]
    assert m.layer == found[-1].layer and m.layer in dict(model.named_modules())
    t = 14 * 14 + prefix if kind != "conv" else 49
    assert m.matrix.shape[1:3] == (heads, t) and m.prefix_tokens == prefix
    assert torch.isfinite(m.matrix).all()
    if kind == "attention":  # probabilities reproduce the fused attention's output
        with hooks.capture(model, [m.layer]) as rec:
            model(image224)
        attn = dict(model.named_modules())[m.layer]
        z = rec[m.layer].input
        b, t, c = z.shape
        _, _, v = attn.qkv(z).reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = attn.proj(m.apply(v).transpose(1, 2).reshape(b, t, c))
        torch.testing.assert_close(out, rec[m.layer].output, atol=1e-4, rtol=1e-4)
    if kind == "conv":
        assert m.grid == (7, 7) and m.in_grid == (14, 14)
        assert [f.layer for f in found] == ["net.layer1", "net.layer2", "net.layer3", "net.layer4"]


# ---------------------------------------------------------------- metrics on hand-made maps


def conv_toeplitz(kernel: torch.Tensor, h: int, w: int, *, stride: int = 1) -> torch.Tensor:
    """[T_out, T_in] matrix of a zero-padded single-channel conv on an h x w grid."""
    eye = torch.eye(h * w).reshape(h * w, 1, h, w)
    k = kernel.shape[-1]
    out = F.conv2d(eye, kernel[None, None], padding=k // 2, stride=stride)   # [T_in, 1, ho, wo]
    return out.reshape(h * w, -1).t()


def test_identity_has_zero_distance_full_locality_and_full_rank():
    eye = torch.eye(25)
    assert float(mixing.mean_mixing_distance(eye, (5, 5))) == 0.0
    assert float(mixing.locality(eye, (5, 5), radius=0.0)) == 1.0
    assert float(mixing.effective_rank(eye)) == pytest.approx(25.0, rel=1e-5)
    assert float(mixing.entropy(eye)) == pytest.approx(0.0, abs=1e-6)
    assert float(mixing.translation_equivariance(eye, (5, 5))) == pytest.approx(1.0)


def test_shift_has_distance_one():
    shift = conv_toeplitz(torch.tensor([[0., 0, 0], [0, 0, 1], [0, 0, 0]]), 6, 6)
    assert float(mixing.mean_mixing_distance(shift, (6, 6))) == pytest.approx(1.0)
    assert float(mixing.locality(shift, (6, 6), radius=0.5)) == 0.0


def test_conv_toeplitz_is_fully_translation_equivariant():
    g = torch.Generator().manual_seed(0)
    toeplitz = conv_toeplitz(torch.randn(3, 3, generator=g), 6, 6)
    assert float(mixing.translation_equivariance(toeplitz, (6, 6))) == pytest.approx(1.0, abs=1e-6)
    strided = conv_toeplitz(torch.randn(3, 3, generator=g), 8, 8, stride=2)
    # output cell centres sit at half-integer offsets: the score still sees one kernel
    assert float(mixing.translation_equivariance(strided, (4, 4), input_grid=(8, 8))) > 0.999
    dense = torch.randn(36, 36, generator=g)
    assert float(mixing.translation_equivariance(dense, (6, 6))) < 0.3


def test_uniform_has_maximal_entropy_and_rank_one():
    t = 50
    uniform = torch.full((1, 2, t, t), 1.0 / t)
    torch.testing.assert_close(mixing.entropy(uniform), torch.full((1, 2), math.log(t)))
    torch.testing.assert_close(mixing.entropy(uniform, normalized=True), torch.ones(1, 2))
    peaked = torch.softmax(torch.randn(1, 2, t, t) * 5, -1)
    assert (mixing.entropy(peaked) < math.log(t)).all()
    assert float(mixing.effective_rank(uniform[0, 0])) == pytest.approx(1.0, abs=1e-4)


def test_prefix_tokens_are_left_out_of_spatial_metrics():
    m = torch.zeros(1, 1, 26, 26)
    m[0, 0, 1:, 1:] = torch.eye(25)
    m[0, 0, :, 0] = 5.0                     # heavy attention to the class token
    assert float(mixing.mean_mixing_distance(m, (5, 5), prefix_tokens=1)) == 0.0
    with pytest.raises(ValueError, match="does not fit grid"):
        mixing.mean_mixing_distance(m, (5, 5))


def test_input_dependence_zero_for_static_positive_for_varying():
    static = torch.randn(1, 1, 9, 9).expand(4, -1, -1, -1)
    assert float(mixing.input_dependence(static)) == pytest.approx(0.0, abs=1e-6)
    assert float(mixing.input_dependence(torch.randn(1, 3, 9, 9)).sum()) == 0.0
    varying = torch.randn(4, 2, 9, 9)
    dep = mixing.input_dependence(varying)
    assert dep.shape == (2,) and (dep > 0.5).all() and (dep <= 1).all()


def test_summarize_is_json_ready(models, x):
    model = models[family_of_kind("attention")]
    heads = model.net.blocks[0].attn.num_heads
    rows = mixing.summarize(mixing.extract(model, x[:2]))
    text = json.dumps(rows)
    assert len(rows) == len(mixing.layers(model)) and "mean_mixing_distance_per_head" in text
    assert len(rows[0]["mean_mixing_distance_per_head"]) == heads
    assert rows[0]["prefix_tokens"] == 1
    px = mixing.summarize(mixing.extract(model, x[:2]), radius=4.0, unit="px")
    assert {"mean_mixing_distance_px", "locality_r4_px", "px_per_token"} <= set(px[0])
    assert "mean_mixing_distance" not in px[0]
    assert px[0]["mean_mixing_distance_px"] == pytest.approx(4 * rows[0]["mean_mixing_distance"],
                                                             rel=1e-6)
    with pytest.raises(ValueError, match="unit must be one of"):
        mixing.summarize([], unit="pixels")


# ---------------------------------------------------------------- distances in pixels


def test_px_distances_on_hand_made_maps():
    shift = conv_toeplitz(torch.tensor([[0., 0, 0], [0, 0, 1], [0, 0, 0]]), 6, 6)   # one column
    down = conv_toeplitz(torch.tensor([[0., 0, 0], [0, 0, 0], [0, 1, 0]]), 6, 6)    # one row
    # 6x6 tokens on a 24x24 image: 4 px per token
    assert float(mixing.mean_mixing_distance(shift, (6, 6), unit="px",
                                             image_size=(24, 24))) == pytest.approx(4.0)
    assert float(mixing.locality(shift, (6, 6), radius=3.9, unit="px", image_size=24)) == 0.0
    assert float(mixing.locality(shift, (6, 6), radius=4.0, unit="px", image_size=24)) == 1.0
    # a 12x24 image: tokens are 2 px tall and 4 px wide
    assert float(mixing.mean_mixing_distance(down, (6, 6), unit="px",
                                             image_size=(12, 24))) == pytest.approx(2.0)
    assert float(mixing.mean_mixing_distance(shift, (6, 6), unit="px",
                                             image_size=(12, 24))) == pytest.approx(4.0)
    # a stride-2 map on an 8x8 input grid of a 16x16 image: input cells of 2 px
    strided = conv_toeplitz(torch.tensor([[0., 0, 0], [0, 1, 0], [0, 0, 0]]), 8, 8, stride=2)
    tokens = mixing.mean_mixing_distance(strided, (4, 4), input_grid=(8, 8))
    px = mixing.mean_mixing_distance(strided, (4, 4), input_grid=(8, 8), unit="px",
                                     image_size=16)
    assert float(tokens) == pytest.approx(math.sqrt(0.5)) and float(px) == pytest.approx(
        2 * math.sqrt(0.5))
    with pytest.raises(ValueError, match="image_size"):
        mixing.mean_mixing_distance(shift, (6, 6), unit="px")
    with pytest.raises(ValueError, match="unit must be one of"):
        mixing.locality(shift, (6, 6), unit="pixels")
    m = mixing.MixingMap("hand", "token-linear", shift[None, None], (6, 6))
    with pytest.raises(ValueError, match="no image_size"):
        mixing.mean_mixing_distance(m, unit="px")


@pytest.mark.parametrize("family", zoo.names())
def test_px_distances_match_analyses_mixing_patterns(family, x):
    """unit="px" equals grid-unit distances scaled by image side / input grid (the analyses' old
    conversion, computed here independently), and analyses/mixing_patterns.py uses it."""
    from analyses import mixing_patterns as mp
    model = zoo.load(family)
    maps = mixing.extract(model, x[:2])
    image_size, radius_px = int(x.shape[-1]), 4.0
    rows = mp.layer_metrics(maps, image_size, radius_px)
    for m, row in zip(maps, rows):
        px = image_size / m.in_grid[1]
        assert m.px_per_token == (px, px)
        units = mixing.mean_mixing_distance(m).double()
        d = mixing.mean_mixing_distance(m, unit="px").double()
        assert torch.allclose(d, units * px, rtol=1e-5)
        assert float(d.mean()) == pytest.approx(row["mean_mixing_distance_px"], rel=1e-9)
        loc = mixing.locality(m, radius=radius_px, unit="px").double()
        loc_units = mixing.locality(m, radius=radius_px / px).double()
        assert torch.allclose(loc, loc_units, atol=1e-6)
        assert float(loc.mean()) == pytest.approx(row["locality"], rel=1e-9, abs=1e-12)
    uniform = float(mixing.mean_mixing_distance(torch.ones(49, 49), GRID)) * image_size / GRID[0]
    assert mp.references(image_size, radius_px)["uniform_7x7"]["mean_mixing_distance_px"] == \
        pytest.approx(uniform, rel=1e-5)


# ---------------------------------------------------------------- CLI


def run_cli(argv):
    """``python -m probe.mixing argv`` in-process: the exit code."""
    try:
        return mixing_cli.main(argv)
    except SystemExit as e:
        return e.code


def test_cli_help(capsys):
    assert run_cli(["--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--model", "--weights", "--data", "--data-root", "--n", "--seed", "--device",
                   "--out", "--threads", "--radius"):
        assert option in text
    assert "--dataset" not in text
    assert mixing.main is mixing_cli.main and mixing.run is mixing_cli.run


@pytest.mark.parametrize("argv,msg", [
    (["--model", "nope", "--weights", "random"], "unknown model 'nope'"),
    (["--n", "0", "--weights", "random"], "--n must be positive"),
    (["--bogus"], "unrecognized arguments"),
    (["--dataset", "fashion-mnist"], "unrecognized arguments"),
    (["--model", "mixer", "--data", "nowhere", "--weights", "random"], "unknown dataset"),
    (["--model", "mixer", "--model", "cnn", "--weights", "w.safetensors"], "single --model"),
    (["--weights", "w.safetensors"], "single --model"),
    (["--model", "mixer", "--weights", "/nonexistent/w.safetensors"], "w.safetensors"),
])
def test_cli_bad_input_is_one_error_line_and_exit_2(argv, msg, capsys, tmp_path):
    code = run_cli(argv + ["--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and msg in err[0]


def test_cli_writes_metrics_and_figures(tmp_path, capsys, monkeypatch):
    labels = []
    plot_by_depth = plots.plot_by_depth

    def spy(series, **kwargs):
        labels.append((kwargs["ylabel"], dict(series)))
        return plot_by_depth(series, **kwargs)

    monkeypatch.setattr(plots, "plot_by_depth", spy)
    out = tmp_path / "runs"
    code = run_cli(["--model", "fnet", "--model", "vit", "--weights", "random", "--n", "2",
                    "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    base = out / "fashion-mnist"
    for f in ["fnet/mixing.json", "vit/mixing_templates.pdf", "vit/mixing_over_image.pdf",
              "vit/log_amplitude.pdf", "mixing_distance.pdf", "relative_log_amplitude.pdf"]:
        assert (base / f).is_file() and str(base / f) in printed
    record = json.loads((base / "vit" / "mixing.json").read_text())
    assert record["schema_version"] == 1 and record["n"] == 2 and len(record["layers"]) == 4
    assert len(record["relative_log_amplitude"]) == 4
    # the depth plot is in pixels: 4-px tokens, so 4x the token-grid distance
    ylabel, series = labels[0]
    assert ylabel == "mean mixing distance (px)"
    assert series["vit"] == [r["mean_mixing_distance_px"] for r in record["layers"]]
    for r in record["layers"]:
        assert r["mean_mixing_distance_px"] == pytest.approx(4 * r["mean_mixing_distance"],
                                                             rel=1e-6)
    assert run_cli(["--model", "vit", "--weights", "random", "--n", "2",
                    "--out", str(tmp_path / "again")]) == 0       # same command, same numbers
    again = json.loads((tmp_path / "again" / "fashion-mnist" / "vit" / "mixing.json").read_text())
    assert again == record


def test_cli_weights_file_for_a_single_model(tmp_path, capsys):
    family = family_of_kind("fourier")
    path = tmp_path / "w.safetensors"
    zoo.save_weights(zoo.load(family, weights="random", seed=3), path)
    assert run_cli(["--model", family, "--weights", str(path), "--n", "1",
                    "--out", str(tmp_path / "runs")]) == 0
    record = json.loads((tmp_path / "runs" / "fashion-mnist" / family / "mixing.json").read_text())
    assert record["weights"] == str(path) and record["model"] == family


# ---------------------------------------------------------------- equivalences


def test_patch_embedding_is_a_conv_with_kernel_equal_stride(models, x):
    from probe import equivalences
    for family in TOKEN_FAMILIES:
        assert equivalences.patch_embedding_as_linear(models[family].net, x) < 1e-5
        assert equivalences.has_patch_embedding(models[family])
    for family in CONV_FAMILIES + DENSE_FAMILIES:
        assert not equivalences.has_patch_embedding(models[family])
        with pytest.raises(ValueError, match="no patch embedding"):
            equivalences.patch_embedding_as_linear(models[family].net, x)


def test_conv_rewritten_as_token_mixing_matrix(models):
    from probe import equivalences
    g = torch.Generator().manual_seed(0)
    stem = models[family_of_kind("conv")].net.stem[0]                           # 1 -> 40 channels, 3x3
    assert equivalences.conv_as_token_mixing(stem, torch.rand(2, 1, 12, 12, generator=g)) < 1e-5
    strided = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    assert equivalences.conv_as_token_mixing(strided, torch.randn(1, 4, 8, 8, generator=g)) < 1e-5
    m = equivalences.conv_token_mixing_matrix(nn.Conv2d(1, 1, 3, padding=1, bias=False), (5, 5))
    assert m.shape == (1, 1, 25, 25)
    assert float(mixing.translation_equivariance(m[0, 0], (5, 5))) == pytest.approx(1.0)


def test_fnet_mixing_is_the_dft_matrix(models):
    from probe import equivalences
    assert equivalences.fnet_is_dft(models[family_of_kind("fourier")]) < 1e-5
    with pytest.raises(ValueError, match="FourierMixing"):
        equivalences.fnet_is_dft(models[family_of_kind("token-mlp")])
    errors = equivalences.check_all()
    assert set(errors) == {"patch_embedding_as_linear", "conv_as_token_mixing", "fnet_is_dft",
                           "fnet2d_is_dft"}
    assert max(errors.values()) < 1e-5


# ---------------------------------------------------------------- registry


class _ToyMix(nn.Module):
    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(tokens, tokens))

    def forward(self, z):                      # [B, T, C]
        return self.weight @ z


def test_register_extractor_by_type_extends_extract():
    model = nn.Sequential(nn.Flatten(2), _Transpose(), _ToyMix(16))

    @mixing.register_extractor(_ToyMix, kind="token-linear")
    def toy(ctx, info, module, rec):
        return mixing.MixingMap(info.layer, info.kind, module.weight.detach()[None, None],
                                (4, 4), 0, None, info.depth)

    try:
        maps = mixing.extract(model, torch.rand(2, 3, 4, 4))
        assert [(m.layer, m.kind) for m in maps] == [("2", "token-linear")]
        z = torch.rand(2, 16, 3)
        torch.testing.assert_close(maps[0].apply(z), model[2](z))
    finally:
        grid.REGISTRY.remove(next(e for e in grid.REGISTRY if e.compute is toy))
    with pytest.raises(ValueError, match="no token-mixing layer"):
        mixing.layers(model) or mixing.extract(model, torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="kind must be one of"):
        mixing.register_extractor(_ToyMix, kind="magic")


class _Transpose(nn.Module):
    def forward(self, z):
        return z.transpose(1, 2)


def test_every_mixing_kind_has_a_caption_label():
    from probe import mixing
    assert set(mixing.KIND_LABELS) == set(mixing.KINDS)
    assert all(label.strip() for label in mixing.KIND_LABELS.values())
