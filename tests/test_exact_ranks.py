"""The evaluator's exact target ranks (methods.md 0.2): tie rule, exclusions, pools, blocks."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.evaluation.exact import normalise_rows, reference_scores, target_ranks
from benchmark.evaluation.metrics import HR, NDCG

BLOCKS = [(1, 1), (7, 7), (256, 256), (3, 50), (256, 8192)]

# Five 2-D items; 0 and 4 are the same direction, 2 is orthogonal to both, 3 is opposite.
ITEMS = np.array([[1, 0], [3, 4], [0, 2], [-1, 0], [5, 0]], dtype=np.float32)


def brute_force(emb, query, target, candidate_domain=None, item_domain=None, query_emb=None):
    """Literal reading of the rule: float64 scores of the normalised vectors, one case at a time."""
    items = normalise_rows(emb).astype(np.float64)
    queries = normalise_rows(emb if query_emb is None else query_emb).astype(np.float64)
    idx = np.arange(len(emb))
    out = []
    domains = candidate_domain if candidate_domain is not None else [None] * len(query)
    for q, t, dom in zip(query, target, domains, strict=True):
        s = items @ queries[q]
        cand = (idx != t) & ((idx != q) | (q == t))
        if dom is not None:
            cand &= item_domain == dom
        out.append(1 + np.sum(cand & ((s > s[t]) | ((s == s[t]) & (idx < t)))))
    return np.array(out)


def test_normalise_rows_gives_unit_rows_and_keeps_zero_rows():
    x = np.array([[3, 4], [0, 0], [1e-30, 0], [1e30, 1e30]], dtype=np.float32)
    out = normalise_rows(x)
    assert out.dtype == np.float32 and out is not x
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [1, 0, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    assert x[0, 0] == 3  # the input is not modified


def test_hand_computed_ranks_with_tie_rule_and_query_exclusion():
    # query 0: scores item1 .6, item2 0, item3 -1, item4 1 (item 0 itself is excluded)
    # query 2: scores item0 0, item1 .8, item3 0, item4 0 -> ties at 0 count by smaller index
    query = np.array([0, 0, 0, 2, 2, 2, 4])
    target = np.array([2, 4, 1, 3, 4, 0, 0])
    expected = [3, 1, 2, 3, 4, 2, 1]
    for bq, bi in BLOCKS:
        ranks = target_ranks(ITEMS, query, target, block_queries=bq, block_items=bi)
        assert ranks.dtype == np.int32
        assert ranks.tolist() == expected


def test_query_equal_to_target_keeps_the_target_as_candidate():
    ranks = target_ranks(ITEMS, np.array([1, 0]), np.array([1, 0]))
    # item 1 scores 1 with itself, nothing higher; item 0 ties with item 4 (larger index)
    assert ranks.tolist() == [1, 1]


def test_zero_vectors_score_zero_and_tie_by_index():
    emb = np.array([[1, 0], [0, 0], [0, 1], [0, 0], [-1, 0]], dtype=np.float32)
    # zero query (item 1): every candidate scores 0, rank = 1 + candidates with smaller index
    assert target_ranks(emb, np.array([1, 1, 1]), np.array([0, 3, 4])).tolist() == [1, 3, 4]
    # query 0: item 2 and the zero rows 1 and 3 score 0, item 4 scores -1
    assert target_ranks(emb, np.array([0, 0, 0]), np.array([3, 2, 4])).tolist() == [3, 2, 4]


def test_per_domain_pool_ranks_only_within_the_target_domain():
    item_domain = np.array([0, 1, 1, 0, 1])
    query = np.array([0, 0, 2])
    target = np.array([2, 3, 4])
    ranks = target_ranks(ITEMS, query, target, candidate_domain=item_domain[target], item_domain=item_domain)
    # case 0: pool {1,2,4}: 4 (1.0) and 1 (.6) beat 2 (0) -> 3; case 1: pool {0,3} minus query 0 -> 1
    # case 2: pool {1,2,4} minus query 2: item 1 (.8) beats item 4 (0) -> 2
    assert ranks.tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="outside their case's candidate domain"):
        target_ranks(ITEMS, query, target, candidate_domain=np.array([0, 0, 0]), item_domain=item_domain)


def test_asymmetric_query_vectors_rank_by_the_query_side():
    emb = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    queries = np.tile(np.array([[0, 1]], dtype=np.float32), (3, 1))
    ranks = target_ranks(emb, np.array([0, 0]), np.array([2, 1]), query_embeddings=queries)
    assert ranks.tolist() == [1, 2]  # query item 0 excluded; item 2 scores 1, item 1 .8


@pytest.mark.parametrize("constant", [0.0, 0.37])
def test_constant_scorer_gets_the_index_rule_rank_and_chance_metrics(constant):
    n, n_cases = 200, 2000
    rng = np.random.default_rng(1)
    emb = np.full((n, 16), constant, dtype=np.float32)
    query = rng.integers(0, n, n_cases)
    target = (query + rng.integers(1, n, n_cases)) % n  # uniform over the other items
    ranks = target_ranks(emb, query, target, block_queries=512, block_items=128)
    assert np.array_equal(ranks, 1 + target - (query < target))
    for k in (10, 50):  # within ~3 standard errors of chance
        assert HR(k)(ranks).mean() == pytest.approx(k / (n - 1), abs=0.03)


@pytest.mark.parametrize("kind", ["gaussian", "integer", "duplicates"])
def test_ranks_do_not_depend_on_block_sizes(kind):
    rng = np.random.default_rng({"gaussian": 0, "integer": 1, "duplicates": 2}[kind])
    emb = rng.standard_normal((90, 8)).astype(np.float32)
    if kind == "integer":  # mathematically tied scores that float32 GEMMs round differently
        emb = np.round(emb)
    if kind == "duplicates":
        emb[rng.integers(0, 90, 45)] = emb[7]
    query, target = rng.integers(0, 90, 30), rng.integers(0, 90, 30)
    blocks = [(1, 1), (7, 7), (256, 256), (1, 256), (256, 1), (3, 50)]
    results = [target_ranks(emb, query, target, block_queries=bq, block_items=bi) for bq, bi in blocks]
    for ranks in results[1:]:
        assert np.array_equal(ranks, results[0])


def test_matches_a_float64_brute_force_on_well_separated_scores():
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((500, 16)).astype(np.float32)
    item_domain = rng.integers(0, 3, 500)
    query, target = rng.integers(0, 500, 300), rng.integers(0, 500, 300)
    expected = brute_force(emb, query, target)
    assert np.array_equal(target_ranks(emb, query, target, block_queries=32, block_items=64), expected)
    dom = item_domain[target]
    expected = brute_force(emb, query, target, dom, item_domain)
    got = target_ranks(emb, query, target, dom, item_domain, block_queries=32, block_items=64)
    assert np.array_equal(got, expected)


def test_exact_duplicates_of_the_target_tie_and_the_target_never_beats_itself():
    rng = np.random.default_rng(4)
    base = rng.standard_normal(64).astype(np.float32)
    emb = np.tile(base, (100, 1))
    emb[50:] += rng.standard_normal((50, 64)).astype(np.float32) * 1e-7  # near-duplicates
    emb[75:] = emb[60]  # more exact duplicates, of a near-duplicate
    query = np.full(6, 3)
    target = np.array([0, 25, 49, 60, 99, 51])
    ref = brute_force_reference(emb, query, target)
    for bq, bi in BLOCKS:
        ranks = target_ranks(emb, query, target, block_queries=bq, block_items=bi)
        assert np.array_equal(ranks, ref)
    # items 0..49 are bitwise identical: they tie, so only smaller indices count among them
    exact = ranks[:3] - 1
    n_near_above = exact - (target[:3] - (query[:3] < target[:3]))
    assert (n_near_above == n_near_above[0]).all()  # the near-duplicates above are the same set


def brute_force_reference(emb, query, target):
    """The rule on the evaluator's reference scores (sorted float64 sums of exact products)."""
    items = normalise_rows(emb)
    idx = np.arange(len(emb))
    out = []
    for q, t in zip(query, target, strict=True):
        s = reference_scores(np.repeat(normalise_rows(emb[[q]]), len(emb), 0), items)
        cand = (idx != t) & ((idx != q) | (q == t))
        out.append(1 + np.sum(cand & ((s > s[t]) | ((s == s[t]) & (idx < t)))))
    return np.array(out)


def test_many_identical_rows_tie_by_index_without_rescoring_each():
    rng = np.random.default_rng(7)
    emb = np.tile(rng.standard_normal(16).astype(np.float32), (300, 1))
    emb[rng.random(300) < 0.2] = 0.0  # zero rows
    emb[::7] = rng.standard_normal((len(emb[::7]), 16)).astype(np.float32)
    query, target = rng.integers(0, 300, 40), rng.integers(0, 300, 40)
    expected = brute_force_reference(emb, query, target)
    for bq, bi in [(256, 8192), (5, 64)]:
        assert np.array_equal(target_ranks(emb, query, target, block_queries=bq, block_items=bi), expected)


def test_reference_scores_are_permutation_invariant():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((1, 32)).astype(np.float32)
    e = rng.standard_normal((1, 32)).astype(np.float32)
    perm = rng.permutation(32)
    assert reference_scores(q, e)[0] == reference_scores(q[:, perm], e[:, perm])[0]


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(np.array([[np.nan, 0], [1, 0]], np.float32), np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="outside"):
        target_ranks(ITEMS, np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="item_domain"):
        target_ranks(ITEMS, np.array([0]), np.array([1]), candidate_domain=np.array([0]))
    assert target_ranks(ITEMS, np.array([], int), np.array([], int)).shape == (0,)


def test_ndcg_of_the_evaluator_ranks_is_block_independent():
    rng = np.random.default_rng(6)
    emb = rng.standard_normal((2000, 32)).astype(np.float32)
    query, target = rng.integers(0, 2000, 100), rng.integers(0, 2000, 100)
    a = NDCG(10)(target_ranks(emb, query, target, block_queries=7, block_items=2000))
    b = NDCG(10)(target_ranks(emb, query, target, block_queries=256, block_items=33))
    assert np.array_equal(a, b)


def test_torch_thread_setting_is_restored():
    import torch

    before = torch.get_num_threads()
    target_ranks(ITEMS, np.array([0, 2]), np.array([1, 3]))
    assert torch.get_num_threads() == before
