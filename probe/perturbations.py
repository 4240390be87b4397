"""One input under a perturbation: predictions and token mixing, clean and perturbed.

What the comparison app (``streamlit run apps/compare.py``) shows for each model:
a :class:`Perturbation` (an ImageNet-C style corruption from :mod:`probe.corruptions`,
or a seeded Linf PGD attack from :mod:`probe.attacks`, Madry et al. 2018,
arXiv:1706.06083) applied by :func:`perturb`, the most probable classes
(:func:`top_k`), and the token mixing of :func:`probe.mixing.extract` on the clean
and the perturbed input with the relative :func:`map_change` between them, all
gathered by :func:`analyse_input`. Datasets of many inputs go through
:func:`probe.robustness.run` instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from . import attacks, corruptions, mixing
from .data import fit_to_model

__all__ = ["Perturbation", "perturb", "top_k", "map_change", "InputAnalysis", "analyse_input"]


@dataclass(frozen=True)
class Perturbation:
    """What to do to an input before it is analysed.

    Attributes:
        kind: ``"none"``, ``"corruption"`` or ``"pgd"``.
        corruption: a :data:`probe.corruptions.NAMES` entry (``kind="corruption"``).
        severity: 1..5 (``kind="corruption"``).
        epsilon: Linf budget, images in ``[0, 1]`` (``kind="pgd"``).
        steps: PGD iterations (``kind="pgd"``).
        seed: seed of the corruption's noise or of PGD's random start.
    """

    kind: str = "none"
    corruption: str = "gaussian_noise"
    severity: int = 3
    epsilon: float = 0.03
    steps: int = 10
    seed: int = 0

    def label(self) -> str:
        """A short human-readable description (``"fog (severity 3)"``, ``"clean"``)."""
        if self.kind == "corruption":
            return f"{self.corruption.replace('_', ' ')} (severity {self.severity})"
        if self.kind == "pgd":
            return f"PGD Linf eps={self.epsilon:g} ({self.steps} steps)"
        return "clean"


def perturb(model: nn.Module, x: torch.Tensor, spec: Perturbation, *,
            label: Optional[int] = None) -> torch.Tensor:
    """``x`` (``[B, C, H, W]``, already fitted to ``model``) corrupted or attacked as ``spec`` says.

    ``kind="none"`` returns ``x`` itself. Corruptions use a generator seeded by
    ``spec.seed``; PGD (:func:`probe.attacks.pgd_linf`) attacks class ``label``
    (default: the model's clean prediction of image 0) with torch's global RNG
    seeded by ``spec.seed`` inside a forked RNG state, so the caller's RNG is untouched.

    Raises:
        ValueError: an unknown ``spec.kind`` (or corruption name).
    """
    if spec.kind == "none":
        return x
    if spec.kind == "corruption":
        g = torch.Generator().manual_seed(spec.seed)
        return corruptions.corrupt(x, spec.corruption, int(spec.severity), generator=g)
    if spec.kind == "pgd":
        if label is None:
            with torch.no_grad():
                label = int(model(x).argmax(1)[0])
        y = torch.full((x.shape[0],), int(label), dtype=torch.long, device=x.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            return attacks.pgd_linf(model, x, y, float(spec.epsilon), steps=int(spec.steps))
    raise ValueError(f"unknown perturbation {spec.kind!r}; use 'none', 'corruption' or 'pgd'")


def top_k(model: nn.Module, x: torch.Tensor, k: int = 3) -> List[Tuple[str, float]]:
    """The ``k`` most probable classes of image 0 as ``(class name, probability)``, best first."""
    with torch.no_grad():
        p = torch.softmax(model(x)[0].float(), 0)
    vals, idx = p.topk(min(k, p.numel()))
    return [(str(model.classes[int(i)]), float(v)) for v, i in zip(vals, idx)]


def map_change(perturbed, clean) -> float:
    """Relative change of a token-mixing map: ``||M - M_clean||_F / ||M_clean||_F``.

    Args:
        perturbed: MixingMap of a layer on the perturbed input.
        clean: MixingMap of the same layer on the clean input.

    Returns:
        0.0 for identical maps (always for static maps, see ``MixingMap.static``).
    """
    m, c = perturbed.matrix.float(), clean.matrix.float()
    if m.shape[1:] != c.shape[1:]:
        raise ValueError(f"maps of different layers ({tuple(m.shape)} vs {tuple(c.shape)}); "
                         f"compare the same layer of the same model")
    return float((m - c).norm() / c.norm().clamp_min(1e-12))


@dataclass
class InputAnalysis:
    """One model's view of one input, clean and perturbed (what the app shows).

    Attributes:
        x: ``[1, C, H, W]`` the clean input fitted to the model.
        perturbed: ``[1, C, H, W]`` the perturbed input (``x`` itself for ``kind="none"``).
        top_clean: :func:`top_k` of the clean input.
        top: :func:`top_k` of the perturbed input.
        prediction: the class index predicted for the perturbed input.
        maps_clean: ``list[MixingMap]`` (:func:`probe.mixing.extract`) of the clean input.
        maps: the same for the perturbed input (``maps_clean`` for ``kind="none"``).
        summary_clean: :func:`probe.mixing.summarize` of ``maps_clean`` (one dict per layer).
        summary: :func:`probe.mixing.summarize` of ``maps``.
    """

    x: torch.Tensor
    perturbed: torch.Tensor
    top_clean: List[Tuple[str, float]]
    top: List[Tuple[str, float]]
    prediction: int
    maps_clean: list
    maps: list
    summary_clean: List[dict]
    summary: List[dict]

    def map_change(self, depth: int) -> float:
        """:func:`map_change` of the layer at ``depth``."""
        return map_change(self.maps[depth], self.maps_clean[depth])


def analyse_input(model: nn.Module, image: torch.Tensor, spec: Perturbation = Perturbation(), *,
                  label: Optional[int] = None,
                  label_classes: Optional[Sequence[str]] = None) -> InputAnalysis:
    """Fit ``image`` to ``model``, perturb it, and extract the clean and perturbed token mixing.

    Args:
        model: a zoo or ``timm:`` model (with ``input_size`` and ``classes``).
        image: ``[1, C, H, W]`` in ``[0, 1]``, any size, 1 or 3 channels
            (:func:`probe.data.fit_to_model` adapts it).
        spec: the perturbation.
        label: the image's true class, which PGD attacks, but only when
            ``label_classes`` (the names ``label`` indexes; default the model's)
            are the model's classes; otherwise PGD attacks the clean prediction.
        label_classes: the class names ``label`` indexes.
    """
    x = fit_to_model(image, model.input_size)
    classes = list(model.classes) if label_classes is None else list(label_classes)
    target = label if (label is not None and classes == list(model.classes)) else None
    xp = perturb(model, x, spec, label=target)
    with torch.no_grad():
        prediction = int(model(xp).argmax(1)[0])
    maps_clean = mixing.extract(model, x)
    maps = maps_clean if spec.kind == "none" else mixing.extract(model, xp)
    summary_clean = mixing.summarize(maps_clean)
    summary = summary_clean if spec.kind == "none" else mixing.summarize(maps)
    return InputAnalysis(x=x, perturbed=xp, top_clean=top_k(model, x), top=top_k(model, xp),
                         prediction=prediction, maps_clean=maps_clean, maps=maps,
                         summary_clean=summary_clean, summary=summary)
