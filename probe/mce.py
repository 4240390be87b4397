"""Corruption error (CE), mCE and relative mCE (Hendrycks & Dietterich 2019, arXiv:1903.12261).

CE normalises a model's corruption errors by a baseline's. The baseline is a model run on the
same images (the zoo's ``cnn`` on Fashion-MNIST, :data:`ZOO_BASELINE`) or, at ImageNet scale,
AlexNet's published ImageNet-C errors (:data:`ALEXNET_ERRORS`, ``"alexnet"``), the numbers every
ImageNet-C mCE in the literature is relative to.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from .corruptions import COMMON

__all__ = ["ALEXNET_ERRORS", "ALEXNET_CLEAN_ERROR", "ALEXNET", "NO_BASELINE", "ZOO_BASELINE",
           "IMAGENET_DATA", "corruption_errors", "mce", "alexnet_baseline", "alexnet_mce",
           "default_baseline", "check_baseline_input"]

# AlexNet's top-1 error on ImageNet-C per corruption, each the mean over severities 1-5, as
# published by Hendrycks & Dietterich 2019 (arXiv:1903.12261; github.com/hendrycks/robustness),
# the constants ImageNet-C mCEs are normalised by (e.g. ALEXNET_ERR in AugMix's imagenet.py).
ALEXNET_ERRORS: Dict[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
ALEXNET_CLEAN_ERROR = 0.4348    # AlexNet's clean ImageNet val top-1 error (for relative mCE)

ALEXNET = "alexnet"             # --baseline alexnet: the published errors above
NO_BASELINE = "none"            # --baseline none: no mCE
ZOO_BASELINE = "cnn"            # the zoo's conventional convolutional reference (AlexNet's role)
IMAGENET_DATA = ("imagenet:", "imagenet-c:", "imagefolder:")   # data where AlexNet is the default
_SEVERITIES = [1, 2, 3, 4, 5]
_OPTIONS = ("--baseline alexnet (the published ImageNet-C AlexNet errors), --baseline none "
            "(no mCE) or --baseline MODEL")


def corruption_errors(rows: Sequence[dict]) -> Dict[str, Dict[int, float]]:
    """``{corruption: {severity: error}}`` from corruption rows."""
    out: Dict[str, Dict[int, float]] = {}
    for r in rows:
        out.setdefault(r["corruption"], {})[int(r["severity"])] = 1.0 - r["accuracy"]
    return out


def mce(model_rows: Sequence[dict], model_clean: float, baseline_rows: Sequence[dict],
        baseline_clean: float, *, corruptions: Optional[Sequence[str]] = None) -> Tuple[Optional[float], Optional[float], Dict[str, dict]]:
    """mCE and relative mCE (Hendrycks & Dietterich 2019), in percent of the baseline.

    ``CE_c = sum_s E_sc / sum_s E_sc(baseline)``;
    ``relCE_c = sum_s (E_sc - E_clean) / sum_s (E_sc(baseline) - E_clean(baseline))``;
    mCE / relative mCE are their means over ``corruptions`` (default: the
    ImageNet-C 15 present in both). Returns ``(mce, relative_mce, per_corruption)``.
    mCE is ``None`` when a baseline's error sum is 0. A corruption whose baseline
    error does not grow over its clean error has no relative CE (``None``); the
    relative mCE then averages the others (count them in ``per_corruption``), and is
    ``None`` only when no corruption has one.
    """
    ours, base = corruption_errors(model_rows), corruption_errors(baseline_rows)
    names = [c for c in (corruptions or COMMON) if c in ours and c in base]
    per: Dict[str, dict] = {}
    ces, rels = [], []
    for c in names:
        sev = sorted(set(ours[c]) & set(base[c]))
        e = sum(ours[c][s] for s in sev)
        eb = sum(base[c][s] for s in sev)
        rel_num = sum(ours[c][s] - (1 - model_clean) for s in sev)
        rel_den = sum(base[c][s] - (1 - baseline_clean) for s in sev)
        ce = 100.0 * e / eb if eb > 0 else None
        rel = 100.0 * rel_num / rel_den if rel_den > 0 else None
        per[c] = {"ce": ce, "relative_ce": rel}
        ces.append(ce)
        rels.append(rel)
    mean_ce = sum(ces) / len(ces) if ces and None not in ces else None
    valid = [r for r in rels if r is not None]
    mean_rel = sum(valid) / len(valid) if valid else None
    return mean_ce, mean_rel, per


def alexnet_baseline(corruptions: Sequence[str], severities: Sequence[int]) -> dict:
    """AlexNet's published errors as a baseline sweep: ``{"clean_accuracy", "corruptions": rows}``.

    Every severity row of a corruption carries that corruption's published mean error, so
    :func:`mce`'s severity sums give ``CE_c = mean_s E_sc / AlexNet_c`` and
    ``relCE_c = (mean_s E_sc - E_clean) / (AlexNet_c - AlexNet_clean)``, exactly the
    published definitions. That holds only over all five severities (the published numbers
    average them), so a subset is refused. Corruptions outside the 15 get no rows (no CE).

    Raises:
        ValueError: ``severities`` is not 1..5.
    """
    if sorted(set(int(s) for s in severities)) != _SEVERITIES:
        raise ValueError(f"--baseline alexnet needs severities 1,2,3,4,5 (the published AlexNet "
                         f"errors average all five), got {','.join(str(s) for s in severities)}; "
                         f"pass --severities 1,2,3,4,5, or --baseline none, or --baseline MODEL")
    rows = [{"corruption": c, "severity": int(s), "accuracy": 1.0 - ALEXNET_ERRORS[c]}
            for c in corruptions if c in ALEXNET_ERRORS for s in severities]
    return {"clean_accuracy": 1.0 - ALEXNET_CLEAN_ERROR, "corruptions": rows}


def alexnet_mce(rows: Sequence[dict], clean_accuracy: float, *,
                corruptions: Optional[Sequence[str]] = None
                ) -> Tuple[Optional[float], Optional[float], Dict[str, dict]]:
    """CE, mCE and relative mCE of ImageNet-C errors against AlexNet's published ones.

    Args:
        rows: ``{"corruption", "severity", "accuracy"}`` rows; every ImageNet-C corruption in
            them must have all five severities.
        clean_accuracy: the model's clean accuracy on the same images.
        corruptions: which to average (default: the 15 of ImageNet-C present in ``rows``).

    Returns:
        ``(mce, relative_mce, per_corruption)`` in percent of AlexNet, as :func:`mce`.

    Raises:
        ValueError: a corruption with fewer than five severities (see :func:`alexnet_baseline`).
    """
    errors = corruption_errors(rows)
    for c, by_severity in errors.items():
        if c in ALEXNET_ERRORS and sorted(by_severity) != _SEVERITIES:
            alexnet_baseline([c], sorted(by_severity))
    base = alexnet_baseline([c for c in errors if c in ALEXNET_ERRORS], _SEVERITIES)
    return mce(rows, clean_accuracy, base["corruptions"], base["clean_accuracy"],
               corruptions=corruptions)


def default_baseline(data: str, input_size: Sequence[int]) -> str:
    """The mCE baseline when none is asked for: AlexNet's published errors for ImageNet-like
    data (``imagenet:``, ``imagenet-c:``, ``imagefolder:``) with an RGB (timm) model, else
    the zoo's ``cnn``."""
    if str(data).startswith(IMAGENET_DATA) and int(input_size[0]) == 3:
        return ALEXNET
    return ZOO_BASELINE


def check_baseline_input(baseline: str, baseline_size: Sequence[int], model: str,
                         model_size: Sequence[int]) -> None:
    """Raise ``ValueError`` (one line naming the options) unless a baseline model takes the
    model's input size."""
    if tuple(baseline_size) != tuple(model_size):
        fmt = "x".join(str(int(v)) for v in baseline_size)
        ours = "x".join(str(int(v)) for v in model_size)
        raise ValueError(f"baseline {baseline} takes {fmt} images but {model} takes {ours}; pass "
                         f"{_OPTIONS} with a {ours} input")
