"""UniEmbedding's fast kernels (issue 25) compute what the reference kernels compute.

The default training path packs the behaviour encoder's tokens, builds each domain's Eqn 3
blocks in one call (``PairProjection``) and reads the positives' scores from the loss's score
matrix (``ScoredSets``); ``reference`` keeps the straightforward code. Sums run in another
order, so values agree to float rounding, not bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.shared.kernels import unfilled_new_tensors
from methods.uniembedding import UniEmbedding, UniEmbeddingEarlierView
from methods.uniembedding.batching import make_batch
from methods.uniembedding.loss import MaskedLogSumExp, ScoredSets, multi_domain_contrastive_loss
from methods.uniembedding.model import (
    UniEmbeddingNet,
    batch_sets,
    context_fraction,
    item_inputs,
    training_sequences,
)
from methods.uniembedding.user_view import PairProjection, pack_tokens

N_ITEMS, D_TEXT, D_IMAGE = 60, 12, 8
SMALL = {"dim": 8, "batch_size": 64, "n_domain_experts": 2, "n_shared_experts": 2, "encoder_ffn": 16,
         "projection_heads": 2, "max_len": 10, "chunk_tokens": 12, "epochs": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def random_view(seed: int = 0, users: int = 60) -> TrainView:
    """Users of 1-12 items over 3 domains (item index mod 3): long rows make one-row chunks."""
    rng = np.random.default_rng(seed)
    return TrainView.from_sequences([list(rng.choice(N_ITEMS, int(rng.integers(1, 13)))) for _ in range(users)],
                                    np.arange(N_ITEMS) % 3)


def features(view: TrainView) -> ItemFeatures:
    rng = np.random.default_rng(1)
    return ItemFeatures(items=view.items, text=rng.normal(size=(N_ITEMS, D_TEXT)).astype(np.float32),
                        image=rng.normal(size=(N_ITEMS, D_IMAGE)).astype(np.float32),
                        image_mask=np.arange(N_ITEMS) % 4 != 0)


def trained_looking_net(cls: type[UniEmbedding], view: TrainView, **over):
    """A net whose projections are non-zero (P starts at 0) and one batch of every training row."""
    cfg = {**cls.default_config(), **SMALL, **over}
    torch.manual_seed(0)
    inputs = item_inputs(features(view), view.item_domain, cfg["modalities"], cfg["input_norm"])
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, view.n_items, 3, cfg)
    with torch.no_grad():
        for p in net.user_view.parameters():
            p.add_(torch.randn(p.shape) * 0.1)
    padded = training_sequences(view, cfg)
    batch = make_batch(padded, np.arange(len(padded)), int(cfg["chunk_tokens"]), context_fraction(cfg))
    return net, inputs, batch, cfg


def anchors_and_grads(net: UniEmbeddingNet, batch, adapted: torch.Tensor, reference: bool):
    net.reference = reference
    anchors = net.anchor_embeddings(batch, adapted)
    weights = torch.randn(anchors.shape, generator=torch.Generator().manual_seed(3))
    params = [p for p in net.user_view.parameters()]
    return anchors, torch.autograd.grad((anchors * weights).sum(), [*params, adapted], allow_unused=True)


@pytest.mark.parametrize("cls, over", [
    (UniEmbedding, {}),
    (UniEmbedding, {"projection_input": "full", "projection_heads": 4}),
    (UniEmbeddingEarlierView, {}),  # the encoder reads a prefix; anchors are the later part only
])
def test_fast_user_view_equals_the_reference_chunk_by_chunk(cls, over):
    view = random_view()
    net, inputs, batch, _ = trained_looking_net(cls, view, **over)
    assert net.user_view.encoder.packs
    assert any(len(chunk) == 1 for chunk in batch.chunks)  # the one-row chunk is covered
    adapted = net.adapted(inputs, batch.columns).detach().requires_grad_()
    ref, ref_grads = anchors_and_grads(net, batch, adapted, reference=True)
    fast, fast_grads = anchors_and_grads(net, batch, adapted, reference=False)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(fast_grads, ref_grads, strict=True):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_packed_encoder_reads_only_each_rows_context():
    view = random_view(2)
    net, _, batch, _ = trained_looking_net(UniEmbeddingEarlierView, view)
    packed = pack_tokens(batch.items, batch.domain, batch.context_length, batch.chunks)
    assert len(packed.items) == int(batch.context_length.sum())
    rows = packed.rows
    assert torch.equal(packed.items[packed.last], batch.items[rows, batch.context_length[rows] - 1])
    encoder = net.user_view.encoder.train()
    want = torch.cat([encoder(batch.items[c, :int(batch.length[c].max())], batch.domain[c, :int(batch.length[c].max())],
                              batch.context_length[c]) for c in batch.chunks])
    torch.testing.assert_close(encoder.pooled_packed(packed), want, rtol=1e-5, atol=1e-6)


def test_encoder_with_dropout_keeps_the_reference_path():
    """A dropout draw per padded token cannot be replayed without the padding: no packing then."""
    view = random_view()
    net, inputs, batch, _ = trained_looking_net(UniEmbedding, view, encoder_dropout=0.1)
    assert not net.user_view.encoder.packs
    adapted = net.adapted(inputs, batch.columns).detach()
    torch.manual_seed(5)
    fast = net.anchor_embeddings(batch, adapted)
    net.reference = True
    torch.manual_seed(5)
    assert torch.equal(net.anchor_embeddings(batch, adapted), fast)


@pytest.mark.parametrize("form", ["as_written", "infonce"])
@pytest.mark.parametrize("max_positives", [None, 2])
def test_scored_sets_loss_equals_row_products(form, max_positives):
    view = random_view(1, users=80)
    net, inputs, batch, cfg = trained_looking_net(UniEmbedding, view, max_positives=max_positives)
    sets = batch_sets(batch, cfg, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(4)
    anchors = F.normalize(torch.randn(len(batch.anchor_row), 8, generator=gen), dim=1).requires_grad_()
    items = F.normalize(torch.randn(len(batch.columns), 8, generator=gen), dim=1).requires_grad_()
    out = {}
    for reference in (True, False):
        loss, n = multi_domain_contrastive_loss(anchors, items, sets, 0.07, form, block=16, reference=reference)
        out[reference] = (loss, n, torch.autograd.grad(loss, [anchors, items]))
    assert out[True][1] == out[False][1] > 0
    torch.testing.assert_close(out[False][0], out[True][0], rtol=1e-5, atol=1e-4)
    for got, want in zip(out[False][2], out[True][2], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_scored_sets_gradients_and_values():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(7, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen, dtype=torch.float64)
    excluded = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.bool)
    owner = torch.tensor([0, 0, 1, 1, 0, 1, 1])
    pos_anchor, pos_col = torch.tensor([0, 0, 2, 4, 5, 6]), torch.tensor([1, 0, 3, 1, 2, 3])  # owners' items
    lse, s_pos = ScoredSets.apply(q, k, excluded, owner, pos_anchor, pos_col, 3)
    torch.testing.assert_close(lse, MaskedLogSumExp.apply(q, k, excluded, owner, 3))
    torch.testing.assert_close(s_pos, (q[pos_anchor] * k[pos_col]).sum(1))
    torch.autograd.gradcheck(lambda a, b: ScoredSets.apply(a, b, excluded, owner, pos_anchor, pos_col, 3),
                             (q.requires_grad_(), k.requires_grad_()))


def test_pair_projection_gradients():
    gen = torch.Generator().manual_seed(0)
    heads, n, dh, d = 2, 5, 2, 4

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    inputs, weight, bias, positions = rand(heads, n, dh), rand(heads, dh, dh * d), rand(heads, 1, dh * d), rand(11, d)
    layout = [(0, 2, 3, 0, 6), (2, 3, 1, 6, 7), (3, 5, 2, 7, 11)]  # (pairs, width, positions) per part
    torch.autograd.gradcheck(lambda *t: PairProjection.apply(*t, layout), (inputs, weight, bias, positions))
    out = PairProjection.apply(inputs, weight, bias, positions, layout)
    blocks = torch.baddbmm(bias, inputs, weight).view(heads, n, dh, d)
    pair = 3  # the first pair of the last part: its width-2 positions are rows 7 and 8
    m = torch.cat([blocks[h, pair] for h in range(heads)])  # [d, d], head h's rows first
    torch.testing.assert_close(out[7:9], positions[7:9] @ m.T)


def test_reference_and_fast_fits_agree_and_restore_the_fill_setting():
    view = random_view(3)
    before = torch.utils.deterministic.fill_uninitialized_memory
    emb = {}
    for reference in (True, False):
        method = UniEmbedding()
        method.reference_path = reference
        method.fit(view, features(view), {**UniEmbedding.default_config(), **SMALL}, RunContext(seed=0))
        emb[reference] = method.item_embeddings()
        assert torch.utils.deterministic.fill_uninitialized_memory == before
    np.testing.assert_allclose(emb[False], emb[True], atol=1e-5)


def test_unfilled_new_tensors_restores_the_callers_setting():
    before = torch.utils.deterministic.fill_uninitialized_memory
    try:
        torch.utils.deterministic.fill_uninitialized_memory = True
        with pytest.raises(KeyError), unfilled_new_tensors():
            assert torch.utils.deterministic.fill_uninitialized_memory is False
            raise KeyError("boom")
        assert torch.utils.deterministic.fill_uninitialized_memory is True
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = before
