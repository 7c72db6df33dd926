"""The capped screen (evaluation/capped.py) against the uncapped reference of ranking.py.

Every rank at or below the cap must be the reference rank, every larger one the sentinel
cap + 1, for any block sizes, on random, clustered and adversarial embeddings.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.model import Histories
from benchmark.evaluation.capped import item_block_edges
from benchmark.evaluation.exact import check_rank_cap, target_ranks
from benchmark.evaluation.metrics import NEXT_ITEM_METRICS, summarise
from benchmark.evaluation.next_item import next_item_ranks

BLOCKS = [(5, 3), (7, 64), (64, 17), (256, 8192)]


def _data(kind: str, rng: np.random.Generator, n: int = 240, d: int = 12) -> np.ndarray:
    """Embeddings of one kind; several kinds plant exact ties and zero rows."""
    if kind == "random":
        return rng.standard_normal((n, d)).astype(np.float32)
    if kind == "clustered":  # tight clusters: many near ties the float32 screen cannot order
        centres = rng.standard_normal((8, d))
        return (centres[rng.integers(0, 8, n)] + 1e-6 * rng.standard_normal((n, d))).astype(np.float32)
    if kind == "duplicates":  # every row repeated ~6 times, plus zero rows
        base = rng.standard_normal((40, d)).astype(np.float32)
        emb = base[rng.integers(0, 40, n)]
        emb[rng.random(n) < 0.1] = 0.0
        return emb
    if kind == "coarse":  # few distinct score values: exact ties everywhere
        return rng.integers(-1, 2, (n, d)).astype(np.float32)
    if kind == "permuted":  # rows equal up to a coordinate permutation: equal scores, different sums
        base = rng.standard_normal((30, d)).astype(np.float32)
        return np.stack([rng.permutation(base[i % 30]) for i in range(n)])
    raise ValueError(kind)


def _check(capped: np.ndarray, reference: np.ndarray, cap: int) -> None:
    below = reference <= cap
    assert capped[below].tolist() == reference[below].tolist()
    assert (capped[~below] == cap + 1).all()


@pytest.mark.parametrize("kind", ["random", "clustered", "duplicates", "coarse", "permuted"])
def test_capped_item_to_item_ranks_equal_the_reference_up_to_the_cap(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    emb = _data(kind, rng)
    n = len(emb)
    query = rng.integers(0, n, 150)
    target = rng.integers(0, n, 150)
    target[:10] = query[:10]  # queries equal to targets: the target stays a candidate
    reference = target_ranks(emb, query, target)
    for qb, ib in BLOCKS:
        for cap in (1, 5, 40, n - 1, 10 * n):
            capped = target_ranks(emb, query, target, block_queries=qb, block_items=ib, rank_cap=cap)
            _check(capped, reference, cap)
        assert target_ranks(emb, query, target, block_queries=qb, block_items=ib, rank_cap=0).tolist() == \
            reference.tolist()  # 0 = no cap


@pytest.mark.parametrize("kind", ["random", "duplicates", "coarse"])
def test_capped_ranks_with_per_domain_pools_and_asymmetric_queries(kind):
    rng = np.random.default_rng(7)
    emb = _data(kind, rng)
    n = len(emb)
    query_emb = _data("random", rng)
    item_domain = rng.integers(0, 3, n)
    query = rng.integers(0, n, 120)
    target = rng.integers(0, n, 120)
    for pooled in (False, True):
        extra = {"candidate_domain": item_domain[target], "item_domain": item_domain} if pooled else {}
        for q_emb in (None, query_emb):
            reference = target_ranks(emb, query, target, query_embeddings=q_emb, **extra)
            for qb, ib in BLOCKS[:3]:
                for cap in (1, 3, 30, n):
                    capped = target_ranks(emb, query, target, query_embeddings=q_emb, block_queries=qb,
                                          block_items=ib, rank_cap=cap, **extra)
                    _check(capped, reference, cap)


def test_constant_scorer_zero_queries_and_zero_rows_are_capped_by_the_index_rule():
    constant = np.ones((50, 4), dtype=np.float32)
    query, target = np.array([0, 3, 10, 49]), np.array([1, 40, 10, 48])
    reference = target_ranks(constant, query, target)
    assert reference.tolist() == [1, 40, 11, 49]  # 1 + earlier candidates; query 49 is later
    assert target_ranks(constant, query, target, rank_cap=20).tolist() == [1, 21, 11, 21]
    emb = np.zeros((30, 3), dtype=np.float32)
    emb[::3] = [1.0, 2.0, 0.5]
    query, target = np.array([1, 0, 4]), np.array([29, 3, 2])  # query 1 and 4 are zero rows
    reference = target_ranks(emb, query, target)
    for cap in (1, 4, 10, 100):
        _check(target_ranks(emb, query, target, rank_cap=cap, block_items=2), reference, cap)


def test_clustered_benchmark_shaped_data_with_a_realistic_cap():
    """Many cases beyond the cap, some near the top: the regime the cap is for."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((200, 32)).astype(np.float32)
    emb = centres[np.arange(4000) // 20] + rng.standard_normal((4000, 32)).astype(np.float32)
    query = rng.integers(0, 4000, 600)
    mate = (query // 20) * 20 + rng.integers(0, 20, 600)
    target = np.where(rng.random(600) < 0.5, mate, rng.integers(0, 4000, 600))
    reference = target_ranks(emb, query, target)
    assert (reference > 100).mean() > 0.3 and (reference <= 100).mean() > 0.3
    for qb, ib in [(16, 256), (256, 8192), (100, 1000)]:
        capped = target_ranks(emb, query, target, block_queries=qb, block_items=ib, rank_cap=100)
        _check(capped, reference, 100)
        assert summarise(capped) == summarise(reference)  # every metric is cut at K <= 50


def _histories(rng: np.random.Generator, n_cases: int, n_items: int) -> tuple[Histories, list[set[int]]]:
    lengths = rng.integers(0, 9, n_cases)
    items = rng.integers(0, n_items, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    sets = [set(items[offsets[c]: offsets[c + 1]].tolist()) for c in range(n_cases)]
    return Histories(offsets=offsets.astype(np.int64), items=items.astype(np.int32)), sets


@pytest.mark.parametrize("kind", ["random", "clustered", "duplicates", "coarse"])
@pytest.mark.parametrize("scoring", ["cosine", "dot"])
def test_capped_next_item_ranks_equal_the_reference_with_and_without_history_exclusion(kind, scoring):
    rng = np.random.default_rng(5)
    items = _data(kind, rng, n=200) * rng.uniform(0.2, 3.0, (200, 1)).astype(np.float32)
    users = _data(kind, rng, n=90)
    users[:3] = items[:3]  # user vectors equal to item vectors
    users[3] = 0.0
    target = rng.integers(0, 200, 90)
    histories, _ = _histories(rng, 90, 200)
    for exclude in (False, True):
        kw = {"scoring": scoring, "histories": histories, "exclude_history": exclude}
        reference = next_item_ranks(items, users, target, **kw)
        for qb, ib in BLOCKS:
            for cap in (1, 4, 50, 199, 1000):
                capped = next_item_ranks(items, users, target, block_queries=qb, block_items=ib, rank_cap=cap, **kw)
                _check(capped, reference, cap)
        assert summarise(next_item_ranks(items, users, target, rank_cap=50, **kw), NEXT_ITEM_METRICS) == \
            summarise(reference, NEXT_ITEM_METRICS)


def test_history_exclusion_can_lift_a_rank_from_beyond_the_cap_to_below_it():
    """The cap applies after the exclusion: history items above the target do not use it up."""
    items = np.array([[1.0, 0.0]] * 6 + [[0.8, 0.6]], dtype=np.float32)  # six history items beat item 6
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    hist = Histories(offsets=np.array([0, 5]), items=np.array([0, 1, 2, 3, 4], dtype=np.int32))
    assert next_item_ranks(items, users, np.array([6]), histories=hist, exclude_history=True).tolist() == [2]
    assert next_item_ranks(items, users, np.array([6]), histories=hist, exclude_history=True,
                           rank_cap=2).tolist() == [2]
    assert next_item_ranks(items, users, np.array([6]), histories=hist, exclude_history=True,
                           rank_cap=1).tolist() == [2]  # sentinel 1 + 1
    assert next_item_ranks(items, users, np.array([6]), rank_cap=3).tolist() == [4]  # true rank 7


def test_item_blocks_cover_the_pool_and_grow_to_the_block_size():
    edges = item_block_edges(100, 16)
    assert edges[0] == (0, 2) and edges[1] == (2, 6) and edges[2] == (6, 14) and edges[3] == (14, 30)
    assert all(b - a <= 16 for a, b in edges) and edges[-1][1] == 100
    assert all(edges[i][1] == edges[i + 1][0] for i in range(len(edges) - 1))
    assert item_block_edges(5, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


def test_rank_cap_values():
    assert check_rank_cap(None) is None and check_rank_cap(0) is None and check_rank_cap(1000) == 1000
    for bad in (-1, 2.5, True, "1000"):
        with pytest.raises(ValueError):
            check_rank_cap(bad)


def test_rank_cap_is_configured_checked_and_recorded_in_the_run_config():
    from benchmark.config import MAX_METRIC_K, resolve, validate_suite
    from benchmark.errors import ConfigError
    from benchmark.evaluation.metrics import DEFAULT_METRICS

    assert MAX_METRIC_K == max(m.k for m in DEFAULT_METRICS + NEXT_ITEM_METRICS)
    raw = {"name": "s", "methods": ["random"], "dataset": {"name": "xmarket-sim"}}
    defaults = {"random": {"dim": 8}}
    (run,) = resolve(validate_suite(dict(raw), "s.yaml"), defaults)
    assert run.evaluation["rank_cap"] == 1000
    for value, expected in (("null", None), ("0", 0), ("50", 50), ("5000", 5000)):
        (run,) = resolve(validate_suite(dict(raw), "s.yaml"), defaults, overrides=[f"evaluation.rank_cap={value}"])
        assert run.evaluation["rank_cap"] == expected
    for value in ("49", "-1", "1.5"):
        with pytest.raises(ConfigError, match="rank_cap"):
            resolve(validate_suite(dict(raw), "s.yaml"), defaults, overrides=[f"evaluation.rank_cap={value}"])
    with pytest.raises(ConfigError, match="rank_cap"):
        validate_suite({**raw, "evaluation": {"rank_cap": 10}}, "s.yaml")


def test_cases_sharing_a_query_share_gemm_rows_and_keep_their_own_targets(monkeypatch):
    import benchmark.evaluation.capped as capped_module

    shared = []
    original = capped_module._unique_queries

    def spy(*args):
        q, inv = original(*args)
        shared.append(inv is not None)
        return q, inv

    monkeypatch.setattr(capped_module, "_unique_queries", spy)
    rng = np.random.default_rng(21)
    emb = _data("random", rng, n=300)
    emb[7] = emb[3]  # two query items with the same vector but different positions to exclude
    query = rng.choice([0, 3, 7, 11], 200)
    target = rng.integers(0, 300, 200)
    target[:4] = [3, 7, 0, 11]
    reference = target_ranks(emb, query, target)
    for qb, ib in [(4, 16), (64, 50), (256, 8192)]:
        for cap in (1, 10, 100, 300):
            _check(target_ranks(emb, query, target, block_queries=qb, block_items=ib, rank_cap=cap), reference, cap)
    assert any(shared)


def test_default_cap_is_left_out_of_the_run_key_other_caps_are_not() -> None:
    """Runs made before the cap existed keep their keys; asking for full ranks is another run."""
    from benchmark.config import DEFAULT_RANK_CAP, RunConfig

    def cfg(evaluation: dict) -> RunConfig:
        return RunConfig(suite="s", method="m", seed=0, scale="tiny", dataset={}, split={}, features={},
                         evaluation=evaluation, method_config={})

    before = cfg({"candidate_pool": "all"})
    assert cfg({"candidate_pool": "all", "rank_cap": DEFAULT_RANK_CAP}).identity_json() == before.identity_json()
    assert cfg({"candidate_pool": "all", "rank_cap": None}).identity_json() != before.identity_json()
    assert cfg({"candidate_pool": "all", "rank_cap": 200}).identity_json() != before.identity_json()
