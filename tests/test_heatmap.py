"""Fourier heat map (Yin et al. 2019) in bounded memory: per-batch basis images, frequency
windows, the k <-> -k symmetry, and a memory bound at 224 px."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from probe import data, heatmap, zoo


def _old_full_basis(h, w):
    """The basis as it was built before per-batch generation: one complex [h*w, h, w] tensor."""
    freqs = torch.zeros(h * w, h, w, dtype=torch.complex64)
    idx = torch.arange(h * w)
    freqs[idx, idx // w, idx % w] = 1.0
    freqs = torch.fft.ifftshift(freqs, dim=(-2, -1))
    basis = torch.fft.ifft2(freqs).real
    basis = basis / basis.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    return basis.reshape(h, w, h, w)


@pytest.mark.parametrize("h,w", [(8, 8), (7, 9), (28, 28)])
def test_per_batch_basis_equals_the_old_full_basis(h, w):
    old = _old_full_basis(h, w)
    assert torch.equal(heatmap.fourier_basis(h, w), old)
    freqs = [(i, j) for i in range(h) for j in range(w)]
    for per in (1, 5, 64):
        for start in range(0, len(freqs), per):
            part = freqs[start:start + per]
            got = heatmap.fourier_basis_images(h, w, part)
            assert torch.equal(got, torch.stack([old[i, j] for i, j in part])), (per, start)


def test_window_sizes_and_errors():
    assert heatmap.heatmap_size(28, 28) == (28, 28)            # full grid up to 32 px
    assert heatmap.heatmap_size(224, 224) == (31, 31)          # default window above
    assert heatmap.heatmap_size(224, 224, 5) == (5, 5)
    assert heatmap.heatmap_size(28, 28, 31) == (28, 28)        # larger than the image: whole grid
    rows, cols = heatmap.heatmap_window(224, 224, 31)
    assert (rows.start, rows.stop) == (112 - 15, 112 + 16) and rows == cols
    with pytest.raises(ValueError, match="odd --heatmap-size"):
        heatmap.heatmap_size(224, 224, 30)
    with pytest.raises(ValueError, match="positive integer"):
        heatmap.heatmap_size(224, 224, 0)


def test_window_is_the_centre_of_the_full_heat_map_and_symmetric():
    model = zoo.load("fnet")
    x, y = data.as_tensors(data.load("fashion-mnist", "test", n=6, seed=0))
    full = heatmap.fourier_heatmap_counts(model, x, y, epsilon=3.0,
                                          generator=torch.Generator().manual_seed(1))
    window = heatmap.fourier_heatmap_counts(model, x, y, epsilon=3.0, size=7,
                                            generator=torch.Generator().manual_seed(1))
    assert full.shape == (28, 28) and window.shape == (7, 7)
    assert torch.equal(window, full[11:18, 11:18])
    assert torch.equal(window, window.flip(0).flip(1))          # k and -k: one basis image
    assert window.sum() > 0


def test_basis_batch_on_the_data_device_and_forward_batch():
    assert heatmap.forward_batch((1, 28, 28)) == 512             # as before at 28 px
    assert heatmap.forward_batch((3, 224, 224)) == 55
    assert heatmap.fourier_basis_images(6, 6, [(3, 3)], device="meta").device.type == "meta"


_MEMORY_SCRIPT = textwrap.dedent("""
    import json
    import torch
    from probe import heatmap

    def status_mb(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))

    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.AvgPool2d(32), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 7 * 7, 10)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 224, 224, generator=g)
    y = torch.randint(0, 10, (2,), generator=g)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                   # peak RSS := current RSS
    before = status_mb("VmRSS")
    grid = heatmap.fourier_heatmap_counts(model, x, y, epsilon=3.0, generator=g, size=5)
    print(json.dumps({"shape": list(grid.shape), "delta_mb": status_mb("VmHWM") - before}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_heatmap_at_224_px_stays_in_bounded_memory():
    """Peak RSS growth of a 224-px heat map (13 frequencies x 2 images in one forward batch,
    ~16 MB of perturbed images); the old code allocated the complex [224*224, 224, 224] basis
    (~20 GB) here."""
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [5, 5]
    assert out["delta_mb"] < 150, out


def test_cli_heatmap_size(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "probe.robustness", "--model", "fnet", "--n", "8", "--attacks",
         "none", "--corruptions", "none", "--n-heatmap", "4", "--heatmap-size", "5",
         "--out", str(tmp_path), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "fashion-mnist" / "fnet" / "robustness.json").read_text())
    grid = torch.tensor(result["fourier_heatmap"]["error"])
    assert grid.shape == (5, 5) and torch.equal(grid, grid.flip(0).flip(1))
    bad = subprocess.run(
        [sys.executable, "-m", "probe.robustness", "--model", "fnet", "--heatmap-size", "4",
         "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "positive odd number" in lines[0], bad.stderr
