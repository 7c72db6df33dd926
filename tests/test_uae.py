"""UAE (methods.md 11): liked/disliked examples, negatives, the contrastive loss and the method."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.uae import UAE
from methods.uae.model import contrastive_loss
from methods.uae.negatives import build_examples, sample_negatives

N_ITEMS = 41  # items 0-19 cluster A, 20-39 cluster B, 40 never in training (cold)


def toy(seed: int = 0, ratings: bool = True, image: bool = True) -> tuple[TrainView, ItemFeatures]:
    """Users like items of their own cluster and rate one item of the other cluster 1 (disliked)."""
    rng = np.random.default_rng(seed)
    seqs, rates = [], []
    for u in range(200):
        own, other = (0, 20) if u % 2 == 0 else (20, 0)
        seqs.append((own + rng.integers(0, 20, 5)).tolist() + [int(other + rng.integers(0, 20))])
        rates.append([5.0] * 5 + [1.0])
    cluster = (np.arange(N_ITEMS) >= 20).astype(int)
    cluster[40] = 0
    centre = rng.normal(size=(2, 24))
    text = (centre[cluster] + 0.8 * rng.normal(size=(N_ITEMS, 24))).astype(np.float32)
    img = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    mask = np.arange(N_ITEMS) % 3 != 0
    view = TrainView.from_sequences(seqs, item_domain=[0] * N_ITEMS, ratings=rates if ratings else None)
    features = ItemFeatures(items=view.items, text=text, image=img if image else None,
                            image_mask=mask if image else None)
    return view, features


def cfg(**over: object) -> dict:
    c = UAE.default_config()
    c["user_mf"].update(epochs=15, batch_size=256, l2=0.3, lr=0.02)
    c.update(dim=32, hidden=64, epochs=8, batch_size=128, patience=8)
    c.update(over)
    return c


def fit(seed: int = 0, config: dict | None = None, **kw: bool) -> UAE:
    view, features = toy(**kw)
    method = UAE()
    method.fit(view, features, config or cfg(), RunContext(seed=seed, workers=1))
    return method


@pytest.fixture(scope="module")
def fitted() -> UAE:
    return fit()


# -- examples and negatives --------------------------------------------------------------------
def test_disliked_items_are_negatives_not_positives():
    view = TrainView.from_sequences([[0, 1, 2, 3], [4, 5]], item_domain=[0] * 6,
                                    ratings=[[5, 1, np.nan, 2], [4, 3]])
    ex = build_examples(view.sequences, max_disliked_rating=2)
    assert list(zip(ex.user.tolist(), ex.item.tolist(), strict=True)) == [(0, 0), (0, 2), (1, 4), (1, 5)]
    assert ex.disliked_offsets.tolist() == [0, 2, 2] and ex.disliked_items.tolist() == [1, 3]
    assert build_examples(view.sequences, 2, use_disliked=False).n_disliked == 0

    neg, hard = sample_negatives(ex, np.array([0, 1, 2]), 6, 4, np.random.default_rng(0))
    assert hard.tolist() == [[True, True, False, False]] * 2 + [[False] * 4]
    assert sorted(neg[0, :2].tolist()) == [1, 3] and sorted(neg[1, :2].tolist()) == [1, 3]  # distinct
    assert (neg[2] != 4).all()  # a random negative never equals the positive


def test_contrastive_loss_masks_the_positive_among_negatives():
    user = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    f_pos = user.clone()
    f_neg = torch.stack([torch.stack([user[0], user[1]]), torch.stack([user[1], user[0]])])
    pos, neg = torch.tensor([0, 1]), torch.tensor([[0, 1], [1, 0]])  # slot 0 equals the positive
    loss = contrastive_loss(user, f_pos, f_neg, pos, neg, gamma=10.0, in_batch=False)
    expected = -torch.log_softmax(torch.tensor([10.0, 0.0]), 0)[0]  # only the orthogonal negative counts
    assert torch.isclose(loss, expected, atol=1e-5)


# A batch of three positives on the unit circle; rows 0 and 2 share positive item 5.
#   item 5 = (.6, .8), item 7 = (1, 0), item 8 = (-1, 0), item 9 = (0, 1)
_ITEMS = {5: (0.6, 0.8), 7: (1.0, 0.0), 8: (-1.0, 0.0), 9: (0.0, 1.0)}
_USERS = [(1.0, 0.0), (0.0, 1.0), (0.6, 0.8)]
_POS = [5, 7, 5]
_NEG = [[7, 9], [7, 9], [9, 8]]  # row 1's first negative is its own positive
# Cosines the loss may see, worked out by hand: [positive, kept sampled negatives, kept in-batch positives].
#   row 0: pos 5 -> .6; negs 7 -> 1, 9 -> 0; batch: row 1's item 7 -> 1 (row 0 is itself, row 2's 5 is its own)
#   row 1: pos 7 -> 0; neg 7 masked, 9 -> 1; batch: rows 0 and 2's item 5 -> .8 each
#   row 2: pos 5 -> 1; negs 9 -> .8, 8 -> -.6; batch: row 1's item 7 -> .6 (row 0's 5 is its own)
_IN_BATCH_COSINES = [[0.6, 1.0, 0.0, 1.0], [0.0, 1.0, 0.8, 0.8], [1.0, 0.8, -0.6, 0.6]]


def _hand_loss(cosines: list[list[float]], gamma: float) -> float:
    """Mean over rows of -log softmax(gamma * cosines)[0], in plain floats."""
    return sum(math.log(sum(math.exp(gamma * c) for c in row)) - gamma * row[0] for row in cosines) / len(cosines)


def _batch() -> tuple[torch.Tensor, ...]:
    user = torch.tensor(_USERS)
    f_pos = torch.tensor([_ITEMS[i] for i in _POS])
    f_neg = torch.tensor([[_ITEMS[i] for i in row] for row in _NEG])
    return user, f_pos, f_neg, torch.tensor(_POS), torch.tensor(_NEG)


def test_in_batch_loss_masks_the_anchor_own_positive_wherever_it_appears_in_the_batch():
    for gamma in (2.0, 10.0):
        loss = contrastive_loss(*_batch(), gamma=gamma, in_batch=True)
        assert float(loss) == pytest.approx(_hand_loss(_IN_BATCH_COSINES, gamma), rel=1e-5)
    # without in-batch negatives: only the positive and the kept sampled negatives
    loss = contrastive_loss(*_batch(), gamma=2.0, in_batch=False)
    assert float(loss) == pytest.approx(_hand_loss([row[:3] if i != 1 else row[:2] for i, row in
                                                    enumerate(_IN_BATCH_COSINES)], 2.0), rel=1e-5)
    # what an unmasked batch would give (row 0 also sees .6 twice, row 2 sees 1 twice) is far off
    unmasked = [_IN_BATCH_COSINES[0] + [0.6, 0.6], _IN_BATCH_COSINES[1] + [0.0], _IN_BATCH_COSINES[2] + [1.0, 1.0]]
    assert abs(_hand_loss(unmasked, 2.0) - _hand_loss(_IN_BATCH_COSINES, 2.0)) > 0.1


def test_the_default_training_loss_is_the_in_batch_one_at_gamma_ten():
    cfg_default = UAE.default_config()
    assert cfg_default["in_batch_negatives"] is True and cfg_default["tau"] == 0.1
    method = UAE()  # UAE._loss on the batch above: identity content tower, fixed user vectors
    method.device = torch.device("cpu")
    method.tower = torch.nn.Identity()
    method.inputs = torch.tensor([_ITEMS.get(i, (0.0, 1.0)) for i in range(10)])
    method.user_tower, method.user_vectors = None, torch.tensor(_USERS)
    method.examples = SimpleNamespace(item=np.array(_POS), user=np.array([0, 1, 2]))
    loss = method._loss(np.array([0, 1, 2]), np.array(_NEG), cfg_default)
    assert float(loss) == pytest.approx(_hand_loss(_IN_BATCH_COSINES, 10.0), rel=1e-5)


# -- the method --------------------------------------------------------------------------------
def test_disliked_negatives_are_used_when_ratings_exist(fitted, caplog):
    assert fitted.stats["disliked_negative_share"] > 0.15  # 1 of 4 slots is the user's disliked item
    with caplog.at_level(logging.INFO, logger="benchmark.method"):
        without = fit(ratings=False, config=cfg(epochs=1))
    assert without.stats["disliked_negative_share"] == 0.0
    assert "no ratings in the data" in caplog.text


def test_training_loss_decreases(fitted):
    losses = fitted.stats["losses"]
    assert len(losses) >= 2 and losses[-1] < losses[0]


def test_training_budget_has_the_user_mf_and_tower_stages(fitted):
    t = fitted.stats["training"]  # the toy's 5% carve-out is empty: nothing to stop on, the cap decides
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    mf, tower = t["stages"]
    assert (mf["stage"], mf["epochs"], mf["stop_reason"], tower["stage"]) == ("user_mf", 15, "max_epochs", "content_tower")
    n_fit = fitted.stats["examples_per_epoch"]
    assert fitted.stats["validation_positives"] == 0 and tower["curve"] == [] and tower["epochs"] == 8
    assert (tower["examples_seen"], tower["optimizer_steps"]) == (8 * n_fit, 8 * -(-n_fit // 128))
    assert tower["stop_reason"] == t["stop_reason"] == "no_validation" and "lower is better" in t["metric"]


def test_item_embeddings_cover_cold_items(fitted):
    emb = fitted.item_embeddings()
    assert emb.shape == (N_ITEMS, 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # item 40 has no interaction
    sim = emb @ emb.T
    assert sim[:20, :20].mean() > sim[:20, 20:40].mean() + 0.2  # the content tower separates the clusters


def test_text_only_and_mean_pool_variants(caplog):
    with caplog.at_level(logging.INFO, logger="benchmark.method"):
        method = fit(image=False, config=cfg(user_tower="mean_pool", epochs=3))
    assert "text only" in caplog.text and "mean-pool user tower" in caplog.text
    assert method.item_embeddings().shape == (N_ITEMS, 32)
    assert method.stats["losses"][-1] < method.stats["losses"][0]


def test_deterministic_per_seed(fitted):
    a = fit(seed=0).item_embeddings()
    b = fit(seed=1).item_embeddings()
    assert np.array_equal(a, fitted.item_embeddings()) and not np.array_equal(a, b)
