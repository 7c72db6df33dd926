"""Item2Vec as skip-gram with negative sampling over each user's training items (docs/methods.md 8).

The paper treats a user's items as a *set*: every pair in the set is a (target, context) pair, so
the window is the whole (capped) set and order is ignored. gensim's Word2Vec with
``window = max_set_len`` and ``shrink_windows=False`` is exactly that objective (8.2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.data.model import Sequences, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.training import TrainingBudget, combine_budgets


class _EpochLoss:
    """gensim callback that forwards the per-epoch training loss to the run's metric logger
    (and counts the epochs into ``budget``)."""

    def __init__(self, ctx: RunContext | None, epochs: int, budget: TrainingBudget | None = None):
        from gensim.models.callbacks import CallbackAny2Vec

        class _Callback(CallbackAny2Vec):
            def __init__(cb) -> None:
                cb.epoch = 0
                cb.previous = 0.0
                cb.bar = ctx.progress(range(epochs), desc="item2vec epochs", total=epochs) if ctx else None
                cb.iterator = iter(cb.bar) if cb.bar is not None else None

            def on_epoch_end(cb, model) -> None:
                total = float(model.get_latest_training_loss())
                if ctx is not None:
                    ctx.log_metric("item2vec_loss", total - cb.previous, cb.epoch)
                    next(cb.iterator, None)
                cb.previous = total
                if budget is not None:
                    budget.epoch_done(cb.epoch)
                cb.epoch += 1

        self.callback = _Callback()


def item_sets(sequences: Sequences, max_set_len: int) -> list[list[str]]:
    """Each user's training items as one 'sentence' of item-index strings, capped to the most recent."""
    offsets, items = sequences.offsets, sequences.items
    starts = np.maximum(offsets[:-1], offsets[1:] - max_set_len)
    tokens = items.astype(str)
    return [tokens[s:e].tolist() for s, e in zip(starts, offsets[1:], strict=True) if e - s >= 2]


def train_item2vec(
    sequences: Sequences,
    n_items: int,
    cfg: dict[str, Any],
    seed: int = 0,
    workers: int = 1,
    ctx: RunContext | None = None,
    budget: TrainingBudget | None = None,
) -> np.ndarray:
    """Train SGNS on item sets and return the input ("target") vectors u_i, float32 [n_items, d].

    Items absent from the vocabulary (never in a training set of >= 2 items) get a zero row, so
    they rank last (docs/protocol.md 0.2). ``workers > 1`` is faster but gensim is then not
    deterministic; the default config uses 1.

    ``budget`` (optional) records the stage: its epochs and, as examples, the item tokens gensim
    trained on (its ``trained_word_count``: every epoch's tokens after frequent-item sub-sampling,
    each the centre of one set's SGNS pairs). ``optimizer_steps`` stays 0: SGNS updates the vectors
    per (target, context) pair by plain SGD with a decaying rate, there is no optimizer step. The
    stop reason stays ``max_epochs``: Item2Vec runs a fixed number of epochs by design (paper).
    """
    from gensim.models import Word2Vec

    sentences = item_sets(sequences, int(cfg["max_set_len"]))
    dim = int(cfg["vector_size"])
    out = np.zeros((n_items, dim), dtype=np.float32)
    if not sentences:
        return out
    epochs = int(cfg["epochs"])
    model = Word2Vec(
        vector_size=dim,
        sg=1,
        hs=0,
        negative=int(cfg["negative"]),
        ns_exponent=float(cfg["ns_exponent"]),
        window=int(cfg["max_set_len"]),
        shrink_windows=False,
        sample=float(cfg["sample"]),
        min_count=int(cfg["min_count"]),
        alpha=float(cfg["alpha"]),
        min_alpha=float(cfg["min_alpha"]),
        workers=workers,
        seed=seed,
    )
    model.build_vocab(sentences)
    callback = _EpochLoss(ctx, epochs, budget).callback
    trained_words, _raw_words = model.train(
        sentences,
        total_examples=len(sentences),
        epochs=epochs,
        compute_loss=True,
        callbacks=[callback],
    )
    if budget is not None:
        budget.saw(trained_words)
    keys = np.array([int(k) for k in model.wv.index_to_key], dtype=np.int64)
    out[keys] = model.wv.vectors
    return out


class Item2Vec(Method):
    """Item2Vec: skip-gram negative sampling over users' item sets (ID co-occurrence)."""

    name = "item2vec"
    display_name = "Item2Vec"
    paper_column = "Item2Vec"
    requires = frozenset({"ids", "sequences"})

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        seqs = train.sequences
        if cfg.get("sets") == "per_domain":
            seqs = train.single_domain_sequences()
        budget = TrainingBudget("item2vec", metric="none: fixed epochs, no validation")
        self._emb = train_item2vec(seqs, train.n_items, cfg, seed=ctx.seed, workers=int(cfg["workers"]), ctx=ctx,
                                   budget=budget)
        self.stats = {"unit": "item tokens (gensim trained_word_count, after sub-sampling)",
                      "training": combine_budgets(budget)}
        ctx.logger.info("item2vec: %d of %d items have a vector (the rest are cold: zero rows)",
                        int(np.any(self._emb != 0, axis=1).sum()), train.n_items)

    def item_embeddings(self) -> np.ndarray:
        return self._emb
