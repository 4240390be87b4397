"""Spectra: grid spectra, templates, and Park & Kim's relative log amplitude for every family."""
import math

import pytest
import torch

from probe import mixing, spectra, zoo

FAMILIES = ["mixer", "resmlp", "gmlp", "vit", "fnet", "cnn"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_grid_spectrum_of_constant_and_checkerboard():
    const = torch.ones(6, 6)
    amp = spectra.grid_spectrum(const)
    assert float(amp[3, 3]) == pytest.approx(6.0) and float(amp.sum()) == pytest.approx(6.0)
    checker = (torch.arange(6)[:, None] + torch.arange(6)[None]) % 2 * 2.0 - 1
    amp = spectra.grid_spectrum(checker, centered=False)
    assert float(amp[3, 3]) == pytest.approx(6.0) and float(amp[0, 0]) == pytest.approx(0.0)


def test_relative_log_amplitude_low_vs_high_frequency_maps():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(2, 4, 16, 16, generator=g), 5, 1, 2)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float()
    rough = torch.randn(2, 4, 16, 16, generator=g) * 0.1 + checker
    low, high = spectra.relative_log_amplitude(smooth), spectra.relative_log_amplitude(rough)
    assert low < -1.0 < 0.0 < high
    profile = spectra.log_amplitude_profile(smooth)
    assert profile.shape == (9,) and float(profile[0]) == 0.0
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        spectra.log_amplitude_profile(torch.rand(4, 16, 16))


@pytest.mark.parametrize("family", FAMILIES)
def test_feature_maps_and_amplitudes_for_every_family(family):
    model = zoo.build(family).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    maps = spectra.feature_maps(model, x)
    expected = 3 if family == "cnn" else 4
    assert len(maps) == expected
    name, fmap = maps[-1]
    assert fmap.shape[0] == 2 and fmap.shape[-2:] == (7, 7)
    rows = spectra.relative_log_amplitudes(model, x)
    assert [r["depth"] for r in rows] == list(range(expected))
    assert all(math.isfinite(r["delta_log_amplitude"]) for r in rows)
    assert rows[-1]["block"] == name and len(rows[-1]["profile"]) == 4


def test_templates_and_their_spectra():
    model = zoo.build("mixer").eval()
    m = mixing.extract(model, torch.rand(1, 1, 28, 28))[0]
    assert spectra.templates(m).shape == (64, 7, 7)          # fc1 hidden units
    assert spectra.templates(m, native=False).shape == (49, 7, 7)
    assert spectra.template_spectra(m).shape == (64, 7, 7)
    # a conv's templates are one kernel moved around: every interior spectrum is the same
    cnn = zoo.build("cnn").eval()
    with torch.no_grad():
        for mod in cnn.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.fill_(0.5)
    conv = mixing.extract(cnn, torch.rand(1, 1, 28, 28))[-1]
    assert spectra.template_spectra(conv).shape == (49, 7, 7)
