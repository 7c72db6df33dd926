"""The one evaluator for every method.

``target_ranks`` turns item embeddings and the split's test cases into the per-case rank vector
(int32), the run's primary artefact; metrics, breakdowns and significance tests are pure
functions of it and the case labels.
"""

from benchmark.evaluation.breakdown import group_masks, grouped_metrics
from benchmark.evaluation.exact import normalise_rows, target_ranks
from benchmark.evaluation.metrics import DEFAULT_METRICS, HR, MRR, NDCG, metric_from_key, summarise
from benchmark.evaluation.significance import PairedResult, bootstrap_ci, holm, paired_test

__all__ = [
    "DEFAULT_METRICS",
    "HR",
    "MRR",
    "NDCG",
    "PairedResult",
    "bootstrap_ci",
    "group_masks",
    "grouped_metrics",
    "holm",
    "metric_from_key",
    "normalise_rows",
    "paired_test",
    "summarise",
    "target_ranks",
]
