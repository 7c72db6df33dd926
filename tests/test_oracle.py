"""End-to-end checks that the runner stores the right ranks and metrics for the right test cases.

1. An oracle method whose every rank is known in advance. Item ``i`` is a sliding window of
   ``WINDOW`` ones over coordinates ``i .. i+WINDOW-1``, scaled by ``1/sqrt(WINDOW)`` (a power of
   two), so every row has norm exactly 1 and every score is exact in float32 and float64:
   ``score(c, j) = max(0, WINDOW - |j - c|) / WINDOW``. The rank of a target under the tie rule
   of evaluation/exact.py (1 + #higher + #equal with a smaller index) is then a closed form in
   integers (:func:`window_rank`): no training, no test case seen, and no evaluator code used to
   predict it. Its user vector (next-item protocol) is the vector of the history's first item.
   After a run, ``ranks.npy``, ``next_item_ranks.npy`` and every group metric in result.json must
   equal the values computed here from the stored split file alone.
2. For real trained methods of the tiny suite run, ``ranks.npy`` recomputed from the stored
   ``item_embeddings.npy`` and the stored split with a brute-force float64 scorer.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from benchmark import registry
from benchmark.data.split_manifest import load_split
from benchmark.grid.plan import plan
from benchmark.inputs import features_needed, prepare_inputs
from benchmark.plugin import Method
from benchmark.tasks.matching.runner import execute_run

if TYPE_CHECKING:
    from benchmark.data.model import TestCases

WINDOW = 64  # a perfect square whose root is a power of two: entries 1/8, exact norms and scores


def window_vectors(n_items: int, window: int = WINDOW) -> np.ndarray:
    """Row i: 1/sqrt(window) on coordinates i .. i+window-1, zero elsewhere."""
    out = np.zeros((n_items, n_items + window - 1), dtype=np.float32)
    for i in range(n_items):
        out[i, i:i + window] = 1.0 / math.sqrt(window)
    return out


class _Oracle(Method):
    """Scores by item-index distance (window_vectors); the user vector is the history's first item."""

    name = "oracle"
    display_name = "Oracle"
    requires = frozenset({"ids"})

    def fit(self, train, features, cfg, ctx) -> None:
        self.n = train.n_items  # nothing learned

    def item_embeddings(self) -> np.ndarray:
        return window_vectors(self.n)

    def user_embeddings(self, histories) -> np.ndarray:
        if (histories.lengths < 1).any():
            raise AssertionError("the oracle needs a non-empty history per case")
        return self.item_embeddings()[histories.items[histories.offsets[:-1]]]


def window_rank(center: int, target: int, pool: np.ndarray, excluded=(), window: int = WINDOW) -> int:
    """Rank of ``target`` among the ``pool`` items (sorted) minus ``excluded`` for the query vector of item ``center``.

    Integer score s(j) = max(0, window - |j - center|); rank = 1 + #{j != target: s(j) > s(target)}
    + #{j != target: s(j) == s(target), j < target}, over the candidates.
    """
    def count(lo: int, hi: int) -> int:  # pool items in [lo, hi]
        return max(0, int(np.searchsorted(pool, hi, "right") - np.searchsorted(pool, lo, "left")))

    def score(j: int) -> int:
        return max(0, window - abs(j - center))

    d = abs(target - center)
    r = min(d, window)
    above = count(center - r + 1, center + r - 1)  # |j - center| < r: strictly higher
    if d < window:  # the one tie: the mirror image of the target, when it has the smaller index
        mirror = 2 * center - target
        above += int(mirror < target and count(mirror, mirror) == 1)
    else:  # score 0: every zero-score item with a smaller index
        above += count(-1, target - 1) - count(center - window + 1, min(center + window - 1, target - 1))
    for x in set(int(x) for x in excluded) - {target}:
        if count(x, x) and (score(x) > score(target) or (score(x) == score(target) and x < target)):
            above -= 1
    return 1 + above


def test_the_closed_form_matches_an_integer_brute_force() -> None:
    rng = np.random.default_rng(0)
    for n, window in ((30, 4), (25, 64), (40, 1)):
        for pool in (np.arange(n), np.sort(rng.choice(n, n // 2, replace=False))):
            for center in range(n):
                for target in pool:
                    excluded = {center} | set(rng.choice(n, 3).tolist())
                    cand = [j for j in pool if j not in excluded or j == target]
                    s = {j: max(0, window - abs(j - center)) for j in cand}
                    brute = 1 + sum(s[j] > s[target] or (s[j] == s[target] and j < target)
                                    for j in cand if j != target)
                    assert window_rank(center, int(target), pool, excluded, window) == brute


# ------------------------------------------------------------------------------------------------ helpers

def stored_split(data_dir: Path, manifest_hash: str):
    """The split file in the data directory's cache that a result names (not the runner's in-memory copy)."""
    for path in sorted((data_dir / ".cache" / "splits").glob("*.npz")):
        split = load_split(path)
        if split.manifest_hash == manifest_hash:
            return split
    raise AssertionError(f"no stored split with manifest {manifest_hash}")


def item_domains(folder: Path) -> list[str]:
    """Each item's domain name, from the result folder's items.tsv."""
    with open(folder / "items.tsv", newline="") as fh:
        return [row["domain"] for row in csv.DictReader(fh, delimiter="\t")]


def expected_groups(cases: TestCases, domain_of_item: list[str]) -> dict[str, np.ndarray]:
    """Every group result.json reports, by hand: users x head/tail x target domain, and cold targets."""
    users = {"overlapped": cases.overlapped.astype(bool), "unseen": ~cases.overlapped.astype(bool)}
    pop = {"head": cases.target_head.astype(bool), "tail": ~cases.target_head.astype(bool)}
    target_domain = np.array([domain_of_item[t] for t in cases.target])
    doms = {f"domain={d}": target_domain == d for d in dict.fromkeys(domain_of_item)}
    out = {"all": np.ones(len(cases), bool), **users, **pop, "cold": cases.target_cold.astype(bool), **doms}
    out |= {f"{u}/{p}": um & pm for u, um in users.items() for p, pm in pop.items()}
    out |= {f"{u}/{d}": um & dm for u, um in users.items() for d, dm in doms.items()}
    return out


def hand_metrics(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """HR/MRR/NDCG@K in percent from 1-based ranks (docs/protocol.md 0.2), one case at a time."""
    n = len(ranks)
    out: dict[str, float] = {"n": n}
    for k in ks:
        out[f"HR@{k}"] = 100.0 * sum(r <= k for r in ranks) / n if n else math.nan
        out[f"MRR@{k}"] = 100.0 * sum(1.0 / r for r in ranks if r <= k) / n if n else math.nan
        out[f"NDCG@{k}"] = 100.0 * sum(1.0 / math.log2(r + 1) for r in ranks if r <= k) / n if n else math.nan
    return out


def assert_group_metrics(stored: dict, ranks: np.ndarray, groups: dict[str, np.ndarray], ks: tuple[int, ...],
                         what: str) -> None:
    assert set(stored) == set(groups), f"{what}: groups {sorted(set(stored) ^ set(groups))}"
    for group, mask in groups.items():
        want = hand_metrics(ranks[mask].tolist(), ks)
        got = stored[group]
        assert set(got) == set(want), f"{what} {group}: metric keys"
        for key, value in want.items():
            if math.isnan(value):
                assert math.isnan(got[key]), f"{what} {group} {key}: {got[key]} for an empty group"
            else:
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), f"{what} {group} {key}"


def capped(ranks: np.ndarray, cap: int | None) -> np.ndarray:
    return np.minimum(ranks, cap + 1) if cap else ranks


# ------------------------------------------------------------------------------------------------ the oracle

@pytest.mark.parametrize("overrides, cap, by_domain, exclude_history", [
    ((), 1000, False, False),
    (("evaluation.rank_cap=50", "evaluation.block_queries=7", "evaluation.block_items=50"), 50, False, False),
    (("evaluation.candidate_pool=domain", "evaluation.exclude_history=true"), 1000, True, True),
], ids=["default", "cap50-small-blocks", "domain-pool-exclude-history"])
def test_every_stored_rank_and_group_metric_equals_the_oracles_known_value(
        tiny_data_dir, monkeypatch, tmp_path, overrides, cap, by_domain, exclude_history) -> None:
    known = dict(registry.methods())
    known["oracle"] = _Oracle
    monkeypatch.setattr(registry, "methods", lambda: known)
    (cfg,) = plan("xmarket-matching", scale="tiny", methods=["oracle"], overrides=overrides, allow_extra_methods=True)
    inputs = prepare_inputs(cfg.dataset, cfg.split, features_needed(cfg.features, [_Oracle]), tiny_data_dir,
                            cfg.scale, progress=False)
    record = execute_run(cfg, inputs, tmp_path, tracker=None, progress=False)
    assert record.status == "done", record.reason
    folder = tmp_path / cfg.suite / record.run_key
    result = json.loads((folder / "result.json").read_text())

    split = stored_split(tiny_data_dir, result["manifest_hash"])
    cases, histories = split.cases, split.histories
    domain_of_item = item_domains(folder)
    n_items = len(domain_of_item)
    assert result["evaluation"]["rank_cap"] == cap
    assert result["evaluation"]["candidate_pool"] == ("domain" if by_domain else "all")
    assert result["evaluation"]["exclude_history"] is exclude_history
    all_items = np.arange(n_items)
    domain_pool = {d: np.flatnonzero(np.array(domain_of_item) == d) for d in set(domain_of_item)}

    want_i2i, want_next = [], []
    for c, (q, t) in enumerate(zip(cases.query.tolist(), cases.target.tolist(), strict=True)):
        assert q != t
        pool = domain_pool[domain_of_item[t]] if by_domain else all_items
        want_i2i.append(window_rank(q, t, pool, excluded={q}))
        history = histories.history(c).tolist()
        want_next.append(window_rank(history[0], t, all_items, excluded=history if exclude_history else ()))
    want_i2i, want_next = capped(np.array(want_i2i), cap), capped(np.array(want_next), cap)
    assert 1 <= want_i2i.min() and (want_i2i <= 10).sum() >= 10 and want_i2i.max() > 50  # informative ranks

    ranks = np.load(folder / "ranks.npy")
    next_ranks = np.load(folder / "next_item_ranks.npy")
    assert ranks.dtype == next_ranks.dtype == np.int32
    np.testing.assert_array_equal(ranks, want_i2i, err_msg="ranks.npy")
    np.testing.assert_array_equal(next_ranks, want_next, err_msg="next_item_ranks.npy")

    groups = expected_groups(cases, domain_of_item)
    assert all(groups[g].any() for g in ("overlapped", "unseen", "head", "tail"))
    assert_group_metrics(result["metrics"], want_i2i, groups, (10, 50), "item-to-item")
    assert_group_metrics(result["next_item_metrics"], want_next, groups, (10, 20, 50), "next-item")
    assert result["metrics"]["all"]["HR@10"] > 0 and result["next_item_metrics"]["all"]["HR@10"] > 0


# ------------------------------------------------------------------------------------------------ real methods

def brute_force_ranks(emb: np.ndarray, query: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The documented item-to-item rank, one case at a time in float64.

    Rows L2-normalised in float32 (norm accumulated in float64, zero rows stay zero); score = the
    exactly rounded float64 sum of the exact float32 x float32 products (math.fsum); candidates =
    all items but the query; rank = 1 + #higher + #equal with a smaller index.
    """
    emb = np.asarray(emb, dtype=np.float32)
    norms = np.sqrt((emb.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
    unit = np.where(norms[:, None] > 0, emb / np.where(norms > 0, norms, 1)[:, None], 0).astype(np.float32)
    unit64 = unit.astype(np.float64)
    out = np.empty(len(query), dtype=np.int64)
    for c, (q, t) in enumerate(zip(query.tolist(), target.tolist(), strict=True)):
        products = unit64 * unit64[q]  # exact: 24-bit x 24-bit mantissas fit in float64
        scores = np.array([math.fsum(row) for row in products])
        candidate = np.ones(len(emb), bool)
        if q != t:
            candidate[q] = False
        candidate[t] = False
        before = np.arange(len(emb)) < t
        out[c] = 1 + int((candidate & ((scores > scores[t]) | ((scores == scores[t]) & before))).sum())
    return out


@pytest.mark.parametrize("method", ["item2vec", "clip"])
def test_stored_ranks_equal_a_brute_force_float64_recount_from_the_stored_embeddings(tiny_suite_run, tiny_data_dir,
                                                                                     method) -> None:
    run, results, _ = tiny_suite_run
    (record,) = [r for r in run.records if r.method == method]
    folder = results / run.suite / record.run_key
    result = json.loads((folder / "result.json").read_text())
    assert result["evaluation"]["candidate_pool"] == "all"
    split = stored_split(tiny_data_dir, result["manifest_hash"])
    emb = np.load(folder / "item_embeddings.npy")
    want = capped(brute_force_ranks(emb, split.cases.query, split.cases.target), result["evaluation"]["rank_cap"])
    np.testing.assert_array_equal(np.load(folder / "ranks.npy"), want)
