"""The sanity baselines and the raw-content baseline behave as their cards say."""

from __future__ import annotations

import numpy as np

from benchmark.data.model import Items, TrainView
from benchmark.evaluation.exact import target_ranks
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.clip import RawContent
from methods.item2vec import Item2Vec
from methods.popularity import Popularity
from methods.random_vectors import RandomVectors


def toy_view() -> TrainView:
    # item 0 most popular, then 1, 2 ...; item 5 never seen
    seqs = [[0, 1], [0, 1], [0, 2], [0, 3], [1, 2], [4, 0]]
    return TrainView.from_sequences(seqs, [0, 0, 1, 1, 2, 2])


def test_popularity_ranks_candidates_by_training_frequency_for_any_query() -> None:
    view = toy_view()
    m = Popularity()
    m.fit(view, ItemFeatures(items=view.items), {}, RunContext())
    ranks = target_ranks(m.item_embeddings(), np.array([3, 5]), np.array([0, 0]),
                         query_embeddings=m.query_embeddings())
    assert ranks.tolist() == [1, 1]  # the most popular item is first whatever the query
    ranks = target_ranks(m.item_embeddings(), np.array([0]), np.array([2]), query_embeddings=m.query_embeddings())
    assert ranks.tolist() == [2]  # counts: 0:5, 1:3, 2:2 -> with 0 as query, 1 then 2


def test_random_is_seeded() -> None:
    view = toy_view()
    a, b, c = RandomVectors(), RandomVectors(), RandomVectors()
    a.fit(view, None, {"dim": 8}, RunContext(seed=1))
    b.fit(view, None, {"dim": 8}, RunContext(seed=1))
    c.fit(view, None, {"dim": 8}, RunContext(seed=2))
    assert np.array_equal(a.item_embeddings(), b.item_embeddings())
    assert not np.array_equal(a.item_embeddings(), c.item_embeddings())


def _features(joint: bool) -> ItemFeatures:
    items = Items(domains=("A",), source_id=np.array(["a", "b", "c"], dtype=object), domain=np.zeros(3, np.int16))
    text = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    image = np.array([[0, 2], [0, 0], [3, 0]], np.float32)
    mask = np.array([True, False, True])
    return ItemFeatures(items=items, text=text, image=image, image_mask=mask, text_encoder="t", image_encoder="i",
                        joint_space=joint)


def test_raw_content_concatenates_outside_a_joint_space() -> None:
    m = RawContent()
    f = _features(joint=False)
    m.fit(None, f, {"use_image": True}, RunContext())
    emb = m.item_embeddings()
    assert emb.shape == (3, 4)
    np.testing.assert_allclose(emb[1], [0, 1, 0, 0])  # missing image contributes zeros
    np.testing.assert_allclose(emb[0], [1, 0, 0, 1])
    assert m.display(f) == "CLIP [i + t]"


def test_raw_content_averages_in_a_joint_space_with_text_for_missing_images() -> None:
    m = RawContent()
    m.fit(None, _features(joint=True), {"use_image": True}, RunContext())
    emb = m.item_embeddings()
    assert emb.shape == (3, 2)
    np.testing.assert_allclose(emb[1], [0, 1], atol=1e-6)  # text stands in for the missing image
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)


def test_item2vec_puts_co_occurring_items_together_and_cold_items_at_zero() -> None:
    rng = np.random.default_rng(0)
    seqs = [list(rng.choice(10, 4, replace=False) + (10 if k % 2 else 0)) for k in range(600)]
    view = TrainView.from_sequences(seqs, [0] * 22)
    m = Item2Vec()
    cfg = {**Item2Vec.default_config(), "epochs": 10, "sample": 0.0, "vector_size": 16, "valid_fraction": 0.0}
    m.fit(view, None, cfg, RunContext(seed=3))
    e = m.item_embeddings()
    assert not e[20:].any()  # never seen -> zero rows
    u = e[:20] / np.linalg.norm(e[:20], axis=1, keepdims=True)
    sim = u @ u.T
    within = (sim[:10, :10].sum() - 10) / 90
    across = sim[:10, 10:].mean()
    assert within > across + 0.2
    m2 = Item2Vec()
    m2.fit(view, None, cfg, RunContext(seed=3))
    assert np.array_equal(e, m2.item_embeddings())  # deterministic per seed (workers: 1)
    t = m.stats["training"]  # no carve-out: the cap, no optimizer: examples = item tokens (no sub-sampling here)
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert (t["optimizer_steps"], t["examples_seen"], t["epochs"], t["stop_reason"]) == (
        0, 600 * 4 * 10, 10, "no_validation")


def test_item2vec_epoch_by_epoch_training_is_one_gensim_call() -> None:
    """One train() call per epoch with that epoch's slice of the alpha schedule = one call of all epochs."""
    from gensim.models import Word2Vec

    from methods.item2vec.model import item_sets, train_item2vec

    rng = np.random.default_rng(1)
    view = TrainView.from_sequences([list(rng.choice(30, 5, replace=False)) for _ in range(300)], [0] * 30)
    cfg = {**Item2Vec.default_config(), "epochs": 4, "vector_size": 8}
    ours = train_item2vec(view.sequences, 30, cfg, seed=5)
    sentences = item_sets(view.sequences, int(cfg["max_set_len"]))
    ref = Word2Vec(vector_size=8, sg=1, hs=0, negative=cfg["negative"], ns_exponent=cfg["ns_exponent"],
                   window=cfg["max_set_len"], shrink_windows=False, sample=cfg["sample"], min_count=1,
                   alpha=cfg["alpha"], min_alpha=cfg["min_alpha"], workers=1, seed=5)
    ref.build_vocab(sentences)
    ref.train(sentences, total_examples=len(sentences), epochs=4, compute_loss=True)
    keys = np.array([int(k) for k in ref.wv.index_to_key])
    assert np.array_equal(ours[keys], ref.wv.vectors)


def test_item2vec_stops_by_patience_and_returns_the_best_epoch(monkeypatch) -> None:
    import methods.item2vec.model as i2v

    script = iter([0.2, 0.5, 0.4, 0.45, 0.9, 0.95])  # best at epoch 1, then 2 epochs without a gain
    seen: list[np.ndarray] = []

    def scripted(vectors, queries, targets):
        seen.append(vectors.copy())
        return next(script)

    monkeypatch.setattr(i2v, "item_to_item_ndcg", scripted)
    rng = np.random.default_rng(0)
    view = TrainView.from_sequences([list(rng.choice(20, 4, replace=False)) for _ in range(200)], [0] * 20)
    m = Item2Vec()
    cfg = {**Item2Vec.default_config(), "epochs": 20, "patience": 2, "vector_size": 8}
    m.fit(view, None, cfg, RunContext(seed=0))
    t = m.stats["training"]
    assert len(seen) == 4  # stopped after epoch 3 of the cap of 20
    assert (t["stop_reason"], t["best_epoch"], t["epochs"], m.stats["cases"]) == ("converged", 1, 4, 20)
    assert [v for _, v in t["curve"]] == [0.2, 0.5, 0.4, 0.45]
    assert np.array_equal(m.item_embeddings(), seen[1]) and not np.array_equal(seen[1], seen[3])


def test_item2vec_validation_is_item_to_item_on_the_carve_out() -> None:
    from benchmark.data.validation import carve_validation
    from methods.shared.i2i_validation import carve_queries, item_to_item_ndcg

    view = TrainView.from_sequences([[0, 1, 2], [3, 4], [5, 6, 7, 8]], [0] * 9)
    carve = carve_validation(view, 0.99, seed=0)
    assert carve_queries(carve).tolist() == [1, 3, 7] and carve.targets.tolist() == [2, 4, 8]
    assert carve.fit.sequences.items.tolist() == [0, 1, 3, 5, 6, 7]  # trained on without the targets
    vectors = np.zeros((9, 2), np.float32)
    vectors[[1, 2]] = [[1, 0], [2, 0]]  # same direction as its query: ties, the smaller index (the query) first
    # case 0: query 1 (rank 1), target 2 (rank 2); cases 1, 2: zero query vector -> index rule, ranks 5 and 9
    assert np.isclose(item_to_item_ndcg(vectors, carve_queries(carve), carve.targets),
                      (1 / np.log2(3) + 1 / np.log2(6) + 1 / np.log2(10)) / 3)
