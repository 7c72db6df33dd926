"""PGG-lite (methods.md 9.1): each step on toy data, then the whole method."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.pgg import PGG
from methods.pgg.confidence import set_confidence, set_scores
from methods.pgg.generate import cooccurrence_graph, graph_statistics, item_embedding, train_generative_graph
from methods.pgg.purify import keep_probability, ordered_pairs, purify, resample_sets
from methods.pgg.sets import PAD, short_term_sets
from methods.shared.mf import train_user_item_mf

N_ITEMS = 41  # items 0-19 cluster A, 20-39 cluster B, 40 never in training


def toy_view(seed: int = 0, noisy_user: bool = True) -> TrainView:
    """Users who stay inside one cluster; user 0 has one planted item from the other cluster."""
    rng = np.random.default_rng(seed)
    seqs = []
    for u in range(160):
        base = 0 if u % 2 == 0 else 20
        seqs.append((base + rng.integers(0, 20, 6)).tolist())
    if noisy_user:
        seqs[0] = [0, 1, 2, 33, 3]  # 33 is from cluster B: an "exceptional action"
    return TrainView.from_sequences(seqs, item_domain=[0] * 20 + [1] * 21)


def small_cfg(**over: object) -> dict:
    cfg = PGG.default_config()
    cfg["confidence"].update(epochs=20, batch_size=256, lr=0.02, l2=0.3)
    cfg["graph"].update(epochs=10, batch_size=512, lr=0.01)
    cfg.update(over)
    return cfg


@pytest.fixture(autouse=True)
def one_thread():
    with RunContext(workers=1).threads():
        yield


def ctx(seed: int = 0) -> RunContext:
    return RunContext(seed=seed, workers=1)


# -- step 1: short-term sets -------------------------------------------------------------------
def test_sets_are_sliding_windows_with_a_tail_window():
    view = TrainView.from_sequences([[0, 1, 2, 3, 4, 5, 6], [7, 8], [9]], item_domain=[0] * 10)
    sets, owner = short_term_sets(view.sequences, window=3, stride=1)
    assert sets.tolist()[:5] == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6]]
    assert sets.tolist()[5] == [7, 8, PAD]  # a short sequence is one set; one item is no set
    assert owner.tolist() == [0, 0, 0, 0, 0, 1]

    sets, owner = short_term_sets(view.sequences, window=3, stride=3)
    assert sets.tolist() == [[0, 1, 2], [3, 4, 5], [4, 5, 6], [7, 8, PAD]]  # tail-aligned last window
    assert owner.tolist() == [0, 0, 0, 1]


# -- step 2: confidence ------------------------------------------------------------------------
def test_confidence_ranks_the_planted_noisy_item_last():
    view = toy_view()
    cfg = small_cfg()
    user_vec, item_vec = train_user_item_mf(view.sequences, N_ITEMS, cfg["confidence"], seed=0)
    sets, owner = short_term_sets(view.sequences, window=5, stride=1)
    conf = set_confidence(set_scores(sets, owner, user_vec, item_vec))
    first = np.flatnonzero(owner == 0)[0]
    assert sets[first].tolist() == [0, 1, 2, 33, 3]
    assert np.isclose(np.nansum(conf[first]), 1.0)
    assert int(np.nanargmin(conf[first])) == 3  # the cross-cluster item has the lowest c(u, i)
    # step 3 on the same set: purification drops exactly the planted item
    assert purify(conf[first : first + 1])[0].tolist() == [True, True, True, False, True]


# -- step 3: purification and re-sampling -----------------------------------------------------
def test_purify_drops_items_below_mean_minus_one_std():
    conf = np.array([[0.24, 0.24, 0.24, 0.24, 0.04], [0.5, 0.5, np.nan, np.nan, np.nan],
                     [0.7, 0.3, np.nan, np.nan, np.nan]], dtype=np.float32)
    keep = purify(conf)
    assert keep[0].tolist() == [True, True, True, True, False]
    assert keep[1].tolist() == [True, True, False, False, False]  # equal confidences: keep both
    assert keep[2].tolist() == [True, True, False, False, False]  # 2 items: low one sits exactly at mean - std


def test_keep_probability_scalings():
    conf = np.array([[0.5, 0.25, 0.25, np.nan]], dtype=np.float32)
    keep = np.array([[True, True, True, False]])
    assert np.allclose(keep_probability(conf, keep, "max"), [[1.0, 0.5, 0.5, 0.0]])
    assert np.allclose(keep_probability(conf, keep, "minmax"), [[1.0, 0.0, 0.0, 0.0]])
    assert np.allclose(keep_probability(conf, keep, "none"), [[1.0, 1.0, 1.0, 0.0]])
    with pytest.raises(ValueError):
        keep_probability(conf, keep, "bogus")


def test_resampling_keeps_items_at_their_probability():
    sets = np.arange(20000, dtype=np.int32).reshape(4000, 5)
    prob = np.tile(np.array([1.0, 0.7, 0.3, 0.0, 0.5], dtype=np.float32), (4000, 1))
    out = resample_sets(sets, prob, repeats=3, rng=np.random.default_rng(0))
    assert out.shape == (12000, 5)
    rate = (out != PAD).mean(axis=0)
    assert np.allclose(rate, [1.0, 0.7, 0.3, 0.0, 0.5], atol=0.02)
    kept = out != PAD
    assert np.array_equal(out[kept], np.tile(sets, (3, 1))[kept])  # kept slots keep their item


def test_ordered_pairs_skip_padding_and_self_pairs():
    src, dst = ordered_pairs(np.array([[1, 2, 3], [4, 4, PAD]], dtype=np.int32))
    assert sorted(zip(src.tolist(), dst.tolist(), strict=True)) == [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]


# -- step 4: generative graph embedding --------------------------------------------------------
def test_graph_statistics_from_the_purified_pairs():
    src, dst = ordered_pairs(np.array([[0, 1, 2], [0, 1, PAD], [5, 6, PAD]], dtype=np.int32))
    graph = cooccurrence_graph(src, dst)
    assert graph[0][1]["weight"] == 2 and graph[1][2]["weight"] == 1
    stats = graph_statistics(graph)
    assert (stats["nodes"], stats["edges"], stats["components"], stats["degree_max"]) == (5, 4, 2, 2)


@pytest.mark.parametrize(("pool", "two_hop"), [(128, 0.0), (0, 0.0), (128, 0.5)])
def test_cooccurring_items_end_up_closer_than_unrelated_ones(pool, two_hop):
    rng = np.random.default_rng(0)
    sets = np.concatenate([rng.integers(0, 10, (400, 4)), rng.integers(10, 20, (400, 4))]).astype(np.int32)
    src, dst = ordered_pairs(sets)
    cfg = {**small_cfg()["graph"], "negative_pool": pool, "two_hop_weight": two_hop}
    node, _ = train_generative_graph(src, dst, 21, cfg, seed=0)
    emb = item_embedding(node, np.bincount(src, minlength=21) > 0)
    sim = emb @ emb.T
    same = np.mean([sim[i, j] for i in range(10) for j in range(10) if i != j])
    cross = np.mean(sim[:10, 10:20])
    assert same > cross + 0.3
    assert not emb[20].any()  # never a source: zero row


# -- step 5 / the method -----------------------------------------------------------------------
def _fit(seed: int = 0, **over: object) -> tuple[PGG, np.ndarray]:
    view = toy_view()
    method = PGG()
    method.fit(view, ItemFeatures(items=view.items), small_cfg(**over), ctx(seed))
    return method, method.item_embeddings()


@pytest.fixture(scope="module")
def fitted() -> tuple[PGG, np.ndarray]:
    with RunContext(workers=1).threads():
        return _fit(seed=0)


def test_item_embeddings_shape_and_cold_items(fitted):
    method, emb = fitted
    assert emb.shape == (N_ITEMS, 128) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert not emb[40].any()  # never in training: zero vector
    norms = np.linalg.norm(emb[:40], axis=1)
    assert np.all(np.isclose(norms, 1.0, atol=1e-5) | (norms == 0))  # unit, or purified out of every set
    assert (norms > 0).sum() >= 36
    assert method.stats["graph_components"] == 2  # the two clusters (the planted item was purified away)
    sim = emb[:40] @ emb[:40].T
    assert sim[:20, :20].mean() > sim[:20, 20:].mean() + 0.2


def test_training_budget_has_the_confidence_and_graph_stages(fitted):
    t = fitted[0].stats["training"]  # the MF runs fixed epochs; the graph stage validates every epoch
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    mf, graph = t["stages"]
    cases = fitted[0].stats["cases"]  # held-out validation items: not trained on
    n_pairs, n_interactions = fitted[0].stats["resampled_pairs"], 159 * 6 + 5 - cases
    assert cases == 16  # 10% of the 160 training users
    assert (mf["stage"], mf["epochs"], mf["examples_seen"], mf["optimizer_steps"]) == (
        "confidence_mf", 20, 20 * n_interactions, 20 * -(-n_interactions // 256))
    epochs = graph["epochs"]
    assert 1 <= epochs <= 10 and len(graph["curve"]) == epochs
    assert (graph["stage"], graph["examples_seen"], graph["optimizer_steps"]) == (
        "graph", epochs * n_pairs, epochs * -(-n_pairs // 512))
    assert mf["stop_reason"] == "max_epochs" and mf["curve"] == []
    assert graph["stop_reason"] == t["stop_reason"] and t["stop_reason"] in ("converged", "max_epochs")
    assert t["curve"] == graph["curve"] and t["best_epoch"] == graph["best_epoch"] is not None


def test_graph_stage_stops_by_patience_and_keeps_the_best_epoch(monkeypatch):
    import methods.pgg.model as pgg_model

    script = iter([0.10, 0.30, 0.20, 0.25, 0.90, 0.95])  # best at epoch 1, then 2 epochs without a gain
    seen: list[np.ndarray] = []

    def scripted(vectors, queries, targets):
        seen.append(vectors.copy())
        return next(script)

    monkeypatch.setattr(pgg_model, "item_to_item_ndcg", scripted)
    cfg = small_cfg()
    cfg["graph"].update(patience=2)
    method, emb = _fit(**{"graph": cfg["graph"]})
    t = method.stats["training"]
    assert len(seen) == 4  # stopped after epoch 3: epochs 4-10 never ran
    assert (t["stop_reason"], t["best_epoch"], t["stages"][1]["epochs"]) == ("converged", 1, 4)
    assert [v for _, v in t["curve"]] == [0.10, 0.30, 0.20, 0.25]
    assert np.array_equal(emb, seen[1])  # the best epoch's n(h_i), not the last one
    assert not np.array_equal(emb, seen[3])


def test_empty_carve_out_trains_to_the_cap_without_validation():
    method, _ = _fit(valid_fraction=0.0)
    t = method.stats["training"]
    assert (t["stop_reason"], t["stages"][1]["epochs"], t["curve"], method.stats["cases"]) == (
        "no_validation", 10, [], 0)


def test_deterministic_per_seed(fitted):
    _, a = _fit(seed=0)
    _, b = _fit(seed=1)
    assert np.array_equal(a, fitted[1])
    assert not np.array_equal(a, b)
