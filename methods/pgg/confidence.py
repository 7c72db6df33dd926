"""Step 2 of PGG-lite (docs/methods.md 9.1): a user-item model and the confidence c(u, i).

PGG "first estimates a confidence value between user and item to filter exceptional actions"
(He et al., KDD'21, abstract). The reconstruction scores (u, i) with matrix factorisation
p_u . q_i trained with sampled softmax on the training interactions, and turns the scores of a
short-term set into a per-set softmax: c(u, i) = softmax_{j in S}(p_u . q_j)_i.

The MF itself (``train_user_item_mf``) lives in methods/shared/mf.py: UAE's user tower uses it too.
"""

from __future__ import annotations

import numpy as np


def set_scores(sets: np.ndarray, owner: np.ndarray, user_vec: np.ndarray, item_vec: np.ndarray,
               chunk: int = 65536) -> np.ndarray:
    """p_u . q_i for every slot of every set (nan on padding), float32 [n_sets, window]."""
    out = np.full(sets.shape, np.nan, dtype=np.float32)
    for s in range(0, len(sets), chunk):
        block = sets[s : s + chunk]
        valid = block >= 0
        q = item_vec[np.where(valid, block, 0)]  # [b, W, d]
        scores = np.einsum("bwd,bd->bw", q, user_vec[owner[s : s + chunk]])
        out[s : s + chunk] = np.where(valid, scores, np.nan)
    return out


def set_confidence(scores: np.ndarray) -> np.ndarray:
    """c(u, i) = softmax over the set's items of p_u . q_i (docs/methods.md 9.1 step 2); nan on padding."""
    valid = ~np.isnan(scores)
    shifted = np.where(valid, scores, -np.inf)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    e = np.where(valid, np.exp(shifted), 0.0)
    conf = e / e.sum(axis=1, keepdims=True)
    return np.where(valid, conf, np.nan).astype(np.float32)
