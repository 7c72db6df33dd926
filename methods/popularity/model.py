"""Popularity: every query gets the same candidate list, the most frequent training items.

Expressed in the item-to-item MIPS contract with asymmetric vectors: every query is the unit
vector (1, 0) and every candidate a unit vector whose angle grows as its training count falls,
so the inner product (its first coordinate) orders candidates by training frequency whatever
the query. Exactly, in float32: one angle per *distinct* count, spread over [pi/6, pi/3], where
the cosine falls steeply (slope >= 1/2), so neighbouring counts lie many float32 steps apart even
with one level per item of a 143k-item catalogue. (Angles from 0 by popularity rank rounded the
top items of such a catalogue to the same score, 1.0 or 0.99999994, and the tie rule, not
popularity, ordered them.) Equal counts share a bitwise-identical vector, so the evaluator's tie
rule (item index) orders them, as the card says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.data.model import Histories, TrainView
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.evaluation.exact import normalise_rows
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext

#: The angles of the most and the least popular count level (radians).
ANGLES = (np.pi / 6, np.pi / 3)
SCORES = ("count_levels",)


def count_level_vectors(counts: np.ndarray) -> np.ndarray:
    """float32 [n, 2] unit vectors whose first coordinate strictly falls with the training count.

    Checked after the evaluator's own normalisation: a catalogue with more distinct counts than
    float32 can tell apart (about a million) is an error, never a silently tied ranking.
    """
    counts = np.asarray(counts, dtype=np.float64)
    distinct = np.unique(counts)[::-1]  # highest count first
    level = np.searchsorted(-distinct, -counts)  # 0 = the highest count
    span = max(len(distinct) - 1, 1)
    angle = ANGLES[0] + (ANGLES[1] - ANGLES[0]) * level / span
    emb = np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
    if len(distinct) > 1:
        by_level = np.empty(len(distinct), dtype=np.float32)
        by_level[level] = normalise_rows(emb)[:, 0]
        if not (np.diff(by_level) < 0).all():
            raise BenchmarkError(f"popularity: {len(distinct)} distinct training counts are more than float32 "
                                 "scores can order exactly")
    return emb


class Popularity(Method):
    """Popularity: rank candidates by training frequency, ignoring the query (sanity floor)."""

    name = "popularity"
    display_name = "Popularity"
    paper_column = None
    requires = frozenset({"ids"})
    trains = False  # learns nothing: its training budget is "untrained"

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        if cfg.get("score", "count_levels") not in SCORES:
            raise ConfigError(f"popularity.score={cfg.get('score')!r}: must be one of {', '.join(SCORES)}")

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        self._emb = count_level_vectors(train.item_train_count)
        self._query = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(self._emb), 1))

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def query_embeddings(self) -> np.ndarray:
        return self._query

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        """Every user gets the same vector: the most popular items first (next-item floor)."""
        return np.tile(self._query[:1], (len(histories), 1))
