"""Exact rank of the held-out next item given the user's history (the sequence methods' protocol).

UniSRec, VQ-Rec, MISSRec, UniM2Rec and TransRec are judged in their own papers by next-item
retrieval: a user/sequence vector from the history, scored against every item (full ranking, one
target, leave-one-out). Here the user vector of case ``c`` comes from the method's
``user_embeddings(histories)`` and the candidates are all items; the rank uses the same
reference score, tie rule and screened exact counting as the item-to-item protocol
(evaluation/exact.py), so the two tables are comparable in kind.

Scoring: ``"cosine"`` (UniSRec/VQ-Rec/MISSRec score normalised vectors) or ``"dot"`` (SASRec's
raw inner product). For ``"dot"`` the user vector is normalised (a positive scale never changes a
ranking) and every item vector is divided by the largest item norm, so all vectors have norm
<= 1 and the float32 screen's error bound still holds.

The history items stay candidates (repeat purchases are possible); ``exclude_history`` removes
them (RecBole's ``history_index`` masking), by subtracting the distinct history items that beat
the target under the same reference score.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.model import Histories
from benchmark.evaluation.capped import ranks_in_pool_capped
from benchmark.evaluation.exact import (
    _check_finite,
    _index_vector,
    _ranks_in_pool,
    check_rank_cap,
    normalise_rows,
)
from benchmark.evaluation.kernels import reference_scores

__all__ = ["SCORINGS", "next_item_ranks"]

SCORINGS = ("cosine", "dot")


def _candidate_vectors(item_embeddings: np.ndarray, scoring: str) -> np.ndarray:
    if scoring == "cosine":
        return normalise_rows(item_embeddings)
    emb = np.asarray(item_embeddings, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb, dtype=np.float64))
    top = float(norms.max()) if len(norms) else 0.0
    if top == 0.0:
        return np.zeros_like(emb)
    out = (emb.astype(np.float64) / top).astype(np.float32)
    # float32 rounding may leave a norm a hair above 1: shrink those rows by one ulp-scale factor.
    over = np.einsum("ij,ij->i", out, out, dtype=np.float64) > 1.0
    out[over] *= np.float32(1.0 - 2.0**-22)
    return out


def next_item_ranks(
    item_embeddings: np.ndarray,
    user_vectors: np.ndarray,
    target: np.ndarray,
    scoring: str = "cosine",
    histories: Histories | None = None,
    exclude_history: bool = False,
    block_queries: int = 256,
    block_items: int = 8192,
    progress: bool = False,
    rank_cap: int | None = None,
) -> np.ndarray:
    """1-based rank of ``target[c]`` among all items for user vector ``user_vectors[c]``; int32 [C].

    ``rank_cap`` as in ``ranking.target_ranks``: ranks above it are the sentinel ``rank_cap + 1``.
    With ``exclude_history`` the cap applies to the rank after the history is removed (a case
    scans until ``rank_cap`` + its history items above the target beat the target).
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    emb = np.asarray(item_embeddings)
    users = np.asarray(user_vectors)
    if emb.ndim != 2 or users.ndim != 2 or users.shape[1] != emb.shape[1]:
        raise ValueError(f"user vectors {users.shape} and item embeddings {emb.shape} must be [C, d] and [N, d]")
    n_items = emb.shape[0]
    target = _index_vector(target, n_items, "target")
    if len(target) != len(users):
        raise ValueError(f"{len(users)} user vectors for {len(target)} targets")
    if block_queries < 1 or block_items < 1:
        raise ValueError("block_queries and block_items must be >= 1")
    _check_finite(emb, "item embeddings")
    cap = check_rank_cap(rank_cap)
    _check_finite(users, "user vectors")
    if exclude_history and (histories is None or len(histories) != len(target)):
        raise ValueError("exclude_history needs one history per case")
    ranks = np.empty(len(target), dtype=np.int32)
    if len(target) == 0:
        return ranks
    pool = _candidate_vectors(emb, scoring)
    queries = normalise_rows(users)
    no_query = np.full(len(target), -1, dtype=np.int64)
    above = _history_above_target(pool, queries, target, histories) if exclude_history else 0
    if cap is None:
        ranks[:] = _ranks_in_pool(pool, queries, target, no_query, block_queries, block_items, progress)
    else:
        # min(rank, cap + h + 1) - h = min(rank - h, cap + 1): the cap holds after the exclusion.
        limit = cap + np.broadcast_to(np.asarray(above, dtype=np.int64), target.shape)
        ranks[:] = ranks_in_pool_capped(pool, queries, target, no_query, limit, block_queries, block_items, progress)
    ranks -= above
    return ranks


def _history_above_target(pool: np.ndarray, queries: np.ndarray, target: np.ndarray,
                          histories: Histories) -> np.ndarray:
    """Per case, the distinct history items (other than the target) ranked above the target."""
    owner = np.repeat(np.arange(len(histories), dtype=np.int64), histories.lengths)
    items = histories.items.astype(np.int64)
    pairs = np.unique(np.stack([owner, items], axis=1), axis=0) if len(items) else np.zeros((0, 2), np.int64)
    pairs = pairs[pairs[:, 1] != target[pairs[:, 0]]]
    if len(pairs) == 0:
        return np.zeros(len(target), dtype=np.int32)
    case, item = pairs[:, 0], pairs[:, 1]
    t_ref = reference_scores(queries[case], pool[target[case]])
    h_ref = reference_scores(queries[case], pool[item])
    identical = (pool[item] == pool[target[case]]).all(axis=1)
    earlier = item < target[case]
    above = np.where(identical, earlier, (h_ref > t_ref) | ((h_ref == t_ref) & earlier))
    return np.bincount(case[above], minlength=len(target)).astype(np.int32)
