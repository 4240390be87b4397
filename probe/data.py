"""Datasets: Fashion-MNIST (embedded default), CIFAR-10, image folders, ImageNet, synthetic.

Every dataset is a ``torch.utils.data.Dataset`` whose items are tuples that
start with ``(image, label)``: ``image`` is float32 in ``[0, 1]`` of shape
``[C, H, W]``. The ``synthetic`` dataset adds a third element, the boolean
``[1, H, W]`` mask of the region that holds the class evidence. Datasets carry
``classes`` (names, index = label), ``name``, ``split`` and ``input_size``.

``imagefolder:<path>``, ``imagenet:<path>`` (WordNet-id class folders) and
ImageNet-C cells (:func:`imagenet_c`) stream from disk (:mod:`probe.imagenet`):
``--n`` picks the seeded subset of files before decoding, and
``load(..., model=model)`` gives a ``timm:`` model its own eval transform
(without mean/std: images stay in ``[0, 1]``), the zoo its 28x28 resize.

Fashion-MNIST: Xiao et al. 2017, arXiv:1708.07747.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .imagenet import (FolderDataset, imagefolder, imagenet, imagenet_c, imagenet_c_cells, loader,
                       model_transform, resize_transform, seeded_subset, timm_transform)

__all__ = [
    "fit_to_model", "decode", "labels", "load_upload", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS",
    "FASHION_MNIST_CLASSES", "SYSTEM_FASHION_MNIST", "NAMES", "ImageDataset", "load",
    "as_tensors", "read_idx", "find_fashion_mnist", "fashion_mnist_available", "synthetic",
    "glyph_pairs", "glyph_shapes",
    "FolderDataset", "imagenet_c", "imagenet_c_cells", "loader", "timm_transform",
    "model_transform", "resize_transform",
]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = ["fashion-mnist", "cifar10", "imagefolder:<path>", "imagenet:<path>", "synthetic",
         "glyph-pairs:<distance>"]
SYNTHETIC_CLASSES = ["horizontal", "vertical", "diagonal", "checker"]
GLYPH_PAIR_CLASSES = ["different", "same"]
GLYPH = 4  # glyph side (px) of the glyph-pairs dataset

_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class ImageDataset(Dataset):
    """Images held in memory as uint8 (or float) ``[N, C, H, W]`` with integer labels.

    Items are ``(image, label)`` or ``(image, label, mask)`` when masks exist.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, classes: Sequence[str],
                 name: str, split: str, masks: Optional[torch.Tensor] = None) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.masks = masks
        self.classes = list(classes)
        self.name = name
        self.split = split

    @property
    def input_size(self) -> Tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i) -> torch.Tensor:
        x = self.images[i]
        return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()

    def __getitem__(self, i: int):
        if self.masks is not None:
            return self.image(i), int(self.labels[i]), self.masks[i]
        return self.image(i), int(self.labels[i])

    def subset(self, indices: torch.Tensor) -> "ImageDataset":
        return ImageDataset(self.images[indices], self.labels[indices], classes=self.classes,
                            name=self.name, split=self.split,
                            masks=None if self.masks is None else self.masks[indices])

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"input_size={self.input_size}, classes={len(self.classes)})")


def as_tensors(ds: Dataset, *, workers: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """All of a dataset as ``(images float [N, C, H, W] in [0, 1], labels long [N])``.

    Meant for small sets (a folder dataset is decoded here, its subset only);
    iterate large ones with :func:`loader`. ``workers``: decoding processes.
    """
    if isinstance(ds, ImageDataset):
        return ds.image(slice(None)), ds.labels.clone()
    if len(ds) == 0:
        raise ValueError("the dataset is empty")
    images: Optional[torch.Tensor] = None
    labels = torch.empty(len(ds), dtype=torch.long)
    start = 0
    for batch in loader(ds, batch_size=64, workers=workers):
        x, y = batch[0], batch[1]
        if images is None:
            images = torch.empty((len(ds), *x.shape[1:]), dtype=torch.float32)
        images[start:start + len(x)] = x
        labels[start:start + len(x)] = y
        start += len(x)
    return images, labels


# ----------------------------------------------------------------------------- IDX


def decode(ds: Dataset, indices: Sequence[int], *, workers: int = 0) -> torch.Tensor:
    """Images ``indices`` of ``ds`` as float ``[k, C, H, W]`` in [0, 1], decoded now.

    In-memory datasets slice their tensor; folder datasets decode just these files
    (``workers`` decoding processes). Used to load one chunk at a time.
    """
    if isinstance(ds, ImageDataset):
        return ds.image(torch.as_tensor(list(indices), dtype=torch.long))
    from torch.utils.data import Subset
    return as_tensors(Subset(ds, list(indices)), workers=workers)[0]


def labels(ds: Dataset) -> torch.Tensor:
    """Every label of ``ds`` (long ``[N]``) without decoding an image."""
    found = getattr(ds, "labels", None)
    if isinstance(found, torch.Tensor) and len(found) == len(ds):
        return found.clone().long()
    return torch.tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)


def fit_to_model(x: torch.Tensor, input_size: Tuple[int, int, int]) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` images in ``[0, 1]`` and match channels to a model's ``(C, H, W)``.

    The one conversion used by every tool (CLIs, app, analyses): bilinear resize
    when the side differs; 1 channel -> C by repetition, C -> 1 by the channel
    mean. Other channel changes raise ``ValueError``.
    """
    import torch.nn.functional as F
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected images of shape [B, C, H, W], got {got}")
    c, h, w = (int(v) for v in input_size)
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise ValueError(f"cannot map {x.shape[1]}-channel images to a model with {c} channels")
    return x.contiguous()


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); delete it and "
                         f"get the dataset again (e.g. `apt-get install --reinstall "
                         f"dataset-fashion-mnist` or --download)") from None


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array, checking its header and size."""
    path = Path(path)
    raw = _read_bytes(path)
    fix = ("delete it and get the dataset again (e.g. `apt-get install --reinstall "
           "dataset-fashion-mnist` or --download)")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number); {fix}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path} has a truncated IDX header; {fix}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path} is truncated or corrupt: header promises {expected} bytes of data "
                         f"for shape {dims}, file holds {len(raw) - header}; {fix}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _candidate_folders(root: Optional[Union[str, Path]]) -> List[Path]:
    bases = [Path(root)] if root else []
    if os.environ.get("PROBE_DATA"):
        bases.append(Path(os.environ["PROBE_DATA"]))
    folders = [b for b in bases] + [b / "fashion-mnist" for b in bases]
    folders.append(SYSTEM_FASHION_MNIST)
    folders += [b / "FashionMNIST" / "raw" for b in bases]  # torchvision's layout
    return folders


def fashion_mnist_available(root: Optional[Union[str, Path]] = None) -> bool:
    """Whether both Fashion-MNIST splits are found where :func:`load` looks (``root``, ``$PROBE_DATA``,
    the system copy)."""
    try:
        find_fashion_mnist("train", root)
        find_fashion_mnist("test", root)
    except FileNotFoundError:
        return False
    return True


def find_fashion_mnist(split: str, root: Optional[Union[str, Path]] = None) -> Tuple[Path, Path]:
    """Paths of the images/labels IDX files of a split; raises with instructions if absent.

    Looks in ``root`` then ``$PROBE_DATA`` (each directly and in ``fashion-mnist/``),
    then ``/usr/share/datasets/fashion-mnist/`` (Debian package
    ``dataset-fashion-mnist``), then torchvision's ``<root>/FashionMNIST/raw``.
    """
    img_stem, lbl_stem = _FMNIST_FILES[split]
    folders = _candidate_folders(root)
    for folder in folders:
        imgs, lbls = _idx_file(folder, img_stem), _idx_file(folder, lbl_stem)
        if imgs and lbls:
            return imgs, lbls
    looked = ", ".join(str(f) for f in dict.fromkeys(folders))
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files ({img_stem}[.gz]) not found; looked in: {looked}. Get them "
        f"with `sudo apt-get install dataset-fashion-mnist`, or pass --download (with --data-root "
        f"DIR) to fetch them with torchvision, or point --data-root / $PROBE_DATA at a folder "
        f"holding the four IDX files")


def _download_fashion_mnist(root: Optional[Union[str, Path]]) -> Path:
    from torchvision.datasets import FashionMNIST
    root = Path(root or os.environ.get("PROBE_DATA") or Path.home() / ".cache" / "probe")
    for train in (True, False):
        FashionMNIST(str(root), train=train, download=True)
    return root


def _fashion_mnist(split: str, root, download: bool) -> ImageDataset:
    try:
        imgs_path, lbls_path = find_fashion_mnist(split, root)
    except FileNotFoundError:
        if not download:
            raise
        root = _download_fashion_mnist(root)
        imgs_path, lbls_path = find_fashion_mnist(split, root)
    images, labels = read_idx(imgs_path), read_idx(lbls_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{imgs_path} / {lbls_path} do not form an image/label pair "
                         f"(shapes {images.shape}, {labels.shape}); get the dataset again")
    if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{lbls_path} holds labels outside 0..9; get the dataset again")
    return ImageDataset(torch.from_numpy(images.copy()).unsqueeze(1),
                        torch.from_numpy(labels.astype(np.int64)),
                        classes=FASHION_MNIST_CLASSES, name="fashion-mnist", split=split)


# ----------------------------------------------------------------------------- CIFAR-10


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and builtin containers (CIFAR batch files)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a valid CIFAR-10 batch file ({e}); get the dataset "
                         f"again (--download)") from None
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar10(split: str, root, download: bool) -> ImageDataset:
    base = Path(root or os.environ.get("PROBE_DATA") or Path.home() / ".cache" / "probe")
    folder = base / "cifar-10-batches-py"
    if not folder.is_dir() and download:
        from torchvision.datasets import CIFAR10
        CIFAR10(str(base), train=split == "train", download=True)
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 not found at {folder}; pass --data-root to the folder "
                                f"that holds cifar-10-batches-py/, or --download to fetch it "
                                f"with torchvision")
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for fname in files:
        if not (folder / fname).is_file():
            raise FileNotFoundError(f"CIFAR-10 file {folder / fname} is missing; get the dataset "
                                    f"again (--download)")
        entry = _unpickle(folder / fname)
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(entry.get("labels", entry.get("fine_labels", [])))
    meta = folder / "batches.meta"
    classes = ([c.decode() if isinstance(c, bytes) else str(c) for c in _unpickle(meta)["label_names"]]
               if meta.is_file()
               else [str(i) for i in range(10)])
    return ImageDataset(torch.from_numpy(np.concatenate(xs)), torch.tensor(ys), classes=classes,
                        name="cifar10", split=split)


# ----------------------------------------------------------------------------- synthetic


def synthetic(n: int, *, size: int = 28, patch: int = 10, seed: int = 0) -> ImageDataset:
    """Images whose class evidence sits in a known square region.

    Each image is smooth random background texture plus one ``patch x patch``
    square at a random position holding a grating whose orientation is the
    class (horizontal, vertical, diagonal stripes, checkerboard). The square's
    mean intensity does not depend on the class, so only the pattern inside
    the mask (returned per item) tells the classes apart.
    """
    g = torch.Generator().manual_seed(10_007 * seed + 17)
    labels = torch.randint(0, len(SYNTHETIC_CLASSES), (n,), generator=g)
    noise = torch.rand(n, 1, size // 4 + 1, size // 4 + 1, generator=g)
    background = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear",
                                                 align_corners=False)
    images = 0.15 + 0.5 * background
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    ii, jj = torch.meshgrid(torch.arange(patch), torch.arange(patch), indexing="ij")
    patterns = torch.stack([
        (ii // 2) % 2, (jj // 2) % 2, ((ii + jj) // 2) % 2, ((ii // 2) + (jj // 2)) % 2,
    ]).float()
    tops = torch.randint(0, size - patch + 1, (n,), generator=g)
    lefts = torch.randint(0, size - patch + 1, (n,), generator=g)
    contrast = 0.3 + 0.2 * torch.rand(n, generator=g)
    for k in range(n):
        t, l = int(tops[k]), int(lefts[k])
        p = 0.5 + contrast[k] * (patterns[labels[k]] - 0.5)
        images[k, 0, t:t + patch, l:l + patch] = p
        masks[k, 0, t:t + patch, l:l + patch] = True
    images = images + 0.03 * torch.randn(images.shape, generator=g)
    return ImageDataset(images.clamp(0, 1).float(), labels, classes=SYNTHETIC_CLASSES,
                        name="synthetic", split="", masks=masks)


def glyph_shapes() -> torch.Tensor:
    """The eight ``4 x 4`` glyphs of :func:`glyph_pairs` ``[8, 4, 4]`` (0/1): every one has
    eight pixels on (no glyph differs from another in brightness) and no two are equal."""
    rows = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1],
                         [1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.float32)
    picks = [(0, 2, 0, 2), (0, 0, 2, 2), (4, 5, 4, 5), (4, 4, 5, 5),
             (3, 1, 1, 3), (1, 3, 3, 1), (0, 1, 2, 3), (3, 2, 1, 0)]
    return torch.stack([rows[list(p)] for p in picks])


def glyph_pairs(n: int, distance: int, *, size: int = 28, seed: int = 0) -> ImageDataset:
    """Two ``4 x 4`` glyphs whose top-left corners lie ``distance`` px apart (horizontally or
    vertically, at random), on a noisy background; the label says whether they are the same
    glyph (``"same"``) or two different ones. Only the relation between the two glyphs,
    ``distance`` px apart, carries the label: each glyph alone is uniform over the eight
    (:func:`glyph_shapes`), all with the same number of bright pixels. Masks mark both glyphs.

    Raises:
        ValueError: the two glyphs do not fit ``size`` at that distance.
    """
    if distance < GLYPH or distance + GLYPH > size:
        raise ValueError(f"glyph-pairs distance must be in [{GLYPH}, {size - GLYPH}] for {size}-px "
                         f"images (two {GLYPH}-px glyphs that do not overlap), got {distance}")
    glyphs = glyph_shapes()
    g = torch.Generator().manual_seed(20_011 * seed + 29 * distance + 5)
    labels = torch.randint(0, 2, (n,), generator=g)
    first = torch.randint(0, len(glyphs), (n,), generator=g)
    other = (first + torch.randint(1, len(glyphs), (n,), generator=g)) % len(glyphs)
    second = torch.where(labels == 1, first, other)
    vertical = torch.rand(n, generator=g) < 0.5
    along = torch.randint(0, size - GLYPH - distance + 1, (n,), generator=g)
    across = torch.randint(0, size - GLYPH + 1, (n,), generator=g)
    images = 0.1 + 0.1 * torch.rand(n, 1, size, size, generator=g)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for k in range(n):
        a, c = int(along[k]), int(across[k])
        spots = [(a, c), (a + distance, c)] if vertical[k] else [(c, a), (c, a + distance)]
        for (top, left), glyph in zip(spots, (first[k], second[k])):
            images[k, 0, top:top + GLYPH, left:left + GLYPH] = 0.15 + 0.7 * glyphs[glyph]
            masks[k, 0, top:top + GLYPH, left:left + GLYPH] = True
    return ImageDataset(images.clamp(0, 1), labels, classes=GLYPH_PAIR_CLASSES,
                        name=f"glyph-pairs:{distance}", split="", masks=masks)


# ----------------------------------------------------------------------------- uploads


MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000           # ~ 6300 x 6300; larger headers are refused before decoding
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def load_upload(data: bytes, input_size: Tuple[int, int, int] = (1, 28, 28), *,
                invert: bool = False, max_bytes: int = MAX_UPLOAD_BYTES,
                max_pixels: int = MAX_UPLOAD_PIXELS) -> torch.Tensor:
    """An uploaded PNG/JPEG as a ``[1, C, H, W]`` float tensor in ``[0, 1]`` of ``input_size``.

    The type is checked by content (magic bytes, then PIL's own format), the
    size in bytes before anything is parsed, and the pixel count from the
    header before the image is decoded (no decompression bombs).

    Args:
        data: the file's bytes.
        input_size: ``(C, H, W)`` to convert to (1 channel: grayscale; 3: RGB).
        invert: ``1 - x`` (Fashion-MNIST shows light objects on a dark background).
        max_bytes: largest accepted file size.
        max_pixels: largest accepted ``width * height``.

    Raises:
        ValueError: with a message that says what is wrong and what to upload instead.
    """
    from PIL import Image, UnidentifiedImageError
    if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
        raise ValueError("the uploaded file is empty; upload a PNG or JPEG image")
    if len(data) > max_bytes:
        raise ValueError(f"the uploaded file is {len(data) / 2**20:.1f} MB; the limit is "
                         f"{max_bytes / 2**20:.0f} MB. Upload a smaller PNG or JPEG")
    kind = next((k for magic, k in _MAGIC.items() if bytes(data[:len(magic)]) == magic), None)
    if kind is None:
        raise ValueError("this file is not a PNG or JPEG image (checked by its content, not "
                         "its name); upload a PNG or JPEG")
    if kind == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if w * h > max_pixels:               # refused from the header, before PIL parses it
            raise ValueError(_too_many_pixels(w, h, max_pixels))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)), formats=[kind])
    except Image.DecompressionBombError as e:
        raise ValueError(f"the image is far too large ({e}); at most {max_pixels:,} pixels are "
                         f"accepted. Downscale it and upload again") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"this {kind} file cannot be read ({e}); it may be truncated or "
                         f"corrupt. Re-save it and upload again") from None
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > max_pixels:
        raise ValueError(_too_many_pixels(w, h, max_pixels))
    c, th, tw = input_size
    if c not in (1, 3):
        raise ValueError(f"models with {c} input channels cannot take an uploaded image; "
                         f"pick a model with 1 (grayscale) or 3 (RGB) input channels")
    try:
        img.load()
        img = img.convert("L" if c == 1 else "RGB").resize((tw, th), Image.BILINEAR)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"this {kind} file cannot be decoded ({e}); re-save it and upload "
                         f"again") from None
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).float().div(255.0)
    x = x.view(th, tw, c).permute(2, 0, 1)[None].contiguous()
    return 1.0 - x if invert else x


def _too_many_pixels(w: int, h: int, max_pixels: int) -> str:
    return (f"the image is {w} x {h} pixels; at most {max_pixels:,} pixels are accepted. "
            f"Downscale it and upload again")


# ----------------------------------------------------------------------------- entry point


def load(name: str, split: str = "test", *, root: Optional[Union[str, Path]] = None,
         n: Optional[int] = None, seed: int = 0, download: bool = False,
         input_size: Optional[Tuple[int, int, int]] = None, model=None) -> Dataset:
    """Load a dataset split as images in ``[0, 1]``.

    Args:
        name: ``fashion-mnist``, ``cifar10``, ``imagefolder:<path>``, ``imagenet:<path>``
            or ``synthetic`` (``imagenet-c`` cells: :func:`imagenet_c`).
        split: ``train`` or ``test``.
        root: folder with the files (else ``$PROBE_DATA`` and the system locations).
        n: keep a seeded random subset of ``n`` images (all if ``None`` or larger);
            folders choose it from their file list, before decoding anything.
        seed: seed of that subset (and of the generated ``synthetic`` images).
        download: let torchvision download Fashion-MNIST / CIFAR-10 if not found.
        input_size: ``(C, H, W)`` folder images are resized to (zoo path; default
            ``(1, 28, 28)`` for ``imagefolder:``, timm's default 224-px ImageNet eval
            transform for ``imagenet:``) and the size of ``synthetic`` images.
        model: the model the images are for (from :func:`probe.zoo.load`): a ``timm:``
            model's folder images go through its own eval transform (resize by
            crop_pct, centre crop, its interpolation; no mean/std), other models'
            through a resize to ``model.input_size``. Overrides ``input_size``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if n is not None and n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if model is not None:
        input_size = tuple(model.input_size)
    if name.startswith(("imagefolder:", "imagenet:")):
        kind, path = name.split(":", 1)
        transform = (model_transform(model) if model is not None
                     else resize_transform(input_size) if input_size is not None else None)
        ds = (imagefolder if kind == "imagefolder" else imagenet)(path, split, transform=transform)
    elif name == "fashion-mnist":
        ds = _fashion_mnist(split, root, download)
    elif name == "cifar10":
        ds = _cifar10(split, root, download)
    elif name == "synthetic":
        size = (input_size or (1, 28, 28))[-1]
        count = n if n is not None else (4000 if split == "train" else 1000)
        ds = synthetic(count, size=size, seed=2 * seed + (0 if split == "train" else 1))
        ds.split = split
        return ds
    elif name.startswith("glyph-pairs:"):
        distance = name.split(":", 1)[1]
        if not distance.isdigit():
            raise ValueError(f"{name}: the distance must be whole pixels, e.g. glyph-pairs:12")
        size = (input_size or (1, 28, 28))[-1]
        count = n if n is not None else (4000 if split == "train" else 1000)
        ds = glyph_pairs(count, int(distance), size=size, seed=2 * seed + (0 if split == "train" else 1))
        ds.split = split
        return ds
    elif name.startswith("imagenet-c:"):
        raise ValueError(f"{name} holds one dataset per corruption x severity; read a cell with "
                         f"probe.data.imagenet_c(path, corruption, severity), or pass "
                         f"--corruptions-from {name} to python -m probe.robustness")
    else:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(NAMES)}")
    indices = seeded_subset(len(ds), n, seed)
    return ds if indices is None else ds.subset(indices)
