"""Image folders at ImageNet scale: streaming datasets, WordNet-id labels, ImageNet-C, timm's eval transform.

A :class:`FolderDataset` lists its files (sorted, one subfolder per class) and
decodes an image only in ``__getitem__``: memory does not depend on the folder's
size, and a seeded subset (``--n``) is chosen from the file list before anything
is decoded. Iterate large sets with :func:`loader` (a ``DataLoader`` with workers).

- ``imagefolder:<path>``: class folders in sorted order -> labels 0, 1, ...
- ``imagenet:<path>``: class folders named by WordNet id (``n01440764``); the label
  is the ImageNet-1k index of that wnid (timm's :class:`timm.data.ImageNetInfo`),
  so a folder holding only some classes still gets the right indices.
- ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261) as published:
  ``<path>/<corruption>/<severity>/<wnid>/<file>``; :func:`imagenet_c` reads one
  (corruption, severity) cell, :func:`imagenet_c_cells` lists the cells present.

Images are turned into ``[C, H, W]`` float tensors in ``[0, 1]`` by a transform:
for ``timm:`` models their own eval transform (:func:`timm_transform`: resize by
``crop_pct``, centre crop, the model's interpolation) without the mean/std step
(probe models normalise inside); for the zoo a plain resize to its input size
(:func:`resize_transform`, the 28x28 path).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "IMAGE_EXTENSIONS", "FolderDataset", "resize_transform", "timm_transform",
    "default_imagenet_transform", "model_transform", "list_image_folder", "imagefolder",
    "imagenet", "imagenet_c", "imagenet_c_cells", "seeded_subset", "loader",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
Transform = Callable[[Any], torch.Tensor]   # PIL image -> [C, H, W] float in [0, 1]


class _Resize:
    """Convert to ``L``/``RGB`` and resize (bilinear, aspect not kept) to ``(C, H, W)``; picklable."""

    def __init__(self, input_size: Sequence[int]) -> None:
        c, h, w = (int(v) for v in input_size)
        if c not in (1, 3):
            raise ValueError(f"image folders give 1 (grayscale) or 3 (RGB) channels, not {c}")
        self.input_size = (c, h, w)

    def __call__(self, image) -> torch.Tensor:
        from PIL import Image
        c, h, w = self.input_size
        image = image.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
        arr = np.asarray(image, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(arr.copy()).float().div(255.0)

    def __repr__(self) -> str:
        return f"resize_transform({self.input_size})"


def resize_transform(input_size: Sequence[int]) -> Transform:
    """The zoo's path: grayscale/RGB, bilinear resize to ``input_size`` ``(C, H, W)``, values in [0, 1]."""
    return _Resize(input_size)


class _Unnormalized:
    """A torchvision ``Compose`` run after a mode conversion, its ``Normalize`` steps removed."""

    def __init__(self, compose, input_size: Tuple[int, int, int]) -> None:
        from torchvision import transforms
        steps = [t for t in compose.transforms if not isinstance(t, transforms.Normalize)]
        self.compose = transforms.Compose(steps)
        self.input_size = input_size

    def __call__(self, image) -> torch.Tensor:
        return self.compose(image.convert("L" if self.input_size[0] == 1 else "RGB"))

    def __repr__(self) -> str:
        return f"timm eval transform without Normalize {self.compose!r}"


def _timm_eval_transform(config: dict) -> _Unnormalized:
    from timm.data import create_transform
    compose = create_transform(**config, is_training=False)
    return _Unnormalized(compose, tuple(int(v) for v in config["input_size"]))


def timm_transform(model) -> Transform:
    """A timm model's own eval transform (``resolve_model_data_config`` + ``create_transform``)
    without the mean/std normalisation: images stay in ``[0, 1]``.

    ``model``: a ``timm:`` model from :func:`probe.zoo.load` (its ``net`` is used) or a bare
    timm model.
    """
    from timm.data import resolve_model_data_config
    return _timm_eval_transform(resolve_model_data_config(getattr(model, "net", model)))


def default_imagenet_transform(input_size: Sequence[int] = (3, 224, 224)) -> Transform:
    """timm's default ImageNet eval transform (crop_pct 0.875, bicubic) at ``input_size``, in [0, 1]."""
    from timm.data import resolve_data_config
    return _timm_eval_transform(resolve_data_config({"input_size": tuple(input_size)},
                                                    pretrained_cfg={}))


def model_transform(model) -> Transform:
    """The transform a model's images go through: timm's eval transform for ``timm:`` models,
    else a resize to ``model.input_size``."""
    if str(getattr(model, "name", "")).startswith("timm:") and hasattr(getattr(model, "net", None),
                                                                       "pretrained_cfg"):
        return timm_transform(model)
    return resize_transform(model.input_size)


class FolderDataset(Dataset):
    """Image files decoded lazily: items are ``(image [C, H, W] float in [0, 1], label)``.

    Attributes:
        files: the image paths (sorted by class folder, then name), item ``i`` = ``files[i]``.
        labels: ``int`` label of each file.
        classes: class names, index = label.
        root: the folder the files were listed from.
        transform: PIL image -> tensor; its ``input_size`` is the dataset's.
        cell: ``(corruption, severity)`` of an ImageNet-C cell, else ``None``.
    """

    def __init__(self, files: Sequence[Path], labels: Sequence[int], *, classes: Sequence[str],
                 name: str, split: str, root: Path, transform: Transform,
                 cell: Optional[Tuple[str, int]] = None) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files = [Path(f) for f in files]
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.classes = list(classes)
        self.name = name
        self.split = split
        self.root = Path(root)
        self.transform = transform
        self.cell = cell

    @property
    def input_size(self) -> Tuple[int, int, int]:
        return tuple(self.transform.input_size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image, UnidentifiedImageError
        path = self.files[i]
        try:
            with Image.open(path) as image:
                x = self.transform(image)
        except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as e:
            raise ValueError(f"cannot read image {path} ({e}); delete or replace the file") from None
        return x, int(self.labels[i])

    def subset(self, indices: Union[torch.Tensor, Sequence[int]]) -> "FolderDataset":
        """The dataset of the files at ``indices`` (nothing is decoded)."""
        indices = [int(i) for i in indices]
        return FolderDataset([self.files[i] for i in indices], self.labels[indices].tolist(),
                             classes=self.classes, name=self.name, split=self.split,
                             root=self.root, transform=self.transform, cell=self.cell)

    def relative_files(self) -> List[str]:
        """``<class folder>/<file stem>`` of every item (matches a val file to its ImageNet-C copy)."""
        return [f"{f.parent.name}/{f.stem}" for f in self.files]

    def __repr__(self) -> str:
        return (f"FolderDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"input_size={self.input_size}, classes={len(self.classes)})")


def seeded_subset(length: int, n: Optional[int], seed: int) -> Optional[torch.Tensor]:
    """Sorted indices of a seeded random subset of ``n`` of ``length`` items (``None``: keep all)."""
    if n is None or n >= length:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(length, generator=g)[:n].sort().values


def _class_folders(folder: Path) -> List[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def list_image_folder(folder: Union[str, Path]) -> Tuple[List[Path], List[int], List[str]]:
    """``(files, labels, class folder names)``: images under ``<folder>/<class>/``, sorted; no decoding."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    classes = _class_folders(folder)
    if not classes:
        raise ValueError(f"image folder {folder} has no class subfolders (expected "
                         f"{folder}/<class>/<image>.jpg)")
    files, labels = [], []
    for label, cls in enumerate(classes):
        for f in sorted((folder / cls).iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                files.append(f)
                labels.append(label)
    if not files:
        raise ValueError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files, labels, classes


def _split_folder(path: Union[str, Path], split: str, *, val_is_test: bool) -> Path:
    folder = Path(path)
    names = [split] + (["val"] if val_is_test and split == "test" else [])
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    return folder


def imagefolder(path: Union[str, Path], split: str = "test", *,
                transform: Optional[Transform] = None) -> FolderDataset:
    """``imagefolder:<path>``: sorted class folders -> labels ``0..K-1`` (``<path>/<split>`` if present).

    ``transform`` defaults to the zoo's 28x28 grayscale resize.
    """
    folder = _split_folder(path, split, val_is_test=False)
    files, labels, classes = list_image_folder(folder)
    return FolderDataset(files, labels, classes=classes, name=f"imagefolder:{path}", split=split,
                         root=folder, transform=transform or resize_transform((1, 28, 28)))


def _wnid_index() -> Tuple[Dict[str, int], List[str]]:
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    return ({wnid: i for i, wnid in enumerate(info.label_names())},
            list(info.label_descriptions()))


def _imagenet_files(folder: Path, what: str) -> Tuple[List[Path], List[int], List[str]]:
    index, descriptions = _wnid_index()
    files, local, wnids = list_image_folder(folder)
    unknown = [w for w in wnids if w not in index]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ValueError(f"{what} {folder}: class folder {unknown[0]!r}{more} is not an ImageNet-1k "
                         f"WordNet id; expected one folder per class named by its wnid, like "
                         f"n01440764 (use imagefolder:<path> for other folder names)")
    return files, [index[wnids[i]] for i in local], descriptions


def imagenet(path: Union[str, Path], split: str = "test", *,
             transform: Optional[Transform] = None) -> FolderDataset:
    """``imagenet:<path>``: class folders named by WordNet id, labels = ImageNet-1k indices.

    Uses ``<path>/<split>`` (or ``<path>/val`` for the test split) when present.
    ``classes`` are the 1000 ImageNet class names (timm's ImageNet info);
    ``transform`` defaults to timm's default ImageNet eval transform at 224 px.

    Raises:
        ValueError: a class folder that is not an ImageNet-1k wnid (one line naming it).
    """
    folder = _split_folder(path, split, val_is_test=True)
    files, labels, classes = _imagenet_files(folder, "imagenet folder")
    return FolderDataset(files, labels, classes=classes, name=f"imagenet:{path}", split=split,
                         root=folder, transform=transform or default_imagenet_transform())


def imagenet_c_cells(path: Union[str, Path]) -> List[Tuple[str, int]]:
    """The ``(corruption, severity)`` cells present under an ImageNet-C folder, in ImageNet-C order.

    Raises:
        FileNotFoundError: ``path`` is not a folder or holds no ``<corruption>/<1..5>/`` folders.
    """
    from .corruptions import NAMES
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet-C folder {root} does not exist")
    cells = [(c.name, int(s.name)) for c in root.iterdir() if c.is_dir()
             for s in c.iterdir() if s.is_dir() and s.name in ("1", "2", "3", "4", "5")]
    if not cells:
        raise FileNotFoundError(f"{root} holds no ImageNet-C cells; expected "
                                f"{root}/<corruption>/<severity 1-5>/<wnid>/<image>, e.g. "
                                f"{root}/gaussian_noise/3/n01440764/ILSVRC2012_val_00000293.JPEG")
    order = {name: i for i, name in enumerate(NAMES)}
    return sorted(cells, key=lambda cs: (order.get(cs[0], len(order)), cs[0], cs[1]))


def imagenet_c(path: Union[str, Path], corruption: str, severity: int, *, model=None,
               transform: Optional[Transform] = None, n: Optional[int] = None, seed: int = 0,
               like: Optional[FolderDataset] = None) -> FolderDataset:
    """One cell of pre-made ImageNet-C: ``<path>/<corruption>/<severity>/<wnid>/<file>``.

    Args:
        path: the ImageNet-C root folder.
        corruption, severity: the cell (see :func:`imagenet_c_cells`).
        model: the model the images are for (:func:`model_transform`: a ``timm:`` model's
            own eval transform, without mean/std).
        transform: instead of ``model``'s (default: timm's default 224-px eval transform).
        n, seed: a seeded subset of the cell's files, chosen before decoding.
        like: a clean dataset (e.g. ``imagenet:<val>``): take the same images, matched by
            ``<wnid>/<file stem>``, in its order (``n``/``seed`` then do not apply).

    Raises:
        FileNotFoundError: the cell is absent (the message lists the cells present), or
            ``like`` holds images the cell does not.
        ValueError: a class folder that is not an ImageNet-1k wnid.
    """
    root = Path(path)
    folder = root / str(corruption) / str(int(severity))
    if not folder.is_dir():
        cells = imagenet_c_cells(root)
        shown = ", ".join(f"{c}@{s}" for c, s in cells[:6]) + (" ..." if len(cells) > 6 else "")
        raise FileNotFoundError(f"ImageNet-C cell {corruption} severity {severity} not found at "
                                f"{folder}; {len(cells)} cells present ({shown})")
    files, labels, classes = _imagenet_files(folder, "ImageNet-C cell")
    if transform is None and model is not None:
        transform = model_transform(model)
    ds = FolderDataset(files, labels, classes=classes, name=f"imagenet-c:{root}", split="test",
                       root=folder, transform=transform or default_imagenet_transform(),
                       cell=(str(corruption), int(severity)))
    if like is not None:
        position = {key: i for i, key in enumerate(ds.relative_files())}
        missing = [key for key in like.relative_files() if key not in position]
        if missing:
            raise FileNotFoundError(f"ImageNet-C cell {folder} lacks {len(missing)} of the "
                                    f"{len(like)} clean images (e.g. {missing[0]}); use the "
                                    f"ImageNet-C copy made from the same validation images")
        return ds.subset([position[key] for key in like.relative_files()])
    indices = seeded_subset(len(ds), n, seed)
    return ds if indices is None else ds.subset(indices)


def loader(ds: Dataset, *, batch_size: int = 64, workers: int = 0,
           pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over ``ds`` in order (no shuffling), ``workers`` decoding processes."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=False)
