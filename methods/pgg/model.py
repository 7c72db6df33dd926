"""PGG (He et al., KDD'21) as the reconstruction "PGG-lite" of docs/methods.md 9.1: no code or full text exists.

Pipeline, one module per step: short-term sets (``sets``) -> user-item confidence (``confidence``)
-> purification and R re-samples (``purify``) -> generative I2I graph embedding (``generate``)
-> item embedding n(h_i). Every choice past the abstract is a [proposal]; see card.md.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np

from benchmark.data.model import TrainView
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.pgg.confidence import set_confidence, set_scores
from methods.pgg.generate import (
    cooccurrence_graph,
    graph_statistics,
    item_embedding,
    train_generative_graph,
)
from methods.pgg.purify import keep_probability, ordered_pairs, purify, resample_sets
from methods.pgg.sets import short_term_sets
from methods.shared.i2i_validation import carve_queries, item_to_item_ndcg
from methods.shared.mf import train_user_item_mf
from methods.shared.training import FIXED_EPOCHS, TrainingBudget, combine_budgets, resolve_device


class PGG(Method):
    """PGG (reconstruction): confidence-purified short-term sets -> generative I2I graph embedding."""

    name = "pgg"
    display_name = "PGG (reconstruction)"
    paper_column = "PGG"
    requires = frozenset({"ids", "sequences"})
    uses = frozenset()
    tags = {"reconstruction": "true", "pgg.variant": "lite"}

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        ctx.seed_everything()
        log = ctx.logger
        self.check_config(cfg)
        device = resolve_device(cfg.get("device"))
        # [proposal] early stopping of the graph stage (no PGG code exists; the rest of the pipeline
        # trains fixed epochs): every stage trains on the carve-out's fit view only, the graph stage
        # validates each epoch on item-to-item NDCG@10 of n(h_i) (query = the item before the held-out one).
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        seqs = carve.fit.sequences

        sets, owner = short_term_sets(seqs, int(cfg["window"]), int(cfg["stride"]))
        log.info("pgg: %d short-term sets (window %d, stride %d) from %d sequences",
                 len(sets), cfg["window"], cfg["stride"], len(seqs))

        t0 = time.perf_counter()
        # Two trained stages: the confidence MF, a fixed number of epochs without validation
        # (max_epochs; examples: interactions), and the graph embedding, early-stopped on the
        # carve-out (examples: ordered pairs).
        mf_budget = TrainingBudget("confidence_mf", metric=FIXED_EPOCHS)
        graph_budget = TrainingBudget("graph", metric="valid item-to-item NDCG@10 (cosine of n(h_i))")
        user_vec, item_vec = train_user_item_mf(seqs, train.n_items, cfg["confidence"], seed=ctx.seed,
                                                ctx=ctx, prefix="pgg_confidence", device=device, budget=mf_budget)
        seconds_confidence = time.perf_counter() - t0
        conf = set_confidence(set_scores(sets, owner, user_vec, item_vec))
        keep = purify(conf, float(cfg["purify_std"]))
        valid = sets >= 0
        p_keep = keep_probability(conf, keep, str(cfg["resample_scaling"]))
        resampled = resample_sets(sets, p_keep, int(cfg["resamples"]), ctx.rng(1))
        src, dst = ordered_pairs(resampled)
        raw_pairs = len(ordered_pairs(sets)[0])
        self.stats = {
            "sets": len(sets),
            "set_items": int(valid.sum()),
            "purified_drop_rate": float(1 - keep.sum() / max(valid.sum(), 1)),
            "mean_keep_probability": float(p_keep[keep].mean()) if keep.any() else 0.0,
            "raw_pairs": raw_pairs,
            "resampled_pairs": len(src),
        }
        log.info("pgg: purification drops %.1f%% of set items; re-sample keep prob %.3f; pairs %d "
                 "(raw sets: %d, x%d re-samples)", 100 * self.stats["purified_drop_rate"],
                 self.stats["mean_keep_probability"], len(src), raw_pairs, int(cfg["resamples"]))
        for key, value in self.stats.items():
            ctx.log_metric(f"pgg_{key}", float(value), None)

        if cfg["graph_stats"]:
            graph_info = graph_statistics(cooccurrence_graph(src, dst))
            self.stats.update({f"graph_{k}": v for k, v in graph_info.items()})
            log.info("pgg: purified co-occurrence graph %s", graph_info)
            for key, value in graph_info.items():
                ctx.log_metric(f"pgg_graph_{key}", float(value), None)

        t0 = time.perf_counter()
        trained = np.bincount(src, minlength=train.n_items) > 0
        queries, targets = carve_queries(carve), carve.targets.astype(np.int64)
        validate = partial(_validation_score, trained=trained, queries=queries, targets=targets) if len(carve) else None
        node, _context = train_generative_graph(src, dst, train.n_items, cfg["graph"], seed=ctx.seed, ctx=ctx,
                                               device=device, budget=graph_budget, validate=validate)
        if validate is None:
            graph_budget.metric, graph_budget.stop_reason = "none: empty validation carve-out", "no_validation"
        self.stats.update(seconds_confidence=seconds_confidence, seconds_train=time.perf_counter() - t0, unit="pairs")
        self._emb = item_embedding(node, trained)
        self.stats["examples_per_epoch"] = len(src)
        self.stats["epochs"] = graph_budget.epochs
        self.stats.update(carve.describe())
        self.stats["training"] = combine_budgets(mf_budget, graph_budget)
        n_cold = int((train.item_train_count == 0).sum())
        log.info("pgg: %d of %d items have a vector; zero rows: %d never in training, %d in no purified pair",
                 int(trained.sum()), train.n_items, n_cold, int(train.n_items - trained.sum() - n_cold))

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        graph = cfg["graph"]
        checks = {
            "graph.epochs": int(graph["epochs"]) >= 1,
            "graph.patience": int(graph["patience"]) >= 1,
            "valid_fraction": 0.0 <= float(cfg["valid_fraction"]) < 1.0,
            "valid_max_cases": int(cfg["valid_max_cases"]) >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"pgg: invalid value for {bad}")

    def item_embeddings(self) -> np.ndarray:
        return self._emb


def _validation_score(node: np.ndarray, trained: np.ndarray, queries: np.ndarray, targets: np.ndarray) -> float:
    """The graph stage's validation: item-to-item NDCG@10 of the item embedding n(h_i) PGG returns."""
    return item_to_item_ndcg(item_embedding(node, trained), queries, targets)
