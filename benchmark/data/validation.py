"""The one validation carve-out: held-out last items of training users, never of test users.

Methods with early stopping or model selection (UAE, the sequence methods, the ranking models)
take their validation data here, so every method holds out the same kind of thing, reproducibly
per seed, and none can peek at a test case. A carve-out picks a seeded share of the training
users with at least two training items and holds out each one's last training item: the
"validation target", predicted from the rest of that user's sequence (the leave-one-out
validation of SASRec/RecBole, and the item-to-item query the matching protocol uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.data.model import Histories, Sequences, TrainView
from benchmark.errors import ConfigError


@dataclass(frozen=True, eq=False)
class ValidationCarve:
    """A training view with some users' last item removed, and those held-out items.

    ``fit`` keeps every training user in the same row order as the input view (rows whose last
    item was held out are one shorter). ``rows`` are the carved sequence rows, ``positions``
    the flat positions of the held-out interactions in the *input* ``sequences.items``, and
    ``histories``/``targets`` the validation cases (history = the rest of the user's sequence).
    """

    fit: TrainView
    rows: np.ndarray  # int64 [V], sequence rows of the input view
    positions: np.ndarray  # int64 [V], flat positions in the input view
    histories: Histories  # [V]
    targets: np.ndarray  # int32 [V]
    fraction: float
    seed: int

    def __len__(self) -> int:
        return len(self.rows)

    def describe(self) -> dict:
        """What was held out, for the run log and the method's stats."""
        return {"validation": "last training item of a seeded share of training users",
                "fraction": self.fraction, "seed": self.seed, "cases": len(self)}


def carve_validation(train: TrainView, fraction: float, seed: int, max_cases: int | None = None) -> ValidationCarve:
    """Hold out the last item of ``fraction`` of the training users (those with >= 2 items).

    Deterministic per ``seed`` (numpy PCG64); ``max_cases`` caps the number of carved users
    (validation cost stays bounded on big data). ``fraction`` = 0 gives an empty carve-out and the
    unchanged view.
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction!r}")
    seqs = train.sequences
    lengths = seqs.lengths
    eligible = np.flatnonzero(lengths >= 2)
    n = int(round(float(fraction) * len(eligible)))
    if max_cases is not None:
        n = min(n, int(max_cases))
    rng = np.random.default_rng([int(seed), 0x7A11D])
    rows = np.sort(rng.permutation(eligible)[:n]).astype(np.int64)
    positions = seqs.offsets[rows + 1] - 1
    keep = np.ones(len(seqs.items), dtype=bool)
    keep[positions] = False
    new_len = lengths.copy()
    new_len[rows] -= 1
    fit_seqs = Sequences(
        users=seqs.users,
        offsets=np.r_[0, np.cumsum(new_len)].astype(np.int64),
        items=seqs.items[keep],
        day=seqs.day[keep],
        rating=seqs.rating[keep],
    )
    counts = np.bincount(fit_seqs.items, minlength=train.n_items).astype(np.int64)
    fit = TrainView(sequences=fit_seqs, items=train.items, item_train_count=counts)
    hist_len = lengths[rows] - 1
    offsets = np.r_[0, np.cumsum(hist_len)].astype(np.int64)
    flat = np.repeat(seqs.offsets[rows] - offsets[:-1], hist_len) + np.arange(offsets[-1], dtype=np.int64)
    histories = Histories(offsets=offsets, items=seqs.items[flat].astype(np.int32))
    return ValidationCarve(fit=fit, rows=rows, positions=positions.astype(np.int64), histories=histories,
                           targets=seqs.items[positions].astype(np.int32), fraction=float(fraction), seed=int(seed))
