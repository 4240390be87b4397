"""The families that joined the zoo after the protocol's six (issue 17): External Attention,
the stack of feed-forward layers, RepMLP, the pure MLP, the published FNet and Synthesizer-Random.

Each family's defining computation is checked against an independent reference (hand-written
double normalisation, torch.fft / numpy DFT matrices, autograd Jacobians, a real Conv2d), and
each works in the tools (mixing, attribution, spectra) or says clearly why a tool does not apply.
"""
import copy
import math
import statistics

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from probe import attribution, data, hooks, mixing, spectra, zoo
from probe import equivalences as eq
from probe.models.extattn import ExternalAttention
from probe.models.fnet import FourierMixing
from probe.models.fnet2d import TokenChannelFourierMixing
from probe.models.repmlp import RepTokenMixing, SharesetTokenLinear, reparameterize
from probe.train import SUBSET_N, SUBSET_SEED, evaluate

NEW = ["extattn", "ffn", "repmlp", "mlp", "fnet2d", "synth"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _with_random_head(model):
    """A copy whose head is not timm's zero init (so outputs depend on the body)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.net.head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return model


# ----------------------------------------------------------------------------- every new family


def test_new_families_are_registered_after_the_protocol_six():
    assert zoo.names()[6:] == NEW


@pytest.mark.parametrize("family", NEW)
def test_forward_shape_and_parameter_band(family, x):
    counts = {n: zoo.count_params(zoo.build(n)) for n in zoo.names()}
    median = statistics.median(counts.values())
    assert 0.75 * median <= counts[family] <= 1.25 * median, (family, counts[family], median)
    model = zoo.build(family, seed=2).eval()
    logits = model(x)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", NEW)
def test_shipped_weights_reach_the_issue_accuracy(family):
    card = zoo.card(family)
    assert card["test_accuracy"] >= 0.85 and card["test_n"] == 10000
    assert card["precision"]["train_autocast"] == "bfloat16" and "--amp bf16" in card["command"]
    if not data.fashion_mnist_available():
        pytest.skip("Fashion-MNIST not found (system copy or $PROBE_DATA)")
    model = zoo.load(family)
    sub = data.as_tensors(data.load("fashion-mnist", "test", n=SUBSET_N, seed=SUBSET_SEED))
    assert evaluate(model, *sub) == pytest.approx(card["test_subset"]["accuracy"], abs=0.0011)


@pytest.mark.parametrize("family", NEW)
def test_extract_gives_one_finite_map_per_mixing_layer(family, x):
    model = zoo.build(family, seed=1).eval()
    maps = mixing.extract(model, x)
    kind = zoo.families()[family].mixing_kind
    assert maps and all(m.kind == kind for m in maps)
    assert [m.depth for m in maps] == list(range(len(maps)))
    named = dict(model.named_modules())
    for m in maps:
        assert m.layer in named and torch.isfinite(m.matrix).all()
        b = 1 if m.static else len(x)
        t = m.grid[0] * m.grid[1] + m.prefix_tokens
        assert m.matrix.shape[0] == b and m.matrix.shape[-2:] == (t, t)
        assert m.px_per_token == (28 / m.grid[0], 28 / m.grid[1])
        assert float(m.matrix.abs().sum()) > 0
    eff = mixing.effective(model, x[:1], 0)
    assert eff.shape[-2:] == maps[0].matrix.shape[-2:] and torch.isfinite(eff).all()


# ----------------------------------------------------------------------------- External Attention


def test_external_attention_double_normalisation_and_output():
    torch.manual_seed(0)
    ea = ExternalAttention(16, 2, memory_units=5).eval()
    z = torch.randn(3, 9, 16)
    a, p = ea.attention(z)
    # by hand: queries per head, logits against the memory, softmax over TOKENS, L1 over memory
    q = (z @ ea.trans_dims.weight.T + ea.trans_dims.bias).reshape(3, 9, 2, 8).transpose(1, 2)
    logits = q @ ea.memory_key.weight.T                                    # [B, H, T, S]
    p_ref = logits.exp() / logits.exp().sum(dim=2, keepdim=True)
    a_ref = p_ref / p_ref.sum(dim=3, keepdim=True)
    torch.testing.assert_close(p, p_ref)
    torch.testing.assert_close(a, a_ref)
    torch.testing.assert_close(p.sum(2), torch.ones(3, 2, 5))             # columns: over tokens
    torch.testing.assert_close(a.sum(3), torch.ones(3, 2, 9))             # rows: over memory
    y_ref = (a_ref @ ea.memory_value.weight.T).transpose(1, 2).reshape(3, 9, 16)
    torch.testing.assert_close(ea(z), ea.proj(y_ref))
    # the token-to-token map through the memory: A P^T, rows sum to 1
    mix = ea.token_mixing(z)
    torch.testing.assert_close(mix, a_ref @ p_ref.transpose(-2, -1))
    torch.testing.assert_close(mix.sum(-1), torch.ones(3, 2, 9))
    with pytest.raises(ValueError, match="depends on the input"):
        ea.token_mixing(None)


def test_extattn_extract_keeps_the_token_to_memory_attention(x):
    model = zoo.build("extattn", seed=1).eval()
    maps = mixing.extract(model, x)
    with hooks.capture(model, [m.layer for m in maps]) as rec:
        model(x)
    for m in maps:
        module = dict(model.named_modules())[m.layer]
        a, p = module.attention(rec[m.layer].input)
        assert m.kind == "attention" and m.heads == 4 and m.prefix_tokens == 0
        torch.testing.assert_close(m.native["token_to_memory"], a)
        torch.testing.assert_close(m.matrix, a @ p.transpose(-2, -1))
        assert m.native["token_to_memory"].shape == (3, 4, 49, 64)
    assert float(mixing.input_dependence(maps[0]).min()) > 0
    assert not zoo.families()["extattn"].rollout
    with pytest.raises(ValueError, match="applies only to the families vit"):
        attribution.attribute(model, x[:1], 0, "attention_rollout")


# ----------------------------------------------------------------------------- stack of FFN


def test_ffn_block_is_channel_mlp_then_token_mlp_normalised_over_tokens(x):
    model = zoo.build("ffn", seed=1).eval()
    block = model.net.blocks[0]
    assert block.norm2.normalized_shape == (50,) and block.mlp_tokens.fc1.in_features == 50
    z = torch.randn(2, 50, 128)
    h = z + block.mlp(block.norm1(z))
    ref = h + block.mlp_tokens(F.layer_norm(h.transpose(1, 2), (50,), block.norm2.weight,
                                            block.norm2.bias, block.norm2.eps)).transpose(1, 2)
    torch.testing.assert_close(block(z), ref)
    assert not any(isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__
                   for m in model.modules())
    # its token MLP is extracted as Mixer's: the channel-mean Jacobian (== effective)
    maps = mixing.extract(model, x[:2])
    assert [m.layer for m in maps] == [f"net.blocks.{i}.mlp_tokens" for i in range(4)]
    assert maps[0].prefix_tokens == 1 and maps[0].matrix.shape == (2, 1, 50, 50)
    torch.testing.assert_close(mixing.effective(model, x[:2], 1), maps[1].matrix,
                               atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- RepMLP


def _busy_batch_norms(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1, generator=g)
            bn.running_var.uniform_(0.5, 2, generator=g)
            bn.weight.uniform_(0.5, 2, generator=g)
            bn.bias.uniform_(-1, 1, generator=g)


@pytest.mark.parametrize("sharesets", [1, 4])
def test_rep_token_mixing_equals_fc_plus_conv_branches(sharesets):
    torch.manual_seed(0)
    rep = RepTokenMixing(8, 49, sharesets=sharesets)
    _busy_batch_norms(rep)
    z = torch.randn(3, 49, 8)
    # reference: real Conv2d + BatchNorm2d branches on the 7x7 grids, as RepMLP trains them
    sets = z.transpose(1, 2).reshape(3 * 8 // sharesets, sharesets, 49)
    fc = torch.einsum("sut,nst->nsu", rep.weight, sets) + rep.bias
    for mode in ("train", "eval"):
        model = copy.deepcopy(rep).train(mode == "train")
        ref = fc + sum(branch(sets.reshape(-1, sharesets, 7, 7)).reshape_as(fc)
                       for branch in copy.deepcopy(model.branches))
        torch.testing.assert_close(model(z), ref.reshape(3, 8, 49).transpose(1, 2), atol=1e-5,
                                   rtol=1e-5)
    rep.eval()
    merged = rep.merge()
    assert isinstance(merged, SharesetTokenLinear) and not list(merged.children())
    with torch.no_grad():
        assert float((rep(z) - merged(z)).abs().max()) <= 1e-4


def test_repmlp_merged_model_equals_the_multi_branch_model(x):
    trained = zoo.load("repmlp")                        # trained batch-norm statistics and head
    merged = zoo.load("repmlp", merged=True)
    assert merged.weights_info["form"] == "merged" and "form" not in trained.weights_info
    assert any(isinstance(m, RepTokenMixing) for m in trained.modules())
    assert not any(isinstance(m, (RepTokenMixing, nn.Conv2d, nn.BatchNorm2d))
                   for m in merged.net.blocks.modules())
    assert zoo.count_params(merged) < zoo.count_params(trained)
    images, _ = data.as_tensors(data.load("fashion-mnist", "test", n=64, seed=0)) \
        if data.fashion_mnist_available() else (x, None)
    with torch.no_grad():
        assert float((trained(images) - merged(images)).abs().max()) <= 1e-4
    # mixing.extract gives the merged token matrix from either form, and it reproduces the layer
    a, b = mixing.extract(trained, x), mixing.extract(merged, x)
    with hooks.capture(trained, [m.layer for m in a]) as rec:
        trained(x)
    for ma, mb in zip(a, b):
        assert ma.kind == mb.kind == "token-linear" and ma.static and ma.matrix.shape == (1, 1, 49, 49)
        torch.testing.assert_close(ma.matrix, mb.matrix)
        torch.testing.assert_close(ma.matrix[0], dict(merged.named_modules())[mb.layer].weight)
        torch.testing.assert_close(ma.apply(rec[ma.layer].input), rec[ma.layer].output,
                                   atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="one form.*repmlp"):
        zoo.load("mixer", weights="random", merged=True)


def test_reparameterize_in_place_keeps_the_function():
    model = _with_random_head(zoo.build("repmlp", seed=3))
    _busy_batch_norms(model, seed=4)
    model.eval()
    z = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        before = model(z)
        assert reparameterize(model.net) is model.net
        after = model(z)
    assert float(before.abs().max()) > 0.1
    assert float((before - after).abs().max()) <= 1e-4


# ----------------------------------------------------------------------------- pure MLP


def test_mlp_has_no_patches_and_ignores_pixel_order():
    model = _with_random_head(zoo.build("mlp", seed=1)).eval()
    assert not any(isinstance(m, (nn.Conv2d, nn.Unfold)) for m in model.modules())
    assert not eq.has_patch_embedding(model) and model.net.pixels.fc.in_features == 784
    assert not any(hasattr(m, "grid_size") for m in model.modules())
    # a fixed pixel permutation folded into the first layer gives the same function
    perm = torch.randperm(784, generator=torch.Generator().manual_seed(0))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.net.pixels.fc.weight.copy_(model.net.pixels.fc.weight[:, perm])
    xs = torch.rand(4, 1, 28, 28)
    shuffled = xs.flatten(1)[:, torch.argsort(perm)].reshape(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(twin(xs), model(shuffled), atol=1e-5, rtol=1e-5)


def test_mlp_pixel_map_is_the_gram_of_the_first_layer_jacobian(x):
    model = zoo.build("mlp", seed=1).eval()
    maps = mixing.extract(model, x[:2])
    assert len(maps) == 1
    m = maps[0]
    assert (m.kind, m.layer, m.grid, m.prefix_tokens) == ("dense", "net.pixels", (28, 28), 0)
    assert m.matrix.shape == (2, 1, 784, 784) and not m.static and m.px_per_token == (1.0, 1.0)
    layer = model.net.pixels
    for i in range(2):
        pixels = model.normalize(x[i:i + 1]).flatten(1)[0]
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0], pixels)  # [512, 784]
        torch.testing.assert_close(m.matrix[i, 0], jac.T @ jac / 512, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(m.matrix, m.matrix.transpose(-2, -1))
    assert float(torch.linalg.eigvalsh(m.matrix[0, 0].double()).min()) > -1e-6
    torch.testing.assert_close(mixing.effective(model, x[:2], 0), m.matrix)


def test_grad_cam_and_spectra_say_they_do_not_apply_to_the_mlp(x, tmp_path, capsys):
    from probe.attribution import command
    model = zoo.build("mlp")
    assert not zoo.families()["mlp"].gradcam and not attribution.METHODS["grad_cam"].applies(model)
    with pytest.raises(ValueError, match="'grad_cam' applies only to the families .*gradcam=True"):
        attribution.attribute(model, x[:1], 0, "grad_cam")
    maps = attribution.attribute(model, x[:1], 0, "saliency")
    assert maps.shape == (1, 28, 28) and float(maps.abs().sum()) > 0
    with pytest.raises(ValueError, match="no spatial grid"):
        spectra.feature_maps(model, x[:1])
    # a model outside the registry keeps Grad-CAM (fallback layers); rollout stays off
    other = zoo.build("timm:resnet18").eval()
    other.family = "timm"
    assert attribution.METHODS["grad_cam"].applies(other)
    assert not attribution.METHODS["attention_rollout"].applies(other)
    if not data.fashion_mnist_available():
        return
    # the attribution CLI skips the pair with a note, and runs the rest
    code = command.main(["--model", "mlp", "--model", "cnn", "--method", "grad_cam", "--n", "1",
                         "--steps", "2", "--weights", "random", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0 and "note: skipping grad_cam for mlp" in err
    assert (tmp_path / "fashion-mnist" / "cnn" / "attribution.json").is_file()
    code = command.main(["--model", "mlp", "--method", "grad_cam", "--n", "1", "--weights",
                         "random", "--out", str(tmp_path)])
    assert code == 2 and "no requested method applies" in capsys.readouterr().err


# ----------------------------------------------------------------------------- published FNet


def test_fnet2d_mixing_is_the_real_fft_over_tokens_and_hidden():
    mix = TokenChannelFourierMixing((7, 7))
    z = torch.randn(2, 49, 16, generator=torch.Generator().manual_seed(0))
    grid = z.reshape(2, 7, 7, 16).double()
    # independently: the grid's 2-D FFT, then the channels' 1-D FFT (separate calls)
    ref = torch.fft.fft(torch.fft.fft2(grid, dim=(1, 2), norm="ortho"), dim=3, norm="ortho").real
    torch.testing.assert_close(mix(z).double(), ref.reshape(2, 49, 16), atol=1e-5, rtol=1e-5)
    assert eq.fnet2d_is_dft(mix, z) < 1e-5                     # Re Fs X Re Fh' - Im Fs X Im Fh'
    # not one token-mixing matrix: far from the nearest M kron I (token-only FNet: exactly one)
    assert eq.token_matrix_residual(FourierMixing((7, 7)), 49) < 1e-6
    assert eq.token_matrix_residual(mix, 49) > 0.9


def test_fnet2d_extract_gives_the_two_token_matrices_that_rebuild_the_output(x):
    model = zoo.build("fnet2d", seed=1).eval()
    maps = mixing.extract(model, x[:2])
    with hooks.capture(model, [m.layer for m in maps]) as rec:
        model(x[:2])
    h = np.fft.fft(np.eye(7), axis=0, norm="ortho")
    f_s = torch.from_numpy(np.kron(h, h))
    for m in maps:
        assert m.kind == "fourier" and m.static and m.matrix.shape == (1, 2, 49, 49)
        torch.testing.assert_close(m.matrix[0, 0].double(), f_s.real, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(m.matrix[0, 1].double(), f_s.imag, atol=1e-6, rtol=1e-5)
        z = rec[m.layer].input                                     # [B, T, C]
        f_h = m.native["channel_dft"]
        copies = torch.stack([z @ f_h.real.T.float(), -(z @ f_h.imag.T.float())], 1)
        torch.testing.assert_close(m.apply(copies).sum(1), rec[m.layer].output, atol=1e-4,
                                   rtol=1e-4)
    # the uniform-shift view sees only channel frequency 0: Re F_s / sqrt(C)
    eff = mixing.effective(model, x[:1], 0)
    torch.testing.assert_close(eff[0, 0].double(), f_s.real / math.sqrt(128), atol=1e-5,
                               rtol=1e-4)


# ----------------------------------------------------------------------------- Synthesizer-Random


def test_synth_family_is_the_analyses_variant():
    """The registered family builds exactly the network the analyses trained as the variant
    ``synth`` (its seeded init by hand, as ``analyses.common.build`` made it before)."""
    from analyses import common
    from probe.models.synthesizer import synthesizer_mixer
    for seed in (0, 3):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ref = synthesizer_mixer(10, 1, 28).state_dict()
        for model in (zoo.build("synth", seed=seed), common.build("synth", seed=seed)):
            got = model.net.state_dict()
            assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert common.hyper("synth")["lr"] == zoo.families()["mixer"].lr      # a variant's lr
    model = zoo.build("synth", seed=1).eval()
    m = mixing.extract(model, torch.rand(2, 1, 28, 28))[0]
    soft = model.net.blocks[0].mlp_tokens.mixing_matrix().detach()
    torch.testing.assert_close(m.matrix[:, 0], soft.expand(2, -1, -1), atol=1e-6, rtol=1e-5)
