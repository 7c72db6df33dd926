"""Step 1 of PGG-lite (docs/methods.md 9.1): cut each user's training sequence into short-term sets.

PGG builds its I2I graph from *short-term* behaviour, not from a user's whole history
(He et al., KDD'21, abstract). The reconstruction uses windows of ``window`` consecutive items
taken every ``stride`` positions; the last window is aligned to the sequence end so every item
is covered, and a sequence shorter than the window is one set.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.model import Sequences

PAD = -1


def short_term_sets(sequences: Sequences, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window`` consecutive items per sequence, vectorised.

    Returns ``sets`` int32 [n_sets, window] padded with ``PAD`` (-1) and ``owner`` int64 [n_sets],
    the sequence row (position in ``sequences``) each set comes from. Sequences with fewer than
    two items yield no set (a set of one item has no pair).
    """
    if window < 2 or stride < 1:
        raise ValueError(f"short_term_sets: need window >= 2 and stride >= 1, got {window}, {stride}")
    lengths = sequences.lengths.astype(np.int64)
    starts_at = sequences.offsets[:-1].astype(np.int64)
    keep = lengths >= 2
    rows = np.flatnonzero(keep)
    lengths, starts_at = lengths[keep], starts_at[keep]

    span = np.maximum(lengths - window, 0)  # last admissible start (relative)
    n_regular = span // stride + 1  # starts 0, stride, ..., <= span
    tail = (n_regular - 1) * stride < span  # the regular grid misses the end: add a tail-aligned window
    n_sets = n_regular + tail
    owner_local = np.repeat(np.arange(len(rows), dtype=np.int64), n_sets)
    first = np.r_[0, np.cumsum(n_sets)[:-1]]
    k = np.arange(len(owner_local), dtype=np.int64) - first[owner_local]  # window number within sequence
    rel = np.minimum(k * stride, span[owner_local])  # the tail window lands exactly on span
    width = np.minimum(lengths, window)[owner_local]

    cols = np.arange(window, dtype=np.int64)
    pos = starts_at[owner_local, None] + rel[:, None] + cols[None, :]
    valid = cols[None, :] < width[:, None]
    sets = np.full(pos.shape, PAD, dtype=np.int32)
    sets[valid] = sequences.items[pos[valid]]
    return sets, rows[owner_local]
