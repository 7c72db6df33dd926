"""Item2Vec as skip-gram with negative sampling over each user's training items (docs/methods.md 8).

The paper treats a user's items as a *set*: every pair in the set is a (target, context) pair, so
the window is the whole (capped) set and order is ignored. gensim's Word2Vec with
``window = max_set_len`` and ``shrink_windows=False`` is exactly that objective (8.2).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from benchmark.data.model import Sequences, TrainView
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.i2i_validation import carve_queries, item_to_item_ndcg
from methods.shared.training import EarlyStopping, TrainingBudget, combine_budgets


class _Vectors:
    """The current item vectors behind the ``state_dict`` interface :class:`EarlyStopping` keeps and restores."""

    def __init__(self) -> None:
        self.vectors: np.ndarray | None = None

    def state_dict(self) -> dict[str, np.ndarray | None]:
        return {"vectors": self.vectors}

    def load_state_dict(self, state: dict[str, np.ndarray | None]) -> None:
        self.vectors = state["vectors"]


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
    validate: Callable[[np.ndarray], float] | None = None,
    patience: int | None = None,
) -> np.ndarray:
    """Train SGNS on item sets and return the input ("target") vectors u_i, float32 [n_items, d].

    Items absent from the vocabulary (never in a training set of >= 2 items) get a zero row, so
    they rank last (docs/protocol.md 0.2). ``workers > 1`` is faster but gensim is then not
    deterministic; the default config uses 1.

    ``budget`` (optional) records the stage: its epochs and, as examples, the item tokens gensim
    trained on (its ``trained_word_count``: every epoch's tokens after frequent-item sub-sampling,
    each the centre of one set's SGNS pairs). ``optimizer_steps`` stays 0: SGNS updates the vectors
    per (target, context) pair by plain SGD with a decaying rate, there is no optimizer step.

    Epochs run one ``train()`` call each, with that epoch's slice of the linear learning-rate
    schedule (``alpha`` -> ``min_alpha`` over ``cfg['epochs']``) as explicit start/end alpha: the
    same vectors, bit for bit, as one call of all epochs (tests/test_baselines.py), but training
    can stop between epochs. Without ``validate`` all ``cfg['epochs']`` run (stop reason
    ``max_epochs``, the paper's fixed budget; CB2CF's CF targets). With it [proposal], each epoch's
    vectors (the rows returned) are scored by ``validate`` and :class:`EarlyStopping` with
    ``patience`` ends training after that many epochs without a gain (``converged``); the best
    epoch's vectors are returned and ``cfg['epochs']`` is only the cap.
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
    keys = np.array([int(k) for k in model.wv.index_to_key], dtype=np.int64)

    def current() -> np.ndarray:
        vectors = out.copy()
        vectors[keys] = model.wv.vectors
        return vectors

    alpha, min_alpha = float(cfg["alpha"]), float(cfg["min_alpha"])
    logger = ctx.logger if ctx is not None else None
    if validate is not None and patience is None:
        raise ValueError("train_item2vec: validate needs a patience")
    stopper = EarlyStopping(int(patience), "item2vec", logger, budget=budget) if validate is not None else None
    holder = _Vectors()
    bar = ctx.progress(range(epochs), desc="item2vec epochs", total=epochs) if ctx is not None else range(epochs)
    for epoch in bar:
        trained_words, _raw_words = model.train(
            sentences,
            total_examples=len(sentences),
            epochs=1,
            start_alpha=alpha - (alpha - min_alpha) * epoch / epochs,
            end_alpha=alpha - (alpha - min_alpha) * (epoch + 1) / epochs,
            compute_loss=True,
        )
        if ctx is not None:
            ctx.log_metric("item2vec_loss", float(model.get_latest_training_loss()), epoch)
        if budget is not None:
            budget.saw(trained_words)
            budget.epoch_done(epoch)
        if stopper is None:
            continue
        holder.vectors = current()
        score = float(validate(holder.vectors))
        if ctx is not None:
            ctx.log_metric("item2vec_valid_ndcg10", score, epoch)
        if stopper.update(score, holder, epoch):
            break
    if stopper is None:
        return current()
    stopper.restore(holder)
    return holder.vectors


class Item2Vec(Method):
    """Item2Vec: skip-gram negative sampling over users' item sets (ID co-occurrence)."""

    name = "item2vec"
    display_name = "Item2Vec"
    paper_column = "Item2Vec"
    requires = frozenset({"ids", "sequences"})

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        checks = {
            "epochs": int(cfg["epochs"]) >= 1,
            "patience": int(cfg["patience"]) >= 1,
            "valid_fraction": 0.0 <= float(cfg["valid_fraction"]) < 1.0,
            "valid_max_cases": int(cfg["valid_max_cases"]) >= 1,
            "sets": cfg["sets"] in ("mixed", "per_domain"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"item2vec: invalid value for {bad} ({', '.join(f'{k}={cfg[k]!r}' for k in bad)})")

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        self.check_config(cfg)
        # [proposal] early stopping (the paper trains a fixed 20 epochs): train on the carve-out's fit
        # view, validate each epoch on item-to-item NDCG@10 (query = the item before the held-out one).
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        fit_view = carve.fit
        seqs = fit_view.sequences
        if cfg.get("sets") == "per_domain":
            seqs = fit_view.single_domain_sequences()
        queries, targets = carve_queries(carve), carve.targets.astype(np.int64)
        budget = TrainingBudget("item2vec", metric="valid item-to-item NDCG@10 (cosine)")
        validate = partial(item_to_item_ndcg, queries=queries, targets=targets) if len(carve) else None
        self._emb = train_item2vec(seqs, train.n_items, cfg, seed=ctx.seed, workers=int(cfg["workers"]), ctx=ctx,
                                   budget=budget, validate=validate, patience=int(cfg["patience"]))
        if validate is None:
            budget.metric, budget.stop_reason = "none: empty validation carve-out", "no_validation"
        self.stats = {"unit": "item tokens (gensim trained_word_count, after sub-sampling)",
                      "training": combine_budgets(budget), **carve.describe()}
        ctx.logger.info("item2vec: %d of %d items have a vector (the rest are cold: zero rows)",
                        int(np.any(self._emb != 0, axis=1).sum()), train.n_items)

    def item_embeddings(self) -> np.ndarray:
        return self._emb
