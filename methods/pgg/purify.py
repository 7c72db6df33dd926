"""Step 3 of PGG-lite (docs/methods.md 9.1): purify each short-term set and re-sample it R times.

PGG filters "exceptional actions" with the user-item confidence, then "re-samples purified sets"
as the input of its graph learner (He et al., KDD'21, abstract). Reconstruction [proposal]:
an item is dropped when its confidence is below the set's mean - 1 std; each of R re-samples then
keeps every surviving item independently with probability c~(u, i), a scaled confidence.
"""

from __future__ import annotations

import numpy as np

from methods.pgg.sets import PAD

SCALINGS = ("max", "minmax", "none")


def purify(confidence: np.ndarray, n_std: float = 1.0) -> np.ndarray:
    """Keep-mask [n_sets, W]: valid slots whose confidence is >= the set's mean - n_std * std.

    Population std over the set's valid slots, so a set of equally confident items (e.g. two
    items with equal scores) keeps everything; the comparison is strict (c < threshold drops).
    """
    confidence = confidence.astype(np.float64)
    valid = ~np.isnan(confidence)
    n = valid.sum(axis=1, keepdims=True).clip(min=1)
    c = np.where(valid, confidence, 0.0)
    mean = c.sum(axis=1, keepdims=True) / n
    std = np.sqrt((np.where(valid, confidence - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / n)
    return valid & ~(c < mean - n_std * std - 1e-9)


def keep_probability(confidence: np.ndarray, keep: np.ndarray, scaling: str = "max") -> np.ndarray:
    """c~(u, i), the per-item keep probability of a re-sample (0 where ``keep`` is False).

    ``max``  [proposal, default]: c / max_S c, i.e. min-max scaling with the softmax's own lower
             bound 0: the set's most confident item is always kept, equally confident items are
             all kept (exp(s_i - s_max)).
    ``minmax``: (c - min_S c) / (max_S c - min_S c) over the purified set, the literal reading;
             it always drops the least confident item, so every 2-item set loses its only pair.
             A set whose purified confidences are all equal keeps every item.
    ``none``: probability 1 for every purified item (no re-sampling noise; an ablation).
    """
    if scaling not in SCALINGS:
        raise ValueError(f"keep_probability: scaling must be one of {SCALINGS}, got {scaling!r}")
    c = np.where(keep, confidence, np.nan)
    hi = np.nanmax(np.where(keep.any(axis=1, keepdims=True), c, 1.0), axis=1, keepdims=True)
    if scaling == "none":
        p = np.ones_like(confidence)
    elif scaling == "max":
        p = c / np.maximum(hi, 1e-12)
    else:
        lo = np.nanmin(np.where(keep.any(axis=1, keepdims=True), c, 0.0), axis=1, keepdims=True)
        rng = hi - lo
        p = np.where(rng > 1e-12, (c - lo) / np.maximum(rng, 1e-12), 1.0)
    return np.where(keep, np.clip(p, 0.0, 1.0), 0.0).astype(np.float32)


def resample_sets(sets: np.ndarray, keep_prob: np.ndarray, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """R purified re-samples per set: slot kept with probability ``keep_prob``; dropped slots = PAD.

    Returns int32 [repeats * n_sets, W] (re-sample r of set s is row r * n_sets + s).
    """
    draws = rng.random((repeats, *sets.shape), dtype=np.float32) < keep_prob[None]
    out = np.where(draws, sets[None], PAD).astype(np.int32)
    return out.reshape(repeats * len(sets), sets.shape[1])


def ordered_pairs(sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (i, j), i != j, of items in the same set (the "seed-and-expand" pairs).

    Padding and self-pairs (an item repeated inside a window) are skipped. int64 (src, dst).
    """
    w = sets.shape[1]
    a, b = np.nonzero(~np.eye(w, dtype=bool))
    src, dst = sets[:, a], sets[:, b]  # [n, w*(w-1)]
    ok = (src != PAD) & (dst != PAD) & (src != dst)
    return src[ok].astype(np.int64), dst[ok].astype(np.int64)
