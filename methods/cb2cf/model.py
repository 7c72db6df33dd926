"""CB2CF (Barkan, Koenigstein, Yogev, Katz; RecSys'19): content -> collaborative-filtering regression.

A multiview network g maps an item's content to its Item2Vec vector y_i (the CF target, same
authors; docs/methods.md 8) with L = ||n(g(x_i)) - n(y_i)||^2 (10.3). The item embedding is n(g(x_i))
for *every* item, warm or cold, so the method stays content -> CF (10.4). No official code exists.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.cb2cf.network import MultiviewRegressor
from methods.item2vec import train_item2vec
from methods.shared.content import MultiHot, category_multihot, image_view, numeric_view, text_view
from methods.shared.training import FIXED_EPOCHS, TrainingBudget, combine_budgets, resolve_device


def regression_items(targets: np.ndarray, train_count: np.ndarray, min_count: int) -> np.ndarray:
    """Items with an Item2Vec vector and >= ``min_count`` training occurrences (docs/methods.md 10.4)."""
    has_vector = np.any(targets != 0, axis=1)
    return np.flatnonzero(has_vector & (train_count >= min_count))


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||n(g(x)) - n(y)||^2 averaged over the batch (= 2 - 2 cos)."""
    return (F.normalize(pred, dim=1) - F.normalize(target, dim=1)).pow(2).sum(1).mean()


class _Inputs:
    """All views as tensors, sliced per batch of item indices."""

    def __init__(self, dense: dict[str, np.ndarray], categories: MultiHot | None,
                 device: torch.device | str = "cpu"):
        self.device = device = torch.device(device)
        self.dense = {k: torch.from_numpy(v).to(device) for k, v in dense.items()}
        self.categories = categories

    def batch(self, items: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        idx = torch.from_numpy(items).to(self.device)
        dense = {k: v[idx] for k, v in self.dense.items()}
        if self.categories is None:
            return dense, None, None
        ids, offsets = self.categories.rows(items)
        return dense, torch.from_numpy(ids).to(self.device), torch.from_numpy(offsets).to(self.device)


class CB2CF(Method):
    """CB2CF: a multiview content network regressed onto Item2Vec vectors (serves cold items)."""

    name = "cb2cf"
    display_name = "CB2CF"
    paper_column = "CB2CF"
    requires = frozenset({"text", "ids", "sequences"})
    uses = frozenset({"image"})
    tags: dict[str, str] = {}

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        ctx.seed_everything()
        log = ctx.logger
        n = train.n_items
        device = resolve_device(cfg.get("device"))

        i2v_cfg = cfg["item2vec"]
        seqs = train.single_domain_sequences() if i2v_cfg.get("sets") == "per_domain" else train.sequences
        t0 = time.perf_counter()
        i2v_budget = TrainingBudget("item2vec", metric=FIXED_EPOCHS)
        targets = train_item2vec(seqs, n, i2v_cfg, seed=ctx.seed, workers=int(i2v_cfg["workers"]), ctx=ctx,
                                 budget=i2v_budget)

        seconds_item2vec = time.perf_counter() - t0
        image, has_image = image_view(features)
        if not has_image:
            log.info("cb2cf: no image features; the image view sees only its missing flag (text only)")
        dense = {"text": text_view(features), "image": image, "numeric": numeric_view(train.items)}
        categories = category_multihot(train.items, int(cfg["category_min_freq"]))
        if categories is None:
            log.info("cb2cf: no categories (or none with >= %d items); the category view is omitted",
                     cfg["category_min_freq"])
        else:
            log.info("cb2cf: category vocabulary %d (min freq %d)", len(categories.vocab), cfg["category_min_freq"])
        inputs = _Inputs(dense, categories, device)

        widths = {k: int(v) for k, v in cfg["view_widths"].items()}
        self.network = MultiviewRegressor(
            {k: v.shape[1] for k, v in dense.items()}, widths, len(categories.vocab) if categories else 0,
            int(cfg["hidden"]), targets.shape[1], float(cfg["dropout"])).to(device)

        eligible = regression_items(targets, train.item_train_count, int(cfg["min_train_count"]))
        rng = ctx.rng(1)
        eligible = rng.permutation(eligible)
        n_valid = int(round(float(cfg["valid_fraction"]) * len(eligible))) if len(eligible) >= 10 else 0
        valid, fit_items = np.sort(eligible[:n_valid]), eligible[n_valid:]
        log.info("cb2cf: %d regression items (Item2Vec vector, >= %d training occurrences): %d fit, %d held out",
                 len(eligible), cfg["min_train_count"], len(fit_items), len(valid))
        self.stats = {"examples_per_epoch": len(fit_items), "epochs": 0, "unit": "items",
                      "regression_items": len(eligible), "seconds_item2vec": seconds_item2vec}
        t0 = time.perf_counter()
        # Examples: item2vec stage = item tokens (see train_item2vec); regression stage = items.
        budget = TrainingBudget("regression", metric="valid mean cosine to the Item2Vec target")
        if len(valid) == 0:
            budget.stop_reason = "no_validation"
        if len(fit_items):
            self._train(inputs, torch.from_numpy(targets).to(device), fit_items, valid, cfg, ctx, budget)
        self.stats["seconds_train"] = time.perf_counter() - t0
        self.stats["training"] = combine_budgets(i2v_budget, budget)
        self._emb = self._predict(inputs, n, int(cfg["batch_size"]))
        log.info("cb2cf: embeddings for all %d items (%d never in training)", n,
                 int((train.item_train_count == 0).sum()))

    def _train(self, inputs: _Inputs, targets: torch.Tensor, fit_items: np.ndarray, valid: np.ndarray,
               cfg: dict[str, Any], ctx: RunContext, budget: TrainingBudget) -> None:
        opt = budget.watch(torch.optim.Adam(self.network.parameters(), lr=float(cfg["lr"])))
        batch, epochs, patience = int(cfg["batch_size"]), int(cfg["epochs"]), int(cfg["patience"])
        gen = torch.Generator().manual_seed(int(ctx.seed) * 1_000_003 + 41)
        best, best_state, waited = -np.inf, None, 0
        for epoch in ctx.progress(range(epochs), desc="cb2cf epochs", total=epochs):
            self.network.train()
            order = fit_items[torch.randperm(len(fit_items), generator=gen).numpy()]
            total = 0.0
            for s in range(0, len(order), batch):
                items = order[s : s + batch]
                loss = cosine_loss(self.network(*inputs.batch(items)), targets[torch.from_numpy(items).to(inputs.device)])
                opt.zero_grad()
                loss.backward()
                opt.step()
                budget.saw(len(items))
                total += float(loss.detach()) * len(items)
            ctx.log_metric("cb2cf_loss", total / len(order), epoch)
            self.stats["epochs"] = epoch + 1
            budget.epoch_done(epoch)
            if len(valid) == 0:
                continue
            cosine = self._mean_cosine(inputs, targets, valid, batch)
            ctx.log_metric("cb2cf_valid_cosine", cosine, epoch)
            budget.validated(cosine, epoch, cosine > best + 1e-5)
            if cosine > best + 1e-5:
                best, best_state, waited = cosine, copy.deepcopy(self.network.state_dict()), 0
            else:
                waited += 1
                if waited >= patience:
                    budget.stop_reason = "converged"
                    ctx.logger.info("cb2cf: early stop at epoch %d (best valid cosine %.4f)", epoch + 1, best)
                    break
        if best_state is not None:
            self.network.load_state_dict(best_state)
            self.stats["best_valid_cosine"] = best

    @torch.no_grad()
    def _outputs(self, inputs: _Inputs, items: np.ndarray, batch: int) -> torch.Tensor:
        self.network.eval()
        return torch.cat([F.normalize(self.network(*inputs.batch(items[s : s + batch])), dim=1)
                          for s in range(0, len(items), batch)])

    def _mean_cosine(self, inputs: _Inputs, targets: torch.Tensor, items: np.ndarray, batch: int) -> float:
        pred = self._outputs(inputs, items, batch)
        return float((pred * F.normalize(targets[torch.from_numpy(items).to(inputs.device)], dim=1)).sum(1).mean())

    def _predict(self, inputs: _Inputs, n: int, batch: int) -> np.ndarray:
        return self._outputs(inputs, np.arange(n, dtype=np.int64), batch).cpu().numpy().astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        return self._emb
