"""UniSRec's two views for the sequence-sequence task (authors' ``data/transform.py``, methods.md 3.4).

One coin per batch (``item_drop_coefficient``) picks the view for the whole batch:
- item drop: each position kept w.p. ``1 - item_drop_ratio``, the first always kept, the kept
  items re-packed to the left in their original order;
- word drop: each position's text vector swapped w.p. ``word_drop_mix`` for the item's
  word-drop text vector (``features.text_word_drop``; the item stays the same).
"""

from __future__ import annotations

import numpy as np


def item_drop(ids: np.ndarray, lengths: np.ndarray, ratio: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(re-packed ids [B, L] with -1 padding, new lengths [B], keep mask [B, L]) after dropping
    items w.p. ``ratio``.

    Order is kept and the first item always survives, so no view is empty. (The code's
    ``scatter`` with repeated indices keeps, of each run of dropped items, the last one written;
    we keep exactly the sampled items, which is what the paper describes.)
    """
    width = ids.shape[1]
    col = np.arange(width)[None, :]
    real = col < lengths[:, None]
    keep = (rng.random(ids.shape) >= ratio) & real
    keep[:, 0] = real[:, 0]
    new_len = keep.sum(1)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept positions first, in order
    packed = np.take_along_axis(ids, order, axis=1)
    packed[col >= new_len[:, None]] = -1
    return packed, new_len.astype(np.int64), keep


def word_drop_mask(ids: np.ndarray, lengths: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """bool [B, L]: positions whose text vector comes from the word-drop view (real positions only)."""
    real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    return (rng.random(ids.shape) < prob) & real
