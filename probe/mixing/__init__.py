"""Token mixing of every architecture: extraction, effective (Jacobian) maps, metrics, CLI.

Each token-mixing layer is summarised as a :class:`MixingMap`, a matrix
``[B, H, T_out, T_in]`` (row = output token, column = input token) on the
spatial token grid, for MLP-Mixer, ResMLP, gMLP, ViT/DeiT, FNet (token-only and as
published), ResNet stages, External Attention, the stack of feed-forward layers,
RepMLP, Synthesizer-Random and the pure MLP (its pixel grid) (see
:mod:`probe.mixing.extractors` for what each kind is).

Modules (the import graph has no cycle; :mod:`probe.spectra` and
:mod:`probe.plots` use only the leaves ``maps``, ``metrics`` and ``grid``):

- :mod:`~probe.mixing.maps`        :class:`MixingMap`, :data:`KINDS`, :data:`STATIC_KINDS`.
- :mod:`~probe.mixing.metrics`     distance (``unit="tokens"`` or ``"px"``), locality,
  input dependence, translation equivariance, entropy, effective rank, :func:`summarize`.
- :mod:`~probe.mixing.grid`        token grid (:class:`TokenContext`), :func:`check_input`,
  layer lookup (:func:`find_or_raise`).
- :mod:`~probe.mixing.jacobian`    channel, uniform-shift and conv-stage Jacobians.
- :mod:`~probe.mixing.extractors`  :func:`register_extractor`, :func:`layers`,
  :func:`extract` (``gated``, ``per_channel``), :func:`effective`.
- :mod:`~probe.mixing.controls`    reference matrices (:func:`references`: uniform, random,
  DFT, local, identity) and :func:`controls` (trained vs init vs references per layer).
- :mod:`~probe.mixing.__main__`    ``python -m probe.mixing`` (:func:`run`, :func:`main`),
  loaded on first use of ``probe.mixing.run``/``main`` so that importing the
  library does not import the CLI's figures and spectra.
"""
from __future__ import annotations

from typing import Any, List

from .controls import CONTROLS, METRICS, REFERENCES, controls, references
from .extractors import effective, extract, layers, register_extractor
from .grid import LayerInfo, TokenContext, check_input, find_or_raise
from .jacobian import channel_jacobian, mlp_effective
from .maps import KIND_LABELS, KINDS, STATIC_KINDS, MixingMap
from .metrics import (UNITS, distribution, effective_rank, entropy, input_dependence, locality,
                      mean_mixing_distance, summarize, template_locality, token_positions,
                      translation_equivariance)

__all__ = [
    "KINDS", "KIND_LABELS", "STATIC_KINDS", "MixingMap", "LayerInfo", "register_extractor", "layers", "extract",
    "effective", "channel_jacobian", "token_positions", "mean_mixing_distance", "locality",
    "input_dependence", "translation_equivariance", "entropy", "effective_rank", "summarize",
    "run", "main", "UNITS", "TokenContext", "check_input", "find_or_raise",
    "REFERENCES", "CONTROLS", "METRICS", "references", "controls", "distribution",
    "template_locality",
]

# former private name, used by benchmarks/bench_mixing.py
_mlp_effective = mlp_effective

_CLI_NAMES = ("run", "main")


def __getattr__(name: str) -> Any:
    """``run`` and ``main`` come from the CLI module, imported on first use.

    Not at import time: the CLI imports :mod:`probe.spectra` and :mod:`probe.plots`,
    which import this package's leaves, and ``python -m probe.mixing`` must find
    ``__main__`` not yet imported.
    """
    if name in _CLI_NAMES:
        from . import __main__ as cli_module
        return getattr(cli_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_CLI_NAMES))
