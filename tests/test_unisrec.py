"""UniSRec (methods.md 3, 15): adaptor, losses by hand, augmentations, windows = prefixes, the method."""

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
from methods.shared.contrastive import seq_item_infonce, seq_seq_infonce
from methods.shared.moe import MoEAdaptor, PWLayer
from methods.shared.sequence import windows
from methods.shared.training import STOP_REASONS
from methods.unisrec import UniSRec, UniSRecTransductive
from methods.unisrec.augment import item_drop, word_drop_mask
from methods.unisrec.batching import aug_positions
from methods.unisrec.method import short_encoder
from methods.unisrec.model import UniSRecNet

N_ITEMS = 30


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def small_cfg(**over: object) -> dict:
    cfg = UniSRec.default_config()
    cfg.update(dim=16, n_heads=2, inner=32, max_len=8, n_experts=3, pretrain_epochs=2, finetune_epochs=2,
               pretrain_batch_size=16, finetune_batch_size=16, encode_chunk=4, valid_fraction=0.2)
    cfg.update(over)
    return cfg


def toy(seed: int = 0, word_drop: bool = True) -> tuple[TrainView, ItemFeatures]:
    """Three domains of 10 items; users walk within one theme (items i, i+3, i+6 ... share a theme)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for u in range(60):
        theme = u % 3
        seqs.append([int(3 * rng.integers(0, 10) + theme) for _ in range(int(rng.integers(3, 12)))])
    domain = np.arange(N_ITEMS) // 10
    text = (np.eye(3)[np.arange(N_ITEMS) % 3] @ rng.normal(size=(3, 12)) + 0.3 * rng.normal(size=(N_ITEMS, 12)))
    view = TrainView.from_sequences(seqs, item_domain=domain)
    aug = (text + 0.1 * rng.normal(size=text.shape)).astype(np.float32) if word_drop else None
    return view, ItemFeatures(items=view.items, text=text.astype(np.float32), text_encoder="minilm:test@x",
                              text_word_drop=aug, word_drop=0.15 if word_drop else 0.0)


# ----------------------------------------------------------------------------- adaptor


def test_gates_sum_to_one_and_the_noise_is_off_in_eval_mode() -> None:
    torch.manual_seed(0)
    moe = MoEAdaptor(6, 4, n_experts=3, dropout=0.2)
    with torch.no_grad():
        moe.w_gate.normal_()
        moe.w_noise.normal_()
    x = torch.randn(5, 6)
    moe.train()
    g1, g2 = moe.gates(x), moe.gates(x)
    assert torch.allclose(g1.sum(-1), torch.ones(5)) and not torch.allclose(g1, g2)  # noisy in training
    moe.eval()
    e1, e2 = moe.gates(x), moe.gates(x)
    assert torch.allclose(e1, e2) and torch.allclose(e1, torch.softmax(x @ moe.w_gate, -1))
    assert torch.allclose(moe(x), moe(x))  # no dropout either
    by_hand = sum(e1[:, k : k + 1] * ((x - moe.experts[k].bias) @ moe.experts[k].lin.weight.T) for k in range(3))
    assert torch.allclose(moe(x), by_hand, atol=1e-6)


def test_a_whitening_expert_is_w_times_x_minus_b() -> None:
    pw = PWLayer(3, 2, dropout=0.5).eval()
    with torch.no_grad():
        pw.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
        pw.lin.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]]))
    x = torch.tensor([[2.0, 1.0, 1.5]])  # x - b = [1, 3, 1]
    assert torch.allclose(pw(x), torch.tensor([[1.0 + 2.0, -3.0 + 1.0]]))


# ----------------------------------------------------------------------------- losses


def _hand_infonce(a: np.ndarray, b: np.ndarray, tau: float, targets: list[int]) -> float:
    """-log exp(l_ii) / sum_j exp(l_ij), with l_ij = 0 where j != i has the anchor's target (the code)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(a)):
        denom = 0.0
        for j in range(len(b)):
            logit = 0.0 if (j != i and targets[j] == targets[i]) else float(a[i] @ b[j]) / tau
            denom += math.exp(logit)
        total += -(float(a[i] @ b[i]) / tau - math.log(denom))
    return total / len(a)


def test_sequence_item_loss_equals_the_hand_computation_with_same_target_zeroing() -> None:
    rng = np.random.default_rng(1)
    s, v = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    targets = [5, 7, 5, 2]  # rows 0 and 2 share a target: their cross logits become 0
    for tau in (0.07, 0.5):
        got = seq_item_infonce(torch.tensor(s), torch.tensor(v), tau, torch.tensor(targets), same_target="zero")
        assert float(got) == pytest.approx(_hand_infonce(s, v, tau, targets), rel=1e-9)
        plain = seq_item_infonce(torch.tensor(s), torch.tensor(v), tau, torch.tensor(targets), same_target="none")
        assert float(plain) == pytest.approx(_hand_infonce(s, v, tau, [0, 1, 2, 3]), rel=1e-9)
    assert abs(float(got) - float(plain)) > 1e-3  # at tau 0.5 the zeroed logits visibly change the loss


def test_sequence_sequence_loss_equals_the_hand_computation_with_the_same_mask() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    targets = [1, 1, 3]
    got = seq_seq_infonce(torch.tensor(a), torch.tensor(b), 0.07, torch.tensor(targets), same_target="zero")
    assert float(got) == pytest.approx(_hand_infonce(a, b, 0.07, targets), rel=1e-9)
    assert float(seq_seq_infonce(torch.tensor(a), torch.tensor(b), 0.07)) == pytest.approx(
        _hand_infonce(a, b, 0.07, [0, 1, 2]), rel=1e-9)


# ----------------------------------------------------------------------------- augmentations


def test_item_drop_keeps_order_and_the_first_item_and_drops_about_the_ratio() -> None:
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 20, 2000)
    ids = np.full((2000, 20), -1, dtype=np.int64)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.permutation(1000)[:n]
    packed, new_len, keep = item_drop(ids, lengths, 0.2, rng)
    for r in range(0, 2000, 37):
        row = ids[r, : lengths[r]]
        kept = packed[r, : new_len[r]]
        assert kept[0] == row[0] and (packed[r, new_len[r] :] == -1).all()
        assert list(kept) == [x for x, k in zip(row, keep[r, : lengths[r]], strict=True) if k]  # order kept
    dropped = 1.0 - (new_len - 1).sum() / (lengths - 1).sum()  # the first item is never dropped
    assert dropped == pytest.approx(0.2, abs=0.015)
    mix = word_drop_mask(ids, lengths, 0.2, rng)
    assert not mix[ids < 0].any() and mix[ids >= 0].mean() == pytest.approx(0.2, abs=0.015)


def test_a_window_computes_every_prefix_and_its_item_drop_view_in_eval_mode() -> None:
    """The windows proposal: position p of a causal window = the prefix example items[0..p]."""
    view, features = toy()
    torch.manual_seed(0)
    net = UniSRecNet(torch.tensor(features.text), small_cfg()).eval()
    w = windows(view.sequences, 8)
    row = int(torch.argmax(w.lengths))
    n = int(w.lengths[row])
    table = net.item_vectors(torch.arange(N_ITEMS))
    with torch.no_grad():
        h = net.hidden(table, w.inputs[row : row + 1].clamp_min(0), w.lengths[row : row + 1])[0]
        for p in range(n):
            prefix = w.inputs[row : row + 1, : p + 1]
            assert torch.allclose(h[p], net.encode(table, prefix, torch.tensor([p + 1]))[0], atol=1e-5)
        keep = np.array([[True, False, True, True, False, True, True, True][:n]])
        assert aug_positions(keep)[0, 4] == 2  # items 0, 2, 3 kept up to position 4 -> third slot


def test_grouping_by_length_does_not_change_the_outputs() -> None:
    view, features = toy()
    torch.manual_seed(0)
    one = UniSRecNet(torch.tensor(features.text), small_cfg(encode_chunk=1000)).eval()
    many = UniSRecNet(torch.tensor(features.text), small_cfg(encode_chunk=3)).eval()
    many.load_state_dict(one.state_dict())
    ids, lengths = Histories.from_lists([s.tolist() for s in view.sequences]).padded(8)
    ids_t, len_t = torch.from_numpy(ids).clamp_min(0), torch.from_numpy(lengths)
    with torch.no_grad():
        table = one.item_vectors(torch.arange(N_ITEMS))
        assert torch.allclose(one.encode(table, ids_t, len_t), many.encode(table, ids_t, len_t), atol=1e-5)


# ----------------------------------------------------------------------------- the method


@pytest.mark.parametrize("examples", ["prefixes", "windows"])
def test_fit_is_deterministic_per_seed_and_gives_normalised_vectors(examples: str) -> None:
    view, features = toy()
    runs = []
    for _ in range(2):
        m = UniSRec()
        m.fit(view, features, small_cfg(examples=examples, pretrain_epochs=1, finetune_epochs=1), RunContext(seed=3))
        runs.append((m.item_embeddings(), m.user_embeddings(Histories.from_lists([[0, 3], [1], [2, 5, 8]]))))
    (e1, u1), (e2, u2) = runs
    assert np.array_equal(e1, e2) and np.array_equal(u1, u2)
    assert e1.shape == (N_ITEMS, 16) and e1.dtype == np.float32
    assert np.allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5) and np.allclose(np.linalg.norm(u1, axis=1), 1.0)
    other = UniSRec()
    other.fit(view, features, small_cfg(examples=examples, pretrain_epochs=1, finetune_epochs=1), RunContext(seed=4))
    assert not np.array_equal(other.item_embeddings(), e1)
    assert m.stats["word_drop_view"] and m.stats["cases"] > 0
    t = m.stats["training"]
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert [s["stage"] for s in t["stages"]] == ["pretrain", "finetune"]
    assert t["optimizer_steps"] > 0 and t["stop_reason"] in STOP_REASONS and t["epochs"] == 2
    assert t["stages"][0]["examples_seen"] <= m.stats["pretrain_examples"]  # one epoch (lone batches skipped)


def test_without_the_word_drop_view_the_seq_seq_task_uses_item_drop_only(caplog) -> None:
    view, features = toy(word_drop=False)
    m = UniSRec()
    with caplog.at_level("WARNING"):
        m.fit(view, features, small_cfg(pretrain_epochs=1, finetune_epochs=1), RunContext(seed=0))
    assert "item drop only" in caplog.text and m.stats["pretrain_last"]["item_drop"] == 1.0


def test_fine_tuning_freezes_the_encoder_but_trains_the_adaptor_and_embedding_norm() -> None:
    view, features = toy()
    m = UniSRec()
    cfg = small_cfg(pretrain_epochs=1, finetune_epochs=0)
    m.fit(view, features, cfg, RunContext(seed=0))
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    from methods.unisrec.training import trainable_for_finetune

    params = {id(p) for p in trainable_for_finetune(m.net, True)}
    names = {n for n, p in m.net.named_parameters() if id(p) in params}
    assert names and all(n.startswith(("moe.", "encoder.input_norm.")) for n in names)
    assert any(n.startswith("encoder.input_norm") for n in names)
    assert before.keys() == m.net.state_dict().keys()


def test_transductive_items_add_an_id_embedding() -> None:
    view, features = toy()
    m = UniSRecTransductive()
    m.fit(view, features, small_cfg(pretrain_epochs=1, finetune_epochs=1), RunContext(seed=0))
    assert m.net.item_id is not None and m.item_embeddings().shape == (N_ITEMS, 16)
    inductive = F.normalize(m.net.moe(m.net.text), dim=-1).detach().numpy()
    assert not np.allclose(m.item_embeddings(), inductive, atol=1e-4)


def test_bad_config_and_missing_text() -> None:
    view, features = toy()
    with pytest.raises(ConfigError, match="same_target"):
        UniSRec().fit(view, features, small_cfg(same_target="drop"), RunContext())
    with pytest.raises(ConfigError, match="n_heads"):
        UniSRec().fit(view, features, small_cfg(dim=15), RunContext())
    assert "text" in UniSRec.requires and "text" not in ItemFeatures(items=view.items).modalities
    assert UniSRec().display(features) == "UniSRec[minilm]" and UniSRec.paper_column == "UniSRec"
    assert short_encoder("hf:bert-base-uncased@abc") == "bert-base-uncased"


@pytest.mark.parametrize("same_user", ["remove", "keep"])
def test_windows_pretraining_masks_the_anchors_own_items_out_of_its_negatives(same_user: str, monkeypatch) -> None:
    """Windows batching: every real position is an anchor, grouped by its window (one user's sequence)."""
    import methods.unisrec.training as training

    view, features = toy()
    torch.manual_seed(0)
    cfg = small_cfg(same_user_negatives=same_user)
    net = UniSRecNet(torch.tensor(features.text), cfg)
    w = windows(view.sequences, 8)
    seen = {}
    real_si = training.seq_item_infonce

    def spy(seq, items, tau, targets=None, same_target="zero", extra_logits=None, groups=None):
        seen["groups"] = groups
        return real_si(seq, items, tau, targets, same_target=same_target, extra_logits=extra_logits, groups=groups)

    monkeypatch.setattr(training, "seq_item_infonce", spy)
    rows = torch.arange(4)
    inputs, targets, lengths = w.inputs[rows], w.targets[rows], w.lengths[rows]
    training.pretrain_step_windows(net, inputs, targets, lengths, cfg, np.random.default_rng(0))
    if same_user == "keep":
        assert seen["groups"] is None
        return
    expected = torch.cat([torch.full((int(n),), r) for r, n in enumerate(lengths)])  # window of each anchor
    assert torch.equal(seen["groups"].cpu(), expected)
