"""What the training cells can train: the protocol's families, the analysis variants, the
learning-rate family of each, and how a cell's model is built and loaded."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from probe import zoo
from probe.provenance import weights_info

__all__ = ["PROTOCOL_FAMILIES", "VARIANT_LR_FAMILY", "cell_families", "lr_family", "build_model",
           "load_model"]

# The protocol's families: the default family list of every plan (sweep, full, data-efficiency,
# synthetic) and of the analyses (``analyses.common.FAMILIES``), and the parametrisation of
# tests/test_committed_models.py. The zoo holds more families (``zoo.names()``: extattn, ffn,
# repmlp, mlp, fnet2d and synth too); a family joins this list once its learning-rate sweep has
# run (``--plan sweep --family F``), never before, so that adding a family to the zoo changes
# no plan. Registry order.
PROTOCOL_FAMILIES: Tuple[str, ...] = ("mixer", "resmlp", "gmlp", "vit", "fnet", "cnn")

# The zoo family whose swept learning rate an analysis variant trains at: its body's family.
# The ladder rungs and synth are Mixer's body (only the token mixing differs): Mixer's lr; a
# finer-grid variant (``<family>_p2``: patch 2, 14x14 tokens) is its family's body: its lr.
VARIANT_LR_FAMILY: Dict[str, str] = {"synth": "mixer", "token_linear": "mixer",
                                     "token_softmax": "mixer", "synth_random": "mixer",
                                     "synth_dense": "mixer", "dot_attention": "mixer",
                                     "mixer_p2": "mixer", "resmlp_p2": "resmlp",
                                     "gmlp_p2": "gmlp", "vit_p2": "vit", "fnet_p2": "fnet",
                                     "linear_affine": "mixer", "linear_affine_layerscale": "mixer"}


def _variants() -> Tuple[str, ...]:
    from analyses.common import BUILDER_VARIANTS, VARIANTS   # lazy: zoo cells do not need them
    for name, (body, _) in BUILDER_VARIANTS.items():         # a builder variant: its family's lr
        VARIANT_LR_FAMILY.setdefault(name, body)
    missing = [v for v in VARIANTS if v not in VARIANT_LR_FAMILY]
    if missing:
        raise ValueError(f"analysis variant(s) {', '.join(missing)} have no learning-rate family in "
                         f"analyses.cells.families.VARIANT_LR_FAMILY; add the zoo family of their body")
    return tuple(VARIANTS)


def cell_families() -> List[str]:
    """What a cell can train: the zoo families, then the analysis variants (``synth`` and the
    Synthesizer ladder's rungs)."""
    return list(zoo.names()) + [v for v in _variants() if v not in zoo.names()]


def lr_family(family: str) -> str:
    """The zoo family whose swept learning rate ``family`` trains at (itself for a zoo family)."""
    if family not in VARIANT_LR_FAMILY and family not in zoo.names():
        _variants()                              # registers the builder variants' families
    return VARIANT_LR_FAMILY.get(family, family)


def build_model(family: str, *, seed: int) -> zoo.ProbeModel:
    """The seeded initialisation of a cell's model: ``zoo.build``, or ``analyses.common.build``
    for an analysis variant."""
    if family in zoo.names():
        return zoo.build(family, seed=seed)
    if family not in _variants():
        raise ValueError(f"unknown family {family!r}; cells train {', '.join(cell_families())}")
    from analyses.common import build
    return build(family, seed=seed)


def load_model(family: str, weights: Path) -> zoo.ProbeModel:
    """A trained cell's model in eval mode: ``zoo.load(family, weights=...)`` for a zoo family;
    for an analysis variant its architecture (:func:`build_model`) with the weights loaded."""
    if family in zoo.names():
        return zoo.load(family, weights=weights)
    model = build_model(family, seed=0)
    zoo._load_into(model, zoo.load_state_dict_file(weights), str(weights))
    model.weights_info = weights_info("file", str(weights), zoo.sha256_file(weights))
    return model.eval()
