"""CB2CF (methods.md 10): views, regression onto Item2Vec targets, cold items."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from benchmark.data.model import Items, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.cb2cf import CB2CF
from methods.shared.content import category_multihot, image_view, numeric_view

N_THEMES, PER_THEME = 3, 20
N_WARM = N_THEMES * PER_THEME
COPY_OF_5, THEME2_COLD = N_WARM, N_WARM + 1  # two cold items (no interactions)
N_ITEMS = N_WARM + 2


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def toy(seed: int = 0, with_image: bool = True, with_categories: bool = True) -> tuple[TrainView, ItemFeatures]:
    rng = np.random.default_rng(seed)
    theme = np.r_[np.repeat(np.arange(N_THEMES), PER_THEME), 0, 2]
    centre = rng.normal(size=(N_THEMES, 32))
    text = centre[theme] + 0.6 * rng.normal(size=(N_ITEMS, 32))
    text[COPY_OF_5] = text[5]
    image = np.where((np.arange(N_ITEMS) % 4 == 0)[:, None], 0.0, rng.normal(size=(N_ITEMS, 16)) + theme[:, None])
    mask = np.arange(N_ITEMS) % 4 != 0
    mask[COPY_OF_5], image[COPY_OF_5] = mask[5], image[5]
    cats = [("Books", f"theme{t}") if i % 3 else ("Books", f"theme{t}", "extra") for i, t in enumerate(theme)]
    cats[3] = ("Books", "unique-category")
    items = Items(
        domains=("A", "B"),
        source_id=_objects([f"i{i}" for i in range(N_ITEMS)]),
        domain=(theme % 2).astype(np.int16),
        title=_objects([f"title {i}" for i in range(N_ITEMS)]),
        categories=_objects(cats) if with_categories else None,
        price=np.where(np.arange(N_ITEMS) % 5 == 0, np.nan, 10.0 + theme).astype(np.float32),
        avg_rating=np.where(np.arange(N_ITEMS) % 7 == 0, np.nan, 4.0).astype(np.float32),
    )
    seqs = [(PER_THEME * (u % N_THEMES) + rng.integers(0, PER_THEME, 8)).tolist() for u in range(300)]
    view = TrainView.from_sequences(seqs, items.domain, domains=items.domains, items=items)
    features = ItemFeatures(items=items, text=text.astype(np.float32),
                            image=image.astype(np.float32) if with_image else None,
                            image_mask=mask if with_image else None)
    return view, features


def cfg() -> dict:
    c = CB2CF.default_config()
    c["item2vec"].update(vector_size=32, epochs=10, sample=0.0)
    c.update(epochs=40, patience=40, batch_size=32, lr=3e-3, dropout=0.0)
    return c


def fit(seed: int = 0, **kw: bool) -> tuple[CB2CF, TrainView]:
    view, features = toy(**kw)
    method = CB2CF()
    method.fit(view, features, cfg(), RunContext(seed=seed, workers=1))
    return method, view


@pytest.fixture(scope="module")
def fitted() -> tuple[CB2CF, TrainView]:
    return fit(seed=0)


# -- views -------------------------------------------------------------------------------------
def test_category_vocabulary_has_min_frequency_and_handles_none():
    view, _ = toy()
    hot = category_multihot(view.items, min_freq=5)
    assert "unique-category" not in hot.vocab and {"Books", "theme0", "extra"} <= set(hot.vocab)
    dense = hot.dense()
    assert dense.shape == (N_ITEMS, len(hot.vocab)) and dense[3].sum() == 1  # only "Books" survives
    ids, offsets = hot.rows(np.array([3, 0]))  # EmbeddingBag inputs of items 3 and 0
    index = {c: k for k, c in enumerate(hot.vocab)}
    assert offsets.tolist() == [0, 1] and ids[:1].tolist() == [index["Books"]]
    assert sorted(ids[1:].tolist()) == sorted(index[c] for c in ("Books", "theme0", "extra"))
    assert category_multihot(toy(with_categories=False)[0].items, 5) is None


def test_numeric_and_image_views_flag_missing_values():
    view, features = toy()
    num = numeric_view(view.items)
    assert num.shape == (N_ITEMS, 4) and np.isfinite(num).all()
    assert num[0, 0] == 0 and num[0, 1] < num[1, 1]  # item 0: no price -> 0 and has_price below the others
    assert num[0, 2] == 0 and num[0, 3] > num[1, 3]  # item 0: no rating -> 0 and the missing flag set
    img, has = image_view(features)
    assert has and img.shape == (N_ITEMS, 17)
    assert (img[0, :16] == 0).all() and img[0, 16] == 1 and img[1, 16] == 0
    img, has = image_view(toy(with_image=False)[1])
    assert not has and img.shape == (N_ITEMS, 1) and (img == 1).all()


# -- the regression ----------------------------------------------------------------------------
def test_regression_fits_its_item2vec_targets(fitted):
    method, view = fitted
    assert method.stats["regression_items"] == N_WARM  # every warm item has >= 5 occurrences
    emb = method.item_embeddings()
    from methods.item2vec import train_item2vec

    targets = train_item2vec(view.sequences, N_ITEMS, cfg()["item2vec"], seed=0)[:N_WARM]
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    fit_cos = (emb[:N_WARM] * targets).sum(1).mean()
    mean_cos = (targets @ (targets.mean(0) / np.linalg.norm(targets.mean(0)))).mean()
    assert fit_cos > 0.8 and fit_cos > mean_cos + 0.1
    assert method.stats["best_valid_cosine"] > 0.5


def test_training_budget_has_both_stages(fitted):
    t = fitted[0].stats["training"]  # patience = epochs: the regression cannot stop early here
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    i2v, reg = t["stages"]
    assert (i2v["stage"], i2v["optimizer_steps"], i2v["epochs"], i2v["stop_reason"]) == ("item2vec", 0, 10, "max_epochs")
    n_fit = fitted[0].stats["examples_per_epoch"]
    assert (reg["stage"], reg["epochs"], reg["examples_seen"], reg["stop_reason"]) == ("regression", 40, 40 * n_fit, "max_epochs")
    assert reg["optimizer_steps"] == 40 * -(-n_fit // 32) and len(reg["curve"]) == 40 and t["stop_reason"] == "max_epochs"


def test_cold_items_get_meaningful_vectors(fitted):
    method, _ = fitted
    emb = method.item_embeddings()
    assert emb.shape == (N_ITEMS, 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # every item, cold ones too
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    assert int(np.argmax(sims[COPY_OF_5])) == 5  # same content as warm item 5: lands on it
    top = np.argsort(-sims[THEME2_COLD])[:10]
    assert np.mean(top // PER_THEME == 2) >= 0.8  # a new theme-2 item lands among theme-2 items


def test_runs_without_images_or_categories(caplog):
    with caplog.at_level(logging.INFO, logger="benchmark.method"):
        method, _ = fit(with_image=False, with_categories=False)
    assert "no image features" in caplog.text and "category view is omitted" in caplog.text
    emb = method.item_embeddings()
    assert emb.shape == (N_ITEMS, 32) and np.isfinite(emb).all()


def test_deterministic_per_seed(fitted):
    a = fit(seed=0)[0].item_embeddings()
    b = fit(seed=1)[0].item_embeddings()
    assert np.array_equal(a, fitted[0].item_embeddings()) and not np.array_equal(a, b)
