"""Random: i.i.d. Gaussian item vectors; item-to-item MIPS on them is chance level."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.data.model import Histories, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext


class RandomVectors(Method):
    """Random: Gaussian item vectors, the chance-level floor (sanity baseline)."""

    name = "random"
    display_name = "Random"
    paper_column = None
    requires = frozenset({"ids"})
    trains = False  # learns nothing: its training budget is "untrained"

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        self._emb = ctx.rng(0).standard_normal((train.n_items, int(cfg["dim"]))).astype(np.float32)
        self._user_rng = ctx.rng(1)

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        """A random user vector per case: the chance floor of the next-item protocol."""
        return self._user_rng.standard_normal((len(histories), self._emb.shape[1])).astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        return self._emb
