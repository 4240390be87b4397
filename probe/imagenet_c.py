"""Pre-made ImageNet-C as the corruption units of a robustness run (``--corruptions-from``).

ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261) ships every corruption x severity
as a folder of JPEGs, ``<corruption>/<severity>/<wnid>/<image>``, made from ImageNet val.
Reading those instead of corrupting on the fly makes numbers comparable with published ones.
The images are read with :func:`probe.data.imagenet_c` in the model's own eval transform and
the clean images' files (matched by ``<wnid>/<file stem>`` when the clean data is a folder
dataset such as ``imagenet:<val>``; else the same ``n``/``seed`` subset), so the corrupted
images are the clean ones, in the same order.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

__all__ = ["PREFIX", "root", "check_cells", "cell", "chunk"]

PREFIX = "imagenet-c:"


def root(source: str) -> str:
    """The folder of an ``imagenet-c:PATH`` source; ``ValueError`` for anything else."""
    if not isinstance(source, str) or not source.startswith(PREFIX) or not source[len(PREFIX):]:
        raise ValueError(f"--corruptions-from takes {PREFIX}PATH (a folder of "
                         f"<corruption>/<severity>/<wnid>/<image>), got {source!r}")
    return source[len(PREFIX):]


def check_cells(source: str, corruptions: Sequence[str], severities: Sequence[int]) -> None:
    """Raise ``ValueError`` (what is missing, what the folder holds) unless every corruption x
    severity asked for is in the folder."""
    from . import data
    cells = {(c, int(s)) for c, s in data.imagenet_c_cells(root(source))}
    missing = [f"{c}/{s}" for c in corruptions for s in severities if (c, int(s)) not in cells]
    if missing:
        have = sorted({c for c, _ in cells})
        raise ValueError(f"{source} lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                         f" (it holds {', '.join(have) or 'no <corruption>/<severity> folders'}); "
                         f"pass --corruptions and --severities that it holds")


def cell(source: str, corruption: str, severity: int, *, n: int, seed: int, model, clean=None):
    """The dataset of one corruption x severity in ``model``'s transform: the files of ``clean``
    when it is a folder dataset, else the ``n``/``seed`` subset."""
    from . import data
    like = clean if isinstance(clean, data.FolderDataset) else None
    return data.imagenet_c(root(source), corruption, severity, n=n, seed=seed, model=model,
                           like=like)


def chunk(ds, sl: slice, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, C, H, W]`` and labels ``[B]`` of ``ds[sl]`` on ``device`` (decoded now)."""
    from torch.utils.data import Subset
    from . import data
    x, y = data.as_tensors(Subset(ds, range(sl.start, min(sl.stop, len(ds)))))
    return x.to(device), y.to(device)
