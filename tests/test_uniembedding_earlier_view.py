"""UniEmbedding's earlier-part user view [proposal]: the behaviour encoder never reads a positive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

from benchmark.data.model import TrainView
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.uniembedding import UniEmbedding, UniEmbeddingEarlierView
from methods.uniembedding.batching import context_lengths, make_batch
from methods.uniembedding.model import (
    UniEmbeddingNet,
    batch_loss,
    batch_sets,
    item_inputs,
    training_sequences,
)

N_ITEMS, D_TEXT = 12, 6
TINY = {"dim": 8, "epochs": 2, "batch_size": 16, "n_domain_experts": 2, "n_shared_experts": 2,
        "encoder_ffn": 16, "projection_heads": 2, "max_len": 8, "chunk_tokens": 12, "modalities": ["text"]}
# user 0 re-reads item 1 in the later part, user 1 has item 2 in both parts; user 3 has 2 items (dropped)
HAND_SEQS = [[0, 1, 2, 3, 1, 4], [2, 5, 6, 2, 7], [8, 9, 3], [10, 11]]
DOMAIN = np.arange(N_ITEMS) % 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def cfg(**over) -> dict:
    return {**UniEmbeddingEarlierView.default_config(), **TINY, **over}


def hand_batch(fraction: float | None = 0.5):
    view = TrainView.from_sequences(HAND_SEQS, DOMAIN)
    padded = training_sequences(view, cfg() if fraction else {**cfg(), "user_view_input": "window"})
    return padded, make_batch(padded, np.arange(len(padded)), chunk_tokens=7, context_fraction=fraction)


def random_view(seed: int = 0) -> TrainView:
    rng = np.random.default_rng(seed)
    return TrainView.from_sequences([list(rng.choice(N_ITEMS, int(rng.integers(2, 9)))) for _ in range(40)], DOMAIN)


def test_context_is_the_first_half_leaving_an_anchor_and_a_positive():
    assert context_lengths(np.array([3, 4, 5, 10]), 0.5).tolist() == [1, 2, 2, 5]
    assert context_lengths(np.array([3, 6]), 0.9).tolist() == [1, 4]  # two items always stay for the later part
    assert context_lengths(np.array([5]), 0.1).tolist() == [1]  # the encoder always reads one item


def test_the_encoder_never_reads_a_positive_of_its_anchors():
    padded, batch = hand_batch()
    assert padded.length.tolist() == [6, 5, 3]  # the 2-item user has no later part to train on
    assert batch.context_length.tolist() == [3, 2, 1]
    pos, neg = batch_sets(batch, cfg(), torch.Generator()).dense()  # the sets batch_loss trains on
    cols = batch.columns.tolist()
    seqs = [list(padded.items[r, :padded.length[r]]) for r in range(len(padded))]
    expected_anchors = sum(len(s) - int(c) for s, c in zip(seqs, batch.context_length.tolist(), strict=True))
    assert len(batch.anchor_row) == expected_anchors
    for k in range(len(batch.anchor_row)):
        row = int(batch.anchor_row[k])
        anchor = cols[int(batch.anchor_col[k])]
        c = int(batch.context_length[row])
        read = set(seqs[row][:c])  # what the behaviour encoder reads for this row
        later = seqs[row][c:]
        positives = {cols[j] for j in torch.nonzero(pos[k]).flatten().tolist()}
        assert anchor in later
        assert not positives & read  # no positive is an encoder input
        assert positives == set(later) - read - {anchor}
        others = {i for r, s in enumerate(seqs) if r != row for i in s}
        assert {cols[j] for j in torch.nonzero(neg[k]).flatten().tolist()} == others - set(seqs[row])
    # user 0's later part [3, 1, 4]: item 1 was read (earlier part), so anchor 3 has only 4 as positive
    row0 = [cols[int(a)] for a in batch.anchor_col[batch.anchor_row == 0]]
    assert sorted(row0) == [1, 3, 4]


def test_whole_window_batches_are_the_papers():
    _, batch = hand_batch(fraction=None)
    assert torch.equal(batch.context_length, batch.length) and not batch.anchor_from.any()
    assert torch.equal(batch.positive_of, batch.column_of)
    assert len(batch.anchor_row) == int(batch.length.sum())


def test_no_gradient_reaches_the_item_ids_the_encoder_did_not_read():
    """T's item-ID embeddings e_i get gradient only through T's input: the positives' rows stay zero."""
    view = random_view()
    c = cfg()
    features = ItemFeatures(items=view.items, text=np.random.default_rng(0).normal(size=(N_ITEMS, D_TEXT)).astype(np.float32))
    torch.manual_seed(0)
    inputs = item_inputs(features, view.item_domain, c["modalities"], c["input_norm"])
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, N_ITEMS, 3, c)
    with torch.no_grad():  # P starts at zero; perturb it so the encoder sits on the gradient path
        for p in [*net.user_view.mixed_projection.parameters(), *net.user_view.domain_projections.parameters()]:
            p.normal_(std=0.05)
    padded = training_sequences(view, c)
    rows = np.arange(len(padded))[:6]  # a few users, so some items are only ever in a later part
    batch = make_batch(padded, rows, chunk_tokens=c["chunk_tokens"], context_fraction=c["context_fraction"])
    loss, n = batch_loss(net, inputs, batch, c, torch.Generator().manual_seed(0))
    assert n > 0
    loss.backward()
    read = {int(batch.items[r, p]) for r in range(len(rows)) for p in range(int(batch.context_length[r]))}
    positives = set(batch.columns[batch.positive_of[batch.positive_of >= 0]].tolist())
    grad = net.user_view.encoder.item_embedding.weight.grad.abs().sum(1)
    assert positives - read  # the check below is not vacuous
    assert all(grad[i] == 0 for i in positives - read)
    assert all(grad[i] > 0 for i in read)


def test_variant_fits_and_returns_normalised_adapter_embeddings():
    view = random_view(1)
    features = ItemFeatures(items=view.items, text=np.random.default_rng(1).normal(size=(N_ITEMS, D_TEXT)).astype(np.float32))
    method = UniEmbeddingEarlierView()
    method.fit(view, features, cfg(valid_fraction=0.2), RunContext(seed=0))
    emb = method.item_embeddings()
    assert emb.shape == (N_ITEMS, TINY["dim"]) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert method.stats["training"]["optimizer_steps"] > 0 and method.stats["training"]["examples_seen"] > 0


def test_variant_keys_stay_out_of_the_papers_configs_and_presets_are_uniembeddings():
    own = UniEmbeddingEarlierView.default_config()
    assert own["user_view_input"] == "earlier" and own["context_fraction"] == 0.5 and own["user_view"] is True
    for key in ("user_view_input", "context_fraction"):  # so the paper's variants keep their run keys
        assert key not in UniEmbedding.default_config()
    base, presets = UniEmbedding.scale_presets(), UniEmbeddingEarlierView.scale_presets()
    assert set(presets) == {"tiny", "small", "paper"}
    assert all(presets[s] == base.get(s, {}) for s in presets)


def test_variant_rejects_what_it_cannot_run():
    with pytest.raises(ConfigError, match="context_fraction"):
        UniEmbeddingEarlierView.check_config(cfg(context_fraction=1.0))
    with pytest.raises(ConfigError, match="user_view_input"):
        UniEmbedding.check_config({**cfg(), "user_view_input": "later"})
    with pytest.raises(ConfigError, match="eval_embedding: adapter"):
        UniEmbedding.check_config({**cfg(), "eval_embedding": "user_view"})


def test_variant_is_registered_by_entry_point():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["benchmark.methods"]["uniembedding-earlier-view"]
    assert entry == "methods.uniembedding:UniEmbeddingEarlierView"
    assert UniEmbeddingEarlierView.name == "uniembedding-earlier-view" and UniEmbeddingEarlierView.paper_column is None
