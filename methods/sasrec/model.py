"""SASRec with the suite's shared sequence encoder: ID embeddings -> causal Transformer -> next item.

Objective: softmax cross-entropy over all items at every position of each training window
(RecBole's ``loss_type: CE``). RecBole trains one example per prefix with the loss at its last
position; a causal encoder computes exactly those prefixes' outputs in one pass over the window,
so the examples and their loss are the same and a step costs one forward per sequence
[proposal: recorded in the card]. Early stopping on next-item NDCG@10 of the validation
carve-out (benchmark/data/validation.py), best epoch restored.

Item embedding (item-to-item and next-item candidates) = the ID embedding row; items never in the
fitted training data get zero rows (docs/protocol.md 0.2: ID-only methods rank cold items last).
Next-item scores are raw inner products, as in SASRec.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.model import Histories, TrainView
from benchmark.data.validation import carve_validation
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.sequence import SequenceEncoder, padded_ids, sequence_windows
from methods.shared.training import (
    EarlyStopping,
    TrainingBudget,
    combine_budgets,
    resolve_device,
    validation_ndcg,
)


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        d = int(cfg["dim"])
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)  # row 0 = padding
        self.encoder = SequenceEncoder(d, int(cfg["n_layers"]), int(cfg["n_heads"]), int(cfg["inner"]),
                                       float(cfg["dropout"]), int(cfg["max_len"]), causal=True, pooling="last",
                                       layer_norm_eps=float(cfg["layer_norm_eps"]), init_std=float(cfg["init_std"]))
        nn.init.normal_(self.item.weight, 0.0, float(cfg["init_std"]))
        with torch.no_grad():
            self.item.weight[0].zero_()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.item(ids + 1)  # -1 (padding) -> row 0

    def users(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(ids), lengths)

    def candidates(self) -> torch.Tensor:
        return self.item.weight[1:]


class SASRec(Method):
    """SASRec: self-attentive sequential recommendation over item IDs (next-item reference)."""

    name = "sasrec"
    display_name = "SASRec"
    paper_column = None
    requires = frozenset({"ids", "sequences"})
    next_item_scoring = "dot"
    tags = {"reference": "next-item"}

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        device = resolve_device(cfg.get("device"))
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        fit_view = carve.fit
        inputs, targets, lengths = sequence_windows(fit_view.sequences, int(cfg["max_len"]))
        torch.manual_seed(ctx.seed)
        self.net = SASRecNet(train.n_items, cfg).to(device)
        opt = torch.optim.Adam(self.net.parameters(), lr=float(cfg["lr"]))
        budget = TrainingBudget("train")  # examples_seen counts positions (the CE loss's examples)
        budget.watch(opt)
        batch, epochs, patience = int(cfg["batch_size"]), int(cfg["epochs"]), int(cfg["patience"])
        gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 11)
        stopper = EarlyStopping(patience, "sasrec", ctx.logger, budget=budget)
        self.stats: dict[str, Any] = {"windows": len(inputs), "positions": int(lengths.sum()), "epochs": 0,
                                      **carve.describe()}
        t0 = time.perf_counter()
        for epoch in ctx.progress(range(epochs), desc="sasrec epochs", total=epochs):
            self.net.train()
            order = torch.randperm(len(inputs), generator=gen)
            total, count = 0.0, 0
            for s in range(0, len(order), batch):
                idx = order[s : s + batch]
                x, y, n = inputs[idx], targets[idx], lengths[idx]
                width = int(n.max())
                x, y = x[:, :width].to(device), y[:, :width].to(device)
                h = self.net.encoder.hidden(self.net.embed(x), n.to(device))
                real = y >= 0
                logits = h[real] @ self.net.candidates().T
                loss = F.cross_entropy(logits, y[real])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(real.sum())
                count += int(real.sum())
                budget.saw(int(real.sum()))
            ctx.log_metric("sasrec_loss", total / max(count, 1), epoch)
            self.stats["epochs"] = epoch + 1
            budget.epoch_done(epoch)
            if len(carve) == 0:
                budget.stop_reason = "no_validation"
                continue
            score = validation_ndcg(self._users(carve.histories, device), self.net.candidates().detach(),
                                    torch.from_numpy(carve.targets.astype(np.int64)).to(device))
            ctx.log_metric("sasrec_valid_ndcg10", score, epoch)
            if stopper.update(score, self.net, epoch):
                break
        stopper.restore(self.net)
        self.stats.update({"seconds_train": time.perf_counter() - t0, "best_valid_ndcg10": stopper.best})
        self.stats["training"] = combine_budgets(budget)
        self.device = device
        emb = self.net.candidates().detach().cpu().numpy().astype(np.float32).copy()
        emb[fit_view.item_train_count == 0] = 0.0
        self._emb = emb

    def _users(self, histories: Histories, device: torch.device, batch: int = 4096) -> torch.Tensor:
        self.net.eval()
        ids, lengths = padded_ids(histories, self.net.encoder.max_len)
        with torch.no_grad():
            return torch.cat([self.net.users(ids[s : s + batch].to(device), lengths[s : s + batch].to(device))
                              for s in range(0, len(ids), batch)]) if len(ids) else torch.zeros(0, self._dim())

    def _dim(self) -> int:
        return self.net.item.embedding_dim

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        return self._users(histories, self.device).cpu().numpy().astype(np.float32)
