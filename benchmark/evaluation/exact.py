"""Exact rank of each test case's target under item-to-item MIPS (docs/protocol.md 0.2).

Every item vector is L2-normalised; a candidate's score is its inner product with the query
item's vector. The candidates are all items except the query item (or, with a per-domain pool,
the items of one domain). The target's rank is

    1 + #(candidates scoring strictly higher) + #(candidates scoring equal with a smaller index),

so ties never depend on the search library and a constant scorer gets chance-level metrics
(the failure behind RecBole #622/#699 and MTEB #5092).

What "the score" is, exactly. A float32 GEMM rounds differently with the block shape, the BLAS
and the thread count, so two mathematically equal scores (the target scored in one call and its
duplicate in another, vectors with permuted coordinates) can come out a few ulps apart and flip
the tie rule when the block size changes (the RecBole #1556 kind of bug). The ranks here are defined on a fixed
reference score: the float64 sum, in sorted order, of the exact float32 x float32 products.
The fast float32 GEMM only screens: its error is at most ``gamma_d = d*u/(1-d*u)`` for unit
vectors (``u = 2**-24``, any summation order, with or without FMA), so candidates further than
that from the target's reference score are decided by the GEMM alone, and the few inside the
window are re-scored with the reference. Ranks therefore do not depend on block sizes, BLAS or
threads, the target can never beat itself, and bitwise-identical rows always tie.

Rank cap: every metric is cut at K <= 50, so ``target_ranks(..., rank_cap=1000)`` (the runner's
``evaluation.rank_cap``) returns ranks above the cap as the sentinel ``rank_cap + 1`` ("beyond the
cap") and stops scanning a case once that many candidates beat its target (evaluation/capped.py);
ranks at or below the cap are exactly the ones defined here. ``rank_cap=None`` runs the uncapped
reference implementation below.

Memory is bounded by the blocks: ``block_queries x block_items`` float32 buffers are reused,
nothing of size n_queries x n_items is ever allocated.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.evaluation.capped import ranks_in_pool_capped
from benchmark.evaluation.kernels import (
    LazyRowGroups,
    index_rule_ranks,
    reference_scores,
    round_f32,
    screen_window,
    settle_window,
    single_torch_thread,
)

__all__ = ["check_rank_cap", "normalise_rows", "reference_scores", "target_ranks"]


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Float32 copy of ``x`` with every row scaled to unit L2 norm; all-zero rows stay zero.

    Methods.md 0.1: every item vector is L2-normalised before MIPS, so the score is a cosine.
    The norm is accumulated in float64 so huge or tiny rows neither overflow nor underflow.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D [n, d] array, got shape {x.shape}")
    out = np.array(x, dtype=np.float32, copy=True)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64)).astype(np.float32)
    np.divide(out, norms[:, None], out=out, where=norms[:, None] > 0)
    return out


def target_ranks(
    embeddings: np.ndarray,
    query: np.ndarray,
    target: np.ndarray,
    candidate_domain: np.ndarray | None = None,
    item_domain: np.ndarray | None = None,
    block_queries: int = 256,
    block_items: int = 8192,
    progress: bool = False,
    query_embeddings: np.ndarray | None = None,
    rank_cap: int | None = None,
) -> np.ndarray:
    """1-based rank of ``target[c]`` among the candidates for ``query[c]``; int32 [C].

    ``embeddings`` is [n_items, d] (row = item index). Candidates are all items but the query
    item; when ``candidate_domain`` is given, only the items with
    ``item_domain == candidate_domain[c]`` (the optional per-domain pool of docs/protocol.md 0.2),
    and each target must lie in its case's pool. If the query item is the target itself
    (a repeated purchase) the target stays a candidate. ``query_embeddings`` ([n_items, d],
    optional) gives asymmetric scorers their query-side vectors (``Method.query_embeddings``);
    the query's vector is then row ``query[c]`` of it. Block sizes change only speed and memory,
    never the ranks.

    ``rank_cap`` (None or 0: no cap) stops counting past the cap (evaluation/capped.py): ranks
    ``<= rank_cap`` are exactly the uncapped ones, every larger rank is stored as the sentinel
    ``rank_cap + 1`` ("beyond the cap"); metrics cut at K <= rank_cap are unchanged.
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [n_items, d], got shape {emb.shape}")
    n_items = emb.shape[0]
    query = _index_vector(query, n_items, "query")
    target = _index_vector(target, n_items, "target")
    if query.shape != target.shape:
        raise ValueError(f"query has {len(query)} cases, target has {len(target)}")
    if block_queries < 1 or block_items < 1:
        raise ValueError("block_queries and block_items must be >= 1")
    cap = check_rank_cap(rank_cap)
    _check_finite(emb, "embeddings")
    query_side = emb
    if query_embeddings is not None:
        query_side = np.asarray(query_embeddings)
        if query_side.shape != emb.shape:
            raise ValueError(f"query_embeddings has shape {query_side.shape}, expected {emb.shape}")
        _check_finite(query_side, "query_embeddings")
    ranks = np.empty(len(query), dtype=np.int32)
    if len(query) == 0:
        return ranks
    # normalise the item table, then gather: one [C, d] copy (CLIP on the paper twin: 503,500 x 612 d = 1.2 GB)
    query_vectors = normalise_rows(query_side)[query]

    if candidate_domain is None:
        pools = [(np.arange(len(query)), np.arange(n_items))]
    else:
        pools = _domain_pools(n_items, target, candidate_domain, item_domain)
    for cases, pool in pools:
        case_vectors = query_vectors if candidate_domain is None else query_vectors[cases]  # no copy for one pool
        target_pos = np.searchsorted(pool, target[cases])
        query_pos = np.searchsorted(pool, query[cases])
        in_pool = query_pos < len(pool)
        in_pool[in_pool] = pool[query_pos[in_pool]] == query[cases][in_pool]
        # The query item leaves the pool, except when it is the target itself.
        query_pos = np.where(in_pool & (query[cases] != target[cases]), query_pos, -1)
        pool_vectors = normalise_rows(emb if len(pool) == n_items else emb[pool])
        if cap is None:
            ranks[cases] = _ranks_in_pool(
                pool_vectors, case_vectors, target_pos, query_pos, block_queries, block_items, progress
            )
        else:
            limit = np.full(len(cases), cap, dtype=np.int64)
            ranks[cases] = ranks_in_pool_capped(
                pool_vectors, case_vectors, target_pos, query_pos, limit, block_queries, block_items, progress
            )
    return ranks


def check_rank_cap(rank_cap: int | None) -> int | None:
    """The rank cap as an int >= 1, or None for no cap (None or 0)."""
    if rank_cap is None or (not isinstance(rank_cap, bool) and isinstance(rank_cap, int | np.integer) and rank_cap == 0):
        return None
    if isinstance(rank_cap, bool) or not isinstance(rank_cap, int | np.integer) or rank_cap < 0:
        raise ValueError(f"rank_cap must be None, 0 (no cap) or a positive integer, got {rank_cap!r}")
    return int(rank_cap)


def _index_vector(x: np.ndarray, n_items: int, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1 or (x.size and not np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D integer array of item indices")
    x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= n_items):
        raise ValueError(f"{name} holds an item index outside [0, {n_items})")
    return x


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or inf; a method must return finite vectors")


def _domain_pools(
    n_items: int, target: np.ndarray, candidate_domain: np.ndarray, item_domain: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(cases, pool items) per candidate domain, for the per-domain pool option."""
    if item_domain is None:
        raise ValueError("candidate_domain needs item_domain (the domain of every item)")
    item_domain = np.asarray(item_domain)
    candidate_domain = np.asarray(candidate_domain)
    if item_domain.shape != (n_items,):
        raise ValueError(f"item_domain has shape {item_domain.shape}, expected ({n_items},)")
    if candidate_domain.shape != target.shape:
        raise ValueError(f"candidate_domain has shape {candidate_domain.shape}, expected {target.shape}")
    outside = item_domain[target] != candidate_domain
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} targets lie outside their case's candidate domain (first case "
            f"{int(np.flatnonzero(outside)[0])}); the per-domain pool must contain the target"
        )
    return [
        (np.flatnonzero(candidate_domain == dom), np.flatnonzero(item_domain == dom))
        for dom in np.unique(candidate_domain)
    ]


def _ranks_in_pool(
    pool_vectors: np.ndarray,
    query_vectors: np.ndarray,
    target_pos: np.ndarray,
    query_pos: np.ndarray,
    block_queries: int,
    block_items: int,
    progress: bool,
) -> np.ndarray:
    """Ranks within one candidate pool; returns int64 [C].

    ``pool_vectors`` are the normalised candidates in ascending item order; ``target_pos`` and
    ``query_pos`` are positions in the pool (``query_pos`` = -1 when the query is not excluded).
    """
    n_pool, dim = pool_vectors.shape
    n_cases = len(target_pos)
    ranks = np.empty(n_cases, dtype=np.int64)
    t_ref = reference_scores(query_vectors, pool_vectors, target_pos)
    index_rule = index_rule_ranks(pool_vectors, query_vectors, target_pos, query_pos, ranks)
    active = np.flatnonzero(~index_rule)
    if len(active) == 0:
        return ranks

    window = screen_window(dim)
    hi = round_f32(t_ref + window, up=True)
    lo = round_f32(t_ref - window, up=False)
    screen = _Screen(pool_vectors, min(block_queries, len(active)), min(block_items, n_pool, 2**24))
    starts = range(0, len(active), screen.qb)
    with single_torch_thread():
        for s in tqdm(starts, desc="ranking", unit="block", disable=not progress, leave=False):
            cases = active[s : s + screen.qb]
            count = np.zeros(len(cases), dtype=np.int64)
            for i0 in range(0, n_pool, screen.ib):
                row, pos = screen.block(
                    query_vectors[cases], i0, hi[cases], lo[cases], target_pos[cases], query_pos[cases], count
                )
                if len(row) == 0:
                    continue
                t_pos = target_pos[cases[row]]
                same = screen.groups.same(pos, t_pos, many=len(row) > 4 * len(cases))
                if same is not None:  # identical rows tie exactly: the index rule decides
                    count += np.bincount(row[same & (pos < t_pos)], minlength=len(cases))
                    row, pos = row[~same], pos[~same]
                counted = settle_window(cases[row], pos, pool_vectors, query_vectors, target_pos, t_ref)
                count += np.bincount(row[counted], minlength=len(cases))
            ranks[cases] = count + 1
    return ranks


class _Screen:
    """Reused buffers and the float32 screen of one (query block, item block) pair."""

    def __init__(self, pool_vectors: np.ndarray, qb: int, ib: int) -> None:
        self.pool_vectors = pool_vectors
        self.qb, self.ib = qb, ib
        self.ones = torch.ones(ib, dtype=torch.float32)
        self.scores_np = np.empty(qb * ib, dtype=np.float32)
        self.scores = torch.from_numpy(self.scores_np)
        self.above = torch.empty(qb * ib, dtype=torch.float32)
        self.inside_np = np.zeros(qb * ib + 1, dtype=np.float32)  # +1: scanned as uint64 words
        self.inside = torch.from_numpy(self.inside_np)
        self.groups = LazyRowGroups(pool_vectors)

    def block(
        self,
        q_vec: np.ndarray,
        i0: int,
        hi: np.ndarray,
        lo: np.ndarray,
        t_pos: np.ndarray,
        q_pos: np.ndarray,
        count: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add the candidates of items [i0, i0+ib) scoring above ``hi`` to ``count``.

        Returns (row in the query block, pool position) of the candidates inside [lo, hi],
        which the GEMM cannot order against the target.
        """
        m = len(q_vec)
        i1 = min(i0 + self.ib, len(self.pool_vectors))
        bk = i1 - i0
        # numpy's BLAS (OpenBLAS) ran this GEMM 2.5x faster than torch's MKL on the AMD test
        # machine; any BLAS gives the same ranks (see the module docstring).
        np.matmul(q_vec, self.pool_vectors[i0:i1].T, out=self.scores_np[: m * bk].reshape(m, bk))
        scores = self.scores[: m * bk].view(m, bk)
        for pos in (t_pos, q_pos):  # the target and the query are never counted
            rows = np.flatnonzero((pos >= i0) & (pos < i1))
            scores[torch.from_numpy(rows), torch.from_numpy(pos[rows] - i0)] = float("-inf")
        # Masks as float32 0/1 and counts as a GEMV with ones: the fastest compare-and-count in
        # eager torch here; integer sums below 2**24 are exact in any order.
        above = torch.gt(scores, torch.from_numpy(hi)[:, None], out=self.above[: m * bk].view(m, bk))
        count += torch.mv(above, self.ones[:bk]).numpy().astype(np.int64)
        inside = torch.ge(scores, torch.from_numpy(lo)[:, None], out=self.inside[: m * bk].view(m, bk))
        inside.sub_(above)  # 1 where lo <= score <= hi, +0.0 elsewhere
        flat = _nonzero_flat(self.inside_np, m * bk)
        return flat // bk, flat % bk + i0


def _nonzero_flat(buf: np.ndarray, n: int) -> np.ndarray:
    """Indices of the nonzero float32 entries of ``buf[:n]`` (entries are 0/1, never -0.0).

    Scanning pairs of floats as uint64 words is several times faster than ``torch.nonzero``
    when, as here, almost every entry is zero.
    """
    buf[n] = 0.0
    words = buf[: n + (n & 1)].view(np.uint64)
    hit = np.flatnonzero(words)
    if len(hit) == 0:
        return hit
    both = np.stack([2 * hit, 2 * hit + 1], axis=1).ravel()
    return both[buf[both] != 0]


