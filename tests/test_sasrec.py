"""SASRec, the next-item reference: learns planted transitions, deterministic, device checked."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.model import Histories, TrainView
from benchmark.errors import ConfigError
from benchmark.evaluation.metrics import HR
from benchmark.evaluation.next_item import next_item_ranks
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.sasrec import SASRec
from methods.shared.training import STOP_REASONS

N = 40


def cycle_data(seed: int = 0, users: int = 300):
    """Each sequence walks i -> i+1 (mod N) from a random start: the next item is fully predictable."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(users):
        start, length = rng.integers(N), rng.integers(4, 9)
        seqs.append([(start + t) % N for t in range(length)])
    return seqs


def fit(seed: int = 0, **over):
    cfg = {**SASRec.default_config(), "dim": 32, "epochs": 12, "patience": 3, "batch_size": 64, "dropout": 0.1,
           "lr": 5e-3, "valid_fraction": 0.1, **over}
    train = TrainView.from_sequences(cycle_data(), item_domain=[0] * N)
    model = SASRec()
    ctx = RunContext(seed=seed)
    ctx.seed_everything()
    with ctx.threads():
        model.fit(train, ItemFeatures(items=train.items), cfg, ctx)
    return model


def test_learns_planted_transitions_and_beats_popularity():
    model = fit()
    rng = np.random.default_rng(9)
    hist = [[(s + t) % N for t in range(4)] for s in rng.integers(0, N, 100)]
    target = np.array([(h[-1] + 1) % N for h in hist])
    users = model.user_embeddings(Histories.from_lists(hist))
    ranks = next_item_ranks(model.next_item_embeddings(), users, target, scoring="dot")
    hr10 = HR(10)(ranks).mean()
    assert hr10 > 0.9  # popularity is ~uniform here: HR@10 ~ 10/40
    assert model.item_embeddings().shape == (N, 32)
    t = model.stats["training"]  # examples = positions, every window once an epoch
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert t["optimizer_steps"] > 0 and t["stop_reason"] in STOP_REASONS and len(t["curve"]) == t["epochs"]
    assert t["epochs"] == model.stats["epochs"] and t["examples_seen"] == model.stats["positions"] * t["epochs"]


def test_deterministic_per_seed_and_cold_items_are_zero():
    a, b = fit(seed=1, epochs=2), fit(seed=1, epochs=2)
    assert np.array_equal(a.item_embeddings(), b.item_embeddings())
    assert not np.array_equal(a.item_embeddings(), fit(seed=2, epochs=2).item_embeddings())
    train = TrainView.from_sequences([[0, 1, 2, 0, 1], [1, 2, 0]] * 10, item_domain=[0] * 5)
    model = SASRec()
    ctx = RunContext(seed=0)
    with ctx.threads():
        model.fit(train, ItemFeatures(items=train.items), {**SASRec.default_config(), "epochs": 1, "dim": 8,
                                                            "n_heads": 2}, ctx)
    assert np.all(model.item_embeddings()[3:] == 0)  # items 3, 4 never trained


def test_cuda_on_a_machine_without_it_is_a_config_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA"):
        fit(device="cuda", epochs=1)
