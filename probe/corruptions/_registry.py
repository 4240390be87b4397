"""The corruption names and their implementations, registered by :func:`register_corruption`."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Set

import torch

from ._rng import Rng

__all__ = ["COMMON", "EXTRA", "NAMES", "CorruptionFn", "REGISTRY", "FILLS_OUTPUT", "register_corruption"]

# The 15 ImageNet-C benchmark corruptions, in the order of the paper and of ``imagecorruptions``.
COMMON: List[str] = [
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
]
# The 4 held-out ("validation") corruptions.
EXTRA: List[str] = ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
NAMES: List[str] = COMMON + EXTRA

# fn(x [B, C, H, W] in [0, 1], severity-table entry, spatial scale, rng, table "imagenet" | "cifar")
# -> corrupted batch (clamped to [0, 1] by the caller).
CorruptionFn = Callable[[torch.Tensor, Any, float, Rng, str], torch.Tensor]

# name -> implementation: the one place names are looked up.
REGISTRY: Dict[str, CorruptionFn] = {}
# The names registered with ``fills_output=True``: their implementation takes a sixth argument
# ``out`` (a tensor of x's shape, dtype and device), writes the corrupted batch, already in
# [0, 1], into it and returns nothing (no clamp, no copy by the caller).
FILLS_OUTPUT: Set[str] = set()


def register_corruption(name: str, *, fills_output: bool = False) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator binding an implementation to one of :data:`NAMES` in :data:`REGISTRY`
    (``fills_output=True``: it writes its result into an ``out`` argument, see
    :data:`FILLS_OUTPUT`).

    Raises:
        ValueError: ``name`` is not in :data:`NAMES`, or already has an implementation.
    """
    if name not in NAMES:
        raise ValueError(f"cannot register unknown corruption {name!r}; add it to NAMES in "
                         f"probe/corruptions/_registry.py and give it a severity table in "
                         f"probe/corruptions/__init__.py first (known: {', '.join(NAMES)})")

    def wrap(fn: CorruptionFn) -> CorruptionFn:
        if name in REGISTRY:
            old = REGISTRY[name]
            raise ValueError(f"corruption {name!r} is registered twice ({old.__module__}."
                             f"{old.__qualname__} and {fn.__module__}.{fn.__qualname__}); "
                             f"remove one of the registrations")
        REGISTRY[name] = fn
        if fills_output:
            FILLS_OUTPUT.add(name)
        return fn

    return wrap
