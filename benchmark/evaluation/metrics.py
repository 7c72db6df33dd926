"""Top-K metrics as small stateless objects over the per-case rank vector (docs/protocol.md 0.2).

Each test case has exactly one target, so with ``r`` its 1-based rank (evaluation/exact.py):
HR@K = 1[r <= K] (= Recall@K), MRR@K = 1/r if r <= K else 0, NDCG@K = 1/log2(r + 1) if
r <= K else 0 (the ideal DCG is 1). The UniEmbedding paper (section 5.1) reports K in {10, 50}
in percent. Metric objects only declare a name and K, in the spirit of RecBole's
``recbole/evaluator/base_metric.py``; every metric is a pure function of the ranks, so a report
can recompute any of them without re-running a model.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

import numpy as np

__all__ = ["HR", "MRR", "NDCG", "DEFAULT_METRICS", "NEXT_ITEM_METRICS", "RankMetric", "metric_from_key", "summarise"]


def _as_ranks(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or (ranks.size and not np.issubdtype(ranks.dtype, np.integer)):
        raise ValueError("ranks must be a 1-D integer array (1-based target ranks)")
    if ranks.size and ranks.min() < 1:
        raise ValueError("ranks are 1-based; found a rank below 1")
    return ranks


class RankMetric(abc.ABC):
    """A cut-off metric of one target's rank; ``metric(ranks)`` gives float64 per-case values."""

    name: str = ""

    def __init__(self, k: int) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"{type(self).__name__}: K must be a positive integer, got {k!r}")
        self.k = int(k)

    @property
    def key(self) -> str:
        """Result key, e.g. ``'NDCG@10'``."""
        return f"{self.name}@{self.k}"

    def __call__(self, ranks: np.ndarray) -> np.ndarray:
        ranks = _as_ranks(ranks)
        hit = ranks <= self.k
        values = np.zeros(len(ranks), dtype=np.float64)
        values[hit] = self.gain(ranks[hit].astype(np.float64))
        return values

    @abc.abstractmethod
    def gain(self, ranks: np.ndarray) -> np.ndarray:
        """Value of a hit at (float) rank ``ranks``; misses are 0."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.k})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.k == self.k  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.k))


class HR(RankMetric):
    """Hit ratio @K: the target is in the top K (equals Recall@K with one target)."""

    name = "HR"

    def gain(self, ranks: np.ndarray) -> np.ndarray:
        return np.ones_like(ranks)


class MRR(RankMetric):
    """Mean reciprocal rank @K: 1/rank inside the top K."""

    name = "MRR"

    def gain(self, ranks: np.ndarray) -> np.ndarray:
        return 1.0 / ranks


class NDCG(RankMetric):
    """NDCG@K with one relevant item: 1/log2(rank + 1) inside the top K (ideal DCG = 1)."""

    name = "NDCG"

    def gain(self, ranks: np.ndarray) -> np.ndarray:
        return 1.0 / np.log2(ranks + 1.0)


DEFAULT_METRICS: tuple = (HR(10), HR(50), MRR(10), MRR(50), NDCG(10), NDCG(50))
#: The next-item protocol of the sequence methods' papers: cut-offs 10, 20 and 50.
NEXT_ITEM_METRICS: tuple = tuple(cls(k) for cls in (HR, MRR, NDCG) for k in (10, 20, 50))

_BY_NAME = {cls.name.lower(): cls for cls in (HR, MRR, NDCG)} | {"recall": HR, "hit": HR}


def metric_from_key(key: str) -> RankMetric:
    """Parse ``'NDCG@10'`` (case-insensitive; ``Recall``/``Hit`` mean HR) into a metric object."""
    name, sep, k = key.partition("@")
    cls = _BY_NAME.get(name.strip().lower())
    if not sep or cls is None or not k.strip().isdigit():
        raise ValueError(f"unknown metric {key!r}; expected e.g. 'HR@10', 'MRR@50', 'NDCG@10'")
    return cls(int(k))


def summarise(ranks: np.ndarray, metrics: Iterable[RankMetric] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the cases, in percent (as the paper's tables); NaN if no cases."""
    ranks = _as_ranks(ranks)
    out: dict[str, float] = {}
    for metric in metrics:
        out[metric.key] = float(100.0 * metric(ranks).mean()) if len(ranks) else float("nan")
    return out
