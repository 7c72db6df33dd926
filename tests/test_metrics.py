"""Top-K metrics from ranks: hand values and agreement with RecBole's own implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.evaluation.metrics import DEFAULT_METRICS, HR, MRR, NDCG, metric_from_key, summarise

RANKS = np.array([1, 2, 10, 11, 50, 51], dtype=np.int32)


def test_per_case_values_follow_the_one_target_formulas():
    assert HR(10)(RANKS).tolist() == [1, 1, 1, 0, 0, 0]
    np.testing.assert_allclose(MRR(10)(RANKS), [1, 0.5, 0.1, 0, 0, 0])
    np.testing.assert_allclose(NDCG(10)(RANKS), [1, 1 / math.log2(3), 1 / math.log2(11), 0, 0, 0])
    np.testing.assert_allclose(NDCG(50)(RANKS)[4:], [1 / math.log2(51), 0])
    assert HR(10)(RANKS).dtype == np.float64


def test_summarise_reports_means_in_percent_with_paper_keys():
    out = summarise(RANKS)
    assert list(out) == ["HR@10", "HR@50", "MRR@10", "MRR@50", "NDCG@10", "NDCG@50"]
    assert out["HR@10"] == pytest.approx(50.0)
    assert out["HR@50"] == pytest.approx(100 * 5 / 6)
    assert out["MRR@10"] == pytest.approx(100 * 1.6 / 6)
    assert out["MRR@50"] == pytest.approx(100 * (1.6 + 1 / 11 + 1 / 50) / 6)


def test_summarise_of_no_cases_is_nan_and_bad_ranks_are_refused():
    assert all(math.isnan(v) for v in summarise(np.array([], dtype=np.int32)).values())
    with pytest.raises(ValueError, match="1-based"):
        summarise(np.array([0, 1]))
    with pytest.raises(ValueError):
        HR(0)


def test_metric_keys_parse_back_to_metric_objects():
    assert [metric_from_key(m.key) for m in DEFAULT_METRICS] == list(DEFAULT_METRICS)
    assert metric_from_key("recall@20") == HR(20)
    with pytest.raises(ValueError, match="unknown metric"):
        metric_from_key("MAP@10")


def test_agrees_with_recbole_hit_mrr_ndcg_on_the_same_ranks():
    from benchmark import compat

    compat.apply()
    from recbole.config import Config
    from recbole.evaluator.collector import DataStruct
    from recbole.evaluator.metrics import MRR as RecMRR
    from recbole.evaluator.metrics import NDCG as RecNDCG
    from recbole.evaluator.metrics import Hit as RecHit

    # RecBole's Config restores the numpy aliases its metrics use (np.float) on every run;
    # building metrics without a dataset-backed Config needs the same call.
    Config.compatibility_settings(None)
    rng = np.random.default_rng(0)
    ranks = np.concatenate([rng.integers(1, 200, 2000), [1, 10, 11, 50, 51]]).astype(np.int32)
    topk = [10, 50]
    max_k = max(topk)
    pos_index = np.zeros((len(ranks), max_k), dtype=bool)  # one positive, at position rank - 1
    hit = ranks <= max_k
    pos_index[np.flatnonzero(hit), ranks[hit] - 1] = True
    pos_len = np.ones(len(ranks), dtype=np.int64)
    data = DataStruct()
    data.set("rec.topk", torch.from_numpy(np.column_stack([pos_index.astype(np.int64), pos_len])))
    config = {"topk": topk, "metric_decimal_place": 12}
    cases = (
        (HR, RecHit(config), "hit", ()),
        (MRR, RecMRR(config), "mrr", ()),
        (NDCG, RecNDCG(config), "ndcg", (pos_len,)),
    )
    for ours, metric, name, extra in cases:
        per_case = metric.metric_info(pos_index, *extra)
        means = metric.calculate_metric(data)
        for k in topk:
            np.testing.assert_allclose(ours(k)(ranks), per_case[:, k - 1], rtol=0, atol=1e-9)
            assert 100 * means[f"{name}@{k}"] == pytest.approx(
                summarise(ranks, [ours(k)])[ours(k).key], abs=1e-7
            )
