import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from probe import data


def _write_idx(path: Path, array: np.ndarray, *, gz: bool = True, truncate: int = 0) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if truncate:
        raw = raw[:-truncate]
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _fake_fmnist(folder: Path, n: int = 20, *, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, (imgs, lbls) in data._FMNIST_FILES.items():
        _write_idx(folder / (imgs + suffix), rng.integers(0, 256, (n, 28, 28)), gz=gz)
        _write_idx(folder / (lbls + suffix), rng.integers(0, 10, (n,)), gz=gz)


def test_fashion_mnist_system_copy():
    if not data.fashion_mnist_available():
        pytest.skip("Fashion-MNIST not found (system copy or $PROBE_DATA); `make test` installs it")
    ds = data.load("fashion-mnist", "test")
    assert len(ds) == 10_000 and ds.classes == data.FASHION_MNIST_CLASSES
    x, y, = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert isinstance(y, int) and 0 <= y < 10
    train = data.load("fashion-mnist", "train")
    assert len(train) == 60_000
    assert torch.bincount(train.labels).tolist() == [6000] * 10


def test_subset_is_seeded_and_reproducible():
    if not data.fashion_mnist_available():
        pytest.skip("Fashion-MNIST not found (system copy or $PROBE_DATA); `make test` installs it")
    a = data.load("fashion-mnist", "test", n=100, seed=3)
    b = data.load("fashion-mnist", "test", n=100, seed=3)
    c = data.load("fashion-mnist", "test", n=100, seed=4)
    assert len(a) == 100
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    x, y = data.as_tensors(a)
    assert x.shape == (100, 1, 28, 28) and y.shape == (100,)


def test_root_and_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.delenv("PROBE_DATA", raising=False)
    _fake_fmnist(tmp_path / "flat", gz=False)
    assert len(data.load("fashion-mnist", "train", root=tmp_path / "flat")) == 20
    _fake_fmnist(tmp_path / "tv" / "FashionMNIST" / "raw")
    ds = data.load("fashion-mnist", "test", root=tmp_path / "tv")
    assert len(ds) == 20 and ds.images.dtype == torch.uint8
    monkeypatch.setenv("PROBE_DATA", str(tmp_path / "flat"))
    assert len(data.load("fashion-mnist", "test")) == 20


def test_not_found_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.delenv("PROBE_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist.*--download"):
        data.load("fashion-mnist", "test", root=tmp_path)


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    """--download hands over to torchvision's FashionMNIST and reads its raw folder."""
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.delenv("PROBE_DATA", raising=False)
    calls = []

    class FakeFashionMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            _fake_fmnist(Path(root) / "FashionMNIST" / "raw")

    import torchvision.datasets
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    ds = data.load("fashion-mnist", "test", root=tmp_path / "dl", download=True)
    assert len(ds) == 20 and calls and all(c[2] for c in calls)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad_gzip", "label_mismatch"])
def test_corrupt_idx_gives_clear_error(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "nowhere")
    _fake_fmnist(tmp_path)
    imgs = tmp_path / "t10k-images-idx3-ubyte.gz"
    if damage == "truncated":
        _write_idx(imgs, np.zeros((20, 28, 28)), truncate=100)
    elif damage == "garbage":
        with gzip.open(imgs, "wb") as f:
            f.write(b"\x01\x02\x03 not an idx file")
    elif damage == "bad_gzip":
        imgs.write_bytes(gzip.compress(np.zeros(1000, np.uint8).tobytes())[:50])
    else:
        _write_idx(imgs, np.zeros((19, 28, 28)))
    with pytest.raises(ValueError, match="corrupt|not an IDX|truncated|do not form"):
        data.load("fashion-mnist", "test", root=tmp_path)


def _fake_cifar(root: Path, n: int = 6) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                             b"frog", b"horse", b"ship", b"truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_cifar10_from_local_folder(tmp_path):
    _fake_cifar(tmp_path)
    test = data.load("cifar10", "test", root=tmp_path)
    train = data.load("cifar10", "train", root=tmp_path)
    assert len(test) == 6 and len(train) == 30
    x, y = test[0]
    assert x.shape == (3, 32, 32) and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert test.classes[0] == "airplane"


def test_cifar10_refuses_code_in_pickles(tmp_path):
    _fake_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(ValueError, match="not a valid CIFAR-10 batch"):
        data.load("cifar10", "test", root=tmp_path)
    assert not marker.exists()


def test_cifar10_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        data.load("cifar10", "test", root=tmp_path)


def test_imagefolder(tmp_path):
    from PIL import Image
    for cls, colour in [("cats", (255, 0, 0)), ("dogs", (0, 0, 255))]:
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (40, 50), colour).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "cats" / "notes.txt").write_text("ignored")
    ds = data.load(f"imagefolder:{tmp_path}", "test")
    assert len(ds) == 6 and ds.classes == ["cats", "dogs"] and ds.input_size == (1, 28, 28)
    rgb = data.load(f"imagefolder:{tmp_path}", "test", input_size=(3, 32, 32))
    x, y = rgb[0]
    assert x.shape == (3, 32, 32) and y == 0 and float(x[0].mean()) > 0.99 and float(x[2].mean()) < 0.01
    with pytest.raises(FileNotFoundError):
        data.load(f"imagefolder:{tmp_path / 'missing'}", "test")


def test_synthetic_mask_holds_the_evidence():
    ds = data.load("synthetic", "train", n=64, seed=1)
    x, y, mask = ds[0]
    assert x.shape == (1, 28, 28) and mask.shape == (1, 28, 28) and mask.dtype == torch.bool
    assert int(mask.sum()) == 100
    again = data.load("synthetic", "train", n=64, seed=1)
    assert torch.equal(ds.images, again.images)
    other_split = data.load("synthetic", "test", n=64, seed=1)
    assert not torch.equal(ds.images, other_split.images)
    # Outside the mask the images carry no class information: mean intensity
    # outside the mask is the same for every class (within noise), while the
    # horizontal-vs-vertical structure inside differs.
    imgs, labels, masks = ds.images, ds.labels, ds.masks
    dy = (imgs[:, :, 1:, :] - imgs[:, :, :-1, :]).abs()
    dx = (imgs[:, :, :, 1:] - imgs[:, :, :, :-1]).abs()
    inside_dy = (dy * masks[:, :, 1:, :]).flatten(1).sum(1)
    inside_dx = (dx * masks[:, :, :, 1:]).flatten(1).sum(1)
    horiz, vert = labels == 0, labels == 1
    assert (inside_dy[horiz] > inside_dx[horiz]).all()
    assert (inside_dx[vert] > inside_dy[vert]).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("mnist-but-wrong", "test")
    with pytest.raises(ValueError, match="split"):
        data.load("synthetic", "val")
    with pytest.raises(ValueError, match="positive"):
        data.load("synthetic", "test", n=0)


# ----------------------------------------------------------------------------- fit_to_model, uploads


def _png(w: int, h: int, mode: str = "L", value=128) -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new(mode, (w, h), value).save(buf, format="PNG")
    return buf.getvalue()


def test_fit_to_model_channels_and_size():
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(data.fit_to_model(x, (1, 28, 28)), x)           # already fitted: unchanged
    rgb = data.fit_to_model(x, (3, 28, 28))                               # 1 -> 3 by repetition
    assert rgb.shape == (2, 3, 28, 28) and all(torch.equal(rgb[:, c], x[:, 0]) for c in range(3))
    colour = torch.rand(1, 3, 20, 20)
    gray = data.fit_to_model(colour, (1, 20, 20))                         # 3 -> 1 by the mean
    assert torch.allclose(gray[:, 0], colour.mean(1))
    big = data.fit_to_model(torch.full((1, 1, 28, 28), 0.25), (1, 32, 32))  # bilinear resize
    assert big.shape == (1, 1, 32, 32) and torch.allclose(big, torch.full_like(big, 0.25))
    with pytest.raises(ValueError, match="cannot map 3-channel"):
        data.fit_to_model(colour, (4, 20, 20))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        data.fit_to_model(torch.rand(28, 28), (1, 28, 28))


def test_load_upload_png_and_jpeg_to_model_size():
    import io
    from PIL import Image
    x = data.load_upload(_png(40, 30), (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 128 / 255), atol=1e-6)
    buf = io.BytesIO()
    Image.new("RGB", (50, 60), (255, 0, 0)).save(buf, format="JPEG")
    rgb = data.load_upload(buf.getvalue(), (3, 32, 32))
    assert rgb.shape == (1, 3, 32, 32) and rgb[0, 0].mean() > 0.9 and rgb[0, 1].mean() < 0.1
    inv = data.load_upload(_png(8, 8), (1, 8, 8), invert=True)
    assert torch.allclose(inv, 1 - torch.full_like(inv, 128 / 255), atol=1e-6)
    with pytest.raises(ValueError, match="4 input channels"):
        data.load_upload(_png(8, 8), (4, 8, 8))


@pytest.mark.parametrize("content, message", [
    (b"", "empty"), (b"hello, I am not an image", "not a PNG or JPEG"),
    (b"%PDF-1.7 ...", "not a PNG or JPEG"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot be read")])
def test_load_upload_rejects_non_images_with_a_message(content, message):
    with pytest.raises(ValueError, match=message):
        data.load_upload(content)


def test_load_upload_rejects_oversized_dimensions_before_decoding():
    # a 1-bit PNG of 20000 x 20000 pixels is tiny on disk (a decompression bomb)
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("1", (20000, 20000), 0).save(buf, format="PNG", optimize=True)
    bomb = buf.getvalue()
    assert len(bomb) < 1_000_000
    with pytest.raises(ValueError, match="20000 x 20000 pixels"):
        data.load_upload(bomb)
    with pytest.raises(ValueError, match="at most 100 pixels"):
        data.load_upload(_png(11, 10), max_pixels=100)
    buf = io.BytesIO()                                   # JPEG: PIL reads the size from the header
    Image.new("L", (300, 200), 0).save(buf, format="JPEG")
    with pytest.raises(ValueError, match="300 x 200 pixels"):
        data.load_upload(buf.getvalue(), max_pixels=1000)


def test_load_upload_rejects_too_many_bytes():
    with pytest.raises(ValueError, match="limit is 10 MB"):
        data.load_upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * (data.MAX_UPLOAD_BYTES + 1))


def test_glyph_pairs_label_is_the_relation_between_two_glyphs_at_the_distance():
    from probe.data import GLYPH, glyph_pairs, glyph_shapes
    shapes = glyph_shapes()
    assert len({tuple(s.flatten().tolist()) for s in shapes}) == len(shapes)
    assert set(shapes.sum((1, 2)).tolist()) == {8.0}  # no glyph is brighter than another
    for distance in (4, 12, 20):
        ds = glyph_pairs(200, distance, seed=3)
        assert ds.classes == ["different", "same"] and 60 < int(ds.labels.sum()) < 140
        for k in range(40):
            rows, cols = torch.nonzero(ds.masks[k, 0], as_tuple=True)
            top, left = int(rows.min()), int(cols.min())
            vertical = int(rows.max()) - top + 1 > GLYPH
            second = (top + distance, left) if vertical else (top, left + distance)
            a = ds.images[k, 0, top:top + GLYPH, left:left + GLYPH]
            b = ds.images[k, 0, second[0]:second[0] + GLYPH, second[1]:second[1] + GLYPH]
            assert ds.masks[k, 0, second[0]:second[0] + GLYPH, second[1]:second[1] + GLYPH].all()
            assert int(ds.masks[k].sum()) == 2 * GLYPH * GLYPH
            assert torch.equal(a, b) == bool(ds.labels[k] == 1), (distance, k)
    again = glyph_pairs(20, 12, seed=3)
    assert torch.equal(again.images, glyph_pairs(20, 12, seed=3).images)
    assert not torch.equal(again.images, glyph_pairs(20, 12, seed=4).images)
    with pytest.raises(ValueError, match="distance"):
        glyph_pairs(4, 25)
    with pytest.raises(ValueError, match="whole pixels"):
        data.load("glyph-pairs:x", "train", n=4)
    assert data.load("glyph-pairs:20", "test", n=8).name == "glyph-pairs:20"
