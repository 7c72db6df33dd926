"""Item-to-item validation on the carve-out, for methods that learn item vectors only (Item2Vec, PGG).

The carve-out (benchmark/data/validation.py) holds out the last training item of a seeded share
of training users; for an item-to-item method the natural case is query = the user's item just
before the held-out one (the last item of the carved history), target = the held-out item, scored
by cosine (the vectors are L2-normalised, as the evaluator does) with
:func:`methods.shared.training.validation_ndcg`. Model selection only.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.data.validation import ValidationCarve
from methods.shared.training import validation_ndcg


def carve_queries(carve: ValidationCarve) -> np.ndarray:
    """The query item of each validation case: the last item of its history (int64 [V])."""
    offsets = carve.histories.offsets
    return carve.histories.items[offsets[1:] - 1].astype(np.int64)


def item_to_item_ndcg(vectors: np.ndarray, queries: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of ``targets`` for ``queries`` under the cosine of ``vectors`` (zero rows stay zero).

    Every item is a candidate, the query item included (the evaluator removes it from the pool;
    with cosine it usually ranks first here, so the score is lower than the evaluator's would be:
    it only has to order the epochs of one run).
    """
    if len(queries) == 0:
        return 0.0
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = torch.from_numpy(np.where(norms > 0, v / np.maximum(norms, 1e-12), 0.0).astype(np.float32))
    return validation_ndcg(unit[torch.from_numpy(np.asarray(queries, dtype=np.int64))], unit,
                           torch.from_numpy(np.asarray(targets, dtype=np.int64)), k=k)
