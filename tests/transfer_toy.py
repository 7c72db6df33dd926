"""A toy mixed-domain training view for the transfer tests: Books and Electronics (sources), Cell (target)."""

from __future__ import annotations

import numpy as np

from benchmark.data.model import Items, TrainView


def toy_view(n_users: int = 40, n_target: int = 4, seed: int = 1, max_target_len: int = 3) -> TrainView:
    """Items 0-7 Books, 8-11 Electronics, then ``n_target`` Cell items; each user 2-4 source items, then
    2..``max_target_len`` target items."""
    domain = [0] * 8 + [1] * 4 + [2] * n_target
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        src = rng.integers(0, 12, size=int(rng.integers(2, 5))).tolist()
        tgt = rng.integers(12, 12 + n_target, size=int(rng.integers(2, max_target_len + 1))).tolist()
        seqs.append(src + tgt)
    items = Items(domains=("Books", "Electronics", "Cell"),
                  source_id=np.array([f"i{k}" for k in range(len(domain))], dtype=object),
                  domain=np.array(domain, dtype=np.int16))
    return TrainView.from_sequences(seqs, domain, items=items)
