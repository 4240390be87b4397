"""Weights provenance: which weights a model carries, as data and as one line.

Every model :func:`probe.zoo.load` returns carries ``model.weights_info``, a
small JSON-ready dict::

    {"kind": "shipped" | "pretrained" | "file" | "random",
     "source": <file path, timm pretrained tag ("vit_base_patch16_224.augreg2_in21k_ft_in1k")
                or "seed N">,
     "sha256": <hex digest of the weights file, or None>}

Results (JSON, CSV), figure titles and the app show it, so a randomly
initialised model is never presented as a trained one. This module also holds
the ``--weights`` vocabulary shared by the CLIs and :mod:`probe.zoo`: the
default is ``shipped`` for zoo families and ``pretrained`` for ``timm:`` models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

from .registry import TIMM_PREFIX

__all__ = ["DEFAULT_WEIGHTS", "WEIGHTS_KEYWORDS", "KINDS", "is_weights_file", "resolve_weights",
           "weights_info", "describe_weights", "weights_tag"]

DEFAULT_WEIGHTS = "default"
WEIGHTS_KEYWORDS = (DEFAULT_WEIGHTS, "shipped", "pretrained", "random")
KINDS = ("shipped", "pretrained", "file", "random")


def is_weights_file(weights: Optional[Union[str, Path]]) -> bool:
    """Whether a ``--weights`` value names a file (anything but the keywords and ``None``)."""
    return weights is not None and str(weights) not in WEIGHTS_KEYWORDS


def resolve_weights(name: str, weights: Optional[Union[str, Path]] = DEFAULT_WEIGHTS
                    ) -> Union[str, Path]:
    """The concrete weights ``weights`` means for model ``name``.

    Returns ``"shipped"``, ``"pretrained"``, ``"random"`` or the path (unchanged).
    ``"default"`` is ``"shipped"`` for zoo families and ``"pretrained"`` for
    ``timm:`` models; ``None`` is ``"random"``.

    Raises:
        ValueError: ``"shipped"`` for a ``timm:`` model or ``"pretrained"`` for a zoo
            family, with the choices that exist.
    """
    timm_model = str(name).startswith(TIMM_PREFIX)
    if weights is None or weights == "random":
        return "random"
    if weights == DEFAULT_WEIGHTS:
        return "pretrained" if timm_model else "shipped"
    if weights == "shipped" and timm_model:
        raise ValueError(f"{name} has no shipped weights (probe ships Fashion-MNIST weights for "
                         f"its zoo families only); use --weights pretrained (timm's weights), "
                         f"--weights PATH (a local checkpoint) or --weights random")
    if weights == "pretrained" and not timm_model:
        raise ValueError(f"{name} is a zoo family: it has shipped weights, not timm pretrained "
                         f"ones; use --weights shipped, --weights PATH or --weights random")
    return weights


def weights_info(kind: str, source: str, sha256: Optional[str] = None) -> dict:
    """A ``weights_info`` dict (see the module docstring); ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"weights kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return {"kind": kind, "source": str(source), "sha256": sha256}


def _info_of(obj) -> Optional[Mapping]:
    """The ``weights_info`` of a model, a results dict or a ``weights_info`` dict itself."""
    if isinstance(obj, Mapping):
        if "kind" in obj and "source" in obj:
            return obj
        info = obj.get("weights_info")
        if info is None and obj.get("weights") is not None:   # results written before weights_info
            w = str(obj["weights"])
            if w in ("shipped", "random"):
                return {"kind": w, "source": "", "sha256": None}
            if w not in WEIGHTS_KEYWORDS:
                return {"kind": "file", "source": w, "sha256": None}
        return info
    return getattr(obj, "weights_info", None)


def describe_weights(obj) -> str:
    """One line: ``"shipped (sha256 e28eab...)"``, ``"pretrained timm <arch>.<tag>"``,
    ``"file ckpt.safetensors (sha256 ...)"`` or ``"RANDOM init (seed 0)"``.

    ``obj``: a model from :func:`probe.zoo.load`, a results dict holding
    ``weights_info``, or a ``weights_info`` dict.
    """
    info = _info_of(obj)
    if not info:
        return "weights unknown"
    digest = f" (sha256 {info['sha256'][:12]}...)" if info.get("sha256") else ""
    kind, source = info["kind"], info.get("source") or ""
    if kind == "random":
        return f"RANDOM init ({source})" if source else "RANDOM init"
    if kind == "pretrained":
        return f"pretrained timm {source}{digest}"
    if kind == "file":
        return f"file {Path(source).name}{digest}"
    return f"{kind}{digest}"


def weights_tag(obj) -> str:
    """A short tag for figure titles: ``"RANDOM init"``, ``"pretrained"``, ``"shipped"``,
    ``"file ckpt.safetensors"``; ``""`` when unknown."""
    info = _info_of(obj)
    if not info:
        return ""
    if info["kind"] == "random":
        return "RANDOM init"
    if info["kind"] == "file":
        return f"file {Path(info.get('source') or '').name}"
    return info["kind"]
