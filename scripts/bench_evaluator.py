"""Time the evaluator's exact target ranks against a faiss IndexFlatIP top-50 search.

Random unit vectors, one query item and one target per case, the same queries for both. faiss
only returns a top-K list (no rank beyond K, arbitrary order among ties), the evaluator returns
every target's exact rank; where the target is in faiss's top 50 and no other candidate scores
within ``--tie-eps`` of it, the two positions must agree. Prints figures; not a test.

    PYTHONPATH=. python scripts/bench_evaluator.py --queries 20000 --items 140000 --dim 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmark.evaluation.metrics import summarise
from benchmark.evaluation.ranking import normalise_rows, target_ranks


def faiss_top50_positions(items: np.ndarray, query: np.ndarray, target: np.ndarray, k: int = 50):
    """1-based position of the target in faiss's top-k (query item removed), 0 if absent."""
    import faiss

    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    t0 = time.perf_counter()
    scores, ids = index.search(items[query], k + 1)  # +1: the query item itself comes back
    seconds = time.perf_counter() - t0
    keep = ids != query[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # drop the query, keep the order
    ids = np.take_along_axis(ids, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    hit = ids == target[:, None]
    pos = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    return pos, scores, seconds


CLUSTER = 20


def _blas_info() -> str:
    """numpy's BLAS (it runs the evaluator's GEMM) and its thread count, if threadpoolctl is there."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "numpy BLAS: unknown"
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    names = sorted({f"{p['prefix']} x{p['num_threads']}" for p in blas})
    return "BLAS " + ", ".join(names) if names else "numpy BLAS: unknown"


def make_data(n_items: int, dim: int, n_queries: int, seed: int):
    """Items in random clusters of CLUSTER (cosine ~0.5 inside a cluster, ~0 across).

    Half the targets are another item of the query's cluster (ranked near the top, so the
    top-50 comparison with faiss has cases), half are uniform over all other items (chance).
    """
    rng = np.random.default_rng(seed)
    cluster = np.arange(n_items) // CLUSTER
    centres = rng.standard_normal((cluster[-1] + 1, dim), dtype=np.float32)
    emb = centres[cluster] + rng.standard_normal((n_items, dim), dtype=np.float32)
    query = rng.integers(0, n_items, n_queries)
    uniform = (query + rng.integers(1, n_items, n_queries)) % n_items
    start = cluster[query] * CLUSTER
    size = np.minimum(start + CLUSTER, n_items) - start
    mate = start + (query - start + rng.integers(1, np.maximum(size, 2))) % np.maximum(size, 1)
    near = (rng.random(n_queries) < 0.5) & (size > 1)
    return emb, query, np.where(near, mate, uniform)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--items", type=int, default=140000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block-queries", type=int, default=256)
    parser.add_argument("--block-items", type=int, default=8192)
    parser.add_argument("--tie-eps", type=float, default=1e-5, help="faiss scores closer than this are a tie")
    args = parser.parse_args()

    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    try:  # the evaluator's GEMM runs on numpy's BLAS
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        pass
    emb, query, target = make_data(args.items, args.dim, args.queries, args.seed)
    print(
        f"{args.queries} queries x {args.items} items x {args.dim} d, {args.threads} threads, "
        f"{_blas_info()} "
        f"(clusters of {CLUSTER}; half the targets share the query's cluster)"
    )

    t0 = time.perf_counter()
    ranks = target_ranks(
        emb,
        query,
        target,
        block_queries=args.block_queries,
        block_items=args.block_items,
        progress=True,
    )
    ours = time.perf_counter() - t0
    print(f"target_ranks       {ours:7.2f} s  {args.queries / ours:8.0f} q/s  (exact rank of every target)")

    items = normalise_rows(emb)
    pos, scores, theirs = faiss_top50_positions(items, query, target)
    print(f"faiss IndexFlatIP  {theirs:7.2f} s  {args.queries / theirs:8.0f} q/s  (top-50 only)")
    print(f"time ratio target_ranks / faiss = {ours / theirs:.2f}")

    row = np.flatnonzero((ranks <= 50) | (pos > 0))
    t_score = np.einsum("ij,ij->i", items[query[row]], items[target[row]])
    near = np.abs(scores[row] - t_score[:, None]) <= args.tie_eps
    tied = near.sum(axis=1) - (pos[row] > 0) > 0  # another top-50 candidate within eps
    agree = ranks[row] == pos[row]
    print(
        f"cases with rank <= 50 (either side): {len(row)}; without a near tie: {int((~tied).sum())}, "
        f"positions agree on {int(agree[~tied].sum())}; near-tie cases: {int(tied.sum())} "
        f"(agree on {int(agree[tied].sum())})"
    )
    print("metrics (percent):", {k: round(v, 4) for k, v in summarise(ranks).items()})
    if not agree[~tied].all():
        raise SystemExit("MISMATCH between target_ranks and faiss on untied cases")


if __name__ == "__main__":
    main()
