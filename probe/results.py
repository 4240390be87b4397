"""Results store: atomic JSON writes, confidence intervals, CSV export, result tables.

Layout: ``runs/<dataset>/<model>/<analysis>.json``. Every file carries a
``schema_version``. Writes go to a temporary file in the same folder that is
then renamed over the target, so a killed process never leaves half a file.

The tables at the end turn mixing summaries and robustness results into flat
rows (one dict per row) and those rows into CSV bytes or markdown, for the app
(``apps/compare.py``) and the analyses.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = ["atomic_write_json", "atomic_write_text", "read_json", "binomial_ci", "write_csv",
           "check_writable", "MIXING_METRICS", "SHORT_NAMES", "metric_rows", "display_rows",
           "rows_to_csv", "rows_to_markdown", "robust_accuracy_rows", "corruption_error_rows"]


def atomic_write_text(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: Union[str, Path], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Union[str, Path]) -> Optional[Any]:
    """The JSON at ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def binomial_ci(successes: int, n: int, *, confidence: float = 0.95) -> Tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927)."""
    if n <= 0:
        return (0.0, 1.0)
    from scipy.stats import norm
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def write_csv(path: Union[str, Path], rows: Iterable[Dict[str, Any]]) -> Path:
    rows = list(rows)
    fields: List[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def check_writable(folder: Union[str, Path]) -> Path:
    """Create ``folder`` if needed and prove it is writable, before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-write-test."):
            pass
    except OSError as e:
        raise PermissionError(f"output folder {folder} is not writable ({e.strerror}); "
                              f"choose another with --out") from None
    return folder


# ----------------------------------------------------------------------------- tables


MIXING_METRICS = ("mean_mixing_distance", "locality_r1", "translation_equivariance",
                  "entropy_normalized", "effective_rank")
"""Per-layer metrics of :func:`probe.mixing.summarize` shown for one input
(``input_dependence`` needs more than one image)."""

SHORT_NAMES = {"mean_mixing_distance": "distance", "locality_r1": "locality",
               "translation_equivariance": "transl. equiv.", "entropy_normalized": "entropy",
               "effective_rank": "eff. rank", "input_dependence": "input dep."}
"""Short column names for on-screen tables (CSV files keep the full names)."""


def metric_rows(model_name: str, summaries: Sequence[dict], *, chosen: Optional[int] = None
                ) -> List[dict]:
    """Flat table rows (one per layer) from :func:`probe.mixing.summarize` output.

    Args:
        model_name: the ``model`` column.
        summaries: one dict per layer with ``depth``, ``kind``, ``layer``, ``heads``
            and the :data:`MIXING_METRICS` it has (rounded to 4 decimals).
        chosen: depth of the layer on screen; adds a ``shown`` column marking it.
    """
    rows = []
    for s in summaries:
        row = {"model": model_name, "depth": s["depth"], "kind": s["kind"], "layer": s["layer"],
               "heads": s["heads"]}
        for k in MIXING_METRICS:
            if k in s:
                row[k] = round(float(s[k]), 4)
        if chosen is not None:
            row["shown"] = "◀" if s["depth"] == chosen else ""
        rows.append(row)
    return rows


def display_rows(rows: Sequence[dict], *, drop: Sequence[str] = ("layer", "heads")) -> List[dict]:
    """Rows with :data:`SHORT_NAMES` columns for on-screen tables; the ``shown`` row in bold."""
    out = []
    for r in rows:
        row = {SHORT_NAMES.get(k, k): v for k, v in r.items() if k not in drop and k != "shown"}
        if r.get("shown"):
            row = {k: (f"**{v}**" if k in ("model", "depth", "kind") else v) for k, v in row.items()}
        out.append(row)
    return out


def _columns(rows: Sequence[dict]) -> List[str]:
    cols: List[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def rows_to_csv(rows: Sequence[dict]) -> bytes:
    """CSV bytes (UTF-8) of dict rows; columns in first-seen order, missing cells empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue().encode("utf-8")


def rows_to_markdown(rows: Sequence[dict], *, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table of dict rows (floats rounded, missing cells blank).

    Numeric columns are right-aligned and ``|`` in cells is escaped. The app
    renders tables as markdown rather than ``st.dataframe`` so that it does not
    depend on pyarrow.
    """
    cols = _columns(rows)
    if not cols:
        return ""

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
        return str(v).replace("|", "\\|")

    right = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in cols]
    lines = ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|" + "|".join("---:" if rt else "---" for rt in right) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def robust_accuracy_rows(results: Sequence[dict]) -> List[dict]:
    """One row per (attack, norm, epsilon), one column per model: robust accuracy (3 decimals).

    Args:
        results: ``robustness.json`` dicts (:func:`probe.robustness.run`), one per model.
    """
    table: Dict[Tuple[str, str, float], dict] = {}
    for r in results:
        for row in r.get("adversarial", []):
            key = (row["attack"], row["norm"], float(row["epsilon"]))
            table.setdefault(key, {"attack": row["attack"], "norm": row["norm"],
                                   "epsilon": row["epsilon"]})[r["model"]] = round(
                row["robust_accuracy"], 3)
    return [table[k] for k in sorted(table)]


def corruption_error_rows(results: Sequence[dict]) -> List[dict]:
    """One row per corruption, one column per model: error (%) averaged over severities.

    The first row is the clean error; an ``mCE (% of baseline)`` row ends the
    table when any result has an mCE.

    Args:
        results: ``robustness.json`` dicts (:func:`probe.robustness.run`), one per model.
    """
    errors: Dict[str, Dict[str, List[float]]] = {}
    order: List[str] = []
    for r in results:
        for row in r.get("corruptions", []):
            c = row["corruption"]
            if c not in order:
                order.append(c)
            errors.setdefault(c, {}).setdefault(r["model"], []).append(100 * (1 - row["accuracy"]))
    rows = []
    for c in order:
        row = {"corruption": c}
        for model, vals in errors[c].items():
            row[model] = round(sum(vals) / len(vals), 1)
        rows.append(row)
    if any(r.get("mce") is not None for r in results):
        summary = {"corruption": "mCE (% of baseline)"}
        for r in results:
            summary[r["model"]] = round(r["mce"], 1) if r.get("mce") is not None else None
        rows.append(summary)
    clean = {"corruption": "clean error"}
    for r in results:
        clean[r["model"]] = round(100 * (1 - r["clean_accuracy"]), 1)
    return [clean] + rows
