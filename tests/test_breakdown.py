"""Group masks and grouped metrics on a hand-built set of test cases (methods.md 0.2 breakdowns)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.data import model as data_model
from benchmark.evaluation.breakdown import group_masks, grouped_metrics
from benchmark.evaluation.metrics import HR, MRR

DOMAINS = ("Books", "Electronics", "Cell_Phones_and_Accessories")


def make_cases() -> data_model.TestCases:
    """Six cases: users 0-3 overlapped, 4-5 unseen; no target in the phone domain."""
    return data_model.TestCases(
        user=np.arange(6, dtype=np.int32),
        query=np.array([0, 1, 2, 3, 4, 5], dtype=np.int32),
        target=np.array([10, 11, 12, 13, 14, 15], dtype=np.int32),
        overlapped=np.array([True, True, True, True, False, False]),
        target_head=np.array([True, False, True, False, False, True]),
        target_domain=np.array([0, 0, 1, 1, 0, 1], dtype=np.int16),
        query_domain=np.array([0, 1, 1, 2, 0, 0], dtype=np.int16),
        target_cold=np.array([False, False, False, True, True, False]),
        query_cold=np.zeros(6, dtype=bool),
    )


RANKS = np.array([1, 20, 5, 100, 2, 60], dtype=np.int32)


def test_group_masks_cover_the_paper_breakdowns_in_a_fixed_order():
    masks = group_masks(make_cases(), DOMAINS)
    assert list(masks)[:9] == [
        "all",
        "overlapped",
        "unseen",
        "head",
        "tail",
        "cold",
        "domain=Books",
        "domain=Electronics",
        "domain=Cell_Phones_and_Accessories",
    ]
    idx = {name: np.flatnonzero(mask).tolist() for name, mask in masks.items()}
    assert idx["all"] == [0, 1, 2, 3, 4, 5]
    assert idx["overlapped"] == [0, 1, 2, 3] and idx["unseen"] == [4, 5]
    assert idx["head"] == [0, 2, 5] and idx["tail"] == [1, 3, 4]
    assert idx["cold"] == [3, 4]
    assert idx["domain=Books"] == [0, 1, 4] and idx["domain=Electronics"] == [2, 3, 5]
    assert idx["domain=Cell_Phones_and_Accessories"] == []
    assert idx["overlapped/head"] == [0, 2] and idx["overlapped/tail"] == [1, 3]
    assert idx["unseen/head"] == [5] and idx["unseen/tail"] == [4]
    assert idx["overlapped/domain=Books"] == [0, 1] and idx["unseen/domain=Electronics"] == [5]
    assert idx["unseen/domain=Cell_Phones_and_Accessories"] == []


def test_grouped_metrics_count_cases_and_average_within_each_group():
    out = grouped_metrics(RANKS, make_cases(), DOMAINS, metrics=(HR(10), MRR(10)))
    assert out["all"]["n"] == 6
    assert out["all"]["HR@10"] == pytest.approx(100 * 3 / 6)
    assert out["overlapped"] == {"n": 4, "HR@10": pytest.approx(50.0), "MRR@10": pytest.approx(100 * 1.2 / 4)}
    assert out["unseen"]["MRR@10"] == pytest.approx(100 * 0.5 / 2)
    assert out["head"]["HR@10"] == pytest.approx(100 * 2 / 3)
    assert out["cold"]["n"] == 2 and out["cold"]["HR@10"] == pytest.approx(50.0)


def test_empty_groups_are_present_with_zero_count_and_nan_metrics():
    out = grouped_metrics(RANKS, make_cases(), DOMAINS)
    empty = out["domain=Cell_Phones_and_Accessories"]
    assert empty["n"] == 0
    assert all(math.isnan(v) for k, v in empty.items() if k != "n")
    assert set(empty) == {"n", "HR@10", "HR@50", "MRR@10", "MRR@50", "NDCG@10", "NDCG@50"}


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="ranks for 6 test cases"):
        grouped_metrics(RANKS[:5], make_cases(), DOMAINS)
    with pytest.raises(ValueError, match="outside the 1 domains"):
        group_masks(make_cases(), DOMAINS[:1])
