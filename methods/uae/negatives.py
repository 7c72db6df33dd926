"""UAE's training examples and negatives (docs/methods.md 11.2-11.3).

UAE learns from a user's *liked* tracks as positives against *disliked* (or sampled) tracks
(Chen et al., ICASSP'21). On XMarket the analogue of "disliked" is the user's own items rated
<= 2 [proposal]; ratings are nan where unknown, which counts as liked (an interaction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.data.model import Sequences


@dataclass(frozen=True)
class Examples:
    """Positive (sequence row, item) pairs and each row's disliked items as a CSR."""

    user: np.ndarray  # int64 [P], sequence row
    item: np.ndarray  # int64 [P]
    disliked_offsets: np.ndarray  # int64 [K+1]
    disliked_items: np.ndarray  # int64 [D]
    position: np.ndarray  # int64 [P], flat position of each positive in sequences.items

    @property
    def n_disliked(self) -> int:
        return len(self.disliked_items)


def build_examples(sequences: Sequences, max_disliked_rating: float, use_disliked: bool = True) -> Examples:
    """Liked interactions are positives; items rated <= ``max_disliked_rating`` are the row's disliked set.

    With ``use_disliked`` False every interaction is a positive and the disliked sets are empty.
    """
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), sequences.lengths)
    items = sequences.items.astype(np.int64)
    rating = sequences.rating
    disliked = np.zeros(len(items), dtype=bool)
    if use_disliked:
        disliked = np.isfinite(rating) & (rating <= max_disliked_rating)
    counts = np.bincount(rows[disliked], minlength=len(sequences))
    return Examples(
        user=rows[~disliked],
        item=items[~disliked],
        disliked_offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
        disliked_items=items[disliked],  # rows are sorted, so this is already grouped by row
        position=np.flatnonzero(~disliked).astype(np.int64),
    )


def sample_negatives(examples: Examples, batch: np.ndarray, n_items: int, n_neg: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_neg`` negatives per example: the user's disliked items first, then uniform random items.

    Slot j < min(#disliked, n_neg) takes a *distinct* disliked item (a random rotation of the
    user's list); the other slots are uniform over all items. Returns (negatives int64
    [B, n_neg], is_disliked bool [B, n_neg]).
    """
    users, pos = examples.user[batch], examples.item[batch]
    start = examples.disliked_offsets[users]
    count = examples.disliked_offsets[users + 1] - start
    slot = np.arange(n_neg)[None, :]
    hard = slot < np.minimum(count, n_neg)[:, None]
    rotation = (rng.random(len(batch)) * np.maximum(count, 1)).astype(np.int64)
    pick = start[:, None] + (rotation[:, None] + slot) % np.maximum(count, 1)[:, None]
    random_items = rng.integers(0, n_items, size=(len(batch), n_neg))
    clash = random_items == pos[:, None]  # a random negative equal to the positive: shift it
    random_items[clash] = (random_items[clash] + 1) % n_items
    disliked = examples.disliked_items[np.where(hard, pick, 0)] if examples.n_disliked else random_items
    return np.where(hard, disliked, random_items), hard
