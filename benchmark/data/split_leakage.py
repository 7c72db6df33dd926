"""The leakage guard: a split must not let test information into training (docs/protocol.md 0.2).

Run by :func:`benchmark.data.split.build_split` on every split it builds, and by
:func:`check_no_leakage` on any split against its dataset. A violation is always a bug in the
split code, so it is an AssertionError (:class:`LeakageError`), never a data error.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.model import Dataset, Split
from benchmark.data.split_order import Ordered, concat_ranges, order_rows


class LeakageError(AssertionError):
    """A split that leaks test information into training. Always a bug in the split code."""


def check_no_leakage(split: Split, dataset: Dataset) -> None:
    """Re-derive each user's sequence from the dataset and assert the split leaks nothing.

    Checks: no unseen user in training; overlapped users are in training; each target is the
    user's last interaction; its row is not in training (training rows of an overlapped user are
    a sub-multiset of their other rows); each query is an earlier interaction that differs from
    the target. A violation is a bug, so it raises :class:`LeakageError` (an AssertionError).
    """
    inter = dataset.interactions
    involved = np.zeros(inter.n_users, dtype=bool)
    for users in (split.train.users, split.cases.user):
        ok = (users >= 0) & (users < inter.n_users)
        if not ok.all():
            raise LeakageError(f"split refers to user {users[~ok][0]} outside the dataset's users")
        involved[users] = True
    check_leakage(split, order_rows(inter, involved))


def check_leakage(split: Split, od: Ordered) -> None:
    train, cases = split.train, split.cases
    problems: list[str] = []

    def note(mask: np.ndarray, what: str, users: np.ndarray) -> None:
        if np.any(mask):
            problems.append(f"{int(np.count_nonzero(mask))} {what} (e.g. user {int(users[mask][0])})")

    n_cases = len(cases.user)
    _, first = np.unique(cases.user, return_index=True)
    dup = np.ones(n_cases, dtype=bool)
    dup[first] = False
    note(dup, "users with more than one test case", cases.user)
    unseen = cases.user[~cases.overlapped]
    note(np.isin(unseen, train.users), "unseen test users with training interactions", unseen)
    ov_users = cases.user[cases.overlapped]
    note(~np.isin(ov_users, train.users), "overlapped test users missing from training", ov_users)

    k = np.searchsorted(od.users, cases.user)
    k = np.minimum(k, max(len(od.users) - 1, 0))
    found = (od.users[k] == cases.user) if len(od.users) else np.zeros(n_cases, dtype=bool)
    note(~found, "test users without interactions in the dataset", cases.user)
    if problems:
        raise LeakageError("split leakage: " + "; ".join(problems))

    last = od.last[k]
    note(od.item[last] != cases.target, "targets that are not the user's last interaction", cases.user)
    note(cases.query == cases.target, "queries equal to their target", cases.user)
    hist = split.histories
    if len(hist) != n_cases:
        problems.append(f"{len(hist)} histories for {n_cases} cases")
    else:
        note(hist.lengths != od.lengths[k] - 1, "histories that are not all the user's items before the target",
             cases.user)
        if not problems:
            rows = concat_ranges(od.starts[k], od.lengths[k] - 1)
            owner = np.repeat(np.arange(n_cases), od.lengths[k] - 1)
            wrong = np.bincount(owner[od.item[rows] != hist.items], minlength=n_cases) > 0
            note(wrong, "histories that differ from the user's time-ordered items", cases.user)

    # Query precedes target: (user, query) occurs among the user's rows before the last one.
    before = od.lengths[k] - 1
    case_of = np.repeat(np.arange(n_cases, dtype=np.int64), before)
    hit = od.item[concat_ranges(od.starts[k], before)] == cases.query[case_of]
    query_ok = np.bincount(case_of[hit], minlength=n_cases) > 0
    note(~query_ok, "queries that are not an earlier interaction of the user", cases.user)

    # Held-out rows not in training: training rows of overlapped users must fit in their
    # non-target rows, counted as a multiset of (user, item, day).
    ov = np.flatnonzero(cases.overlapped)
    if len(ov) and not problems:
        a_pos = concat_ranges(od.starts[k[ov]], before[ov])
        a_user = np.repeat(cases.user[ov], before[ov])
        sorter = np.argsort(train.users, kind="stable")
        t = sorter[np.searchsorted(train.users, cases.user[ov], sorter=sorter)]
        t_len = train.offsets[t + 1] - train.offsets[t]
        b_pos = concat_ranges(train.offsets[t], t_len)
        b_user = np.repeat(cases.user[ov], t_len)
        excess = _multiset_excess(
            (
                np.r_[a_user, b_user],
                np.r_[od.item[a_pos], train.items[b_pos]],
                np.r_[od.day[a_pos], train.day[b_pos]],
            ),
            np.r_[np.ones(len(a_pos), np.int64), -np.ones(len(b_pos), np.int64)],
        )
        note(
            excess[0],
            "overlapped users whose held-out interaction (or an unknown row) is in training",
            excess[1],
        )
    if problems:
        raise LeakageError("split leakage: " + "; ".join(problems))


def _multiset_excess(cols: tuple[np.ndarray, ...], weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal rows (cols) whose weights sum below zero; returns (mask, first column)."""
    if len(weight) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, np.int64)
    order = np.lexsort(tuple(reversed(cols)))
    sc = [c[order] for c in cols]
    change = np.zeros(len(order), dtype=bool)
    change[0] = True
    for c in sc:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    total = np.add.reduceat(weight[order], starts)
    return total < 0, sc[0][starts]
