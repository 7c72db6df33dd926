"""The mixed-domain sequences a split is built from and checked against (docs/protocol.md 0.2).

The kept users' rows sorted by (user, day, line) with one stable integer sort: ``line`` (the
original file order) breaks same-day ties. Shared by :func:`benchmark.data.split.build_split` and
the leakage guard (:mod:`benchmark.data.split_leakage`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.data.model import Interactions


@dataclass(frozen=True)
class Ordered:
    """Rows of the kept users sorted by (user, day, line): the mixed-domain sequences."""

    users: np.ndarray  # int32 [K] ascending user index
    starts: np.ndarray  # int64 [K] first sorted position of each user
    lengths: np.ndarray  # int64 [K]
    item: np.ndarray  # int32 [n]
    day: np.ndarray  # int32 [n]
    rating: np.ndarray  # float32 [n]

    @property
    def last(self) -> np.ndarray:
        return self.starts + self.lengths - 1


def order_rows(inter: Interactions, keep_user: np.ndarray) -> Ordered:
    """Sort the rows of the kept users by (user, day, line) with one stable integer sort.

    ``line`` is the original file order, the deterministic same-day tie rule (docs/protocol.md 0.2).
    """
    rows = np.flatnonzero(keep_user[inter.user])
    line = inter.line[rows]
    if len(line) > 1 and not np.all(line[1:] > line[:-1]):
        rows = rows[np.argsort(line, kind="stable")]
    user = inter.user[rows].astype(np.int64)
    day = inter.day[rows].astype(np.int64)
    if len(rows):
        dmin = int(day.min())
        span = int(day.max()) - dmin + 1
        if inter.n_users * span < 2**62:
            order = np.argsort(user * span + (day - dmin), kind="stable")
        else:  # pragma: no cover - only for absurd day ranges
            order = np.lexsort((day, user))
        rows = rows[order]
        del order
    user = inter.user[rows]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(rows) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, len(rows)])
    return Ordered(
        users=user[starts].astype(np.int32),
        starts=starts.astype(np.int64),
        lengths=lengths.astype(np.int64),
        item=inter.item[rows].astype(np.int32),
        day=inter.day[rows].astype(np.int32),
        rating=inter.rating[rows].astype(np.float32),
    )


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = starts.astype(np.int64) - np.r_[0, np.cumsum(lengths)[:-1]]
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)
