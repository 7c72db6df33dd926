"""The ranking models' building blocks against hand computations on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.tasks.ranking.metrics import auc, delong_test, logloss
from benchmark.tasks.ranking.models import (
    DIN,
    CrossNetV2,
    DCNv2,
    DINAttention,
    FeatureSelection,
    FinalMLP,
    InteractionAggregation,
    ItemFields,
)


def _fields(pretrained: np.ndarray | None = None, mode: str = "concat") -> ItemFields:
    known = np.array([True, True, False])  # item 2 is cold
    return ItemFields(known, np.array([0, 1, 1]), n_domains=2, id_dim=2, pretrained=pretrained, mode=mode)


def test_cross_layer_is_x0_times_linear_plus_residual() -> None:
    net = CrossNetV2(2, layers=2)
    with torch.no_grad():
        for layer, (w, b) in zip(net.layers, [([[1.0, 2.0], [0.0, 1.0]], [0.5, -1.0]),
                                              ([[0.0, 1.0], [1.0, 0.0]], [0.0, 0.0])], strict=True):
            layer.weight.copy_(torch.tensor(w))
            layer.bias.copy_(torch.tensor(b))
    x0 = torch.tensor([[1.0, 2.0]])
    # layer 1: W x0 + b = [1 + 4 + 0.5, 2 - 1] = [5.5, 1]; x1 = x0 * that + x0 = [6.5, 4]
    # layer 2: W x1 = [4, 6.5]; x2 = x0 * [4, 6.5] + x1 = [4 + 6.5, 13 + 4] = [10.5, 17]
    assert net(x0).tolist() == [[10.5, 17.0]]


def test_feature_selection_gates_are_twice_a_sigmoid_of_the_context() -> None:
    fields = _fields()
    fs = FeatureSelection(fields, hidden=[], contexts=("none", "item"))
    with torch.no_grad():
        fs.gates[0][0].weight.zero_()
        fs.gates[0][0].bias.fill_(0.0)  # "none" context: gate 2 * sigmoid(0) = 1
        fs.gates[1][0].weight.zero_()
        fs.gates[1][0].bias.copy_(torch.log(torch.tensor(3.0)) * torch.ones(fields.flat_dim))  # 2 * 3/4 = 1.5
    parts = [torch.full((1, 2), float(i + 1)) for i in range(4)]
    flat = torch.cat(parts, dim=-1)
    x1, x2 = fs(parts)
    assert torch.allclose(x1, flat)
    assert torch.allclose(x2, 1.5 * flat)


def test_bilinear_aggregation_sums_heads() -> None:
    agg = InteractionAggregation(4, 2, heads=2)
    with torch.no_grad():
        agg.w_x.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        agg.w_x.bias.fill_(0.5)
        agg.w_y.weight.copy_(torch.tensor([[0.0, 2.0]]))
        agg.w_xy.copy_(torch.tensor([[[1.0], [0.0]], [[0.0], [3.0]]]))  # head 0: x0*y0; head 1: 3*x3*y1
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    y = torch.tensor([[5.0, 6.0]])
    # linear: 1 + 0.5 + 12; bilinear: 1*5 + 3*4*6 = 77
    assert agg(x, y).item() == pytest.approx(13.5 + 77.0)


def test_din_attention_masks_padding_and_does_not_normalise() -> None:
    att = DINAttention(1, hidden=[], activation="relu")
    with torch.no_grad():
        att.unit[0].weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 1.0]]))  # weight_j = q * k_j
        att.unit[0].bias.zero_()
    q = torch.tensor([[2.0]])
    keys = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[True, True, False]])
    # weights 2, 6 (padding -> 0); pooled = 2*1 + 6*3 = 20 (no softmax)
    assert att.weights(q, keys, mask).tolist() == [[2.0, 6.0, 0.0]]
    assert att(q, keys, mask).item() == pytest.approx(20.0)
    keys2 = keys.clone()
    keys2[0, 2, 0] = -7.0
    assert att(q, keys2, mask).item() == pytest.approx(20.0)


def test_item_fields_concat_pretrained_and_cold_items_use_the_unknown_row() -> None:
    pre = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    fields = _fields(pre)
    assert fields.item_dim == 5 and fields.flat_dim == 2 * (5 + 2)
    vec = fields.item(torch.tensor([0, 1, 3]))  # padding, item 0, cold item 2
    assert vec[0].abs().sum() == 0
    assert torch.equal(vec[1, 2:], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(vec[2, :2], torch.zeros(2)) and torch.equal(vec[2, 2:], torch.tensor([0.0, 0.0, 1.0]))
    assert not any(p.data_ptr() == fields.pretrained.data_ptr() for p in fields.parameters())  # frozen
    proj = _fields(pre, mode="concat_project")
    assert proj.item_dim == 2 and proj.item(torch.tensor([1, 2])).shape == (2, 2)


def test_pooled_fields_average_only_real_history_items() -> None:
    fields = _fields(np.eye(3, dtype=np.float32))
    hist = torch.tensor([[1, 2, 0]])
    out = fields.pooled_fields(hist, torch.tensor([3]))
    expected = (fields.item(torch.tensor([1])) + fields.item(torch.tensor([2]))) / 2
    assert torch.allclose(out[2], expected)


@pytest.mark.parametrize("model", [DCNv2, FinalMLP, DIN])
def test_models_give_one_logit_per_row_and_learn(model) -> None:
    torch.manual_seed(0)
    fields = _fields(np.eye(3, dtype=np.float32))
    net = model(fields)
    hist = torch.tensor([[1, 2, 0], [2, 0, 0], [3, 1, 0], [1, 0, 0]])
    target = torch.tensor([1, 2, 3, 3])
    label = torch.tensor([1.0, 0.0, 1.0, 0.0])
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(hist, target), label)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert net(hist, target).shape == (4,)
    assert float(loss) < first


def test_auc_logloss_and_delong_against_hand_values() -> None:
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1, 0.7])
    # pairs (pos, neg): 0.9 beats all 3; 0.7 beats 0.1, ties 0.7 (0.5), loses to 0.8 -> (3 + 1.5) / 6
    assert auc(y, s) == pytest.approx(4.5 / 6)
    assert logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    same = delong_test(y, s, s)
    assert same.p_value == 1.0 and same.auc_a == same.auc_b
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    good, noise = y + rng.normal(0, 0.5, 2000), rng.normal(0, 1, 2000)
    res = delong_test(y, good, noise)
    assert res.auc_a > 0.8 and res.p_value < 1e-6 and res.z > 0
