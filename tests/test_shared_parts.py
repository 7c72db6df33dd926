"""The shared method parts: sequence encoder, batching, MoE whitening adaptor, InfoNCE losses."""

from __future__ import annotations

import math

import numpy as np
import torch

from benchmark.data.model import TrainView
from methods.shared.contrastive import seq_item_infonce, seq_seq_infonce
from methods.shared.moe import MoEAdaptor, PWLayer
from methods.shared.sequence import SequenceEncoder, prefix_examples, sequence_windows


def test_causal_encoder_output_ignores_padding_and_future_items():
    torch.manual_seed(0)
    enc = SequenceEncoder(8, n_layers=2, n_heads=2, inner=16, dropout=0.0, max_len=6).eval()
    x = torch.randn(1, 6, 8)
    lengths = torch.tensor([3])
    out = enc(x, lengths)
    x2 = x.clone()
    x2[0, 3:] = torch.randn(3, 8)  # change padding / future items
    assert torch.allclose(enc(x2, lengths), out, atol=1e-6)
    assert torch.allclose(enc(x[:, :3], lengths), out, atol=1e-6)  # window width does not matter
    h = enc.hidden(x, torch.tensor([6]))
    assert torch.allclose(h[0, 2], enc.hidden(x[:, :3], torch.tensor([3]))[0, 2], atol=1e-6)  # causal


def test_non_causal_mean_pooling_domains_and_empty_sequences():
    torch.manual_seed(0)
    enc = SequenceEncoder(8, n_layers=1, n_heads=2, inner=16, dropout=0.0, max_len=5, n_domains=3,
                          causal=False, pooling="mean").eval()
    x = torch.randn(2, 5, 8)
    dom = torch.tensor([[0, 1, 2, 0, 0], [1, 1, 1, 1, 1]])
    out = enc(x, torch.tensor([2, 0]), dom)
    assert torch.all(out[1] == 0)  # empty history -> zero vector
    dom2 = dom.clone()
    dom2[0, 1] = 0
    assert not torch.allclose(enc(x, torch.tensor([2, 0]), dom2)[0], out[0])  # domains reach the encoder


def test_prefix_examples_and_windows_cover_every_next_item():
    train = TrainView.from_sequences([[1, 2, 3, 4], [5], [6, 7]], item_domain=[0] * 8)
    ex = prefix_examples(train.sequences, max_len=2)
    ids, lengths, targets = ex.batch(np.arange(len(ex)))
    assert targets.tolist() == [2, 3, 4, 7]
    assert ids.tolist() == [[1, -1], [1, 2], [2, 3], [6, -1]] and lengths.tolist() == [1, 2, 2, 1]
    inputs, tgt, n = sequence_windows(train.sequences, max_len=2)
    assert inputs.tolist() == [[2, 3], [6, -1]] and tgt.tolist() == [[3, 4], [7, -1]] and n.tolist() == [2, 1]


def test_whitening_expert_is_w_times_x_minus_b():
    layer = PWLayer(4, 3, dropout=0.0)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0]))
    x = torch.randn(5, 4)
    assert torch.allclose(layer(x), (x - layer.bias) @ layer.lin.weight.T)


def test_moe_gates_sum_to_one_and_noise_is_off_in_eval():
    torch.manual_seed(0)
    moe = MoEAdaptor(6, 4, n_experts=3, dropout=0.0)
    with torch.no_grad():
        moe.w_gate.normal_()
        moe.w_noise.normal_()
    x = torch.randn(7, 6)
    moe.train()
    g = moe.gates(x)
    assert torch.allclose(g.sum(-1), torch.ones(7)) and not torch.allclose(g, moe.gates(x))  # noisy
    moe.eval()
    g = moe.gates(x)
    assert torch.allclose(g, torch.softmax(x @ moe.w_gate, -1)) and torch.equal(moe(x), moe(x))
    expected = sum(g[:, k : k + 1] * moe.experts[k](x) for k in range(3))
    assert torch.allclose(moe(x), expected, atol=1e-6)


def test_seq_item_infonce_equals_the_hand_computation_with_same_target_rules():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    targets = torch.tensor([5, 7, 5])  # rows 0 and 2 share a target
    tau = 0.5
    sn = s / s.norm(dim=1, keepdim=True)
    vn = v / v.norm(dim=1, keepdim=True)
    logits = (sn @ vn.T / tau).tolist()

    def loss(rule):
        total = 0.0
        for b in range(3):
            denom = 0.0
            for j in range(3):
                if j != b and targets[j] == targets[b]:
                    denom += {"zero": 1.0, "remove": 0.0, "none": math.exp(logits[b][j])}[rule]
                else:
                    denom += math.exp(logits[b][j])
            total += -(logits[b][b] - math.log(denom))
        return total / 3

    for rule in ("zero", "remove", "none"):
        assert seq_item_infonce(s, v, tau, targets, same_target=rule).item() == pytest_approx(loss(rule))
    extra = torch.tensor([[0.3], [0.1], [-0.2]])
    with_extra = sum(-(logits[b][b] - math.log(sum(math.exp(x) for x in logits[b]) + math.exp(extra[b, 0].item())))
                     for b in range(3)) / 3
    assert seq_item_infonce(s, v, tau, extra_logits=extra, same_target="none").item() == pytest_approx(with_extra)
    a = torch.randn(4, 3)
    manual = torch.nn.functional.cross_entropy(
        torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(a, dim=1).T / 0.1, torch.arange(4))
    assert seq_seq_infonce(a, a, 0.1).item() == pytest_approx(manual.item())


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-5, abs=1e-6)


def test_same_window_entries_are_removed_from_each_others_negatives() -> None:
    """``groups``: anchors of one window (one user) are not negatives of each other; the positive stays."""
    import math

    import torch

    torch.manual_seed(0)
    s, v = torch.randn(4, 3), torch.randn(4, 3)
    groups = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    sn, vn = torch.nn.functional.normalize(s, dim=-1), torch.nn.functional.normalize(v, dim=-1)
    logits = (sn @ vn.T / tau).tolist()
    expected = 0.0
    for i in range(4):
        row = [logits[i][j] for j in range(4) if j == i or groups[j] != groups[i]]
        pos = logits[i][i]
        expected += -pos + math.log(sum(math.exp(x) for x in row))
    got = seq_item_infonce(s, v, tau, same_target="none", groups=groups).item()
    assert got == pytest_approx(expected / 4)
    assert seq_item_infonce(s, v, tau, same_target="none").item() != pytest_approx(expected / 4)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    an, bn = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    ll = (an @ bn.T / tau).tolist()
    exp_ss = sum(-ll[i][i] + math.log(sum(math.exp(ll[i][j]) for j in range(4) if j == i or groups[j] != groups[i]))
                 for i in range(4)) / 4
    assert seq_seq_infonce(a, b, tau, groups=groups).item() == pytest_approx(exp_ss)
