"""Model selection on scripted validation metrics: the validation NDCG's tie rule, EarlyStopping
(methods/shared/training.py) and the ranking trainer's patience and best-state restore
(benchmark/tasks/ranking/train.py::train_cell). Each test would fail if the worst epoch were kept,
training never stopped, the best state were never put back, or a constant scorer scored 1.0."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import benchmark.tasks.ranking.train as ranking_train
from benchmark.evaluation.metrics import NDCG
from benchmark.evaluation.next_item import next_item_ranks
from benchmark.tasks.ranking.data import CTRData, CTRPart
from methods.shared.training import EarlyStopping, validation_ndcg

# -- validation_ndcg: the evaluator's exact-rank tie rule ---------------------------------------


def _chance_ndcg(targets: np.ndarray, k: int = 10) -> float:
    """Every item ties: rank = 1 + #(smaller indices) = 1 + target (docs/protocol.md 0.2)."""
    rank = 1 + targets.astype(np.float64)
    return float(np.mean(np.where(rank <= k, 1.0 / np.log2(rank + 1), 0.0)))


def _evaluator_ndcg(items: np.ndarray, users: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    ranks = next_item_ranks(items.astype(np.float32), users.astype(np.float32), targets, scoring="dot")
    return float(NDCG(k)(ranks).mean())


@pytest.mark.parametrize("n_items, dim", [(7, 5), (30, 4), (300, 16)])
def test_a_constant_scorer_gets_the_evaluators_chance_level_not_one(n_items: int, dim: int) -> None:
    rng = np.random.default_rng(n_items)
    items = np.tile(rng.normal(size=(1, dim)), (n_items, 1)).astype(np.float32)  # every item the same vector
    users = rng.normal(size=(40, dim)).astype(np.float32)
    targets = rng.integers(0, n_items, size=40)
    got = validation_ndcg(torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(targets))
    expected = _chance_ndcg(targets)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(_evaluator_ndcg(items, users, targets), abs=1e-12)
    assert got < 1.0


def test_a_zero_user_vector_ties_every_item() -> None:
    rng = np.random.default_rng(1)
    items = rng.normal(size=(25, 6)).astype(np.float32)
    users = np.zeros((12, 6), dtype=np.float32)
    targets = rng.integers(0, 25, size=12)
    got = validation_ndcg(torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(targets))
    assert got == pytest.approx(_chance_ndcg(targets), abs=1e-12)
    assert got == pytest.approx(_evaluator_ndcg(items, users, targets), abs=1e-12)


def test_a_perfect_scorer_gets_one() -> None:
    targets = np.array([3, 0, 4, 4, 1])
    items = torch.eye(5)
    users = torch.eye(5)[torch.from_numpy(targets)]
    assert validation_ndcg(users, items, torch.from_numpy(targets)) == pytest.approx(1.0, abs=1e-12)


def test_ties_count_the_smaller_indices_hand_example() -> None:
    # user [1, 0] scores items [1, 0, 1, 2, 1, 0] (dot): item 3 is above all; items 0, 2, 4 tie.
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    users = torch.tensor([[1.0, 0.0]] * 6)
    targets = torch.tensor([0, 2, 4, 3, 1, 5])
    # ranks: item0 1+1+0 = 2; item2 1+1+1 = 3; item4 1+1+2 = 4; item3 1; item1 1+4+0 = 5; item5 1+4+1 = 6
    ranks = np.array([2, 3, 4, 1, 5, 6], dtype=np.float64)
    expected = float(np.mean(1.0 / np.log2(ranks + 1)))
    assert validation_ndcg(users, items, targets) == pytest.approx(expected, abs=1e-12)
    # k cuts: only ranks <= 3 count
    expected_k3 = float(np.mean(np.where(ranks <= 3, 1.0 / np.log2(ranks + 1), 0.0)))
    assert validation_ndcg(users, items, targets, k=3) == pytest.approx(expected_k3, abs=1e-12)
    # the same per-case ranks as the evaluator (next-item protocol, raw inner products)
    ev = next_item_ranks(items.numpy(), users.numpy(), targets.numpy(), scoring="dot")
    assert ev.tolist() == ranks.astype(int).tolist()


def test_random_scores_match_the_evaluator_and_batching_changes_nothing() -> None:
    rng = np.random.default_rng(7)
    items = rng.normal(size=(60, 8)).astype(np.float32)
    items[10:20] = items[3]  # a block of identical rows: they tie with item 3
    users = rng.normal(size=(50, 8)).astype(np.float32)
    targets = rng.integers(0, 60, size=50)
    targets[:10] = np.arange(10, 20)  # targets inside the tied block
    u, it, t = torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(targets)
    got = validation_ndcg(u, it, t, k=20)
    assert got == pytest.approx(_evaluator_ndcg(items, users, targets, k=20), abs=1e-12)
    assert validation_ndcg(u, it, t, k=20, batch=7) == pytest.approx(got, abs=1e-12)


def test_a_diverged_model_is_never_perfect() -> None:
    items = torch.eye(4)
    users = torch.eye(4)
    targets = torch.arange(4)
    users_nan = users.clone()
    users_nan[1] = float("nan")
    assert validation_ndcg(users_nan, items, targets) == pytest.approx(0.75, abs=1e-12)  # case 1 is a miss
    items_nan = items.clone()
    items_nan[2, 0] = float("nan")
    assert validation_ndcg(users, items_nan, targets) == 0.0
    assert validation_ndcg(users[:0], items, targets[:0]) == 0.0


# -- EarlyStopping on scripted scores -----------------------------------------------------------


def _net_at(net: nn.Linear, epoch: int) -> nn.Linear:
    """Give ``net`` weights that name the epoch (every entry = epoch + 1)."""
    with torch.no_grad():
        net.weight.fill_(epoch + 1.0)
        net.bias.fill_(-(epoch + 1.0))
    return net


def _run(scores: list[float], patience: int, **kw) -> tuple[EarlyStopping, nn.Linear, int | None]:
    """Feed ``scores`` epoch by epoch; returns the stopper, the net and the epoch it stopped at."""
    net = nn.Linear(3, 2)
    stopper = EarlyStopping(patience, "test", **kw)
    stopped = None
    for epoch, score in enumerate(scores):
        if stopper.update(score, _net_at(net, epoch), epoch):
            stopped = epoch
            break
    return stopper, net, stopped


def _epoch_of(net: nn.Linear) -> int:
    w = float(net.weight[0, 0].detach())
    assert torch.all(net.weight == w) and torch.all(net.bias == -w)
    return int(w) - 1


def test_stops_at_the_patience_epoch_and_restores_the_best() -> None:
    stopper, net, stopped = _run([0.1, 0.3, 0.2, 0.25, 0.28, 0.9], patience=3)
    assert stopped == 4  # epochs 2, 3, 4 did not beat 0.3
    assert stopper.best == pytest.approx(0.3)
    assert _epoch_of(net) == 4  # training left the last epoch's weights...
    stopper.restore(net)
    assert _epoch_of(net) == 1  # ...restore puts back the best epoch's, not the last or the first


def test_a_gain_resets_the_patience() -> None:
    stopper, net, stopped = _run([0.1, 0.3, 0.2, 0.25, 0.35, 0.3, 0.3, 0.3, 0.3], patience=3)
    assert stopped == 7
    stopper.restore(net)
    assert _epoch_of(net) == 4 and stopper.best == pytest.approx(0.35)


def test_never_stops_while_improving_and_keeps_the_last_best() -> None:
    stopper, net, stopped = _run([0.1, 0.2, 0.3, 0.4], patience=1)
    assert stopped is None
    _net_at(net, 9)
    stopper.restore(net)
    assert _epoch_of(net) == 3


def test_a_worse_score_never_replaces_the_best() -> None:
    stopper, net, stopped = _run([0.5, 0.2, 0.4, 0.1, 0.49], patience=10)
    assert stopped is None and stopper.best == pytest.approx(0.5)
    stopper.restore(net)
    assert _epoch_of(net) == 0
    # the kept state is a copy: later weight changes do not leak into it
    _net_at(net, 7)
    stopper.restore(net)
    assert _epoch_of(net) == 0


def test_min_delta_is_respected() -> None:
    # 0.5 + 1e-7 is no gain under the default min_delta (1e-6)
    stopper, net, stopped = _run([0.5, 0.5 + 1e-7, 0.5], patience=2)
    assert stopped == 2
    stopper.restore(net)
    assert _epoch_of(net) == 0
    # with min_delta 0.1, 0.55 is no gain over 0.5 but 0.65 is
    stopper, net, stopped = _run([0.5, 0.55, 0.65, 0.6], patience=2, min_delta=0.1)
    assert stopped is None and stopper.best == pytest.approx(0.65)
    stopper.restore(net)
    assert _epoch_of(net) == 2
    stopper, net, stopped = _run([0.5, 0.55, 0.58], patience=2, min_delta=0.1)
    assert stopped == 2
    stopper.restore(net)
    assert _epoch_of(net) == 0


def test_restore_is_a_no_op_before_any_update() -> None:
    net = _net_at(nn.Linear(3, 2), 5)
    EarlyStopping(3, "test").restore(net)
    assert _epoch_of(net) == 5


def test_a_constant_scorer_epoch_is_not_selected_over_a_real_one() -> None:
    """The failure this guards against: a collapsed epoch scored 1.0 and was kept as the best."""
    n = 40
    good_items = torch.eye(n)
    targets = torch.arange(n)
    users = torch.eye(n)[targets] + 0.5 * torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    collapsed = torch.ones(n, n)
    good, bad = validation_ndcg(users, good_items, targets), validation_ndcg(users, collapsed, targets)
    assert 0.5 < good < 1.0 and bad == pytest.approx(_chance_ndcg(targets.numpy()), abs=1e-12)
    net = nn.Linear(3, 2)
    stopper = EarlyStopping(5, "test")
    stopper.update(good, _net_at(net, 0), 0)  # a useful but imperfect model
    stopper.update(bad, _net_at(net, 1), 1)  # then it collapses: every item the same vector
    stopper.restore(net)
    assert _epoch_of(net) == 0


# -- the ranking trainer's patience and best-state restore --------------------------------------


def _part(rng: np.random.Generator, n_pos: int, n_items: int, length: int = 3) -> CTRPart:
    history = rng.integers(1, n_items + 1, size=(n_pos, length)).astype(np.int32)
    positive = np.repeat(np.arange(n_pos), 2).astype(np.int32)
    target = rng.integers(1, n_items + 1, size=2 * n_pos).astype(np.int32)
    label = np.tile([1.0, 0.0], n_pos).astype(np.float32)
    return CTRPart(history, positive, target, label, overlapped=np.arange(n_pos) % 2 == 0)


def _ctr_data() -> CTRData:
    rng = np.random.default_rng(0)
    n_items = 12
    return CTRData(train=_part(rng, 40, n_items), valid=_part(rng, 10, n_items), test=_part(rng, 10, n_items),
                   item_domain=np.arange(n_items) % 2, domains=("a", "b"), known=np.ones(n_items, dtype=bool),
                   item_head=np.arange(n_items) < n_items // 2, train_positives_all=40, settings={}, hash="test")


def _train_scripted(monkeypatch: pytest.MonkeyPatch, valid_aucs: list[float], epochs: int, patience: int):
    """Run ``train_cell`` with the validation AUC of epoch e replaced by ``valid_aucs[e]``.

    Returns (result, the model state after each epoch, the state the test set was scored with).
    """
    data = _ctr_data()
    script = iter(valid_aucs)
    real_auc, real_predict = ranking_train.auc, ranking_train.predict
    epoch_states: list[dict[str, torch.Tensor]] = []
    test_states: list[dict[str, torch.Tensor]] = []

    def scripted_auc(labels, scores):
        return next(script) if labels is data.valid.label else real_auc(labels, scores)

    def recording_predict(model, part, *args, **kwargs):
        if part is data.valid:
            epoch_states.append(copy.deepcopy(model.state_dict()))
        elif part is data.test:
            test_states.append(copy.deepcopy(model.state_dict()))
        return real_predict(model, part, *args, **kwargs)

    monkeypatch.setattr(ranking_train, "auc", scripted_auc)
    monkeypatch.setattr(ranking_train, "predict", recording_predict)
    cfg = {"id_dim": 4, "max_epochs": epochs, "batch_size": 16, "lr": 0.05, "patience": patience,
           "model": {"hidden": [8], "cross_layers": 1}}
    result = ranking_train.train_cell("dcnv2", data, None, cfg, seed=0)
    assert len(test_states) == 1
    return result, epoch_states, test_states[0]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ranking_trainer_stops_after_patience_and_scores_the_test_set_with_the_best_epoch(monkeypatch) -> None:
    result, states, final = _train_scripted(monkeypatch, [0.6, 0.8, 0.7, 0.75, 0.79, 0.95, 0.99], epochs=7,
                                            patience=3)
    assert len(states) == 5  # epochs 0..4: 2, 3 and 4 did not beat 0.8
    assert result.info["epochs_run"] == 5 and result.info["best_epoch"] == 1
    assert result.metrics["valid_auc"] == pytest.approx(0.8)
    assert [v for name, v, _ in result.curves if name == "valid/auc"] == [0.6, 0.8, 0.7, 0.75, 0.79]
    assert not _same(states[1], states[4]) and not _same(states[1], states[0])  # the epochs really differ
    assert _same(final, states[1])  # the best epoch's weights, not the last or the first
    training = result.info["training"]  # the budget: patience ran out, so it converged
    assert training["stop_reason"] == "converged" and training["epochs"] == 5 and training["best_epoch"] == 1
    assert [v for _, v in training["curve"]] == [0.6, 0.8, 0.7, 0.75, 0.79] and training["optimizer_steps"] > 0


def test_ranking_trainer_never_keeps_a_worse_epoch_and_runs_all_epochs_within_patience(monkeypatch) -> None:
    result, states, final = _train_scripted(monkeypatch, [0.7, 0.6, 0.7, 0.65], epochs=4, patience=10)
    assert len(states) == 4 and result.info["epochs_run"] == 4
    assert result.info["best_epoch"] == 0  # an equal AUC (epoch 2) is no gain either
    assert _same(final, states[0]) and not _same(final, states[3])


def test_ranking_trainer_keeps_the_last_epoch_when_it_is_the_best(monkeypatch) -> None:
    result, states, final = _train_scripted(monkeypatch, [0.5, 0.6, 0.7], epochs=3, patience=1)
    assert result.info["best_epoch"] == 2 and result.info["epochs_run"] == 3
    assert _same(final, states[2])
    assert result.info["training"]["stop_reason"] == "max_epochs"  # still improving at the cap: not converged
