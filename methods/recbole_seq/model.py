"""GRU4Rec (IDRNN) and NextItNet (IDCNN) from RecBole 1.2.1, trained here on a TrainView.

TransRec's Table 6 compares against IDRNN (GRU4Rec, Hidasi et al.) and IDCNN (NextItNet, Yuan
et al.); RecBole's model classes are used as they ship (their layers, initialisation and
``forward``), built from a plain config dict and a one-method dataset stand-in. Training is
RecBole's ``loss_type: CE`` over every prefix of each training sequence (``prefix_examples``),
Adam, early stopping on next-item NDCG@10 of the validation carve-out. The paper trains its ID
baselines with TransRec's binary CPC loss; CE is RecBole's default [proposal: recorded in the
suite card]. NextItNet reads the last position's output, so its inputs are right-aligned
(padding first), the NextItNet paper's layout [proposal].
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmark import compat
from benchmark.data.model import Histories, TrainView
from benchmark.data.validation import carve_validation
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.sequence import bucketed_batches, padded_ids, prefix_examples
from methods.shared.training import (
    EarlyStopping,
    TrainingBudget,
    combine_budgets,
    resolve_device,
    validation_ndcg,
)


class _Items:
    """The one thing RecBole's SequentialRecommender asks of a dataset: the item count (+ padding)."""

    def __init__(self, n_items: int) -> None:
        self.n = n_items + 1

    def num(self, field: str) -> int:
        return self.n


def _recbole_config(cfg: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
            "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": int(cfg["max_len"]),
            "device": device, "loss_type": "CE", "embedding_size": int(cfg["dim"]), "hidden_size": int(cfg["dim"]),
            "num_layers": int(cfg.get("num_layers", 1)), "dropout_prob": float(cfg.get("dropout", 0.3)),
            "block_num": int(cfg.get("block_num", 5)), "dilations": list(cfg.get("dilations", [1, 4])),
            "kernel_size": int(cfg.get("kernel_size", 3)), "reg_weight": float(cfg.get("reg_weight", 1e-5))}


class RecBoleSequential(Method):
    """Shared training of a RecBole sequential model on item IDs (CE over all items)."""

    requires = frozenset({"ids", "sequences"})
    next_item_scoring = "dot"
    tags = {"reference": "next-item", "implementation": "RecBole 1.2.1"}
    right_aligned: ClassVar[bool] = False

    def build(self, cfg: dict[str, Any], n_items: int, device: torch.device) -> torch.nn.Module:
        raise NotImplementedError

    def _encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: -1-padded, left-aligned [B, L] -> sequence vectors [B, d]."""
        x = ids + 1  # RecBole: 0 = padding
        if self.right_aligned:
            width = x.shape[1]
            shift = (width - lengths).view(-1, 1)
            col = (torch.arange(width, device=x.device).view(1, -1) - shift) % width
            x = x.gather(1, col)
            return self.net(x)
        return self.net(x, lengths.clamp_min(1))

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        device = resolve_device(cfg.get("device"))
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        examples = prefix_examples(carve.fit.sequences, int(cfg["max_len"]))
        torch.manual_seed(ctx.seed)
        self.net = self.build(cfg, train.n_items, device).to(device)
        self.device, self.max_len = device, int(cfg["max_len"])
        opt = torch.optim.Adam(self.net.parameters(), lr=float(cfg["lr"]))
        budget = TrainingBudget("train")  # examples_seen counts prefix examples (one CE target each)
        budget.watch(opt)
        rng = ctx.rng(0x6E7)
        batch, patience = int(cfg["batch_size"]), int(cfg["patience"])
        hist_len, buckets = examples.target - examples.start, bool(cfg.get("length_buckets", False))
        stopper = EarlyStopping(patience, self.name, ctx.logger, budget=budget)
        self.stats: dict[str, Any] = {"examples": len(examples), "epochs": 0, **carve.describe()}
        t0 = time.perf_counter()
        for epoch in ctx.progress(range(int(cfg["epochs"])), desc=f"{self.name} epochs"):
            self.net.train()
            total = 0.0
            for rows in bucketed_batches(hist_len, batch, rng, buckets=buckets):
                ids, lengths, target = examples.batch(rows)
                out = self._encode(ids.to(device), lengths.to(device))
                logits = out @ self.net.item_embedding.weight[1:].T
                loss = F.cross_entropy(logits, target.to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                budget.saw(len(rows))
            ctx.log_metric(f"{self.name}_loss", total, epoch)
            self.stats["epochs"] = epoch + 1
            budget.epoch_done(epoch)
            if len(carve) == 0:
                budget.stop_reason = "no_validation"
                continue
            score = validation_ndcg(self._users(carve.histories), self._items(),
                                    torch.from_numpy(carve.targets.astype(np.int64)).to(device))
            if stopper.update(score, self.net, epoch):
                break
        stopper.restore(self.net)
        self.stats.update({"seconds_train": time.perf_counter() - t0, "best_valid_ndcg10": stopper.best})
        self.stats["training"] = combine_budgets(budget)
        emb = self._items().cpu().numpy().astype(np.float32).copy()
        emb[carve.fit.item_train_count == 0] = 0.0
        self._emb = emb

    def _items(self) -> torch.Tensor:
        return self.net.item_embedding.weight[1:].detach()

    @torch.no_grad()
    def _users(self, histories: Histories, batch: int = 2048) -> torch.Tensor:
        self.net.eval()
        ids, lengths = padded_ids(histories, self.max_len)
        if len(ids) == 0:
            return torch.zeros(0, self._items().shape[1])
        return torch.cat([self._encode(ids[s : s + batch].to(self.device), lengths[s : s + batch].to(self.device))
                          for s in range(0, len(ids), batch)])

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        return self._users(histories).cpu().numpy().astype(np.float32)


class GRU4Rec(RecBoleSequential):
    """GRU4Rec (IDRNN in TransRec's Table 6): RecBole 1.2.1's GRU over item IDs."""

    name = "gru4rec"
    display_name = "IDRNN (GRU4Rec)"

    def build(self, cfg: dict[str, Any], n_items: int, device: torch.device) -> torch.nn.Module:
        compat.apply()
        return compat.recbole_sequential_models().GRU4Rec(_recbole_config(cfg, device), _Items(n_items))


class NextItNet(RecBoleSequential):
    """NextItNet (IDCNN in TransRec's Table 6): RecBole 1.2.1's dilated causal CNN over item IDs."""

    name = "nextitnet"
    display_name = "IDCNN (NextItNet)"
    right_aligned = True

    def build(self, cfg: dict[str, Any], n_items: int, device: torch.device) -> torch.nn.Module:
        compat.apply()
        return compat.recbole_sequential_models().NextItNet(_recbole_config(cfg, device), _Items(n_items))
