"""Capped exact ranks: the screen of evaluation/exact.py that stops counting past a rank cap.

The pieces both kernels share (reference score, screening window, re-scoring, index tie rule,
row groups) live in evaluation/kernels.py; ranking.py calls this module for capped ranks.

Every reported metric is cut at K <= 50 (evaluation/metrics.py), so a rank only matters up to a
cap (``evaluation.rank_cap``, default 1000). The number of candidates that beat the target only
grows as item blocks are scanned, so once it reaches a case's limit the case's rank is known to
exceed the limit, and the case leaves the query block: later GEMMs only multiply the cases still
scanning. What is returned is ``min(rank, limit + 1)`` with ``rank`` exactly the reference rank of
ranking.py (same float64 reference score, same screening window, same index tie rule): ranks at
or below the limit are identical, every larger one is the sentinel ``limit + 1``.

Where the time goes instead (the GEMM is the floor, as for faiss):
- Item blocks start small and double up to ``block_items``, so cases with a far target leave after
  a few thousand items; the survivors are regrouped into full query blocks for the remaining
  items (GEMMs keep their height).
- Per (query block, item block) the work after the GEMM is one row-max pass; only rows whose best
  score reaches the target's window ("hot" rows) pay the compare-and-count passes (a 0/1 float mask
  counted by a GEMV, twice), and only hot rows with candidates inside the window are re-scored.
- Cases that share a query vector (item-to-item: the same query item) share one GEMM row; the
  target and query masks are applied per case after the row-max filter, which they can only
  make hotter, never hide.
The order in which items are scanned and the block shapes never change a count, so the returned
ranks do not depend on them.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.evaluation.kernels import (
    LazyRowGroups,
    index_rule_ranks,
    reference_scores,
    round_f32,
    row_groups,
    screen_window,
    settle_window,
    single_torch_thread,
)

__all__ = ["item_block_edges", "ranks_in_pool_capped"]


def item_block_edges(n_pool: int, block_items: int) -> list[tuple[int, int]]:
    """Item blocks [i0, i1): the first is ``block_items // 8`` wide, each next one twice, up to ``block_items``.

    Any partition gives the same ranks (counts are exact); small first blocks let far targets
    reach the cap, and leave, after scanning few items.
    """
    edges, i0, width = [], 0, max(1, block_items // 8)
    while i0 < n_pool:
        i1 = min(i0 + width, n_pool)
        edges.append((i0, i1))
        i0, width = i1, min(2 * width, block_items)
    return edges


def ranks_in_pool_capped(
    pool_vectors: np.ndarray,
    query_vectors: np.ndarray,
    target_pos: np.ndarray,
    query_pos: np.ndarray,
    limit: np.ndarray,
    block_queries: int,
    block_items: int,
    progress: bool,
) -> np.ndarray:
    """``min(rank, limit + 1)`` per case within one candidate pool; int64 [C].

    Arguments as ``ranking._ranks_in_pool``; ``limit`` (int64 [C], >= 0) is each case's cap.
    """
    n_pool, dim = pool_vectors.shape
    limit = np.asarray(limit, dtype=np.int64)
    ranks = np.empty(len(target_pos), dtype=np.int64)
    t_ref = reference_scores(query_vectors, pool_vectors, target_pos)

    index_rule = index_rule_ranks(pool_vectors, query_vectors, target_pos, query_pos, ranks)
    active = np.flatnonzero(~index_rule)
    if len(active) == 0:
        return np.minimum(ranks, limit + 1)

    window = screen_window(dim)
    hi = round_f32(t_ref + window, up=True)
    lo = round_f32(t_ref - window, up=False)
    qb = min(block_queries, len(active))
    ib = min(block_items, n_pool, 2**24)  # float32 counts of 0/1 masks stay exact below 2**24
    edges = item_block_edges(n_pool, ib)
    bufs = _Buffers(qb, ib)
    groups = LazyRowGroups(pool_vectors)
    # Cases that share a query vector (the same query item: popular last items) share GEMM rows;
    # sorting by the vector's group puts them in the same query block.
    q_groups = row_groups(query_vectors if len(active) == len(query_vectors) else query_vectors[active])
    if q_groups is not None:
        order = np.argsort(q_groups, kind="stable")
        active, q_groups = active[order], q_groups[order]
    count = np.zeros(len(target_pos), dtype=np.int64)
    # Two phases: every case scans the small growing blocks, where far targets reach the cap;
    # the survivors are then regrouped into full query blocks for the rest of the items, so the
    # GEMMs keep their height.
    split = next((k for k, (a, b) in enumerate(edges) if b - a == ib), len(edges))
    phases = [edges[:split], edges[split:]] if 0 < split < len(edges) else [edges]
    with single_torch_thread():
        for phase, phase_edges in enumerate(phases):
            if phase:
                alive = count[active] < limit[active]
                active = active[alive]
                q_groups = None if q_groups is None else q_groups[alive]
            starts = range(0, len(active), qb)
            for s in tqdm(starts, desc=f"ranking {phase + 1}/{len(phases)}", unit="block", disable=not progress,
                          leave=False):
                cases = active[s : s + qb]
                _scan_query_block(
                    cases, None if q_groups is None else q_groups[s : s + qb], phase_edges, count, limit,
                    bufs, pool_vectors, query_vectors, hi, lo, target_pos, query_pos, t_ref, groups,
                )
    ranks[~index_rule] = count[~index_rule] + 1
    return np.minimum(ranks, limit + 1)


def _scan_query_block(
    cases: np.ndarray,
    block_groups: np.ndarray | None,
    edges: list[tuple[int, int]],
    count_all: np.ndarray,
    limit: np.ndarray,
    bufs: _Buffers,
    pool_vectors: np.ndarray,
    query_vectors: np.ndarray,
    hi: np.ndarray,
    lo: np.ndarray,
    target_pos: np.ndarray,
    query_pos: np.ndarray,
    t_ref: np.ndarray,
    groups: LazyRowGroups,
) -> None:
    """Scan ``edges`` for one query block, adding to ``count_all[cases]``; finished cases leave."""
    count = count_all[cases]
    lim = limit[cases]
    live = np.flatnonzero(count < lim)
    if len(live) == 0:
        return
    q_live, inv = _unique_queries(query_vectors, cases, live, block_groups)
    for i0, i1 in edges:
        keep = count[live] < lim[live]
        if not keep.all():  # compact: finished cases leave the block
            live = live[keep]
            if len(live) == 0:
                break
            q_live, inv = _unique_queries(query_vectors, cases, live, block_groups)
        _scan_block(
            bufs, pool_vectors, q_live, inv, i0, i1, cases[live], live, count, lim, hi, lo,
            target_pos, query_pos, t_ref, query_vectors, groups,
        )
    count_all[cases] = count


def _unique_queries(
    query_vectors: np.ndarray, cases: np.ndarray, live: np.ndarray, block_groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(query vectors to multiply, live row -> their row or None when every live row is its own)."""
    if block_groups is None:
        return query_vectors[cases[live]], None
    _, first, inv = np.unique(block_groups[live], return_index=True, return_inverse=True)
    if 10 * len(first) > 9 * len(live):  # under 10 % shared rows: the expansion is not worth it
        return query_vectors[cases[live]], None
    return query_vectors[cases[live[first]]], inv.ravel()


class _Buffers:
    """Reused float32 buffers for one (query block, item block) pair."""

    def __init__(self, qb: int, ib: int) -> None:
        self.scores_np = np.empty(qb * ib, dtype=np.float32)
        self.scores = torch.from_numpy(self.scores_np)
        self.above = torch.empty(qb * ib, dtype=torch.float32)
        self.inside = torch.empty(qb * ib, dtype=torch.float32)
        self.ones = torch.ones(ib, dtype=torch.float32)


def _scan_block(
    bufs: _Buffers,
    pool_vectors: np.ndarray,
    q_live: np.ndarray,
    inv: np.ndarray | None,
    i0: int,
    i1: int,
    case: np.ndarray,
    live: np.ndarray,
    count: np.ndarray,
    lim: np.ndarray,
    hi: np.ndarray,
    lo: np.ndarray,
    target_pos: np.ndarray,
    query_pos: np.ndarray,
    t_ref: np.ndarray,
    query_vectors: np.ndarray,
    groups: LazyRowGroups,
) -> None:
    """Add to ``count[live]`` the candidates in items [i0, i1) that beat each live case's target.

    ``q_live`` row ``inv[r]`` (row ``r`` when ``inv`` is None) is the query vector of live row ``r``.
    """
    m, bk, mu = len(case), i1 - i0, len(q_live)
    scores_np = bufs.scores_np[: mu * bk].reshape(mu, bk)
    np.matmul(q_live, pool_vectors[i0:i1].T, out=scores_np)  # numpy's BLAS, as ranking._Screen
    scores = bufs.scores[: mu * bk].view(mu, bk)
    lo_c, hi_c = lo[case], hi[case]
    # One cheap pass: rows whose best score is below the window neither count nor re-score. The
    # target and the query are not masked yet: they can only make a row hot, never hide one.
    rowmax = torch.amax(scores, dim=1).numpy()
    hot = np.flatnonzero((rowmax if inv is None else rowmax[inv]) >= lo_c)
    if len(hot) == 0:
        return
    if inv is not None:
        sub = scores.index_select(0, torch.from_numpy(inv[hot]))
    elif 2 * len(hot) <= m:
        sub = scores.index_select(0, torch.from_numpy(hot))
    else:
        hot = np.arange(m)
        sub = scores
    t_pos, q_pos = target_pos[case], query_pos[case]
    for pos in (t_pos[hot], q_pos[hot]):  # the target and the query are never counted
        rows = np.flatnonzero((pos >= i0) & (pos < i1))
        if len(rows):
            sub[torch.from_numpy(rows), torch.from_numpy(pos[rows] - i0)] = float("-inf")
    h = len(hot)
    hi_t = torch.from_numpy(hi_c[hot])[:, None]
    lo_t = torch.from_numpy(lo_c[hot])[:, None]
    ones = bufs.ones[:bk]
    # 0/1 float masks counted by a GEMV: the fastest compare-and-count in eager torch (ranking.py).
    above = torch.gt(sub, hi_t, out=bufs.above[: h * bk].view(h, bk))
    n_above = torch.mv(above, ones).numpy().astype(np.int64)
    count[live[hot]] += n_above
    inside = torch.ge(sub, lo_t, out=bufs.inside[: h * bk].view(h, bk))
    n_inside = torch.mv(inside, ones).numpy().astype(np.int64) - n_above
    # Cases already at their limit need no re-scoring: their rank is beyond it either way.
    need = np.flatnonzero((n_inside > 0) & (count[live[hot]] < lim[live[hot]]))
    if len(need) == 0:
        return
    need_t = torch.from_numpy(need)
    window_mask = inside.index_select(0, need_t).sub_(above.index_select(0, need_t))
    k, col = (x.numpy() for x in torch.nonzero(window_mask, as_tuple=True))
    row = hot[need[k]]  # row in the live block
    pos = col.astype(np.int64) + i0
    tp = t_pos[row]
    same = groups.same(pos, tp, many=len(row) > 4 * m)
    if same is not None:  # identical rows tie exactly: the index rule decides
        count[live] += np.bincount(row[same & (pos < tp)], minlength=m)
        row, pos = row[~same], pos[~same]
    counted = settle_window(case[row], pos, pool_vectors, query_vectors, target_pos, t_ref)
    count[live] += np.bincount(row[counted], minlength=m)
