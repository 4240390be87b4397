"""Results store: atomic JSON writes, confidence intervals, CSV export.

Layout: ``runs/<dataset>/<model>/<analysis>.json``. Every file carries a
``schema_version``. Writes go to a temporary file in the same folder that is
then renamed over the target, so a killed process never leaves half a file.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

__all__ = ["atomic_write_json", "atomic_write_text", "read_json", "binomial_ci", "write_csv",
           "check_writable"]


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
