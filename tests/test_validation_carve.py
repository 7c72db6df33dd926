"""The one validation carve-out: training users only, deterministic, consistent views."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.model import TrainView
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError


def view() -> TrainView:
    seqs = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9], [1, 3], [2, 2, 4]] * 5
    return TrainView.from_sequences(seqs, item_domain=[0, 0, 1, 1, 2, 2, 0, 1, 2, 0])


def test_last_training_item_of_a_share_of_users_is_held_out():
    train = view()
    carve = carve_validation(train, 0.5, seed=3)
    eligible = np.flatnonzero(train.sequences.lengths >= 2)
    assert len(carve) == round(0.5 * len(eligible)) and set(carve.rows) <= set(eligible)
    for v, row in enumerate(carve.rows):
        full = train.sequences.sequence(row)
        assert carve.targets[v] == full[-1]
        assert carve.histories.history(v).tolist() == full[:-1].tolist()
        assert carve.fit.sequences.sequence(row).tolist() == full[:-1].tolist()
    untouched = np.setdiff1d(np.arange(len(train.sequences)), carve.rows)
    for row in untouched:
        assert carve.fit.sequences.sequence(row).tolist() == train.sequences.sequence(row).tolist()
    assert carve.fit.item_train_count.sum() == train.item_train_count.sum() - len(carve)
    assert np.array_equal(carve.fit.sequences.users, train.sequences.users)


def test_deterministic_per_seed_and_capped():
    train = view()
    a, b = carve_validation(train, 0.3, seed=1), carve_validation(train, 0.3, seed=1)
    assert np.array_equal(a.rows, b.rows)
    assert not np.array_equal(a.rows, carve_validation(train, 0.3, seed=2).rows)
    assert len(carve_validation(train, 0.9, seed=1, max_cases=4)) == 4
    assert len(carve_validation(train, 0.0, seed=1)) == 0
    with pytest.raises(ConfigError, match="fraction"):
        carve_validation(train, 1.0, seed=1)


def test_never_touches_test_users(tiny_suite_run):
    run, _, _ = tiny_suite_run
    carve = carve_validation(run.inputs.train, 0.2, seed=0)
    carved_users = set(run.inputs.train.sequences.users[carve.rows].tolist())
    unseen = set(run.inputs.split.cases.user[~run.inputs.split.cases.overlapped].tolist())
    assert carved_users and not carved_users & unseen
