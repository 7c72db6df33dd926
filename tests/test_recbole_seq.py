"""GRU4Rec and NextItNet (RecBole 1.2.1 models trained on a TrainView): the recorded training budget."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.recbole_seq import GRU4Rec, NextItNet
from methods.shared.training import STOP_REASONS


@pytest.mark.parametrize("cls", [GRU4Rec, NextItNet])
def test_fit_records_its_training_budget_in_prefix_examples(cls) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 12, size=rng.integers(3, 7)).tolist() for _ in range(40)]
    train = TrainView.from_sequences(seqs, item_domain=[0] * 12)
    model = cls()
    cfg = {**cls.default_config(), "dim": 8, "epochs": 2, "batch_size": 16, "valid_fraction": 0.2}
    model.fit(train, ItemFeatures(items=train.items), cfg, RunContext(seed=0))
    t = model.stats["training"]
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert t["optimizer_steps"] > 0 and t["stop_reason"] in STOP_REASONS and len(t["curve"]) == t["epochs"] == 2
    assert t["examples_seen"] == 2 * model.stats["examples"]  # every prefix example once an epoch
    assert t["optimizer_steps"] == 2 * -(-model.stats["examples"] // 16)
