"""Popularity: every query gets the same candidate list, the most frequent training items.

Expressed in the item-to-item MIPS contract with asymmetric vectors: candidates are unit
vectors at an angle that grows with popularity rank, every query is the same unit vector, so
the inner product orders candidates by training frequency whatever the query.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.data.model import Histories, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext


class Popularity(Method):
    """Popularity: rank candidates by training frequency, ignoring the query (sanity floor)."""

    name = "popularity"
    display_name = "Popularity"
    paper_column = None
    requires = frozenset({"ids"})
    trains = False  # learns nothing: its training budget is "untrained"

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        counts = np.asarray(train.item_train_count, dtype=np.float64)
        # rank 0 = most popular; ties broken by item index (the evaluator's tie rule agrees)
        order = np.lexsort((np.arange(len(counts)), -counts))
        rank = np.empty(len(counts), dtype=np.float64)
        rank[order] = np.arange(len(counts))
        angle = (np.pi / 2) * rank / max(len(counts), 1)
        self._emb = np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
        self._query = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(counts), 1))

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def query_embeddings(self) -> np.ndarray:
        return self._query

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        """Every user gets the same vector: the most popular items first (next-item floor)."""
        return np.tile(self._query[:1], (len(histories), 1))
