"""Corruption error (CE), mCE and relative mCE (Hendrycks & Dietterich 2019, arXiv:1903.12261)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from .corruptions import COMMON

__all__ = ["corruption_errors", "mce"]


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
