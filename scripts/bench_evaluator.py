"""Time the evaluator's exact target ranks against a faiss IndexFlatIP top-50 search.

Clustered random vectors, one query item and one target per case, the same queries for both, in
one process with the same threads: the capped evaluator (``rank_cap``, the runner's default), the
uncapped reference implementation, and faiss. faiss only returns a top-K list (no rank beyond K,
arbitrary order among ties), the evaluator returns every target's exact rank up to the cap; where
the target is in faiss's top 50 and no other candidate scores within ``--tie-eps`` of it, the two
positions must agree, and the capped ranks must equal the reference ones up to the cap.

With ``--results-dir`` (read only) the same is timed on a real run's shape: a trained method's
stored item embeddings and the test cases of its split (loaded from ``--data-dir``; the split cache
is read, never written). Prints figures; not a test.

    PYTHONPATH=. python scripts/bench_evaluator.py --queries 20000 --items 140000 --dim 128 \
        --results-dir /work/main/results --suite xmarket-matching --method item2vec
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.evaluation.exact import normalise_rows, target_ranks
from benchmark.evaluation.metrics import summarise


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


def time_case(name: str, emb: np.ndarray, query: np.ndarray, target: np.ndarray, args) -> np.ndarray:
    """Time capped, reference and faiss on one case set; check them against each other; returns the reference ranks."""
    kw = {"block_queries": args.block_queries, "block_items": args.block_items, "progress": not args.no_progress}
    t0 = time.perf_counter()
    capped = target_ranks(emb, query, target, rank_cap=args.rank_cap, **kw)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranks = target_ranks(emb, query, target, rank_cap=None, **kw)
    reference = time.perf_counter() - t0
    items = normalise_rows(emb)
    pos, scores, theirs = faiss_top50_positions(items, query, target)
    n = len(query)
    print(f"[{name}] {n} queries x {len(emb)} items x {emb.shape[1]} d; {os.getloadavg()[0]:.2f} load (1 min)")
    print(f"  target_ranks capped     {ours:8.2f} s  {n / ours:8.0f} q/s  (exact ranks <= {args.rank_cap}, "
          f"beyond the cap = {args.rank_cap + 1}: {int((capped > args.rank_cap).sum())} cases)")
    print(f"  target_ranks reference  {reference:8.2f} s  {n / reference:8.0f} q/s  (uncapped, exact rank of every target)")
    print(f"  faiss IndexFlatIP       {theirs:8.2f} s  {n / theirs:8.0f} q/s  (top-50 only)")
    print(f"  ratio capped / faiss = {ours / theirs:.3f}; reference / faiss = {reference / theirs:.3f}; "
          f"capped speed-up over reference = {reference / ours:.2f}x")
    if not np.array_equal(capped, np.minimum(ranks, args.rank_cap + 1)):
        raise SystemExit(f"[{name}] MISMATCH between the capped and the reference ranks")
    print(f"  capped == min(reference, cap + 1) on all {n} cases")

    row = np.flatnonzero((ranks <= 50) | (pos > 0))
    t_score = np.einsum("ij,ij->i", items[query[row]], items[target[row]])
    near = np.abs(scores[row] - t_score[:, None]) <= args.tie_eps
    tied = near.sum(axis=1) - (pos[row] > 0) > 0  # another top-50 candidate within eps
    agree = ranks[row] == pos[row]
    print(
        f"  cases with rank <= 50 (either side): {len(row)}; without a near tie: {int((~tied).sum())}, "
        f"positions agree on {int(agree[~tied].sum())}; near-tie cases: {int(tied.sum())} "
        f"(agree on {int(agree[tied].sum())})"
    )
    print("  metrics (percent):", {k: round(v, 4) for k, v in summarise(capped).items()})
    if not agree[~tied].all():
        raise SystemExit(f"[{name}] MISMATCH between target_ranks and faiss on untied cases")
    return ranks


def interleaved_ratio(emb: np.ndarray, query: np.ndarray, target: np.ndarray, args) -> float:
    """Median of ``--repeats`` paired timings of the capped evaluator and faiss, interleaved (ABBA order),
    so both see the same load; prints each pair and whether the target ratio (<= 0.5) is met."""
    import faiss

    items = normalise_rows(emb)
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    kw = {"block_queries": args.block_queries, "block_items": args.block_items, "progress": False}

    def ours() -> float:
        t0 = time.perf_counter()
        target_ranks(emb, query, target, rank_cap=args.rank_cap, **kw)
        return time.perf_counter() - t0

    def theirs() -> float:
        t0 = time.perf_counter()
        index.search(items[query], 51)
        return time.perf_counter() - t0

    ratios = []
    for i in range(args.repeats):
        if i % 2 == 0:
            a, b = ours(), theirs()
        else:
            b, a = theirs(), ours()
        ratios.append(a / b)
        print(f"  pair {i + 1}: capped {a:.2f} s, faiss {b:.2f} s, ratio {a / b:.3f} (load {os.getloadavg()[0]:.2f})")
    median = float(np.median(ratios))
    print(f"  median ratio capped / faiss over {args.repeats} interleaved pairs = {median:.3f} "
          f"(target <= 0.5: {'met' if median <= 0.5 else 'NOT met'})")
    return median


def find_run(results_dir: Path, suite: str, method: str, seed: int) -> Path | None:
    """The newest finished run folder of ``method`` (seed, candidate pool "all", no query-side vectors)."""
    found = []
    for path in (results_dir / suite).glob("*/result.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("method") == method and rec.get("seed") == seed and rec.get("status") == "done" \
                and (path.parent / "item_embeddings.npy").is_file():
            found.append((path.stat().st_mtime, path.parent))
    return max(found)[1] if found else None


def real_cases(folder: Path, data_dir: Path):
    """(item embeddings, query, target, stored ranks) of a run folder, the split read without writing."""
    import yaml

    from benchmark.data.split import build_split, split_cache_key
    from benchmark.data.split_manifest import load_split
    from benchmark.inputs import _load

    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    if cfg["evaluation"].get("candidate_pool", "all") != "all":
        raise SystemExit(f"{folder}: only candidate_pool 'all' runs are supported here")
    dataset, _ = _load(cfg["dataset"], data_dir, cfg["scale"], False)
    settings = {k: cfg["split"][k] for k in ("test_user_frac", "overlapped_frac", "min_interactions")}
    key = split_cache_key(dataset, cfg["split"]["seed"], **settings)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset.name)
    path = data_dir / ".cache" / "splits" / f"split-{safe}-{key}.npz"
    split = load_split(path) if path.is_file() else build_split(dataset, seed=cfg["split"]["seed"], **settings)
    emb = np.load(folder / "item_embeddings.npy")
    return emb, split.cases.query.astype(np.int64), split.cases.target.astype(np.int64), np.load(folder / "ranks.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--items", type=int, default=140000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block-queries", type=int, default=256)
    parser.add_argument("--block-items", type=int, default=8192)
    parser.add_argument("--rank-cap", type=int, default=1000, help="the evaluator's rank cap (runner default 1000)")
    parser.add_argument("--tie-eps", type=float, default=1e-5, help="faiss scores closer than this are a tie")
    parser.add_argument("--results-dir", type=Path, help="results of a benchmark run (read only)")
    parser.add_argument("--suite", default="xmarket-matching")
    parser.add_argument("--method", default="item2vec")
    parser.add_argument("--run-seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/main/data"))
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved capped/faiss pairs for the median ratio (0: skip)")
    args = parser.parse_args()

    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    try:  # the evaluator's GEMM runs on numpy's BLAS
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        pass
    print(f"{args.threads} threads, {_blas_info()}, faiss {faiss.__version__}, load {os.getloadavg()}")
    if not args.skip_synthetic:
        emb, query, target = make_data(args.items, args.dim, args.queries, args.seed)
        time_case(f"synthetic: clusters of {CLUSTER}, half the targets share the query's cluster", emb, query, target, args)
        if args.repeats:
            interleaved_ratio(emb, query, target, args)
    if args.results_dir is None:
        print("[real run] skipped: no --results-dir given")
        return
    folder = find_run(args.results_dir, args.suite, args.method, args.run_seed)
    if folder is None:
        print(f"[real run] skipped: no finished {args.method} run (seed {args.run_seed}) with stored embeddings "
              f"under {args.results_dir / args.suite}")
        return
    emb, query, target, stored = real_cases(folder, args.data_dir)
    ranks = time_case(f"real run: {args.suite}/{folder.name} ({args.method})", emb, query, target, args)
    same = len(stored) == len(ranks) and np.array_equal(np.minimum(stored, args.rank_cap + 1),
                                                       np.minimum(ranks, args.rank_cap + 1))
    print(f"  ranks equal the run's stored ranks.npy (up to the cap): {same}")


if __name__ == "__main__":
    main()
