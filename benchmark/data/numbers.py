"""Range checks for every number a loader reads: finite and inside a declared range, or a DataError.

A rating of ``nan``, ``inf`` or a 5000-digit number parses as a float without complaint, and
then flows into methods that split on it (UAE's liked/disliked) or average it. Each loader
declares the range of each numeric field it reads and calls :func:`check_range` on the parsed
column, so bad input stops with one line naming the file and line (exit 2). Missing values
(``nan`` where the source has no value at all) are passed in as ``missing`` and allowed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import DataError

#: XMarket (raw and 5-core files, and its twin): Amazon's star ratings.
XMARKET_RATING_RANGE = (1.0, 5.0)
#: Other sources (RecBole atomic files, CSV): any finite rating of a plausible magnitude.
RATING_RANGE = (-1e9, 1e9)
#: Metadata: an item's average rating, and a price in any currency.
AVERAGE_RATING_RANGE = (0.0, 5.0)
PRICE_RANGE = (0.0, 1e9)
#: Timestamps in seconds: 1900-01-01 .. 2200-01-01 (days then fit int32 with room to spare).
TIMESTAMP_RANGE = (-2_208_988_800.0, 7_258_118_400.0)


def _fmt(x: float) -> str:
    return f"{x:g}"


def first_bad(values: np.ndarray, low: float, high: float, missing: np.ndarray | None = None) -> int | None:
    """Index of the first value that is not finite or outside [low, high] (``missing`` rows excepted)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v < low) | (v > high)
    if missing is not None:
        bad &= ~np.asarray(missing, dtype=bool)
    idx = np.flatnonzero(bad)
    return int(idx[0]) if len(idx) else None


def check_range(values: np.ndarray, field: str, path: Path, value_range: tuple[float, float],
                first_line: int = 1, raw: np.ndarray | None = None, missing: np.ndarray | None = None) -> None:
    """Raise a one-line DataError at the first value of ``values`` that is not finite or out of range.

    Row ``i`` is line ``first_line + i`` of ``path``; ``raw`` (the text as read) is quoted in the
    message when given, cut to 40 characters.
    """
    low, high = value_range
    i = first_bad(values, low, high, missing)
    if i is None:
        return
    shown = str(raw[i]) if raw is not None else str(values[i])
    if len(shown) > 40:
        shown = f"{shown[:20]}...({len(shown)} characters)"
    raise DataError(f"{field} {shown!r} is not a finite number in [{_fmt(low)}, {_fmt(high)}]", path, first_line + i)


def check_number(value: float, field: str, path: Path, value_range: tuple[float, float], line: int,
                 raw: object = None) -> float:
    """One value (a metadata field): nan = missing is kept; anything else must be finite and in range."""
    if value != value:
        return value
    check_range(np.array([value]), field, path, value_range, first_line=line,
                raw=np.array([raw if raw is not None else value], dtype=object))
    return value
