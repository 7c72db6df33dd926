"""The next-item protocol: per-case histories in the split, exact ranks, exclusion, runner checks."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.model import Histories
from benchmark.evaluation.exact import normalise_rows
from benchmark.evaluation.next_item import next_item_ranks


def brute_ranks(items: np.ndarray, users: np.ndarray, target: np.ndarray, exclude: list[set[int]] | None = None,
                dot: bool = False) -> np.ndarray:
    """1 + #(higher) + #(equal with a smaller index), in float64, optionally without excluded items."""
    cand = items.astype(np.float64) if dot else normalise_rows(items).astype(np.float64)
    q = normalise_rows(users).astype(np.float64)
    scores = q @ cand.T
    out = []
    for c, t in enumerate(target):
        s = scores[c]
        better = (s > s[t]) | ((s == s[t]) & (np.arange(len(s)) < t))
        if exclude is not None:
            for h in exclude[c] - {int(t)}:
                better[h] = False
        out.append(1 + int(better.sum()))
    return np.array(out)


def test_ranks_match_brute_force_on_random_data_for_both_scorings():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((300, 16)).astype(np.float32) * rng.uniform(0.1, 3, (300, 1)).astype(np.float32)
    users = rng.standard_normal((50, 16)).astype(np.float32)
    target = rng.integers(0, 300, 50)
    for scoring in ("cosine", "dot"):
        for block in (1, 7, 256):
            ours = next_item_ranks(items, users, target, scoring=scoring, block_queries=block, block_items=block * 3)
            assert ours.tolist() == brute_ranks(items, users, target, dot=scoring == "dot").tolist()


def test_dot_scoring_ranks_by_raw_inner_product_not_cosine():
    items = np.array([[1.0, 0.0], [3.0, 0.5], [0.0, 1.0]], dtype=np.float32)
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    assert next_item_ranks(items, users, np.array([1]), scoring="dot").tolist() == [1]  # longest vector wins
    assert next_item_ranks(items, users, np.array([1]), scoring="cosine").tolist() == [2]  # item 0 is closer


def test_ties_duplicates_zero_users_and_constant_scorers_follow_the_index_rule():
    items = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    users = np.array([[1, 0], [1, 0], [0, 0]], dtype=np.float32)
    ranks = next_item_ranks(items, users, np.array([0, 3, 2]))
    assert ranks.tolist() == [1, 3, 3]  # duplicates tie -> index rule; zero user -> rank = 1 + index
    constant = np.ones((5, 3), dtype=np.float32)
    assert next_item_ranks(constant, np.ones((2, 3), np.float32), np.array([0, 4])).tolist() == [1, 5]


def test_history_items_stay_candidates_unless_excluded():
    rng = np.random.default_rng(3)
    items = rng.standard_normal((40, 8)).astype(np.float32)
    users = rng.standard_normal((12, 8)).astype(np.float32)
    target = rng.integers(0, 40, 12)
    hist = [list(rng.integers(0, 40, rng.integers(1, 6))) + ([int(target[c])] if c % 3 == 0 else [])
            for c in range(12)]
    histories = Histories.from_lists(hist)
    kept = next_item_ranks(items, users, target, histories=histories)
    dropped = next_item_ranks(items, users, target, histories=histories, exclude_history=True)
    assert kept.tolist() == brute_ranks(items, users, target).tolist()
    assert dropped.tolist() == brute_ranks(items, users, target, exclude=[set(map(int, h)) for h in hist]).tolist()
    assert (dropped <= kept).all() and (dropped < kept).any()


def test_bad_inputs_are_refused():
    items = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="scoring"):
        next_item_ranks(items, np.ones((1, 2), np.float32), np.array([0]), scoring="l2")
    with pytest.raises(ValueError, match="NaN"):
        next_item_ranks(items, np.full((1, 2), np.nan, np.float32), np.array([0]))
    with pytest.raises(ValueError, match="must be"):
        next_item_ranks(items, np.ones((1, 3), np.float32), np.array([0]))


def test_histories_csr_padding_and_subset():
    h = Histories.from_lists([[1, 2, 3, 4], [5], [6, 7]])
    ids, lengths = h.padded(3)
    assert ids.tolist() == [[2, 3, 4], [5, -1, -1], [6, 7, -1]] and lengths.tolist() == [3, 1, 2]
    sub = h.subset(np.array([2, 0]))
    assert [sub.history(0).tolist(), sub.history(1).tolist()] == [[6, 7], [1, 2, 3, 4]]


def test_split_keeps_each_cases_whole_history_before_the_target(tiny_data_dir):
    from benchmark.data.sources import load_dataset
    from benchmark.data.split import build_split
    from benchmark.data.split_leakage import check_no_leakage

    dataset = load_dataset("xmarket-sim", tiny_data_dir, scale="tiny", seed=0, progress=False)
    split = build_split(dataset, seed=0)
    check_no_leakage(split, dataset)
    cases, hist = split.cases, split.histories
    assert len(hist) == len(cases)
    inter = dataset.interactions
    for c in range(0, len(cases), 7):
        user = cases.user[c]
        rows = np.flatnonzero(inter.user == user)
        rows = rows[np.lexsort((inter.line[rows], inter.day[rows]))]
        assert hist.history(c).tolist() == inter.item[rows][:-1].tolist()
        assert cases.query[c] in hist.history(c)
    train_users = set(split.train.users.tolist())
    unseen = np.flatnonzero(~cases.overlapped)
    assert not any(int(cases.user[c]) in train_users for c in unseen)  # their histories are not training data


def test_manifest_hash_covers_the_histories(tiny_data_dir):
    import dataclasses

    from benchmark.data.sources import load_dataset
    from benchmark.data.split import build_split
    from benchmark.data.split_manifest import compute_manifest_hash

    split = build_split(load_dataset("xmarket-sim", tiny_data_dir, scale="tiny", seed=0, progress=False))
    items = split.histories.items.copy()
    items[0] = (items[0] + 1) % len(split.item_head)
    other = dataclasses.replace(split.histories, items=items)
    digest = compute_manifest_hash(split.train, split.cases, other, split.item_train_count, split.item_head,
                                   split.meta["settings"])
    assert digest != split.manifest_hash
