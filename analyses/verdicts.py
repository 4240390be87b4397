"""Verdict rules, intervals, margins, claims and checks of the claims report.

A claim's effect is oriented so that a positive value is what the claim says. Its
interval is computed over seeds (or other independent replicates) and its margin -
the smallest effect that counts - is read from the committed ``analyses/margins.json``
(fixed before the results it judges; one line of reason each), never from code.

Verdicts:

- directional claims ("X is less robust than Y"), 95% interval ``[low, high]``:
  **supported** if ``low > margin``; **negligible** if the interval lies inside
  ``[-margin, margin]``; **opposite** if ``high < 0`` (the other direction holds,
  beyond the margin or not); **inconclusive** otherwise.
- equivalence claims ("X and Y perform alike"), 90% interval (two one-sided tests at
  5% each, TOST): **supported** if the interval lies inside ``[-margin, margin]``;
  **opposite** if it lies entirely outside it (a difference beyond the margin);
  **inconclusive** otherwise.

Each verdict is also computed at half and at twice the margin (``sensitivity``).
Facts that hold by construction (identities, a one-block stage reaching less far than
a global layer) are :class:`Check` rows with their errors, not claims.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

MARGINS_PATH = Path(__file__).resolve().parent / "margins.json"

VERDICTS = ("supported", "negligible", "opposite", "inconclusive")
VERDICT_COLORS = {"supported": "#2ca02c", "negligible": "#1f77b4", "opposite": "#d62728",
                  "inconclusive": "#7f7f7f"}
TESTS = ("direction", "equivalence")
CONFIDENCE = {"direction": 0.95, "equivalence": 0.90}

RULES = {
    "direction": "95% interval over seeds; supported if it lies above the margin, negligible if "
                 "inside +-margin, opposite if below 0, otherwise inconclusive",
    "equivalence": "90% interval over seeds (TOST); supported if it lies inside +-margin, "
                   "opposite if entirely outside, otherwise inconclusive",
}


# ----------------------------------------------------------------------------- rules


def direction_verdict(low: float, high: float, *, margin: float) -> str:
    """Verdict on a directional claim (effect > 0) from its 95% interval (module docstring)."""
    if low > margin:
        return "supported"
    if -margin <= low and high <= margin:
        return "negligible"
    if high < 0:
        return "opposite"
    return "inconclusive"


def equivalence_verdict(low: float, high: float, *, margin: float) -> str:
    """Verdict on an equivalence claim (|effect| <= margin) from its 90% interval."""
    if -margin <= low and high <= margin:
        return "supported"
    if low > margin or high < -margin:
        return "opposite"
    return "inconclusive"


def decide(test: str, low: float, high: float, margin: float) -> str:
    """The verdict of a ``test`` ("direction" or "equivalence") claim."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    rule = direction_verdict if test == "direction" else equivalence_verdict
    return rule(low, high, margin=margin)


def sensitivity(test: str, low: float, high: float, margin: float) -> Dict[str, str]:
    """The verdicts at half and at twice the margin."""
    return {"half": decide(test, low, high, margin / 2), "double": decide(test, low, high, margin * 2)}


# ----------------------------------------------------------------------------- intervals


def _t(confidence: float, dof: float) -> float:
    from scipy import stats
    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def mean_ci(values: Sequence[float], *, confidence: float = 0.95) -> Tuple[float, float, float]:
    """``(mean, low, high)``: Student-t interval of the mean (zero width for one value)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    half = _t(confidence, len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


def diff_ci(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95
            ) -> Tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)``: Welch interval of the difference of means.

    With a single value on both sides the interval has zero width; with one side
    constant the other side's spread sets it.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(a.mean() - b.mean())
    va = a.var(ddof=1) / len(a) if len(a) > 1 else 0.0
    vb = b.var(ddof=1) / len(b) if len(b) > 1 else 0.0
    se = math.sqrt(va + vb)
    if se == 0.0:
        return d, d, d
    den = (va ** 2 / (len(a) - 1) if len(a) > 1 else 0.0) + (vb ** 2 / (len(b) - 1) if len(b) > 1 else 0.0)
    dof = (va + vb) ** 2 / den if den > 0 else max(len(a) + len(b) - 2, 1)
    half = _t(confidence, dof) * se
    return d, d - half, d + half


def positive_ci(values: Sequence[float], *, confidence: float = 0.95) -> Tuple[float, float, float]:
    """``(geometric mean, low, high)`` of positive values: a t interval on their logarithms,
    mapped back, so it never leaves ``(0, inf)`` (for distances, input dependence, errors).

    Raises:
        ValueError: a value is not positive (a quantity that can be 0 needs a shift first).
    """
    v = np.asarray(values, dtype=float)
    if (v <= 0).any() or not np.isfinite(v).all():
        raise ValueError(f"positive_ci needs positive finite values, got {v.tolist()}")
    m, lo, hi = mean_ci(np.log(v), confidence=confidence)
    return math.exp(m), math.exp(lo), math.exp(hi)


def ratio_ci(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95
             ) -> Tuple[float, float, float]:
    """``(ratio, low, high)`` of the geometric means of positive ``a`` and ``b``: a Welch
    interval of the difference of their logarithms, mapped back (stays positive)."""
    for name, v in (("a", a), ("b", b)):
        if (np.asarray(v, dtype=float) <= 0).any():
            raise ValueError(f"ratio_ci needs positive values, {name} = {list(v)}")
    d, lo, hi = diff_ci(np.log(a), np.log(b), confidence=confidence)
    return math.exp(d), math.exp(lo), math.exp(hi)


# ----------------------------------------------------------------------------- margins


@lru_cache(maxsize=4)
def _margins_file(path: str) -> dict:
    try:
        spec = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no margins file at {path}; the claims' margins live there") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    for key, entry in spec.get("margins", {}).items():
        if not isinstance(entry, dict) or entry.get("test") not in TESTS or \
                not isinstance(entry.get("margin"), (int, float)) or entry["margin"] < 0 or \
                not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path}: margin {key!r} needs a 'margin' >= 0, a 'test' "
                             f"({' or '.join(TESTS)}) and a one-line 'reason', got {entry!r}")
    return spec


def margins(path: Path = MARGINS_PATH) -> Dict[str, dict]:
    """``{claim id: {"margin", "unit", "test", "reason"}}`` from the committed margins file."""
    return dict(_margins_file(str(path))["margins"])


def margin_of(claim_id: str, path: Path = MARGINS_PATH) -> dict:
    """The margins-file entry of ``claim_id``; ``KeyError`` naming the file if it has none."""
    table = margins(path)
    if claim_id not in table:
        raise KeyError(f"claim {claim_id!r} has no margin in {path}; add one (with its reason) "
                       f"before computing its verdict")
    return table[claim_id]


# ----------------------------------------------------------------------------- rows


@dataclass
class Claim:
    """One claim of the debate, the measurement that tests it and the computed verdict.

    ``estimate``, ``low`` and ``high`` are the effect and its interval (95% for a
    directional claim, 90% for an equivalence claim: :data:`CONFIDENCE`); ``effect``
    says in words what the number is. The margin and the kind of test come from the
    margins file; ``per_family`` holds each family's own effect and interval
    (``{family: {"effect", "ci_low", "ci_high"}}``) when the claim speaks of a group.
    """

    key: str
    claim: str
    who: str
    experiment: str
    figure: str
    effect: str            # what the number is, oriented so that > 0 agrees with the claim
    estimate: float
    low: float
    high: float
    details: Dict[str, object] = field(default_factory=dict)
    per_family: Dict[str, Dict[str, float]] = field(default_factory=dict)
    reference: Dict[str, object] = field(default_factory=dict)
    margin: float = field(init=False, default=0.0)
    test: str = field(init=False, default="direction")
    unit: str = field(init=False, default="")
    margin_reason: str = field(init=False, default="")
    rule: str = field(init=False, default="")
    verdict: str = field(init=False, default="")     # always computed from the interval
    sensitivity: Dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        entry = margin_of(self.key)
        self.margin, self.test = float(entry["margin"]), entry["test"]
        self.unit, self.margin_reason = entry.get("unit", ""), entry["reason"]
        if not self.low <= self.estimate <= self.high:
            raise ValueError(f"claim {self.key}: estimate {self.estimate} outside its interval "
                             f"[{self.low}, {self.high}]")
        self.rule = RULES[self.test]
        self.verdict = decide(self.test, self.low, self.high, self.margin)
        self.sensitivity = sensitivity(self.test, self.low, self.high, self.margin)

    @property
    def confidence(self) -> float:
        return CONFIDENCE[self.test]

    def as_dict(self) -> dict:
        return asdict(self)

    def as_result(self) -> dict:
        """The results-file row: ``id, claim, verdict, effect, ci_low, ci_high, margin,
        per_family, sensitivity`` and the claim's wording, test and details."""
        return {"id": self.key, "claim": self.claim, "verdict": self.verdict,
                "effect": self.estimate, "ci_low": self.low, "ci_high": self.high,
                "margin": self.margin, "unit": self.unit, "test": self.test,
                "confidence": self.confidence, "per_family": self.per_family,
                "sensitivity": self.sensitivity, "effect_description": self.effect,
                "who": self.who, "experiment": self.experiment, "figure": self.figure,
                "rule": self.rule, "margin_reason": self.margin_reason,
                "reference": self.reference, "details": self.details}


@dataclass
class Check:
    """A fact that holds by construction, verified numerically: not evidence for a claim."""

    key: str
    what: str
    max_abs_error: float
    tolerance: float
    details: Dict[str, object] = field(default_factory=dict)
    holds: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.holds = bool(self.max_abs_error <= self.tolerance)

    def as_result(self) -> dict:
        return {"id": self.key, "what": self.what, "max_abs_error": self.max_abs_error,
                "tolerance": self.tolerance, "holds": self.holds, "details": self.details}


def family_effects(effects: Mapping[str, Sequence[float]], *, confidence: float = 0.95
                   ) -> Dict[str, Dict[str, float]]:
    """``{family: {"effect", "ci_low", "ci_high"}}`` from each family's per-seed effects."""
    out = {}
    for fam, values in effects.items():
        m, lo, hi = mean_ci(values, confidence=confidence)
        out[fam] = {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(values)}
    return out


def group_effect(effects: Mapping[str, Sequence[float]], group: Sequence[str], *,
                 confidence: float = 0.95) -> Tuple[float, float, float, Dict[str, Dict[str, float]]]:
    """``(estimate, low, high, per_family)`` of a claim about a group of families.

    ``effects[family]`` are that family's per-seed effects (oriented like the claim, e.g.
    CNN minus family for "the family is worse"), seeds in the same order for every family.
    The group's effect at a seed is the mean of its families' effects at that seed; the
    interval is over seeds. ``per_family`` gives every family of ``effects`` (the group's
    and any other, e.g. ViT) its own effect and interval, so that opposite signs inside
    the group stay visible.
    """
    missing = [f for f in group if f not in effects]
    if missing:
        raise ValueError(f"no per-seed effects for {', '.join(missing)}")
    n = {len(effects[f]) for f in group}
    if len(n) != 1:
        raise ValueError(f"the group's families have different numbers of seeds: "
                         f"{ {f: len(effects[f]) for f in group} }")
    per_seed = np.mean([np.asarray(effects[f], dtype=float) for f in group], axis=0)
    est, lo, hi = mean_ci(per_seed, confidence=confidence)
    return est, lo, hi, family_effects(effects, confidence=confidence)


def as_claim_row(row: Mapping[str, object]) -> Optional[dict]:
    """A results-file claim row checked for the fields the report needs (``None`` if not one)."""
    need = ("id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
            "sensitivity")
    return dict(row) if all(k in row for k in need) else None
