"""UniM2Rec mechanics on toy inputs: views and masks, MoE gates, fusion, losses, domains, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.config import resolve, validate_suite
from benchmark.data.model import Histories, TrainView
from benchmark.errors import ConfigError
from benchmark.features.degrade import degrade_features
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.shared.training import STOP_REASONS
from methods.unim2rec import UniM2Rec, UniM2RecLinear, UniM2RecSingleDomain, UniM2RecText
from methods.unim2rec.network import UniM2RecNet, ViewFusion
from methods.unim2rec.training import batch_loss, item_drop
from methods.unim2rec.views import CROSS_FUSION, CROSS_JOINT, build_views

SEQUENCES = [[0, 1, 2, 3], [1, 2, 4], [3, 4, 5, 0, 1], [2, 5, 1], [0, 3, 5, 2], [4, 1, 0], [5, 2, 3, 4]] * 3
DOMAIN = [0, 0, 1, 1, 2, 2]


def small_cfg(**over) -> dict:
    cfg = {**UniM2Rec.default_config(), "dim": 8, "n_heads": 2, "inner": 16, "n_experts": 3, "max_len": 6,
           "batch_size": 4, "epochs": 2, "patience": 2, "dropout": 0.1, "valid_fraction": 0.2}
    cfg.update(over)
    return cfg


def toy(image_mask=(True, False, True, True, False, True), joint: bool = False, word_drop: bool = True):
    train = TrainView.from_sequences(SEQUENCES, DOMAIN)
    rng = np.random.default_rng(0)
    d_img = 4 if joint else 3
    mask = np.array(image_mask, dtype=bool)
    image = rng.normal(size=(6, d_img)).astype(np.float32) * mask[:, None]
    feats = ItemFeatures(items=train.items, text=rng.normal(size=(6, 4)).astype(np.float32), image=image,
                         image_mask=mask, text_encoder="minilm:x@sha", image_encoder="offline-descriptor:y@z",
                         joint_space=joint,
                         text_word_drop=rng.normal(size=(6, 4)).astype(np.float32) if word_drop else None)
    return train, feats


def test_cross_view_is_a_text_x_image_fusion_outside_a_joint_space() -> None:
    train, feats = toy()
    views = build_views(feats, train.item_domain, ["text", "image", "cross"])
    assert views.cross == CROSS_FUSION
    assert views.masks["image"].tolist() == [True, False, True, True, False, True]
    assert views.masks["cross"].all()  # exists whenever text or image does
    t = feats.text[1] / np.linalg.norm(feats.text[1])
    np.testing.assert_allclose(views.inputs["cross"][1].numpy(), np.r_[t, np.zeros(3)], atol=1e-6)


def test_cross_view_in_a_joint_space_is_the_mean_direction() -> None:
    train, feats = toy(joint=True)
    views = build_views(feats, train.item_domain, ["text", "image", "cross"])
    assert views.cross == CROSS_JOINT
    t, v = feats.text[0] / np.linalg.norm(feats.text[0]), feats.image[0] / np.linalg.norm(feats.image[0])
    np.testing.assert_allclose(views.inputs["cross"][0].numpy(), (t + v) / np.linalg.norm(t + v), atol=1e-6)


def test_moe_gates_of_every_view_sum_to_one() -> None:
    train, feats = toy()
    views = build_views(feats, train.item_domain, ["text", "image", "cross"])
    torch.manual_seed(0)
    net = UniM2RecNet(views.dims(), 3, small_cfg())
    for name in net.views:
        moe = net.projectors[name]
        with torch.no_grad():
            moe.w_gate.normal_()  # non-uniform gates
        for train_mode in (True, False):
            moe.train(train_mode)
            g = moe.gates(views.inputs[name])
            assert g.shape == (6, 3)
            torch.testing.assert_close(g.sum(-1), torch.ones(6))


def test_item_without_image_fuses_its_text_and_cross_views_only() -> None:
    train, feats = toy()
    views = build_views(feats, train.item_domain, ["text", "image", "cross"])
    torch.manual_seed(0)
    net = UniM2RecNet(views.dims(), 3, small_cfg()).eval()
    with torch.no_grad():
        fused = net.item_vectors(views, torch.arange(6))
        hand = lambda v, i: F.normalize(net.projectors[v](views.inputs[v][i : i + 1]), dim=-1)[0]  # noqa: E731
        # item 1 has no image: mean of its text and cross views (hand check)
        torch.testing.assert_close(fused[1], (hand("text", 1) + hand("cross", 1)) / 2)
        # item 0 has all three
        torch.testing.assert_close(fused[0], (hand("text", 0) + hand("image", 0) + hand("cross", 0)) / 3)


def test_fusion_weights_mean_and_attention_respect_the_mask() -> None:
    views = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    mean = ViewFusion(4, "mean")
    torch.testing.assert_close(mean.weights(views, mask), torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]))
    torch.manual_seed(1)
    att = ViewFusion(4, "attention")
    w = att.weights(views, mask)
    with torch.no_grad():
        s = torch.tanh(att.key(views[0])) @ att.query
    e0, e2 = math.exp(float(s[0])), math.exp(float(s[2]))
    torch.testing.assert_close(w[0], torch.tensor([e0 / (e0 + e2), 0.0, e2 / (e0 + e2)]))
    assert w[1].abs().sum() == 0  # an item with no view gets no weight (and a zero vector)


@pytest.mark.parametrize("same_user", ["remove", "keep"])
def test_seq_item_loss_matches_a_hand_computation(same_user: str) -> None:
    """A windows batch: every position is an anchor; its own window's other targets are not its negatives."""
    train, feats = toy()
    views = build_views(feats, train.item_domain, ["text", "image", "cross"])
    torch.manual_seed(0)
    cfg = small_cfg(seq_seq_weight=0.0, same_user_negatives=same_user)
    net = UniM2RecNet(views.dims(), 3, cfg).eval()
    x = torch.tensor([[0, 1, 2], [3, 4, -1]])
    y = torch.tensor([[1, 2, 3], [4, 1, -1]])
    n = torch.tensor([3, 2])
    loss, _ = batch_loss(net, views, x, y, n, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        vec = net.item_vectors(views, torch.arange(6))
        xv = vec[x.clamp_min(0)] * (x >= 0).unsqueeze(-1)
        h = net.hidden(xv, n, views.domain[x.clamp_min(0)])
    anchors = [h[0, 0], h[0, 1], h[0, 2], h[1, 0], h[1, 1]]
    targets = [1, 2, 3, 4, 1]
    window = [0, 0, 0, 1, 1]  # anchors 0-2 are one user's, 3-4 another's
    total = 0.0
    for own, (a, t) in enumerate(zip(anchors, targets, strict=True)):
        logits = [float(F.normalize(a, dim=0) @ F.normalize(vec[u], dim=0)) / 0.07 for u in targets]
        row = [0.0 if (targets[j] == t and j != own) else logits[j] for j in range(len(targets))]  # same target -> 0
        if same_user == "remove":  # the anchor's own earlier and later items are no negatives
            row = [v for j, v in enumerate(row) if j == own or window[j] != window[own]]
            own = sum(1 for j in range(own) if window[j] != window[own])
        total += -row[own] + math.log(sum(math.exp(v) for v in row))
    assert float(loss.detach()) == pytest.approx(total / len(anchors), rel=1e-4)


def test_item_drop_repacks_kept_items_in_order() -> None:
    ids = torch.tensor([[5, 6, 7, 8], [1, 2, -1, -1]])
    packed, lengths = item_drop(ids, 0.5, torch.Generator().manual_seed(3))
    for row, orig in zip(packed.tolist(), ids.tolist(), strict=True):
        kept = [i for i in row if i >= 0]
        assert kept == [i for i in orig if i in kept]  # order kept, a subsequence
        assert row[len(kept):] == [-1] * (len(row) - len(kept))
        assert len(kept) >= 1
    assert lengths.tolist() == [(r >= 0).sum() for r in packed.numpy()]


def test_domain_embeddings_reach_the_encoder() -> None:
    torch.manual_seed(0)
    v = torch.randn(1, 3, 8)
    n = torch.tensor([3])
    for on in (True, False):
        net = UniM2RecNet({"text": 4}, 3, small_cfg(domain_embeddings=on, dropout=0.0)).eval()
        a = net.users(v, n, torch.tensor([[0, 0, 0]]))
        b = net.users(v, n, torch.tensor([[0, 2, 1]]))
        assert (not torch.allclose(a, b)) if on else torch.allclose(a, b)


def fitted(cls=UniM2Rec, seed: int = 0, feats=None, **over):
    train, toy_feats = toy()
    model = cls()
    model.fit(train, feats or toy_feats, small_cfg(**over), RunContext(seed=seed))
    return model, train


def test_fit_is_deterministic_per_seed_and_gives_unit_item_vectors() -> None:
    a, _ = fitted(seed=0)
    b, _ = fitted(seed=0)
    c, _ = fitted(seed=1)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    assert not np.allclose(a.item_embeddings(), c.item_embeddings())
    np.testing.assert_allclose(np.linalg.norm(a.item_embeddings(), axis=1), 1.0, atol=1e-5)
    hist = Histories.from_lists([[0, 1], [3], [2, 5, 4]])
    users = a.user_embeddings(hist)
    assert users.shape == (3, 8)
    np.testing.assert_array_equal(users, b.user_embeddings(hist))
    assert a.stats["views"] == ["text", "image", "cross"] and a.stats["cases"] > 0
    t = a.stats["training"]
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert [s["stage"] for s in t["stages"]] == ["pretrain"]
    assert t["optimizer_steps"] > 0 and t["stop_reason"] in STOP_REASONS


def test_without_images_it_runs_on_text_alone_and_says_so() -> None:
    train, feats = toy()
    text_only = ItemFeatures(items=train.items, text=feats.text, text_encoder="minilm:x")
    model, _ = fitted(feats=text_only)
    assert model.stats["views"] == ["text"]
    assert "text only" in model.stats["note"]
    assert model.display(text_only) == "UniM2Rec[minilm, text only: no images] (not in paper)"
    assert model.display(feats) == "UniM2Rec[minilm+descr.] (not in paper)"


def test_variants_fix_their_ablation() -> None:
    assert UniM2RecText.default_config()["views"] == ["text"]
    assert UniM2RecLinear.default_config()["projector"] == "linear"
    assert UniM2RecSingleDomain.default_config()["flow"] == "single-domain"
    model, _ = fitted(UniM2RecLinear)
    assert all(type(p).__name__ == "LinearProjector" for p in model.net.projectors.values())
    with pytest.raises(ConfigError, match="fusion"):
        UniM2Rec().resolve(small_cfg(fusion="max"))


def test_fine_tune_adapts_to_a_target_view_with_a_new_domain() -> None:
    model, train = fitted()
    before = {k: v.clone() for k, v in model.net.encoder.layers.state_dict().items()}
    target = TrainView.from_sequences(SEQUENCES[:7], [0, 0, 0, 1, 1, 1], domains=("A", "Toys"))
    _, feats = toy()
    feats = ItemFeatures(items=target.items, text=feats.text, image=feats.image, image_mask=feats.image_mask,
                         text_encoder="minilm:x", image_encoder="offline-descriptor:y")
    stats = model.fine_tune(target, feats, small_cfg(finetune_epochs=2), RunContext(seed=0))
    assert stats["finetune_epochs"] >= 1
    assert [s["stage"] for s in model.stats["training"]["stages"]] == ["pretrain", "finetune"]
    assert model.stats["training"]["stages"][1]["epochs"] == stats["finetune_epochs"]
    assert model.domains[-1] == "Toys" and model.net.encoder.domain.num_embeddings == 4
    for k, v in model.net.encoder.layers.state_dict().items():  # the Transformer stays frozen
        torch.testing.assert_close(v, before[k])
    assert model.item_embeddings().shape == (6, 8)


def test_degradation_drops_and_noises_features_reproducibly() -> None:
    train, feats = toy(image_mask=(True,) * 6)
    out = degrade_features(feats, {"drop_images": 0.5, "drop_texts": 1 / 3, "noise_std": 0.0, "seed": 0})
    assert out.image_mask.sum() == 3 and (out.image[~out.image_mask] == 0).all()
    dropped = np.abs(out.text).sum(1) == 0
    assert dropped.sum() == 2 and (out.text_word_drop[dropped] == 0).all()
    again = degrade_features(feats, {"drop_images": 0.5, "drop_texts": 1 / 3, "noise_std": 0.0, "seed": 0})
    np.testing.assert_array_equal(out.image_mask, again.image_mask)
    assert degrade_features(feats, None) is feats
    noisy = degrade_features(feats, {"noise_std": 1.0})
    assert not np.allclose(noisy.text, feats.text) and noisy.image_mask.all()
    views = build_views(out, train.item_domain, ["text", "image", "cross"])
    assert views.masks["text"].sum() == 4  # a removed text is a missing text view


@pytest.mark.parametrize(("key", "value"), [("drop_images", 1.5), ("drop_texts", -0.1), ("noise_std", -1.0)])
def test_degradation_knob_out_of_range_is_a_config_error_naming_the_key(key: str, value: float) -> None:
    suite = validate_suite({"name": "s", "methods": ["m"], "dataset": {"name": "xmarket"}}, "s.yaml")
    with pytest.raises(ConfigError, match=f"features.degrade.{key}"):
        resolve(suite, {"m": {}}, overrides=[f"features.degrade.{key}={value}"])
    bad = {"name": "s", "methods": ["m"], "dataset": {"name": "xmarket"}, "features": {"degrade": {key: value}}}
    with pytest.raises(ConfigError, match=key):
        validate_suite(bad, "s.yaml")
    ok = resolve(suite, {"m": {}}, overrides=["features.degrade.drop_images=0.25"])[0]
    assert ok.features["degrade"] == {"drop_images": 0.25, "drop_texts": 0.0, "noise_std": 0.0, "seed": 0}
    assert "degrade" not in resolve(suite, {"m": {}})[0].features  # absent = off, run keys unchanged
