"""What the exact (evaluation/exact.py) and capped (evaluation/capped.py) rank kernels share.

Both count, per test case, the candidates that beat the target under the same definition: the
float64 reference score, the float32 GEMM screen with its error window, re-scoring inside the
window, and the index tie rule (bitwise-identical rows tie). Keeping these pieces in one module
below both kernels means the two can never drift apart (a capped rank at or below the cap must
equal the exact one), and neither kernel imports the other's private helpers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = [
    "LazyRowGroups",
    "index_rule_ranks",
    "reference_scores",
    "round_f32",
    "row_groups",
    "screen_window",
    "settle_window",
    "single_torch_thread",
]

_U32 = 2.0**-24  # unit roundoff of float32
_RESCORE_CHUNK = 16384  # pairs re-scored at once (16384 x d float64)


def reference_scores(query_vectors: np.ndarray, item_vectors: np.ndarray,
                     item_rows: np.ndarray | None = None) -> np.ndarray:
    """Row-wise reference inner products, float64 [P]: the scores ranks are defined on.

    The float32 x float32 products are exact in float64; summing them in sorted order makes the
    result a function of the multiset of products alone, so it is the same in every block, on
    every machine, and equal for mathematically tied pairs that differ only by a permutation.
    With ``item_rows`` row p pairs with ``item_vectors[item_rows[p]]``, gathered chunk by chunk
    (no [P, d] copy of the item side: 1.2 GB for the paper twin's 503,500 cases).
    """
    out = np.empty(len(query_vectors), dtype=np.float64)
    for s in range(0, len(out), _RESCORE_CHUNK):
        prod = query_vectors[s : s + _RESCORE_CHUNK].astype(np.float64)
        prod *= item_vectors[s : s + _RESCORE_CHUNK] if item_rows is None else item_vectors[item_rows[s : s + _RESCORE_CHUNK]]
        prod.sort(axis=1)
        out[s : s + _RESCORE_CHUNK] = prod.sum(axis=1)
    return out


def screen_window(dim: int) -> float:
    """Half-width around the target's reference score inside which the GEMM cannot decide.

    A float32 dot product of two unit vectors differs from the exact one by at most
    gamma_d * |q|.|e| <= gamma_d, gamma_d = d*u/(1-d*u) (Higham, Accuracy and Stability of
    Numerical Algorithms, 2nd ed., section 3.1), for any summation order, FMA or not;
    the margin covers the normalisation's own rounding and the float64 reference's error.
    """
    gamma = dim * _U32 / (1 - dim * _U32)
    return 1.25 * gamma + 2.0**-40


def round_f32(x: np.ndarray, up: bool) -> np.ndarray:
    """float64 -> float32, rounded outward so the float32 threshold never narrows the window."""
    y = x.astype(np.float32)
    if up:
        bad = y.astype(np.float64) < x
        y[bad] = np.nextafter(y[bad], np.float32(np.inf))
    else:
        bad = y.astype(np.float64) > x
        y[bad] = np.nextafter(y[bad], np.float32(-np.inf))
    return y


def settle_window(
    case: np.ndarray,
    pos: np.ndarray,
    pool_vectors: np.ndarray,
    query_vectors: np.ndarray,
    target_pos: np.ndarray,
    t_ref: np.ndarray,
) -> np.ndarray:
    """Whether each (case, candidate) pair inside the screening window counts, by reference score."""
    r = np.empty(len(case), dtype=np.float64)
    for s in range(0, len(case), _RESCORE_CHUNK):
        sl = slice(s, s + _RESCORE_CHUNK)
        r[sl] = reference_scores(query_vectors[case[sl]], pool_vectors[pos[sl]])
    t = t_ref[case]
    return (r > t) | ((r == t) & (pos < target_pos[case]))


def row_groups(vectors: np.ndarray) -> np.ndarray | None:
    """Group id per row, equal iff the rows are bitwise identical; None when all are distinct.

    Identical rows tie by definition, so the screen settles them by the index rule without
    re-scoring: a constant scorer or many zero rows (cold items of ID methods) stay cheap.
    """
    if len(vectors) == 0:
        return None
    vectors = np.ascontiguousarray(vectors)
    mix = np.random.default_rng(0x5EED).integers(1, 2**63, size=vectors.shape[1], dtype=np.uint64) | 1
    hashes = np.empty(len(vectors), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in range(0, len(vectors), 4096):
            words = vectors[s : s + 4096].view(np.uint32).astype(np.uint64)
            hashes[s : s + 4096] = (words * mix).sum(axis=1) ^ (words.sum(axis=1) << np.uint64(32))
    _, first, groups = np.unique(hashes, return_index=True, return_inverse=True)
    if len(first) == len(vectors):
        return None
    collision = any(not (vectors[s : s + 4096] == vectors[first[groups[s : s + 4096]]]).all()
                    for s in range(0, len(vectors), 4096))
    if collision:  # two different rows share a hash: use the exact key
        key = vectors.view(np.dtype((np.void, vectors.shape[1] * 4))).ravel()
        _, groups = np.unique(key, return_inverse=True)
    return groups.astype(np.int64)


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the compare-and-count ops on one torch thread, then restore the setting.

    They are memory-bound and follow an OpenBLAS GEMM whose threads keep spinning briefly; with
    two OpenMP threads on two cores the ops ran 15-30x slower than on one (measured here).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def index_rule_ranks(
    pool_vectors: np.ndarray,
    query_vectors: np.ndarray,
    target_pos: np.ndarray,
    query_pos: np.ndarray,
    ranks: np.ndarray,
) -> np.ndarray:
    """Fill ``ranks`` for the cases the index rule decides alone; return their mask.

    A zero query scores every candidate 0, and when all candidates share one vector (a
    constant scorer) they all tie with the target: the rank is then the target's position,
    less one when the excluded query item (``query_pos`` >= 0) stands before it. Both kernels
    start here so they agree on these cases without scanning them.
    """
    index_rule = ~query_vectors.any(axis=1)
    if (pool_vectors == pool_vectors[0]).all():
        index_rule[:] = True
    ir = index_rule
    ranks[ir] = 1 + target_pos[ir] - ((query_pos[ir] >= 0) & (query_pos[ir] < target_pos[ir]))
    return index_rule


class LazyRowGroups:
    """Bitwise-identical row groups of the pool, built on the first block that needs them.

    Built only when a block has many undecided candidates (a constant scorer, many zero rows);
    ordinary embeddings never pay for them.
    """

    def __init__(self, pool_vectors: np.ndarray) -> None:
        self.pool_vectors = pool_vectors
        self.groups: np.ndarray | None = None
        self.built = False

    def same(self, pos: np.ndarray, t_pos: np.ndarray, many: bool) -> np.ndarray | None:
        """Whether candidate ``pos`` is bitwise the target's vector; None if not worth checking."""
        if many and not self.built:
            self.groups, self.built = row_groups(self.pool_vectors), True
        if self.groups is None:
            return None
        return self.groups[pos] == self.groups[t_pos]
