"""The claims report's rows, read from the analyses' results files, and its forest plot.

Each ``analyses/results/<name>.json`` holds ``"claims"`` rows (``id, claim, verdict,
effect, ci_low, ci_high, margin, per_family, sensitivity``, ...) and ``"checks"``
rows (``id, what, max_abs_error, tolerance, holds``). This module only reads them:
the report (``python -m analyses.report``) and the app's Claims tab draw the same
figure from the same committed files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from matplotlib.figure import Figure

from .plots import new_figure, save

__all__ = ["VERDICT_COLORS", "ClaimSet", "read", "forest_figure", "verdict_counts"]

VERDICT_COLORS = {"supported": "#2ca02c", "negligible": "#1f77b4", "opposite": "#d62728",
                  "inconclusive": "#7f7f7f"}
_CLAIM_KEYS = ("id", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "per_family",
               "sensitivity")


@dataclass
class ClaimSet:
    """Claims and checks of every results file in a folder.

    Attributes:
        claims: claim rows, each with ``"analysis"`` (the results file's name) added.
        checks: check rows, each with ``"analysis"`` added.
        analyses: names of the results files read, in order.
        skipped: ``{file name: why}`` for results files without claim rows in the
            current format.
    """

    claims: List[dict]
    checks: List[dict]
    analyses: List[str]
    skipped: Dict[str, str]


def read(folder: Union[str, Path], names: Optional[Sequence[str]] = None) -> ClaimSet:
    """The :class:`ClaimSet` of ``folder/<name>.json`` (default: every ``*.json``, sorted)."""
    folder = Path(folder)
    paths = ([folder / f"{n}.json" for n in names] if names is not None
             else sorted(folder.glob("*.json")))
    claims, checks, analyses, skipped = [], [], [], {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            skipped[path.stem] = f"unreadable ({e})"
            continue
        rows = results.get("claims") if isinstance(results, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in _CLAIM_KEYS)
                                                 for r in rows):
            skipped[path.stem] = "no claim rows in the current results format"
            continue
        analyses.append(path.stem)
        claims += [{**r, "analysis": path.stem} for r in rows]
        checks += [{**c, "analysis": path.stem} for c in results.get("checks", []) if isinstance(c, dict)]
    return ClaimSet(claims, checks, analyses, skipped)


def verdict_counts(claims: Sequence[dict]) -> Dict[str, int]:
    """``{verdict: number of claims}`` over the four verdicts (zeros included)."""
    out = {v: 0 for v in VERDICT_COLORS}
    for c in claims:
        out[c["verdict"]] = out.get(c["verdict"], 0) + 1
    return out


def _label(family: str) -> str:
    try:
        from . import registry
        return registry.families()[family].label
    except (KeyError, ImportError):
        return family


def forest_figure(claims: Sequence[dict], *, title: Optional[str] = None,
                  path: Optional[Union[str, Path]] = None, width: float = 8.0) -> Figure:
    """One panel per claim: the claim's effect and interval (thick, coloured by verdict) and
    each family's effect and interval beneath it (thin, grey), against the ``+-margin`` band
    (grey) and 0. A positive effect is what the claim says."""
    rows_per = [1 + len(c.get("per_family") or {}) for c in claims]
    fig = new_figure(width, max(1.5, sum(0.22 * r + 0.55 for r in rows_per) + 0.6))
    if not claims:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no claims in the current results format", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = fig.subplots(len(claims), 1, squeeze=False, gridspec_kw={"height_ratios": rows_per})
    for ax, c in zip(axes[:, 0], claims):
        fams = list((c.get("per_family") or {}).items())
        color = VERDICT_COLORS.get(c["verdict"], "k")
        values = [c["ci_low"], c["ci_high"]] + [v for _, f in fams for v in (f["ci_low"], f["ci_high"])]
        span = max([abs(v) for v in values] + [2 * c["margin"], 1e-9]) * 1.15
        ax.axvspan(-c["margin"], c["margin"], color="0.9", lw=0)
        ax.axvline(0, color="k", lw=0.7)
        y = len(fams)
        ax.plot([c["ci_low"], c["ci_high"]], [y, y], color=color, lw=3.5, solid_capstyle="butt")
        ax.plot(c["effect"], y, "o", color=color, ms=5)
        for i, (fam, f) in enumerate(fams):
            yy = len(fams) - 1 - i
            ax.plot([f["ci_low"], f["ci_high"]], [yy, yy], color="0.35", lw=1.5)
            ax.plot(f["effect"], yy, "o", color="0.35", ms=3)
        ax.set_yticks(range(len(fams) + 1))
        ax.set_yticklabels([_label(f) for f, _ in fams][::-1] + ["claim"], fontsize=7)
        ax.set_ylim(-0.6, len(fams) + 0.6)
        ax.set_xlim(-span, span)
        ax.grid(False)
        ax.tick_params(axis="x", labelsize=7)
        unit = f" ({c['unit']})" if c.get("unit") else ""
        level = f"{round(100 * c.get('confidence', 0.95))}%"
        ax.set_title(f"{c['id']}: {c['verdict'].upper()}  |  {level} interval, margin "
                     f"{c['margin']:g}{unit}", fontsize=7.5, loc="left", color=color)
    axes[-1, 0].set_xlabel("effect (> 0: as the claim says; grey band: +-margin; thick: the claim, "
                           "thin: each family)", fontsize=8)
    fig.suptitle(title or f"{len(claims)} claims: effects with their intervals, per family",
                 fontsize=10)
    save(fig, path)
    return fig
