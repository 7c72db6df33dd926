"""UniEmbedding mechanics (methods.md section 2; paper Eqns 1-4) on tiny hand-made data."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from uniemb_tiny import (  # tests/uniemb_tiny.py
    D_IMAGE,
    D_TEXT,
    N_ITEMS,
    TINY,
    fit,
    tiny_cfg,
    tiny_features,
    tiny_view,
)

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.uniembedding import (
    UniEmbedding,
    UniEmbeddingText,
    UniEmbeddingWithoutCrossDomain,
    UniEmbeddingWithoutUserView,
)
from methods.uniembedding.adapter import DomainAwareAdapter, MultiModalAdapter
from methods.uniembedding.batching import epoch_batches, make_batch, pad_sequences
from methods.uniembedding.loss import (
    ContrastiveSets,
    MaskedLogSumExp,
    contrastive_masks,
    contrastive_sets,
    multi_domain_contrastive_loss,
    sample_positives,
)
from methods.uniembedding.model import (
    UniEmbeddingNet,
    batch_loss,
    item_inputs,
    training_sequences,
)
from methods.uniembedding.user_view import UserViewProjection

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# --- Eqn 1: domain-aware adapter ------------------------------------------------------------------

def test_gate_weights_sum_to_one_and_depend_on_the_items_domain():
    torch.manual_seed(0)
    adapter = DomainAwareAdapter(D_TEXT, 8, n_domains=3, n_domain_experts=2, n_shared_experts=3)
    x = torch.randn(1, D_TEXT).repeat(3, 1)  # the same content in each of the three domains
    gates = adapter.gate_weights(x, torch.tensor([0, 1, 2]))
    assert gates.shape == (3, 5)
    torch.testing.assert_close(gates.sum(1), torch.ones(3))
    assert not torch.allclose(gates[0], gates[1]) and not torch.allclose(gates[1], gates[2])


def test_adapter_is_the_gate_weighted_sum_of_domain_and_shared_experts():
    torch.manual_seed(0)
    adapter = DomainAwareAdapter(D_TEXT, 8, n_domains=2, n_domain_experts=2, n_shared_experts=2)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
    x, dom = torch.randn(5, D_TEXT), torch.tensor([0, 1, 1, 0, 1])
    out = adapter(x, dom)
    for i in range(5):
        j = int(dom[i])
        bank_j, shared = adapter.domain_experts[j], adapter.shared_experts
        experts = [bank_j.weight[k].T @ (x[i] - bank_j.bias[k]) for k in range(2)]
        experts += [shared.weight[k].T @ (x[i] - shared.bias[k]) for k in range(2)]
        gate = torch.softmax(adapter.gates[j](x[i]), dim=0)
        torch.testing.assert_close(out[i], sum(g * e for g, e in zip(gate, experts, strict=True)),
                                   rtol=1e-4, atol=1e-4)


def test_modalities_are_averaged_over_the_ones_an_item_has():
    torch.manual_seed(0)
    mm = MultiModalAdapter({"text": D_TEXT, "image": D_IMAGE}, 8, n_domains=3, n_domain_experts=2,
                           n_shared_experts=2)
    text, image, dom = torch.randn(4, D_TEXT), torch.randn(4, D_IMAGE), torch.tensor([0, 1, 2, 0])
    has_image = torch.tensor([True, False, True, False])
    out = mm({"text": text, "image": image}, {"text": None, "image": has_image}, dom)
    t = torch.nn.functional.normalize(mm.adapters["text"](text, dom), dim=-1)
    v = torch.nn.functional.normalize(mm.adapters["image"](image, dom), dim=-1)
    both = torch.nn.functional.normalize((t + v) / 2, dim=-1)
    torch.testing.assert_close(out[has_image], both[has_image])
    torch.testing.assert_close(out[~has_image], t[~has_image])


def test_missing_images_use_text_only_outside_a_joint_space_and_text_inside_one():
    view = tiny_view()
    separate = item_inputs(tiny_features(view), view.item_domain, ["text", "image"], "none")
    assert separate.masks["image"] is not None and not bool(separate.masks["image"][0])
    joint_features = tiny_features(view, joint=True)
    joint = item_inputs(joint_features, view.item_domain, ["text", "image"], "none")
    assert joint.masks["image"] is None
    torch.testing.assert_close(joint.vectors["image"][0], torch.tensor(joint_features.text[0]))
    torch.testing.assert_close(joint.vectors["image"][1], torch.tensor(joint_features.image[1]))


# --- Eqns 2-3: user view ----------------------------------------------------------------------------

def test_zero_initialised_projections_give_the_adapted_embedding():
    torch.manual_seed(0)
    uv = UserViewProjection(N_ITEMS, 3, 8, max_len=6, ffn=16, projection_heads=2)
    items = torch.tensor([[1, 5, 7, -1], [2, 3, 9, 4]])
    dom = torch.where(items >= 0, items % 3, -1)
    adapted = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
    out = uv(items, dom, torch.tensor([3, 4]), adapted)
    assert torch.equal(out[items >= 0], adapted[items >= 0])


def test_user_view_is_M_mixed_plus_M_domain_times_E_plus_E():
    torch.manual_seed(0)
    uv = UserViewProjection(N_ITEMS, 3, 8, max_len=6, ffn=16, projection_heads=2).eval()
    with torch.no_grad():
        for p in [*uv.mixed_projection.parameters(), *uv.domain_projections.parameters()]:
            p.normal_(std=0.1)
    items = torch.tensor([[1, 5, 7], [2, 3, -1]])
    dom = torch.where(items >= 0, items % 3, -1)
    length = torch.tensor([3, 2])
    adapted = torch.randn(2, 3, 8)
    out = uv(items, dom, length, adapted)
    pooled = uv.encoder(items, dom, length)
    for b in range(2):
        for t in range(int(length[b])):
            j = int(dom[b, t])
            m = uv.mixed_projection(pooled[b:b + 1])[0] + uv.domain_projections[j](pooled[b:b + 1])[0]
            torch.testing.assert_close(out[b, t], m @ adapted[b, t] + adapted[b, t], rtol=1e-4, atol=1e-5)


def test_multi_head_projection_head_h_writes_row_block_h_from_slice_h():
    uv = UserViewProjection(N_ITEMS, 3, 8, max_len=6, ffn=16, projection_heads=2)
    proj = uv.mixed_projection
    with torch.no_grad():
        proj.weight.normal_()
    pooled = torch.zeros(1, 8)
    pooled[0, :4] = torch.randn(4)  # only head 0's slice is non-zero
    m = proj(pooled)[0]
    assert m[:4].abs().sum() > 0 and torch.equal(m[4:], torch.zeros(4, 8))


# --- batching and Eqn 4 masks -------------------------------------------------------------------------

HAND_SEQS = [[0, 1, 2, 1], [2, 3], [4, 5, 0], [6, 7]]  # 2 in users 0 and 1, 0 in users 0 and 2; 1 twice


def hand_batch():
    view = TrainView.from_sequences(HAND_SEQS, [0, 1, 0, 1, 2, 2, 0, 1])
    padded = pad_sequences(view.sequences, view.item_domain, max_len=5)
    return make_batch(padded, np.arange(len(padded)), chunk_tokens=6)


def test_positives_are_the_same_users_items_and_negatives_other_users_items():
    batch = hand_batch()
    pos, neg = contrastive_masks(batch.anchor_row, batch.anchor_col, batch.column_of, batch.owner,
                                 len(batch.columns))
    cols = batch.columns.tolist()
    for k in range(len(batch.anchor_row)):
        row = int(batch.anchor_row[k])
        anchor = cols[int(batch.anchor_col[k])]
        own = set(HAND_SEQS[row])
        others = {i for r, s in enumerate(HAND_SEQS) if r != row for i in s}
        assert {cols[c] for c in torch.nonzero(pos[k]).flatten().tolist()} == own - {anchor}
        # same-item rule: an item of the anchor's own user is never a negative, even if others have it
        assert {cols[c] for c in torch.nonzero(neg[k]).flatten().tolist()} == others - own


def test_shared_item_is_positive_for_its_users_and_never_their_negative():
    batch = hand_batch()
    pos, neg = contrastive_masks(batch.anchor_row, batch.anchor_col, batch.column_of, batch.owner,
                                 len(batch.columns))
    col2 = batch.columns.tolist().index(2)
    user1_item3 = int(torch.nonzero((batch.anchor_row == 1) & (batch.columns[batch.anchor_col] == 3))[0])
    user2_item4 = int(torch.nonzero((batch.anchor_row == 2) & (batch.columns[batch.anchor_col] == 4))[0])
    assert pos[user1_item3, col2] and not neg[user1_item3, col2]
    assert neg[user2_item4, col2] and not pos[user2_item4, col2]


def test_rows_of_one_user_never_give_each_other_negatives():
    view = TrainView.from_sequences([[0, 2, 1, 3], [4, 5]], [0, 0, 1, 1, 0, 1])
    padded = pad_sequences(view.single_domain_sequences(), view.item_domain, max_len=5)
    assert len(padded) == 2 and padded.owner.tolist() == [0, 0]  # user 1's rows have one item each
    batch = make_batch(padded, np.arange(2))
    pos, neg = contrastive_masks(batch.anchor_row, batch.anchor_col, batch.column_of, batch.owner,
                                 len(batch.columns))
    assert not neg.any()  # only user 0 is left: no item of another user
    assert pos.sum(1).tolist() == [1, 1, 1, 1]


def test_padding_keeps_the_last_L_items_and_drops_single_item_rows():
    view = TrainView.from_sequences([[0, 1, 2, 3, 4, 5, 6], [7], [8, 9]], [0] * 10)
    padded = pad_sequences(view.sequences, view.item_domain, max_len=4)
    assert padded.items.tolist() == [[3, 4, 5, 6], [8, 9, -1, -1]]
    assert padded.length.tolist() == [4, 2]


def test_epoch_batches_partition_the_rows():
    batches = epoch_batches(11, 5, torch.Generator().manual_seed(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(11))
    assert [len(b) for b in batches] == [5, 6]  # a lone last row joins the previous batch


def hand_loss(batch, anchors, items, tau, form):
    """Eqn 4 with explicit loops over anchors, positives and negatives."""
    cols = batch.columns.tolist()
    total = 0.0
    for k in range(len(batch.anchor_row)):
        row, anchor = int(batch.anchor_row[k]), cols[int(batch.anchor_col[k])]
        own = set(HAND_SEQS[row])
        positives = sorted(own - {anchor})
        negatives = sorted({i for r, s in enumerate(HAND_SEQS) if r != row for i in s} - own)

        def score(item, k=k):
            return float(anchors[k] @ items[cols.index(item)]) / tau

        denominator = sum(math.exp(score(n)) for n in negatives)
        term = 0.0
        for p in positives:
            if form == "infonce":
                term += -math.log(math.exp(score(p)) / (math.exp(score(p)) + denominator))
            else:
                term += -math.log(math.exp(score(p)) / denominator)
        total += term / len(positives)
    return total


@pytest.mark.parametrize("form", ["as_written", "infonce"])
def test_loss_equals_a_hand_computation(form):
    batch = hand_batch()
    g = torch.Generator().manual_seed(1)
    anchors = torch.randn(len(batch.anchor_row), 4, generator=g, dtype=torch.float64) * 0.3
    items = torch.randn(len(batch.columns), 4, generator=g, dtype=torch.float64) * 0.3
    sets = contrastive_sets(batch.anchor_row, batch.anchor_col, batch.column_of, batch.owner, len(batch.columns))
    loss, n = multi_domain_contrastive_loss(anchors, items, sets, tau=0.5, form=form, block=3)
    assert n == len(batch.anchor_row) == 11
    assert float(loss) == pytest.approx(hand_loss(batch, anchors, items, 0.5, form), rel=1e-9)


def test_anchors_without_a_positive_or_a_negative_are_skipped():
    # anchor 0: positive col 1, negatives {2}; anchor 1: no positive; anchor 2: no negative
    sets = ContrastiveSets(pos_anchor=torch.tensor([0, 2]), pos_col=torch.tensor([1, 0]),
                           anchor_owner=torch.tensor([0, 0, 1]),
                           owner_items=torch.tensor([[True, True, False], [True, True, True]]))
    anchors, items = torch.randn(3, 3), torch.randn(3, 3)
    loss, n = multi_domain_contrastive_loss(anchors, items, sets, tau=0.1)
    assert n == 1
    s = anchors[0] @ items.T / 0.1
    assert float(loss) == pytest.approx(float(s[2] - s[1]), rel=1e-5)


def test_masked_logsumexp_matches_autograd_and_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    excluded = torch.tensor([[True, False, False, True, False], [False, True, True, True, False]])
    owner = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    torch.autograd.gradcheck(lambda a, b: MaskedLogSumExp.apply(a, b, excluded, owner, 3), (q, k))
    reference = (q @ k.T).masked_fill(excluded[owner], float("-inf")).logsumexp(1)
    torch.testing.assert_close(MaskedLogSumExp.apply(q, k, excluded, owner, 2), reference)


def test_sample_positives_keeps_at_most_k_of_each_anchors_positives():
    pos = torch.rand(50, 30, generator=torch.Generator().manual_seed(0)) < 0.5
    a, c = torch.nonzero(pos, as_tuple=True)
    sets = ContrastiveSets(a, c, torch.zeros(50, dtype=torch.long), torch.zeros(1, 30, dtype=torch.bool))
    kept, _ = sample_positives(sets, 3, torch.Generator().manual_seed(1)).dense()
    assert (kept & ~pos).sum() == 0
    assert torch.equal(kept.sum(1), pos.sum(1).clamp(max=3))


# --- gradients, ablations and the trained model -----------------------------------------------------

def test_gradients_reach_experts_gates_id_embeddings_and_transformer():
    view, features = tiny_view(), tiny_features(tiny_view())
    cfg = tiny_cfg()
    torch.manual_seed(0)
    inputs = item_inputs(features, view.item_domain, cfg["modalities"], cfg["input_norm"])
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, N_ITEMS, 3, cfg)
    with torch.no_grad():  # P starts at zero; perturb it so the encoder sits on the gradient path
        for p in [*net.user_view.mixed_projection.parameters(), *net.user_view.domain_projections.parameters()]:
            p.normal_(std=0.05)
    padded = training_sequences(view, cfg)
    batch = make_batch(padded, np.arange(len(padded)), chunk_tokens=cfg["chunk_tokens"])
    loss, n = batch_loss(net, inputs, batch, cfg, torch.Generator().manual_seed(0))
    assert n > 0
    loss.backward()
    text = net.adapter.adapters["text"]
    encoder = net.user_view.encoder
    for name, param in [("domain expert W", text.domain_experts[0].weight),
                        ("domain expert b", text.domain_experts[1].bias),
                        ("shared expert W", text.shared_experts.weight),
                        ("gate", text.gates[2].weight),
                        ("image expert", net.adapter.adapters["image"].shared_experts.weight),
                        ("item-ID embedding", encoder.item_embedding.weight),
                        ("domain embedding", encoder.domain_embedding.weight),
                        ("position embedding", encoder.position_embedding.weight),
                        ("transformer", encoder.encoder.layers[0].self_attn.in_proj_weight),
                        ("projection P_M", net.user_view.mixed_projection.weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_chunking_does_not_change_the_user_view_anchors():
    view, features = tiny_view(), tiny_features(tiny_view())
    cfg = tiny_cfg(encoder_dropout=0.0)
    torch.manual_seed(0)
    inputs = item_inputs(features, view.item_domain, cfg["modalities"], cfg["input_norm"])
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, N_ITEMS, 3, cfg).eval()
    with torch.no_grad():
        net.user_view.mixed_projection.weight.normal_(std=0.05)
    padded = training_sequences(view, cfg)
    rows = np.arange(len(padded))
    out = {}
    for chunk in (1, 13, 10000):
        batch = make_batch(padded, rows, chunk_tokens=chunk)
        anchors = net.anchor_embeddings(batch, net.adapted(inputs, batch.columns))
        key = batch.anchor_row * 100 + batch.anchor_col
        out[chunk] = anchors[torch.argsort(key)].detach()
    torch.testing.assert_close(out[1], out[13], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1], out[10000], rtol=1e-4, atol=1e-5)


def test_anchor_embeddings_follow_the_batch_anchor_order():
    view, features = tiny_view(), tiny_features(tiny_view())
    cfg = tiny_cfg()
    torch.manual_seed(0)
    inputs = item_inputs(features, view.item_domain, cfg["modalities"], cfg["input_norm"])
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, N_ITEMS, 3, cfg)
    padded = training_sequences(view, cfg)
    batch = make_batch(padded, np.arange(len(padded)), chunk_tokens=5)
    assert len(batch.chunks) > 3
    adapted = net.adapted(inputs, batch.columns)
    # zero-initialised P: E_{u,a} = E^A_a, so row k must be the adapted vector of anchor k's item
    assert torch.equal(net.anchor_embeddings(batch, adapted), adapted[batch.anchor_col])


def test_user_view_evaluation_embedding_averages_E_ua_and_falls_back_to_E_A():
    from methods.uniembedding.model import adapted_embeddings, user_view_embeddings

    view = tiny_view(used=30)
    features = tiny_features(view)
    cfg = tiny_cfg()
    torch.manual_seed(0)
    inputs = item_inputs(features, view.item_domain, cfg["modalities"], cfg["input_norm"])
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, N_ITEMS, 3, cfg)
    padded = training_sequences(view, cfg)
    np.testing.assert_allclose(user_view_embeddings(net, inputs, padded), adapted_embeddings(net, inputs),
                               atol=1e-6)  # P = 0: E_{u,i} = E^A_i for every user
    with torch.no_grad():
        net.user_view.mixed_projection.bias.normal_()
    emb, base = user_view_embeddings(net, inputs, padded), adapted_embeddings(net, inputs)
    in_window = np.zeros(N_ITEMS, dtype=bool)
    in_window[padded.items[padded.items >= 0]] = True
    assert in_window.sum() == 30 and not np.allclose(emb[in_window], base[in_window])
    np.testing.assert_array_equal(emb[~in_window], base[~in_window])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_wo_cross_domain_never_has_cross_domain_positives():
    view = tiny_view()
    for cross, expect_cross in ((False, False), (True, True)):
        padded = training_sequences(view, tiny_cfg(cross_domain=cross))
        batch = make_batch(padded, np.arange(len(padded)))
        sets = contrastive_sets(batch.anchor_row, batch.anchor_col, batch.column_of, batch.owner,
                                len(batch.columns))
        a, c = sets.pos_anchor, sets.pos_col
        dom = torch.from_numpy(view.item_domain.astype(np.int64))
        crossing = dom[batch.columns[batch.anchor_col[a]]] != dom[batch.columns[c]]
        assert bool(crossing.any()) == expect_cross
    assert UniEmbeddingWithoutCrossDomain.default_config()["cross_domain"] is False


def test_text_variant_ignores_image_features():
    view = tiny_view()
    a, b = tiny_features(view, seed=0), tiny_features(view, seed=0)
    b = ItemFeatures(items=view.items, text=a.text, image=a.image * -3.0 + 1.0, image_mask=a.image_mask)
    assert np.array_equal(fit(UniEmbeddingText, view, a).item_embeddings(),
                          fit(UniEmbeddingText, view, b).item_embeddings())
    assert not np.allclose(fit(UniEmbedding, view, a).item_embeddings(),
                           fit(UniEmbedding, view, b).item_embeddings())


def test_wo_user_view_has_no_behaviour_encoder():
    view = tiny_view()
    method = fit(UniEmbeddingWithoutUserView, view, tiny_features(view))
    assert method.net.user_view is None


def test_training_is_deterministic_per_seed_and_logs_the_loss():
    view, features = tiny_view(), tiny_features(tiny_view())
    logged = []
    ctx = RunContext(seed=3, log_metric=lambda name, value, step=None: logged.append((name, value, step)))
    first = UniEmbedding()
    first.fit(view, features, tiny_cfg(), ctx)
    second = fit(UniEmbedding, view, features, seed=3)
    other = fit(UniEmbedding, view, features, seed=4)
    assert np.array_equal(first.item_embeddings(), second.item_embeddings())
    assert not np.array_equal(first.item_embeddings(), other.item_embeddings())
    losses = [(v, s) for name, v, s in logged if name == "uniembedding_loss"]
    assert [s for _, s in losses] == [0, 1] and all(np.isfinite(v) for v, _ in losses)


def test_training_lowers_the_loss():
    view, features = tiny_view(), tiny_features(tiny_view())
    logged = []
    ctx = RunContext(seed=0, log_metric=lambda name, value, step=None: logged.append((name, value)))
    method = UniEmbedding()
    method.fit(view, features, tiny_cfg(epochs=8, batch_size=50), ctx)
    losses = [v for name, v in logged if name == "uniembedding_loss"]
    assert losses[-1] < losses[0]
    t = method.stats["training"]  # patience 10 > 8 epochs: runs to the cap; one batch of <= 50 sequences per epoch
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert (t["optimizer_steps"], t["epochs"], t["stop_reason"]) == (8, 8, "max_epochs")
    assert [s for s, _ in t["curve"]] == list(range(1, 9))  # one validation per epoch, after its step
    assert t["examples_seen"] > 0 and t["examples_seen"] % 8 == 0  # the same anchors every epoch


@pytest.mark.parametrize("cls,over", [
    (UniEmbedding, {}),
    (UniEmbedding, {"eval_embedding": "user_view", "expert": "mlp", "loss_form": "infonce", "max_positives": 2}),
    (UniEmbeddingText, {}),
    (UniEmbeddingWithoutUserView, {}),
    (UniEmbeddingWithoutCrossDomain, {}),
])
def test_item_embeddings_are_finite_normalised_float32_rows(cls, over):
    view = tiny_view()
    emb = fit(cls, view, tiny_features(view), **over).item_embeddings()
    assert emb.shape == (N_ITEMS, TINY["dim"]) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_variant_config_is_fixed_and_an_override_is_logged(caplog):
    assert UniEmbeddingWithoutUserView.default_config()["user_view"] is False
    assert UniEmbeddingText.default_config()["modalities"] == ["text"]
    with caplog.at_level(logging.WARNING):
        cfg = UniEmbeddingWithoutUserView().resolve({**tiny_cfg(), "user_view": True}, RunContext())
    assert cfg["user_view"] is False and "overridden" in caplog.text


def test_invalid_config_is_rejected():
    from benchmark.errors import ConfigError

    with pytest.raises(ConfigError, match="pooling"):
        UniEmbedding.check_config({**tiny_cfg(), "pooling": "max"})
    with pytest.raises(ConfigError, match="user_view"):
        UniEmbedding.check_config({**tiny_cfg(), "user_view": False, "eval_embedding": "user_view"})
