"""The throughput bench's gensim accounting: (centre, context) pairs of skip-gram windows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_methods_throughput as throughput  # noqa: E402


def test_sgns_pair_counts_whole_set_and_shrinking_windows() -> None:
    # whole-set window: every ordered pair of a set
    assert throughput.sgns_pairs(np.array([2, 4, 50]), 50, shrink=False) == 2 + 12 + 50 * 49
    # window 1 on a 4-word sentence: 3 adjacent pairs, both directions
    assert throughput.sgns_pairs(np.array([4]), 1, shrink=False) == 6
    # shrinking window 2: half the centres use 1 (6 pairs), half 2 (6 + 4 pairs)
    assert throughput.sgns_pairs(np.array([4]), 2, shrink=True) == (6 + 10) / 2


def test_gensim_rate_counts_what_gensim_trained() -> None:
    sets = [[str(i), str(i + 1), str(i + 2)] for i in range(200)]
    rate = throughput.gensim_rate("t", sets, window=5, negative=3, shrink=False, workers=1, sample=0.0, dim=8)
    assert rate.words == 600 and rate.pairs == 200 * 6 and rate.updates == 200 * 6 * 4
    assert rate.seconds > 0 and "t" in rate.line()
