"""TransRec mechanics: cached frozen layers, the modality rule, both losses, negatives, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.data.model import Histories, Items, TrainView
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.training import STOP_REASONS
from methods.transrec.encoders import SmallCNN, TextTokenCache, TextTower, assign_modality, load_text_backbone
from methods.transrec.model import TransRec, targets_and_negatives
from methods.transrec.network import (
    ItemTower,
    cpc_loss,
    sample_negatives,
    split_sequence,
    stage2_batch,
    uep_loss,
)

TITLES = ["red phone case with card slot", "wireless earbuds", "a long history of the roman empire",
          "usb c charger 20w fast", "novel", "tempered glass screen protector"]


def _items(n: int = 6, images: bool = False) -> Items:
    return Items(domains=("Books", "Electronics"), source_id=np.array([f"i{k}" for k in range(n)], dtype=object),
                 domain=np.array([k % 2 for k in range(n)], dtype=np.int16),
                 title=np.array([TITLES[k % len(TITLES)] for k in range(n)], dtype=object),
                 image_path=np.array(["img.png" if images and k % 3 else "" for k in range(n)], dtype=object))


@pytest.fixture(scope="module")
def minilm():
    return load_text_backbone("minilm")


def test_cached_lower_layers_plus_top_equal_the_full_forward_pass(minilm):
    tokenizer, model, ident = minilm
    assert ident.startswith("minilm:")
    n_layers = len(model.encoder.layer)
    cache = TextTokenCache(model, tokenizer, TITLES[:3], np.array([4, 0, 2]), 6, n_layers - 2, max_tokens=12)
    tower = TextTower(model, n_layers - 2, dim=8)
    tok = tokenizer(TITLES[:3], padding="max_length", truncation=True, max_length=12, return_tensors="pt")
    with torch.no_grad():
        full = model(**tok).last_hidden_state
        top = tower.top_layers(cache.hidden, cache.mask)
    real = tok["attention_mask"].bool()
    assert torch.allclose(top[real], full[real], atol=1e-4)
    assert list(cache.row[[4, 0, 2, 1]]) == [0, 1, 2, -1]


def test_frozen_layers_stay_frozen_and_only_the_top_trains(minilm):
    tokenizer, model, _ = minilm
    n_layers = len(model.encoder.layer)
    cache = TextTokenCache(model, tokenizer, TITLES[:4], np.arange(4), 4, n_layers - 1, max_tokens=8)
    tower = TextTower(model, n_layers - 1, dim=8)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items()}
    top_before = [p.clone() for p in tower.top.parameters()]
    hidden_before = cache.hidden.clone()
    opt = torch.optim.Adam([p for p in tower.parameters() if p.requires_grad], lr=1e-2)
    loss = tower(cache.hidden, cache.mask).pow(2).sum()
    loss.backward()
    opt.step()
    assert len(tower.top) == 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen_before.items())  # backbone untouched
    assert torch.equal(hidden_before, cache.hidden)
    assert any(not torch.equal(a, b) for a, b in zip(top_before, tower.top.parameters(), strict=True))
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in trained for p in model.parameters())


def test_modality_rule_draw_is_seeded_and_respects_missing_inputs():
    items = _items(200)
    has_image = np.ones(200, dtype=bool)
    has_image[:10] = False
    a = assign_modality(items, has_image, "draw", 0.5, seed=0)
    b = assign_modality(items, has_image, "draw", 0.5, seed=0)
    np.testing.assert_array_equal(a, b)
    assert a[:10].all()  # no image -> text
    assert 0.35 < a[10:].mean() < 0.65
    assert not np.array_equal(a, assign_modality(items, has_image, "draw", 0.5, seed=1))
    assert assign_modality(items, has_image, "draw", 0.0, seed=0)[10:].sum() == 0


def test_modality_rule_by_domain_and_its_errors():
    items = _items(6)
    out = assign_modality(items, np.ones(6, dtype=bool), "domain", text_domains=["Books"])
    np.testing.assert_array_equal(out, [True, False, True, False, True, False])
    with pytest.raises(ConfigError, match="text_domains"):
        assign_modality(items, np.ones(6, dtype=bool), "domain", text_domains=["Toys"])
    with pytest.raises(ConfigError, match="modality_rule"):
        assign_modality(items, np.ones(6, dtype=bool), "coin")


def test_cpc_loss_matches_a_hand_computation():
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pos = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    neg = torch.tensor([[[-1.0, 0.0]], [[0.0, 0.5]]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    u1 = -(math.log(sig(1.0)) + math.log(sig(0.0))) - math.log(1 - sig(-1.0))
    u2 = -math.log(sig(2.0)) - math.log(1 - sig(1.0))
    assert cpc_loss(users, pos, mask, neg).item() == pytest.approx((u1 + u2) / 2, rel=1e-6)


def test_uep_loss_matches_a_hand_computation():
    head = torch.nn.Linear(2, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        head.bias.zero_()
    hidden = torch.tensor([[2.0, 1.0]])
    pool = torch.tensor([True, True, False])
    # logits relu([2, 1, -2]) = [2, 1, 0]; item 2 is outside the pool
    expected = -math.log(math.exp(1) / (math.exp(2) + math.exp(1)))
    assert uep_loss(hidden, torch.tensor([1]), head, pool).item() == pytest.approx(expected, rel=1e-6)


def test_negatives_never_overlap_the_users_items_and_are_distinct():
    rng = np.random.default_rng(0)
    pool = np.arange(5, 40)
    seqs = [rng.choice(pool, size=rng.integers(2, 30), replace=False) for _ in range(50)]
    neg = sample_negatives(np.random.default_rng(1), pool, seqs, 4)
    for s, row in zip(seqs, neg, strict=True):
        assert not set(row) & set(s.tolist())
        assert len(set(row)) == 4 and set(row) <= set(pool.tolist())
    nearly_all = [pool[:-2]]  # only 2 items left: repeats of those, never an interacted one
    assert set(sample_negatives(np.random.default_rng(2), pool, nearly_all, 4)[0]) <= set(pool[-2:].tolist())


def test_split_sequence_keeps_a_history_and_the_last_l_targets():
    h, t = split_sequence(np.arange(10), 5, 3)
    assert h.tolist() == [2, 3, 4] and t.tolist() == [5, 6, 7, 8, 9]
    h, t = split_sequence(np.array([7, 8]), 5, 25)
    assert h.tolist() == [7] and t.tolist() == [8]
    b = stage2_batch([np.arange(4), np.array([1, 2])], 2, 25, np.zeros((2, 1), dtype=np.int64))
    assert b["history"].tolist() == [[0, 1], [1, -1]] and b["targets"].tolist() == [[2, 3], [2, -1]]


TINY = {"dim": 16, "n_layers": 1, "n_heads": 2, "inner": 16, "dropout": 0.1, "max_len": 5, "end_to_end": False,
        "text_encoder": "minilm", "text_trainable_layers": 1, "max_tokens": 8, "use_images": False,
        "resnet18_weights": "", "cnn_width": 4, "image_size": 8, "modality_rule": "draw", "text_share": 0.5,
        "text_domains": [], "modality_seed": 0, "stage1_epochs": 1, "epochs": 2, "patience": 2, "lr": 1e-3,
        "finetune_lr": 1e-3, "batch_size": 4, "max_steps_per_epoch": 3, "n_targets": 2, "n_negatives": 2,
        "negatives": "paper", "valid_fraction": 0.2, "valid_max_cases": 10, "device": "cpu"}


def _toy() -> tuple[TrainView, ItemFeatures]:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 12, size=rng.integers(2, 7)).tolist() for _ in range(20)]
    items = _items(12)
    view = TrainView.from_sequences(seqs, items.domain, items=items)
    feats = ItemFeatures(items=items, text=rng.normal(size=(12, 6)).astype(np.float32), text_encoder="toy")
    return view, feats


@pytest.mark.parametrize("end_to_end", [False, True])
def test_fit_is_deterministic_per_seed(end_to_end):
    view, feats = _toy()
    cfg = {**TINY, "end_to_end": end_to_end}
    out = []
    for _ in range(2):
        m = TransRec()
        m.fit(view, feats, cfg, RunContext(seed=3))
        out.append((m.item_embeddings(), m.user_embeddings(Histories.from_lists([[0, 1], [5]]))))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][0].shape == (12, 16) and np.allclose(np.linalg.norm(out[0][0], axis=1), 1, atol=1e-5)
    assert TransRec.supports_next_item() and issubclass(TransRec, Method)
    t = m.stats["training"]
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert [s["stage"] for s in t["stages"]] == ["stage1", "stage2"]
    assert t["optimizer_steps"] > 0 and t["stop_reason"] in STOP_REASONS


def test_negative_setting_and_config_errors():
    assert targets_and_negatives({**TINY, "negatives": "paper"}) == (2, 4)
    assert targets_and_negatives({**TINY, "negatives": "code"}) == (5, 5)
    assert targets_and_negatives({**TINY, "negatives": "config"}) == (2, 2)
    with pytest.raises(ConfigError, match="transrec.negatives"):
        TransRec.check_config({**TINY, "negatives": "many"})
    with pytest.raises(ConfigError, match="transrec.dim"):
        TransRec.check_config({**TINY, "dim": 15})
    with pytest.raises(ConfigError, match="transrec.max_tokens"):
        TransRec.check_config({**TINY, "max_tokens": 0})
    with pytest.raises(ConfigError, match="transrec.target_max_steps_per_epoch"):
        TransRec.check_config({**TINY, "target_max_steps_per_epoch": 0})
    TransRec.check_config({**TINY, "target_max_steps_per_epoch": None})


def test_stage2_step_cap_per_call():
    """``train_on(max_steps=)`` (the transfer grid's target cap) overrides max_steps_per_epoch."""
    view, feats = _toy()
    seen = []
    for cap in (None, 1, 5):
        m = TransRec()
        m.prepare(view, feats, {**TINY, "stage1_epochs": 0, "epochs": 1, "valid_fraction": 0.0}, RunContext(seed=0))
        m.stats["stages"] = []
        m.train_on(view, RunContext(seed=0), stage1=False, max_steps=cap)
        seen.append(m.stats["stages"][-1]["max_steps_per_epoch"])
    assert seen == [3, 1, 5]


def test_stage2_stops_by_early_stopping_on_a_plateau_and_restores_the_best_epoch(monkeypatch):
    """Validation rises to epoch 2 then plateaus: patience 3 stops at epoch 5 of a 30-epoch cap, epoch 2's weights kept."""
    view, feats = _toy()
    m = TransRec()
    m.prepare(view, feats, {**TINY, "stage1_epochs": 0, "epochs": 30, "patience": 3}, RunContext(seed=0))
    scores, states = iter([0.1, 0.3, 0.3, 0.3, 0.3] + [0.9] * 25), []

    def scripted(carve, pool):
        states.append({k: v.clone() for k, v in m.net.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(m, "_validate", scripted)
    m.train_on(view, RunContext(seed=0), stage1=False)
    m.finish()
    t = m.stats["training"]
    assert t["stop_reason"] == "converged" and t["epochs"] == 5 and t["best_epoch"] == 1 and len(t["curve"]) == 5
    assert m.stats["stages"][-1]["epochs"] == 5 and m.stats["stages"][-1]["patience"] == 3
    for name, value in m.net.state_dict().items():
        torch.testing.assert_close(value, states[1][name], msg=name)
    assert any(not torch.equal(states[1][k], states[-1][k]) for k in states[1])  # later epochs did change it


def test_a_training_batch_with_one_image_item_runs_the_cnn():
    """BatchNorm cannot normalise one image by batch statistics: that batch reads the running ones, training resumes."""
    is_text = np.array([True, False, False])
    tower = ItemTower(is_text, 8, text_cache=object(), text_tower=torch.nn.Identity(),
                      images=torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8), image_row=np.array([-1, 0, 1]),
                      image_tower=SmallCNN(8, 4))
    tower.train()
    out = tower(torch.tensor([1]))
    assert out.shape == (1, 8) and bool(torch.isfinite(out).all())
    assert all(m.training for m in tower.modules())
    assert tower(torch.tensor([1, 2])).shape == (2, 8)  # two images: batch statistics as before
