"""Tests of probe.corruptions: contract, determinism, errors, parity with imagecorruptions,
severity ordering, and (when the shipped CNN exists) accuracy under corruption."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import imagecorruptions as ic
import numpy as np
import pytest
import torch

from probe import corruptions
from probe.corruptions import NAMES, _registry, corrupt, noise, weather

DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur", "saturate")
STOCHASTIC = tuple(n for n in NAMES if n not in DETERMINISTIC)


def _photos(size: int, copies: int = 1, count: int = 4) -> np.ndarray:
    """skimage sample photos resized to ``size`` px: uint8 ``[count * copies, size, size, 3]``."""
    import skimage.data as skd
    from PIL import Image
    photos = [skd.astronaut(), skd.chelsea(), skd.coffee(), skd.rocket()][:count]
    out = [np.asarray(Image.fromarray(p).resize((size, size), Image.BICUBIC)) for p in photos]
    return np.stack(out * copies)


def _tensor(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).double().numpy()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference(request):
    """The reference package, with glass blur's numba kernel run as plain Python
    (same algorithm, no multi-second JIT compile per test session)."""
    shuffle = ic.corruptions._shuffle_pixels_njit_glass_blur
    ic.corruptions._shuffle_pixels_njit_glass_blur = getattr(shuffle, "py_func", shuffle)
    request.addfinalizer(lambda: setattr(ic.corruptions, "_shuffle_pixels_njit_glass_blur", shuffle))

    def run(u8: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
        np.random.seed(seed)
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for img in u8:  # glass blur's own seed draw overflows the pure-Python np.random.seed;
                # impulse noise (skimage random_noise) ignores np.random.seed: it needs its own seed
                kwargs = ({"seed": np.random.randint(2 ** 31)}
                          if name in ("glass_blur", "impulse_noise") else {})
                out.append(ic.corrupt(img, severity=severity, corruption_name=name, **kwargs))
        return np.stack(out)
    return run


# ----------------------------------------------------------------------------- contract


def test_names_match_reference_order():
    assert corruptions.COMMON == ic.get_corruption_names("common")
    assert corruptions.EXTRA == ic.get_corruption_names("validation")
    assert NAMES == ic.get_corruption_names("all") and len(NAMES) == 19


def test_registry_holds_exactly_names():
    """Every name has exactly one implementation, registered under its own function name."""
    assert sorted(_registry.REGISTRY) == sorted(NAMES) and len(_registry.REGISTRY) == 19
    for name, fn in _registry.REGISTRY.items():
        assert fn.__name__ == name, (name, fn)


def test_register_corruption_refuses_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match="unknown corruption 'rain'.*NAMES"):
        corruptions.register_corruption("rain")
    with pytest.raises(ValueError, match="'fog' is registered twice"):
        corruptions.register_corruption("fog")(lambda x, c, s, rng, table: x)
    assert _registry.REGISTRY["fog"] is weather.fog


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 32)])
def test_every_corruption_shape_range_dtype(shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    for name in NAMES:
        for severity in range(1, 6):
            y = corrupt(x, name, severity)
            assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device, name
            assert torch.isfinite(y).all(), (name, severity)
            assert float(y.min()) >= 0 and float(y.max()) <= 1, (name, severity)


def test_float64_and_odd_sizes():
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 17, 45), (2, 1, 5, 9), (1, 3, 70, 90)]:
        x = torch.rand(*shape, generator=g, dtype=torch.float64)
        for name in NAMES:
            y = corrupt(x, name, 3)
            assert y.shape == x.shape and y.dtype == torch.float64, (name, shape)
            assert float(y.min()) >= 0 and float(y.max()) <= 1, (name, shape)


@pytest.fixture
def frost_uncached():
    """Frost textures are read afresh in the test and again after it (no poisoned cache)."""
    weather._frost_sources.cache_clear()
    weather._frost_textures.cache_clear()
    yield
    weather._frost_sources.cache_clear()
    weather._frost_textures.cache_clear()


def test_frost_fails_loudly_when_a_texture_cannot_be_read(monkeypatch, frost_uncached):
    """An unreadable photograph (cv2.imread gives None) is an error naming the file, never a
    silent switch to other textures."""
    import cv2
    monkeypatch.setattr(cv2, "imread", lambda path, *flags: None)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(FileNotFoundError, match=r"frost texture \S*frost1\.png .*imagecorruptions"):
        corrupt(x, "frost", 3)


def test_frost_fails_loudly_without_the_reference_package(monkeypatch, frost_uncached):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ModuleNotFoundError, match="texture photographs .* imagecorruptions, which "
                                                  "is not installed; pip install"):
        corrupt(x, "frost", 3)


def test_frost_uses_the_reference_photographs(frost_uncached):
    """The textures are the package's six photographs, pixel for pixel (as RGB)."""
    import cv2
    folder = Path(ic.__file__).parent / "frost"
    sources = weather._frost_sources()
    assert len(sources) == 6
    for name, texture in zip(weather.FROST_FILES, sources):
        rgb = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)[..., ::-1]
        assert texture.dtype == torch.uint8, name
        assert np.array_equal(texture.permute(1, 2, 0).numpy(), rgb), name


def test_presets():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(corrupt(x, "contrast", 2), corrupt(x, "contrast", 2, preset="cifar"))
    assert not torch.equal(corrupt(x, "contrast", 2), corrupt(x, "contrast", 2, preset="imagenet"))
    assert corruptions.params("gaussian_blur", 5, size=224) == ("imagenet", 6, 1.0)
    assert corruptions.params("gaussian_blur", 5, size=28) == ("cifar", 1, 28 / 32)
    with pytest.raises(ValueError, match="preset"):
        corrupt(x, "fog", 1, preset="mnist")
    with pytest.raises(ValueError, match="unknown corruption 'blur'"):
        corruptions.params("blur", 1, size=32)


# ----------------------------------------------------------------------------- determinism


def test_generator_determinism():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for name in STOCHASTIC:
        a = corrupt(x, name, 3, generator=torch.Generator().manual_seed(7))
        b = corrupt(x, name, 3, generator=torch.Generator().manual_seed(7))
        c = corrupt(x, name, 3, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b), name
        assert not torch.equal(a, c), name
        assert torch.equal(corrupt(x, name, 3), corrupt(x, name, 3)), name  # default seed
    g = torch.Generator().manual_seed(3)
    first, second = corrupt(x, "gaussian_noise", 1, generator=g), corrupt(x, "gaussian_noise", 1, generator=g)
    assert not torch.equal(first, second)  # the generator advances


@pytest.mark.parametrize("cap", [3, 12, 60])
def test_capped_poisson_matches_poisson_pmf(cap):
    """Shot noise's inversion sampler draws min(Poisson(rate), cap) with the exact pmf, up to
    the cap of ImageNet-C severity 1 (rate 60, where terms rate^k / k! exceed float32)."""
    from scipy import stats
    n = 200_000
    for rate in (0.0, 0.3, 2.5, cap / 2, cap):
        u = torch.rand(n, generator=torch.Generator().manual_seed(cap))
        k = noise._poisson_capped(torch.full((n,), float(rate)), u, cap)
        assert k.min() >= 0 and k.max() <= cap and torch.equal(k, k.round())
        freq = torch.bincount(k.long(), minlength=cap + 1).double() / n
        pmf = [stats.poisson.pmf(i, rate) for i in range(cap)] + [stats.poisson.sf(cap - 1, rate)]
        # 4.5 binomial standard errors per count (about 1e-6 false alarms per bin)
        tol = 4.5 * np.sqrt(np.maximum(pmf, 1 / n) / n)
        assert np.all(np.abs(freq.numpy() - np.array(pmf)) <= tol), (cap, rate)


@pytest.mark.parametrize("c", [3, 12, 60])
def test_shot_noise_on_uint8_levels_matches_poisson_pmf(c):
    """Shot noise's table sampler for batches of uint8 levels draws min(Poisson(c q / 255), c)
    with the exact pmf at every level, low tails included; other batches take the CDF steps."""
    from scipy import stats
    n = 100_000
    levels = torch.tensor([0, 1, 40, 128, 255])
    x = (levels.float() / 255).repeat_interleave(n).view(1, 1, len(levels), n)
    rng = corruptions.Rng(torch.Generator().manual_seed(c), "cpu", torch.float32)
    out = torch.empty_like(x)
    assert noise._shot_noise_levels(x, c, rng, out)
    scaled = out * c
    k = scaled.round()
    assert torch.allclose(scaled, k, rtol=0, atol=1e-4) and k.min() >= 0 and k.max() <= c
    for row, q in zip(k[0, 0].long(), levels.tolist()):
        rate = c * q / 255
        freq = torch.bincount(row, minlength=c + 1).double() / n
        pmf = [stats.poisson.pmf(i, rate) for i in range(c)] + [stats.poisson.sf(c - 1, rate)]
        tol = 4.5 * np.sqrt(np.maximum(pmf, 1 / n) / n)
        assert np.all(np.abs(freq.numpy() - np.array(pmf)) <= tol), (c, q)
    state = rng.g.get_state()
    assert not noise._shot_noise_levels(x + 0.1 / 255, c, rng, out)  # not uint8 levels
    assert torch.equal(rng.g.get_state(), state)  # and nothing drawn


def test_opencv_filters_equal_the_torch_paths():
    """On large CPU planes the Gaussian/box filters (sepFilter2D) and the defocus disk
    (filter2D) equal the banded products and the FFT convolution, for every border mode."""
    from probe.corruptions import _filters, blur
    x = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for mode in ("edge", "symmetric", "reflect101"):
        k = _filters.gaussian_kernel1d(2.0, 4.0, "cpu", torch.float64)
        opencv = _filters.separable(x, k, k[2:-2], mode)
        banded = _filters.filter_band(90, tuple(k[2:-2].tolist()), mode, "cpu", torch.float64).along(
            _filters.filter_band(70, tuple(k.tolist()), mode, "cpu", torch.float64).along(x, -2), -1)
        assert torch.allclose(opencv, banded, rtol=0, atol=1e-12), mode
    for radius, alias in ((3, 0.1), (10, 0.5)):
        disk = blur._disk(radius, alias, "cpu", torch.float64)
        fft = _filters.fft_convolve(x, disk[None], "reflect101")
        assert torch.allclose(_filters.convolve2d(x, disk, "reflect101"), fft, rtol=0, atol=1e-12)


def test_glass_blur_fused_per_image_path_equals_the_batched_one(monkeypatch):
    """Large CPU images take glass blur image by image (filter, cast, copy, filter, clip while
    in cache); it gives the batched path's pixels from the same draws (float32 and float64,
    RGB and gray, every severity)."""
    from probe.corruptions import blur
    pytest.importorskip("numba")
    g = torch.Generator().manual_seed(0)
    real = blur._glass_fused
    for x in (_tensor(_photos(224, count=2)), torch.rand(2, 1, 160, 200, generator=g, dtype=torch.float64)):
        for severity in (1, 3, 5):
            calls = []
            monkeypatch.setattr(blur, "_glass_fused", lambda *a: calls.append(real(*a)) or calls[-1])
            fused = corrupt(x, "glass_blur", severity, generator=torch.Generator().manual_seed(severity),
                            preset="imagenet")
            monkeypatch.setattr(blur, "_glass_fused", lambda *a: False)
            batched = corrupt(x, "glass_blur", severity, generator=torch.Generator().manual_seed(severity),
                              preset="imagenet")
            assert calls == [True] and torch.equal(fused, batched), (x.shape, severity)


def test_glass_blur_sequential_copy_equals_pointer_doubling():
    """Glass blur's CPU numba loop (the reference's sequential copy) and the batched pointer
    doubling (CUDA, or without numba) move the same pixels from the same draws, for both
    kinds of draws (8-bit and randint), several iterations, gray and float64."""
    from probe.corruptions import blur
    pytest.importorskip("numba")
    g = torch.Generator().manual_seed(0)
    for shape, delta, iterations, dtype in [((3, 3, 40, 50), 1, 2, torch.float32),
                                            ((2, 1, 30, 30), 2, 3, torch.float64),
                                            ((2, 3, 64, 48), 3, 2, torch.float32),
                                            ((1, 3, 9, 9), 4, 1, torch.float32)]:
        x = torch.rand(shape, generator=g, dtype=dtype)
        b, _, h, w = shape
        draws = blur._glass_draws(corruptions.Rng(g, "cpu", dtype), b, h, w, 2 * delta, iterations)
        chains = blur._shuffle_chains(x, draws, delta)
        sequential = x.clone()
        assert blur._shuffle_sequential(sequential, draws, delta)
        assert torch.equal(sequential, chains) and not torch.equal(sequential, x), shape


@pytest.mark.parametrize("name, kernel", [("motion_blur", "motion_blur"), ("snow", "motion_blur"),
                                          ("zoom_blur", "zoom_sum"), ("shot_noise", "shot_lookup"),
                                          ("impulse_noise", "impulse"),
                                          ("elastic_transform", "elastic_sample"), ("fog", "plasma"),
                                          ("fog", "fog_blend"), ("snow", "snow_blend"),
                                          ("brightness", "brightness"), ("pixelate", "pixelate"),
                                          ("frost", "frost_blend")])
def test_compiled_kernels_equal_the_torch_paths(name, kernel, monkeypatch):
    """The numba kernels (motion blur, zoom blur's zoom sum, shot noise's uint8-level lookup,
    impulse noise, the elastic warp's sampling, fog's plasma fractal and blend, snow's
    blend, brightness, pixelate, frost's blend) give the generic torch path's output from the same draws, on uint8-level
    and other batches (one with black pixels), RGB and gray, float32 and float64, several threads."""
    from probe.corruptions import _numba
    pytest.importorskip("numba")
    g = torch.Generator().manual_seed(0)
    batches = [_tensor(_photos(224, count=3)), torch.rand(2, 1, 28, 28, generator=g),
               torch.rand(2, 3, 37, 53, generator=g, dtype=torch.float64),
               torch.randint(0, 256, (2, 3, 40, 30), generator=g).double() / 255]
    batches[-1][:, :, :7] = 0  # black pixels (brightness turns them gray)
    assert _numba.kernel(kernel) is not None
    for x in batches:
        for severity in (1, 3, 5):
            for preset in ("auto", "imagenet"):
                fast = corrupt(x, name, severity, generator=torch.Generator().manual_seed(severity),
                               preset=preset)
                with monkeypatch.context() as m:
                    m.setattr(_numba, "kernel", lambda kernel_name: None)
                    generic = corrupt(x, name, severity, generator=torch.Generator().manual_seed(severity),
                                      preset=preset)
                tolerance = 1e-12 if x.dtype == torch.float64 else 1e-6
                assert torch.allclose(fast, generic, rtol=0, atol=tolerance), (name, x.shape, severity, preset)


def test_pixelate_opencv_upscale_is_pillows_nearest():
    """Pixelate's CPU upscale by OpenCV is used only where it picks Pillow's pixels."""
    from probe.corruptions import digital
    assert digital._opencv_nearest_is_pillows(134, 134, 224, 224)
    assert not digital._opencv_nearest_is_pillows(16, 16, 28, 28)  # OpenCV rounds differently


def test_deterministic_corruptions_ignore_generator():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for name in DETERMINISTIC:
        assert torch.equal(corrupt(x, name, 4, generator=torch.Generator().manual_seed(1)),
                           corrupt(x, name, 4, generator=torch.Generator().manual_seed(2))), name


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32), (1, 3, 37, 53)])
def test_input_is_never_modified(shape):
    """No corruption writes into the caller's batch, at any preset (glass blur's first blur
    is the identity for the CIFAR-10-C sigmas at 28-37 px, and its uint8 cast once ran on
    the caller's tensor in place)."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    for name in NAMES:
        for severity in range(1, 6):
            for preset in corruptions.PRESETS:
                corrupt(x, name, severity, preset=preset)
                assert torch.equal(x, before), (name, severity, preset)


def test_threads_do_not_change_outputs():
    """JPEG codes images on torch.get_num_threads() threads, the other corruptions use torch's
    intra-op threads: the output is the same for 1 and 2 threads."""
    x = _tensor(_photos(64, copies=2))
    old = torch.get_num_threads()
    try:
        outputs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outputs.append([corrupt(x, name, 3, generator=torch.Generator().manual_seed(0))
                            for name in ("jpeg_compression", "pixelate", "spatter")])
    finally:
        torch.set_num_threads(old)
    for name, a, b in zip(("jpeg_compression", "pixelate", "spatter"), *outputs):
        assert torch.equal(a, b), name


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="gaussian_noise, shot_noise"):
        corrupt(x, "blur", 1)
    for severity in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match="severity"):
            corrupt(x, "fog", severity)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(x * 2, "fog", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(x - 0.5, "fog", 1)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        corrupt(nan, "fog", 1)
    with pytest.raises(ValueError, match="B, C, H, W"):
        corrupt(x[0], "fog", 1)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        corrupt(torch.rand(2, 2, 32, 32), "fog", 1)
    with pytest.raises(ValueError, match="float"):
        corrupt((x * 255).to(torch.uint8), "fog", 1)
    with pytest.raises(ValueError, match="Tensor"):
        corrupt(x.numpy(), "fog", 1)


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_grid_and_reports_errors(tmp_path, capsys):
    from PIL import Image

    from probe.corruptions.__main__ import main
    path = tmp_path / "photo.png"
    Image.fromarray(_photos(32, count=1)[0]).save(path)
    out = tmp_path / "out"
    assert main(["--image", str(path), "--names", "contrast", "--out", str(out)]) == 0
    assert (out / "corruptions_photo.pdf").stat().st_size > 0
    for argv, message in ([["--image", str(path), "--data", "cifar10"], "not both"],
                          [["--image", str(path), "--weights", "random"], "--weights is not used"],
                          [["--image", str(path), "--names", "rain"], "unknown corruption 'rain'"],
                          [["--image", str(tmp_path / "none.png")], "not found"]):
        assert main(argv + ["--out", str(out)]) == 2, argv
        assert message in capsys.readouterr().err, argv


# ----------------------------------------------------------------------------- parity


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    return 10 * np.log10(1 / np.maximum(mse, 1e-12))


def _mad_ratio(u8: np.ndarray, name: str, severities, reference) -> float:
    """Mean |corrupted - clean| of ours / of the reference, pooled over severities.

    Images the reference turns black because of its division by zero (spatter
    without any drop: ``m /= m.max()`` gives NaN, cast to 0) are left out of both.
    """
    x, clean = _tensor(u8), u8.astype(np.float64) / 255
    ours_total = ref_total = 0.0
    for severity in severities:
        ref = reference(u8, name, severity, seed=severity).astype(np.float64) / 255
        ours = _numpy(corrupt(x, name, severity, preset="imagenet",
                              generator=torch.Generator().manual_seed(severity)))
        keep = ~((ref.max(axis=(1, 2, 3)) == 0) & (clean.max(axis=(1, 2, 3)) > 0))
        ours_total += np.abs(ours - clean)[keep].mean()
        ref_total += np.abs(ref - clean)[keep].mean()
    return ours_total / ref_total


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_parity_deterministic_32(name, reference):
    u8 = _photos(32)
    for severity in range(1, 6):
        ref = reference(u8, name, severity).astype(np.float64) / 255
        ours = _numpy(corrupt(_tensor(u8), name, severity, preset="imagenet"))
        assert _psnr(ours, ref).min() >= 30, (name, severity, _psnr(ours, ref))


@pytest.mark.parametrize("name", STOCHASTIC)
def test_parity_stochastic_32(name, reference):
    copies = 8 if name in ("spatter", "frost", "fog", "snow") else 2
    ratio = _mad_ratio(_photos(32, copies=copies), name, range(1, 6), reference)
    assert 0.85 <= ratio <= 1.15, (name, ratio)


@pytest.mark.parametrize("name", ["zoom_blur", "jpeg_compression"])
def test_parity_deterministic_224(name, reference):
    u8 = _photos(224, count=2)
    ref = reference(u8, name, 3).astype(np.float64) / 255
    ours = _numpy(corrupt(_tensor(u8), name, 3, preset="imagenet"))
    assert _psnr(ours, ref).min() >= 30


@pytest.mark.parametrize("name", ["gaussian_noise", "motion_blur"])
def test_parity_stochastic_224(name, reference):
    ratio = _mad_ratio(_photos(224, count=2), name, [3], reference)
    assert 0.85 <= ratio <= 1.15, (name, ratio)


@pytest.mark.parametrize("size", [32, 224])
def test_jpeg_is_the_reference_codec(size):
    """JPEG gives the reference's Pillow output exactly, for RGB and gray images (the
    reference codes gray ones as RGB and converts back) and float32/float64 input."""
    u8 = _photos(size, count=2)
    for severity in range(1, 6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.stack([ic.corrupt(img, severity=severity, corruption_name="jpeg_compression")
                            for img in u8])
            ref_gray = np.stack([ic.corrupt(img[..., 0], severity=severity,
                                            corruption_name="jpeg_compression")[..., 0] for img in u8])
        for dtype in (torch.float32, torch.float64):
            x = _tensor(u8).to(dtype)
            ours = corrupt(x, "jpeg_compression", severity, preset="imagenet")
            gray = corrupt(x[:, :1], "jpeg_compression", severity, preset="imagenet")
            assert ours.dtype == dtype
            assert np.array_equal((_numpy(ours) * 255).round().astype(np.uint8), ref), (severity, dtype)
            assert np.array_equal((_numpy(gray)[..., 0] * 255).round().astype(np.uint8), ref_gray), \
                (severity, dtype)


def test_box_resize_is_pillows_box_filter():
    """BOX resizing (rows by the multiply-add chain on CPU float32, columns by the banded
    product) equals the dense product with Pillow's BOX weights, for down- and upscaling."""
    from probe.corruptions._filters import _pil_box_weights, box_resize
    g = torch.Generator().manual_seed(0)
    for h, w, out_h, out_w in [(224, 224, 67, 67), (224, 224, 89, 134), (300, 96, 150, 48),
                               (64, 40, 19, 12), (20, 24, 224, 200)]:
        x = torch.rand(2, 3, h, w, generator=g)
        dense = torch.einsum("ih,bchw,jw->bcij", _pil_box_weights(h, out_h), x.double(),
                             _pil_box_weights(w, out_w))
        assert torch.allclose(box_resize(x, out_h, out_w).double(), dense, rtol=0, atol=1e-6), (h, out_h)


def test_spatter_edges_are_opencv_canny_and_distances_are_euclidean():
    """Spatter's batched Canny equals cv2.Canny on a liquid-like layer; its capped distance
    transform equals the exact Euclidean one (scipy) capped at 20."""
    import cv2
    from scipy import ndimage
    g = torch.Generator().manual_seed(0)
    liquid = weather.gaussian(torch.randn(6, 1, 64, 80, generator=g) * 0.3 + 0.65, 2.0)
    level = torch.floor(torch.where(liquid < 0.68, 0.0, liquid).clamp(0, 1) * 255)
    edges = weather._canny(level, 50, 150)[:, 0]
    ref = np.stack([cv2.Canny(v[0].numpy().astype(np.uint8), 50, 150) > 0 for v in level])
    assert ref.sum() > 0 and np.array_equal(edges.numpy(), ref)
    distance = weather._distance_to(edges, 20, torch.float32).numpy()
    exact = np.stack([np.minimum(ndimage.distance_transform_edt(~m), 20) for m in edges.numpy()])
    assert np.allclose(distance, exact, rtol=0, atol=1e-5)


def test_parity_auto_224_equals_imagenet():
    x = _tensor(_photos(224, count=1))
    for name in ("defocus_blur", "glass_blur", "gaussian_noise"):
        assert torch.equal(corrupt(x, name, 2), corrupt(x, name, 2, preset="imagenet"))


# ----------------------------------------------------------------------------- severity order


def _mean_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity
    return float(np.mean([structural_similarity(a, b, channel_axis=-1, data_range=1.0)
                          for a, b in zip(_numpy(x), _numpy(y))]))


def _ssim_curve(x: torch.Tensor, name: str, preset: str) -> np.ndarray:
    return np.array([_mean_ssim(x, corrupt(x, name, s, preset=preset)) for s in range(1, 6)])


# Where the published severity tables themselves are not ordered by SSIM, the
# step is exempt. ImageNet-C snow 2 -> 3 (zoomed, thresholded flakes) and glass
# blur 3 -> 4 (3 scrambling passes at severity 3, 2 at 4): the reference package
# does not decrease there either (checked below). CIFAR-10-C's
# glass blur (more blur at 1 -> 3 hides the shuffle), elastic transform (severity
# 1 has the largest affine jitter), spatter (water drops at 1-3, mud at 4-5) and
# snow 4 -> 5 are not monotone in SSIM either.
IMAGENET_NOT_MONOTONE = {"snow": 1, "glass_blur": 2}  # name -> index of the exempt step
CIFAR_NOT_MONOTONE = {"glass_blur", "elastic_transform", "spatter", "snow"}
SSIM_TOLERANCE = 0.015


@pytest.mark.parametrize("name", NAMES)
def test_severity_monotonic_imagenet_32(name, reference):
    copies = 1 if name in DETERMINISTIC else (16 if name == "snow" else 4)  # snow: few big flakes
    u8 = _photos(32, copies=copies)
    curve = _ssim_curve(_tensor(u8), name, "imagenet")
    steps = np.diff(curve)
    if name in IMAGENET_NOT_MONOTONE:
        i = IMAGENET_NOT_MONOTONE[name]
        ref_curve = [_mean_ssim(_tensor(u8), _tensor(reference(u8, name, s, seed=s)))
                     for s in range(1, 6)]
        assert np.diff(ref_curve)[i] > -SSIM_TOLERANCE, (name, ref_curve)  # reference: no drop either
        steps = np.delete(steps, i)
    assert steps.max() <= SSIM_TOLERANCE, (name, curve)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in CIFAR_NOT_MONOTONE])
def test_severity_monotonic_auto_gray_28(name):
    x = _tensor(_photos(28, copies=1 if name in DETERMINISTIC else 4)).mean(dim=1, keepdim=True)
    curve = _ssim_curve(x, name, "auto")
    assert np.diff(curve).max() <= SSIM_TOLERANCE, (name, curve)


# ----------------------------------------------------------------------------- shipped model


@pytest.fixture(scope="module")
def cnn_and_data():
    from probe import data, zoo
    model = zoo.load("cnn")
    x, y = data.as_tensors(data.load("fashion-mnist", "test", n=200))
    return model, x, y


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(dim=1) == y).float().mean())


def test_cnn_accuracy_falls_with_severity(cnn_and_data):
    model, x, y = cnn_and_data
    x, y = x[:100], y[:100]
    curve = []
    for severity in range(1, 6):
        accs = [_accuracy(model, corrupt(x, name, severity), y) for name in corruptions.COMMON]
        curve.append(float(np.mean(accs)))
    assert np.diff(curve).max() <= 2.0, curve
    assert curve[-1] < _accuracy(model, x, y)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise"])
def test_cnn_accuracy_same_as_reference(cnn_and_data, reference, name):
    """Gray 28 px -> 32 px RGB -> corrupted by ours and by the reference -> gray 28 px:
    the CNN's accuracy, averaged over severities 1..5 and two draws, agrees within 2 points."""
    import torch.nn.functional as F
    model, x, y = cnn_and_data
    rgb32 = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)
    u8 = (rgb32 * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def back(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t.mean(dim=1, keepdim=True), size=28, mode="bilinear",
                             align_corners=False).clamp(0, 1)

    ours, ref = [], []
    for draw in range(2):
        for severity in range(1, 6):
            seed = 10 * draw + severity
            g = torch.Generator().manual_seed(seed)
            ours.append(_accuracy(model, back(corrupt(_tensor(u8), name, severity, preset="imagenet",
                                                      generator=g)), y))
            ref.append(_accuracy(model, back(_tensor(reference(u8, name, severity, seed=seed))), y))
    assert abs(np.mean(ours) - np.mean(ref)) <= 2.0, (name, ours, ref)


def test_large_cpu_draws_come_in_seeded_pieces_independent_of_threads():
    """Uniform and 16-bit draws above one piece come from numpy generators spawned from one draw
    of the torch generator: the same values on 1 and 2 threads, fresh values on the next draw,
    the right distribution; smaller draws are the torch generator's own."""
    from probe.corruptions import _rng
    n = 3 * _rng.PIECE + 1234

    def draws(threads: int):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            rng = _rng.Rng(torch.Generator().manual_seed(7), "cpu", torch.float32)
            return rng.uniform((n,), -2, 3), rng.uniform((n,), -2, 3), rng.bits16((4 * n,))
        finally:
            torch.set_num_threads(before)
    one, two = draws(1), draws(2)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    u, v, bits = two
    assert not torch.equal(u, v)
    assert not torch.equal(u[:_rng.PIECE], u[_rng.PIECE:2 * _rng.PIECE])  # pieces are not one stream
    assert float(u.min()) >= -2 and float(u.max()) < 3
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 25 / 12) < 0.02
    assert bits.dtype == torch.int16 and bits.shape == (4 * n,)
    counts = torch.bincount((bits.long() + 32768) >> 12, minlength=16).double()  # top 4 bits
    expected = bits.numel() / 16
    assert float(((counts - expected) ** 2 / expected).sum()) < 50  # chi-square, 15 dof
    small = _rng.Rng(torch.Generator().manual_seed(3), "cpu", torch.float32).uniform((1000,), 0, 1)
    assert torch.equal(small, torch.rand(1000, generator=torch.Generator().manual_seed(3)))


def test_range_check_runs_once_per_unchanged_batch(monkeypatch):
    """Corrupting one batch many times checks its range once; any in-place change through
    torch (also through a view) makes the next call check again, and out-of-range values
    still raise."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    checks = []
    real = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda t: checks.append(1) or real(t))
    corrupt(x, "contrast", 1)
    corrupt(x, "brightness", 2)
    assert len(checks) == 1
    x[0, 0, 0, 0] = 0.5  # in range: checked again, accepted
    corrupt(x, "contrast", 1)
    assert len(checks) == 2
    view = x[1]
    view.mul_(255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(x, "contrast", 1)
    y = x.clone()  # another batch with the same values is checked on its own
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(y, "contrast", 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_out_buffer_gets_the_same_values(dtype):
    """``corrupt(..., out=buf)`` writes into ``buf`` and returns it, with the values of a call
    without it, for every corruption (one buffer reused across them); a wrong buffer or one
    sharing memory with the input is one clear error."""
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0)).to(dtype)
    batches = [x] + ([_tensor(_photos(224, count=2))] if dtype == torch.float32 else [])  # compiled paths
    for batch in batches:
        buf = torch.full_like(batch, 7.0)
        for name in NAMES:
            expected = corrupt(batch, name, 3, generator=torch.Generator().manual_seed(1))
            got = corrupt(batch, name, 3, generator=torch.Generator().manual_seed(1), out=buf)
            assert got is buf and torch.equal(got, expected), (name, batch.shape)
    with pytest.raises(ValueError, match="like x"):
        corrupt(x, "contrast", 1, out=torch.empty(3, 3, 40, 41, dtype=dtype))
    with pytest.raises(ValueError, match="like x"):
        corrupt(x, "contrast", 1, out=torch.empty(3, 3, 40, 40, dtype=torch.float64 if dtype != torch.float64 else torch.float32))
    with pytest.raises(ValueError, match="shares memory"):
        corrupt(x, "contrast", 1, out=x)
