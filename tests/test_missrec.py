"""MISSRec mechanics: interests, masks, fusion, regulariser, losses, missing images, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.data.model import Histories, TrainView
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.missrec import MISSRec, MISSRecTransductive
from methods.missrec.augment import augment, item_drop
from methods.missrec.interest import discover_interests, interest_sets, n_interests
from methods.missrec.method import pretrain_losses
from methods.missrec.model import MISSRecNet, diversity_regulariser, fuse_scores, fuse_scores_stacked
from methods.shared.training import STOP_REASONS

N_ITEMS, D_TEXT, D_IMAGE = 12, 8, 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def cfg(**over) -> dict:
    out = MISSRec.default_config()
    out.update(dim=8, n_heads=2, inner=16, max_len=6, pretrain_epochs=1, pretrain_batch_size=8,
               finetune_epochs=2, finetune_batch_size=8, patience=2, valid_fraction=0.25)
    out.update(over)
    return out


def features(view: TrainView, images: bool = True, word_drop: bool = True) -> ItemFeatures:
    rng = np.random.default_rng(0)
    mask = np.ones(N_ITEMS, dtype=bool)
    mask[[2, 5]] = False
    image = rng.normal(size=(N_ITEMS, D_IMAGE)).astype(np.float32) * mask[:, None]
    return ItemFeatures(items=view.items, text=rng.normal(size=(N_ITEMS, D_TEXT)).astype(np.float32),
                        image=image if images else None, image_mask=mask if images else None,
                        text_encoder="minilm", image_encoder="offline-descriptor" if images else None,
                        text_word_drop=rng.normal(size=(N_ITEMS, D_TEXT)).astype(np.float32) if word_drop else None)


def view() -> TrainView:
    rng = np.random.default_rng(1)
    seqs = [list(rng.integers(0, N_ITEMS - 1, size=int(rng.integers(2, 7)))) for _ in range(16)]
    return TrainView.from_sequences(seqs, item_domain=[i % 3 for i in range(N_ITEMS)])


def net_for(feats: ItemFeatures, **over) -> MISSRecNet:
    torch.manual_seed(0)
    return MISSRecNet(feats.text, feats.image, feats.image_mask, cfg(**over))


# ----------------------------------------------------------------------------- interests
def test_k_rule_is_ceil_of_ratio_times_tokens_and_at_least_one():
    assert n_interests(0.02, 100 + 60) == 4  # ceil(3.2)
    assert n_interests(0.5, 7) == 4
    assert n_interests(0.001, 10) == 1


def test_kmeans_assigns_each_token_to_its_nearest_centroid_and_skips_missing_images():
    rng = np.random.default_rng(0)
    text = np.concatenate([rng.normal(0, 0.01, (5, 4)), rng.normal(5, 0.01, (5, 4))]).astype(np.float32)
    image = np.concatenate([rng.normal(-5, 0.01, (5, 4)), rng.normal(5, 0.01, (5, 4))]).astype(np.float32)
    mask = np.array([True] * 9 + [False])
    found = discover_interests(text, image, mask, ratio=3 / 19, niter=5, seed=0)
    assert found.k == 3 and found.centroids.shape == (4, 4) and not found.centroids[0].any()
    assert found.image_cluster[9] == 0 and (found.image_cluster[:9] > 0).all() and (found.text_cluster > 0).all()
    for tokens, ids in ((text, found.text_cluster), (image[:9], found.image_cluster[:9])):
        dist = ((tokens[:, None, :] - found.centroids[None, 1:, :]) ** 2).sum(-1)
        np.testing.assert_array_equal(ids, dist.argmin(1) + 1)
    again = discover_interests(text, image, mask, ratio=3 / 19, niter=5, seed=0)
    np.testing.assert_array_equal(again.centroids, found.centroids)  # seeded


def test_interest_set_is_unique_sorted_and_padded_with_zero():
    text = torch.tensor([[3, 1, 3, 0], [2, 0, 0, 0]])
    image = torch.tensor([[1, 0, 4, 0], [0, 0, 0, 0]])
    ids, lengths = interest_sets(text, image)
    assert ids.tolist() == [[1, 3, 4], [2, 0, 0]]
    assert lengths.tolist() == [3, 1]


def test_net_interests_use_text_and_image_clusters_of_real_items_only():
    feats = features(view())
    net = net_for(feats)
    net.text_cluster = torch.arange(1, N_ITEMS + 1)
    net.image_cluster = torch.where(torch.from_numpy(feats.image_mask), torch.arange(1, N_ITEMS + 1) + 20, 0)
    ids = torch.tensor([[2, 3, -1], [5, 5, 5]])  # items 2 and 5 have no image
    got, lengths = net.interests(ids, ids)
    assert got[0, : lengths[0]].tolist() == [3, 4, 24]
    assert got[1, : lengths[1]].tolist() == [6]


# ----------------------------------------------------------------------------- masks
def test_padding_never_attended_in_encoder_decoder_or_cross_attention():
    feats = features(view())
    net = net_for(feats).eval()
    net.centroids = torch.randn(5, 8)
    ids = torch.tensor([[0, 1, 2, -1, -1]])
    interests = torch.tensor([[1, 3, 0, 0]])
    a, _ = net(ids, torch.tensor([3]), interest_ids=interests)
    ids2 = torch.tensor([[0, 1, 2, 7, 9]])  # garbage in the padding slots
    net.centroids[2] = 100.0
    interests2 = torch.tensor([[1, 3, 0, 0]])
    b, _ = net(ids2, torch.tensor([3]), interest_ids=interests2)
    torch.testing.assert_close(a, b)
    # changing a padded interest slot's id (still masked as 0) or the centroid of an absent cluster: no effect
    c, _ = net(ids, torch.tensor([3]), interest_ids=torch.tensor([[1, 3, 0, 0, 0, 0]]))
    torch.testing.assert_close(a, c)
    # a real interest does matter (cross-attention is live)
    d, _ = net(ids, torch.tensor([3]), interest_ids=torch.tensor([[1, 4, 0, 0]]))
    assert not torch.allclose(a, d)


def test_missing_image_adds_nothing_not_the_bias():
    feats = features(view())
    net = net_for(feats).eval()
    with torch.no_grad():
        net.image_adaptor.bias.fill_(3.0)
    net.centroids = torch.randn(3, 8)
    interests = torch.tensor([[1, 2]])
    ids = torch.tensor([[2]])  # no image
    got, _ = net(ids, torch.tensor([1]), interest_ids=interests)
    with torch.no_grad():
        net.image_adaptor.bias.fill_(-7.0)
        net.image_adaptor.weight.mul_(5)
    again, _ = net(ids, torch.tensor([1]), interest_ids=interests)
    torch.testing.assert_close(got, again)
    parts = net.candidate_parts()
    assert not parts["image"][[2, 5]].any() and parts["present"].tolist().count(False) == 2


# ----------------------------------------------------------------------------- fusion
def test_fusion_is_softmax_over_modalities_and_mean_at_beta_zero():
    st, sv = torch.tensor([[0.2, -0.4, 0.9]]), torch.tensor([[0.6, 0.1, 0.0]])
    present = torch.tensor([True, True, False])
    got = fuse_scores(st, sv, present, torch.tensor(0.0))
    torch.testing.assert_close(got, torch.tensor([[0.4, -0.15, 0.9]]))  # mean; text alone without image
    beta = torch.tensor(2.0)
    got = fuse_scores(st, sv, present, beta)
    w = math.exp(2 * 0.2) / (math.exp(2 * 0.2) + math.exp(2 * 0.6))
    assert got[0, 0].item() == pytest.approx(w * 0.2 + (1 - w) * 0.6, abs=1e-6)
    assert got[0, 2].item() == pytest.approx(0.9)


@pytest.mark.parametrize("beta", [0.0, 1.7, -3.0, 40.0])
def test_fusion_equals_the_stacked_softmax_in_value_and_gradient(beta):
    gen = torch.Generator().manual_seed(3)
    st = torch.randn(6, 50, generator=gen, requires_grad=True)
    sv = torch.randn(6, 50, generator=gen, requires_grad=True)
    present = torch.rand(50, generator=gen) < 0.6
    b = torch.tensor(beta, requires_grad=True)
    got, ref = fuse_scores(st, sv, present, b), fuse_scores_stacked(st, sv, present, b)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    weight = torch.randn(6, 50, generator=gen)
    grads = torch.autograd.grad((got * weight).sum(), [st, sv, b])
    refs = torch.autograd.grad((ref * weight).sum(), [st, sv, b])
    for g, r in zip(grads, refs, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    assert not grads[1][:, ~present].any()  # a missing image gets no gradient


def test_static_candidates_give_the_fused_score_at_beta_zero_and_item_vectors_are_unit():
    feats = features(view())
    net = net_for(feats).eval()
    seq = F.normalize(torch.randn(4, 8), dim=-1)
    fused = net.scores(seq, net.candidate_parts())
    static = seq @ torch.from_numpy(net.static_candidates()).T
    torch.testing.assert_close(fused, static)
    emb = net.static_item_embeddings()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    t = F.normalize(net.text_adaptor(net.text_feat), dim=-1).detach().numpy()
    v = F.normalize(net.image_adaptor(net.image_feat), dim=-1).detach().numpy()
    assert emb[0] @ emb[1] == pytest.approx(0.5 * (t[0] @ t[1] + v[0] @ v[1]), abs=1e-5)  # static fusion
    np.testing.assert_allclose(emb[2], np.r_[t[2], np.zeros(8)], atol=1e-6)  # missing image: text only


# ----------------------------------------------------------------------------- regulariser and losses
def test_regulariser_matches_a_hand_computation_with_padding_slots_included():
    memory = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]], [[2.0, 0.0], [1.0, 1.0], [-1.0, 4.0]]])
    padding = torch.tensor([[False, False, True], [False, True, True]])
    # row 0: share 2/3, pooled = 2/3 * (4.5, 1.5) = (3, 1) -> 10; row 1: share 1/3, (2, 5)/3 -> 29/9
    expected = (10 + 29 / 9) / 2
    assert diversity_regulariser(memory, padding).item() == pytest.approx(expected)


def test_pretraining_losses_match_a_hand_computation():
    feats = features(view())
    net = net_for(feats).eval()  # eval: no dropout, so the hand computation can repeat the forward
    net.centroids = torch.randn(4, 8)
    net.text_cluster = torch.randint(1, 4, (N_ITEMS,))
    net.image_cluster = torch.where(torch.from_numpy(feats.image_mask), torch.randint(1, 4, (N_ITEMS,)), 0)
    with torch.no_grad():
        net.beta.fill_(1.5)
    ids = torch.tensor([[0, 1, 2], [3, 4, -1], [5, -1, -1]])
    lengths, targets = torch.tensor([3, 2, 1]), torch.tensor([4, 4, 7])  # repeated target: no masking
    c = cfg()
    gen = torch.Generator().manual_seed(3)
    si, ss, reg, reg_aug = pretrain_losses(net, ids, lengths, targets, torch.from_numpy(feats.text_word_drop), gen, c)
    seq, r = net(ids, lengths)
    t = F.normalize(net.text_adaptor(net.text_feat[targets]), dim=-1)
    present = net.image_present[targets]
    v = F.normalize(net.image_adaptor(net.image_feat[targets]), dim=-1) * present[:, None]
    logits = torch.zeros(3, 3)
    for a in range(3):
        for b in range(3):
            st, sv = float((seq[a] @ t[b]).detach()), float((seq[a] @ v[b]).detach())
            if present[b]:
                wt = math.exp(1.5 * st) / (math.exp(1.5 * st) + math.exp(1.5 * sv))
                logits[a, b] = wt * st + (1 - wt) * sv
            else:
                logits[a, b] = st
    expected = F.cross_entropy(logits / 0.07, torch.arange(3))
    assert si.item() == pytest.approx(expected.item(), rel=1e-5)
    assert reg.item() == pytest.approx(r.item(), rel=1e-6)
    gen = torch.Generator().manual_seed(3)
    aug = augment(ids, lengths, net.text_feat, torch.from_numpy(feats.text_word_drop), gen, 0.9, 0.2, "fix")
    seq_aug, r_aug = net(aug.ids, aug.lengths, text_x=aug.text_x)
    assert ss.item() == pytest.approx(F.cross_entropy(seq @ seq_aug.T / 0.07, torch.arange(3)).item(), rel=1e-5)
    assert reg_aug.item() == pytest.approx(r_aug.item(), rel=1e-6)


def test_item_drop_repacks_kept_items_and_keeps_the_first():
    ids = torch.tensor([[4, 5, 6, 7], [1, 2, -1, -1]])
    keep = torch.tensor([[False, True, False, True], [False, False, True, True]])
    out, lengths = item_drop(ids, keep)
    assert out.tolist() == [[4, 5, 7, -1], [1, -1, -1, -1]] and lengths.tolist() == [3, 1]


def test_replicated_augmentation_keeps_the_original_positions_images():
    ids, lengths = torch.tensor([[4, 5, 6, 7]]), torch.tensor([4])
    text = torch.randn(N_ITEMS, D_TEXT)
    for seed in range(40):  # find a batch whose coin chose item drop
        v = augment(ids, lengths, text, None, torch.Generator().manual_seed(seed), 0.9, 0.2, "replicate")
        if v.lengths.item() < 4:
            break
    assert v.kind == "item_drop" and v.image_ids.tolist() == ids.tolist() and v.lengths.item() < 4
    fixed = augment(ids, lengths, text, None, torch.Generator().manual_seed(seed), 0.9, 0.2, "fix")
    assert fixed.image_ids is None and fixed.ids.tolist() == v.ids.tolist()


# ----------------------------------------------------------------------------- method level
def fit(method_cls=MISSRec, seed: int = 0, images: bool = True, word_drop: bool = True, **over) -> MISSRec:
    tv = view()
    method = method_cls()
    ctx = RunContext(seed=seed)
    ctx.seed_everything()
    method.fit(tv, features(tv, images=images, word_drop=word_drop), cfg(**over), ctx)
    return method


def test_fit_is_deterministic_per_seed_and_shapes_follow_the_contract():
    a, b = fit(seed=0), fit(seed=0)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    hist = Histories.from_lists([[0, 1], [3], [4, 5, 6]])
    ua, ub = a.user_embeddings(hist), b.user_embeddings(hist)
    np.testing.assert_array_equal(ua, ub)
    assert a.item_embeddings().shape == (N_ITEMS, 16) and a.next_item_embeddings().shape == (N_ITEMS, 8)
    assert ua.shape == (3, 8) and a.stats["finetune_epochs"] >= 1 and a.stats["k"] >= 1
    t = a.stats["training"]
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert [s["stage"] for s in t["stages"]] == ["pretrain", "finetune"]
    assert t["optimizer_steps"] > 0 and t["stop_reason"] in STOP_REASONS
    assert t["stages"][1]["epochs"] == a.stats["finetune_epochs"]
    c = fit(seed=1)
    assert not np.array_equal(a.item_embeddings(), c.item_embeddings())


def test_transductive_adds_id_parts_and_zeroes_cold_ids():
    m = fit(MISSRecTransductive)
    emb = m.item_embeddings()
    assert emb.shape == (N_ITEMS, 24)
    assert not emb[N_ITEMS - 1, :8].any()  # item 11 never in training: no ID part
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_dataset_without_images_runs_on_text_alone_and_says_so(caplog):
    tv = view()
    feats = features(tv, images=False, word_drop=False)
    assert MISSRec().display(feats) == "MISSRec[minilm, text only]"
    assert MISSRec().display(features(tv)) == "MISSRec[minilm+descr.]"
    full = ItemFeatures(items=tv.items, text=feats.text, text_encoder="minilm:sentence-transformers/x@sha256:ab",
                        image=features(tv).image, image_mask=features(tv).image_mask,
                        image_encoder="offline-descriptor:colorhist+layout+edgehog/v1")
    assert MISSRec().display(full) == "MISSRec[minilm+descr.]"
    with caplog.at_level("WARNING"):
        m = fit(images=False, word_drop=False)
    assert "text only" in caplog.text and "item drop only" in caplog.text
    assert m.item_embeddings().shape == (N_ITEMS, 8) and m.stats["modalities"] == ["text"]


def test_bad_config_is_a_config_error():
    for bad in ({"aug_image_alignment": "maybe"}, {"fusion": "late"}, {"item_drop_ratio": 1.5},
                {"dim": 9, "n_heads": 2}, {"pretrain_interest_ratio": 0}):
        with pytest.raises(ConfigError):
            MISSRec.check_config(cfg(**bad))


def test_validation_batches_by_length_give_each_history_its_own_vector():
    """Validation sorts histories by length (speed); every row still gets its own history's vector."""
    method = fit()
    hist = Histories.from_lists([[0, 1, 2, 3, 4, 5], [3], [], [4, 5, 6], [7, 8], [1, 2, 3, 4, 5]])
    plain = method._users(hist, batch=2)
    by_length = method._users(hist, batch=2, by_length=True)
    torch.testing.assert_close(by_length, plain, atol=1e-6, rtol=0)
    assert torch.equal(by_length[2], torch.zeros(8))  # the empty history stays a zero vector
    one = [method._users(Histories.from_lists([h]))[0] for h in ([0, 1, 2, 3, 4, 5], [3], [4, 5, 6])]
    torch.testing.assert_close(by_length[[0, 1, 3]], torch.stack(one), atol=1e-6, rtol=0)
