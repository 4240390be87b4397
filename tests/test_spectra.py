"""Spectra: grid spectra, templates, and Park & Kim's relative log amplitude for every family."""
import math

import numpy as np
import pytest
import torch

from probe import hooks, mixing, spectra, zoo
from probe.mixing.grid import find_or_raise


pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_spectrum(a: np.ndarray) -> np.ndarray:
    """Reference: centred orthonormal 2-D amplitude spectrum with numpy."""
    return np.abs(np.fft.fftshift(np.fft.fft2(a, norm="ortho"), axes=(-2, -1)))


def test_grid_spectrum_of_constant_and_checkerboard():
    const = torch.ones(6, 6)
    amp = spectra.grid_spectrum(const)
    assert float(amp[3, 3]) == pytest.approx(6.0) and float(amp.sum()) == pytest.approx(6.0)
    checker = (torch.arange(6)[:, None] + torch.arange(6)[None]) % 2 * 2.0 - 1
    amp = spectra.grid_spectrum(checker, centered=False)
    assert float(amp[3, 3]) == pytest.approx(6.0) and float(amp[0, 0]) == pytest.approx(0.0)


def test_grid_spectrum_equals_numpy_fft():
    a = np.random.default_rng(0).standard_normal((3, 5, 6))
    got = spectra.grid_spectrum(torch.from_numpy(a))
    np.testing.assert_allclose(got.numpy(), numpy_spectrum(a), rtol=1e-5, atol=1e-6)
    plain = spectra.grid_spectrum(torch.from_numpy(a), centered=False)
    np.testing.assert_allclose(plain.numpy(), np.abs(np.fft.fft2(a, norm="ortho")),
                               rtol=1e-5, atol=1e-6)


def test_log_amplitude_profile_of_a_hand_made_map():
    # a + b * (-1)^(i+j) on 8x8: the only frequencies are 0 (64 a) and the highest (64 b)
    a, b, eps = 0.7, 0.2, 1e-6
    i = torch.arange(8)
    fmap = (a + b * (-1.0) ** (i[:, None] + i[None])).expand(2, 3, 8, 8)
    zero = math.log(64 * a + eps)
    expected = [0.0] + [math.log(eps) - zero] * 3 + [math.log(64 * b + eps) - zero]
    profile = spectra.log_amplitude_profile(fmap)
    np.testing.assert_allclose(profile.numpy(), expected, rtol=1e-6)
    assert spectra.relative_log_amplitude(fmap) == pytest.approx(expected[-1], rel=1e-6)


def test_relative_log_amplitude_low_vs_high_frequency_maps():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(2, 4, 16, 16, generator=g), 5, 1, 2)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float()
    rough = torch.randn(2, 4, 16, 16, generator=g) * 0.1 + checker
    low, high = spectra.relative_log_amplitude(smooth), spectra.relative_log_amplitude(rough)
    assert low < -1.0 < 0.0 < high
    profile = spectra.log_amplitude_profile(smooth)
    assert profile.shape == (9,) and float(profile[0]) == 0.0
    # the same profile with numpy: log amplitude, centred, mean over images and channels,
    # read along the half diagonal, minus its value at frequency 0
    f = np.log(np.abs(np.fft.fft2(smooth.double().numpy())) + 1e-6)
    f = np.fft.fftshift(f, axes=(-2, -1)).mean((0, 1))
    diag = np.array([f[(8 + k) % 16, (8 + k) % 16] for k in range(9)])
    np.testing.assert_allclose(profile.numpy(), diag - diag[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        spectra.log_amplitude_profile(torch.rand(4, 16, 16))


@pytest.mark.parametrize("family", zoo.names())
def test_feature_maps_and_amplitudes_for_every_family(family):
    model = zoo.build(family).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    if zoo.families()[family].mixing_kind == "dense":      # the pure MLP: no grid to read
        for fn in (spectra.feature_maps, spectra.relative_log_amplitudes):
            with pytest.raises(ValueError, match="net.pixels.*no spatial grid.*do not apply"):
                fn(model, x)
        return
    blocks = list(dict.fromkeys(info.block for info, _ in find_or_raise(model)))
    maps = spectra.feature_maps(model, x)
    assert [name for name, _ in maps] == blocks
    name, fmap = maps[-1]
    assert fmap.shape[0] == 2 and fmap.shape[-2:] == (7, 7)
    # the feature map is the block's output placed on its grid (prefix tokens dropped)
    with torch.no_grad(), hooks.capture(model, [name], inputs=False) as rec:
        model(x)
    out = rec[name].output
    if out.ndim == 3:
        prefix = out.shape[1] - 49
        out = out[:, prefix:].reshape(2, 7, 7, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(fmap, out)
    rows = spectra.relative_log_amplitudes(model, x)
    assert [r["depth"] for r in rows] == list(range(len(blocks)))
    assert all(math.isfinite(r["delta_log_amplitude"]) for r in rows)
    assert rows[-1]["block"] == name and len(rows[-1]["profile"]) == 4
    assert rows[-1]["profile"] == pytest.approx(
        [float(v) for v in spectra.log_amplitude_profile(fmap)])


def test_mixer_templates_are_the_token_mlp_hidden_units():
    family = next(f for f in zoo.names() if zoo.families()[f].mixing_kind == "token-mlp")
    model = zoo.build(family).eval()
    m = mixing.extract(model, torch.rand(1, 1, 28, 28))[0]
    fc1 = dict(model.named_modules())[m.layer].fc1.weight.detach()          # [hidden, 49]
    torch.testing.assert_close(spectra.templates(m), fc1.reshape(-1, 7, 7))
    np.testing.assert_allclose(spectra.template_spectra(m).numpy(),
                               numpy_spectrum(fc1.reshape(-1, 7, 7).double().numpy()),
                               rtol=1e-5, atol=1e-6)
    rows = spectra.templates(m, native=False)                              # one per output token
    torch.testing.assert_close(rows, m.matrix[0, 0].reshape(49, 7, 7))


def test_a_circular_convolution_has_the_same_spectrum_at_every_token():
    # hand-made circular conv on a 7x7 grid: every row is the same kernel moved around,
    # so every template's amplitude spectrum is the kernel's (a shift changes only phases)
    h = w = 7
    kernel = torch.zeros(h, w, dtype=torch.float64)
    kernel[:3, :3] = torch.tensor([[1., -2, 0.5], [0.3, 4, -1], [2, 0, -0.7]])
    rows = [torch.roll(kernel, shifts=(t // w, t % w), dims=(0, 1)).reshape(-1)
            for t in range(h * w)]
    matrix = torch.stack(rows)[None, None].float()
    m = mixing.MixingMap("conv", "conv", matrix, (h, w))
    got = spectra.template_spectra(m)                                      # [49, 7, 7]
    expected = numpy_spectrum(kernel.numpy())
    for t in range(h * w):
        np.testing.assert_allclose(got[t].numpy(), expected, rtol=1e-5, atol=1e-5)
