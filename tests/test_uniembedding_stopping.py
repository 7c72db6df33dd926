"""UniEmbedding's early stopping [proposal]: item-to-item validation on the carve-out, patience, best epoch kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from uniemb_tiny import N_ITEMS, fit, tiny_cfg, tiny_features, tiny_view  # tests/uniemb_tiny.py

import methods.uniembedding.model as model
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError
from benchmark.plugin import RunContext
from methods.uniembedding import UniEmbedding
from methods.uniembedding.model import (
    UniEmbeddingNet,
    item_inputs,
    training_sequences,
    validation_cases,
    validation_score,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def scripted_validation(monkeypatch, scores):
    """Replace the validation score by ``scores`` in turn; returns the embeddings seen at each call."""
    seen = []

    def fake(net, inputs, padded, cfg, queries, targets):
        assert len(queries) == len(targets) > 0
        seen.append(model.evaluation_embeddings(net, inputs, padded, cfg))
        return scores[len(seen) - 1]

    monkeypatch.setattr(model, "validation_score", fake)
    return seen


@pytest.mark.parametrize("eval_embedding", ["adapter", "user_view"])
def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch(monkeypatch, eval_embedding):
    view = tiny_view()
    seen = scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.25, 0.29, 0.9, 0.9])
    method = fit(UniEmbedding, view, tiny_features(view), epochs=7, patience=3, valid_fraction=0.2,
                 eval_embedding=eval_embedding)
    t = method.stats["training"]
    assert len(seen) == 5  # epochs 3, 4, 5 brought no gain over epoch 2: stop after epoch 5
    assert (t["epochs"], t["best_epoch"], t["stop_reason"]) == (5, 1, "converged")
    assert [v for _, v in t["curve"]] == [0.1, 0.3, 0.2, 0.25, 0.29]
    np.testing.assert_array_equal(method.item_embeddings(), seen[1])
    assert not np.array_equal(seen[1], seen[4])
    assert method.stats["cases"] == round(0.2 * int((view.sequences.lengths >= 2).sum())) > 0


def test_early_stopping_with_gains_runs_to_the_cap_and_says_max_epochs(monkeypatch):
    view = tiny_view()
    seen = scripted_validation(monkeypatch, [0.1, 0.2, 0.3, 0.4])
    method = fit(UniEmbedding, view, tiny_features(view), epochs=4, patience=2, valid_fraction=0.2)
    t = method.stats["training"]
    assert (len(seen), t["epochs"], t["best_epoch"], t["stop_reason"]) == (4, 4, 3, "max_epochs")
    np.testing.assert_array_equal(method.item_embeddings(), seen[3])


def test_validation_every_k_epochs_and_after_the_last(monkeypatch):
    view = tiny_view()
    logged = []
    seen = scripted_validation(monkeypatch, [0.5, 0.4, 0.3])
    method = UniEmbedding()
    ctx = RunContext(seed=0, log_metric=lambda name, value, step=None: logged.append((name, step)))
    method.fit(view, tiny_features(view), tiny_cfg(epochs=5, patience=5, valid_every=2), ctx)
    assert [s for name, s in logged if name == "uniembedding_valid_ndcg10"] == [1, 3, 4]
    assert len(seen) == 3 and method.stats["training"]["best_epoch"] == 1  # 0-based: the first validation
    np.testing.assert_array_equal(method.item_embeddings(), seen[0])


def test_training_uses_the_carve_fit_view_and_validates_item_to_item():
    view = tiny_view()
    carve = carve_validation(view, 0.2, 0)
    queries, targets = validation_cases(carve)
    seqs = view.sequences
    for k, row in enumerate(carve.rows):
        items = seqs.items[seqs.offsets[row] : seqs.offsets[row + 1]]
        assert (int(queries[k]), int(targets[k])) == (items[-2], items[-1])
    cfg = tiny_cfg()
    full, fit_view = training_sequences(view, cfg), training_sequences(carve.fit, cfg)
    assert full.n_tokens - fit_view.n_tokens == len(carve)  # only the held-out last items are gone


def test_real_validation_score_is_an_ndcg_of_the_evaluation_embeddings():
    view = tiny_view()
    features = tiny_features(view)
    cfg = tiny_cfg()
    torch.manual_seed(0)
    inputs = item_inputs(features, view.item_domain, cfg["modalities"], cfg["input_norm"])
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, N_ITEMS, 3, cfg)
    queries, targets = validation_cases(carve_validation(view, 0.5, 0))
    score = validation_score(net, inputs, training_sequences(view, cfg), cfg, queries, targets)
    assert 0.0 <= score <= 1.0
    same = validation_score(net, inputs, training_sequences(view, cfg), cfg, targets, targets)
    assert same == 1.0  # query = target: the item itself ranks first


def test_invalid_early_stopping_config_is_rejected():
    for key, value in (("patience", 0), ("valid_fraction", 1.0), ("valid_every", 0), ("valid_max_cases", 0)):
        with pytest.raises(ConfigError, match=key):
            UniEmbedding.check_config({**tiny_cfg(), key: value})
    cfg = tiny_cfg()
    del cfg["patience"]
    with pytest.raises(ConfigError, match="patience"):
        UniEmbedding.check_config(cfg)
