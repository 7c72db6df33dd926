"""TransRec (Wang et al., arXiv 2206.06190): end-to-end item towers + Transformer user tower.

``fit`` trains on the run's training view (stage 1 then stage 2) for Table 1 and the next-item
protocol. The transfer suite (benchmark/tasks/transfer/stages.py) uses the same object in steps:
``prepare`` (build towers), ``train_on(source, stage1=True)`` (pretraining), then
``train_on(target, stage1=False)`` (fine-tuning, the same stage-2 procedure [seed 3.4]) and
``finish``; TFS is ``prepare`` + ``train_on(target, stage1=False)`` (item encoders still
pretrained, user encoder from scratch).

Item embedding (Table 1, "not in the paper") = the L2-normalised item-tower output; next-item
candidates are the raw item-tower outputs scored by inner product, as the authors' ``test.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from benchmark.data.model import Histories, TrainView
from benchmark.data.validation import ValidationCarve, carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.sequence import padded_ids, sequence_windows
from methods.shared.training import (
    FIXED_EPOCHS,
    EarlyStopping,
    TrainingBudget,
    combine_budgets,
    resolve_device,
    validation_ndcg,
)
from methods.transrec.encoders import (
    SMALL_CNN,
    TextTokenCache,
    TextTower,
    assign_modality,
    build_image_tower,
    load_images,
    load_text_backbone,
)
from methods.transrec.network import (
    ItemTower,
    TransRecNet,
    cpc_loss,
    sample_negatives,
    stage2_batch,
    uep_loss,
)

NEGATIVE_SETTINGS = {"paper": (None, 4), "code": (5, 5)}  # (targets l or the config's, negatives j)


def targets_and_negatives(cfg: dict[str, Any]) -> tuple[int, int]:
    """(l, j): the paper's l targets and 4 negatives, the code's 5 and 5, or the config's values."""
    l_cfg, j_cfg = int(cfg["n_targets"]), int(cfg["n_negatives"])
    if cfg["negatives"] == "config":
        return l_cfg, j_cfg
    l_set, j_set = NEGATIVE_SETTINGS[cfg["negatives"]]
    return (l_set or l_cfg), j_set


class TransRec(Method):
    """TransRec: DSSM with end-to-end modality item encoders and a Transformer user encoder."""

    name = "transrec"
    display_name = "TransRec"
    paper_column = None  # not in the UniEmbedding paper (methods.md 15)
    requires = frozenset({"ids", "sequences", "text"})
    uses = frozenset({"image"})
    next_item_scoring = "dot"
    tags = {"paper": "seed 001 (not in the UniEmbedding paper)"}

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        """Config errors before any work (one line naming the key)."""
        for key in ("dim", "n_layers", "n_heads", "inner", "max_len", "n_targets", "batch_size", "max_tokens",
                    "image_size"):
            if int(cfg[key]) < 1:
                raise ConfigError(f"transrec.{key} must be >= 1, got {cfg[key]!r}")
        cap = cfg.get("target_max_steps_per_epoch")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ConfigError(f"transrec.target_max_steps_per_epoch must be null or an integer >= 1, got {cap!r}")
        if int(cfg["n_negatives"]) < 0 or int(cfg["text_trainable_layers"]) < 0:
            raise ConfigError("transrec.n_negatives and transrec.text_trainable_layers must be >= 0")
        if cfg["negatives"] not in (*NEGATIVE_SETTINGS, "config"):
            raise ConfigError(f"transrec.negatives must be one of paper, code, config; got {cfg['negatives']!r}")
        if int(cfg["dim"]) % int(cfg["n_heads"]):
            raise ConfigError(f"transrec.dim {cfg['dim']} is not a multiple of transrec.n_heads {cfg['n_heads']}")

    # -- building ------------------------------------------------------------------------------
    def prepare(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        """Modality rule, item towers (text cache computed once) and user tower; nothing trained yet."""
        self.check_config(cfg)
        self.cfg, self.ctx = dict(cfg), ctx
        self.device = resolve_device(cfg.get("device"))
        items = train.items
        n = len(items)
        paths = np.asarray(items.image_path if items.image_path is not None else np.full(n, "", dtype=object))
        has_image = (paths != "") if bool(cfg["use_images"]) else np.zeros(n, dtype=bool)
        if features.image_mask is not None and not bool(cfg["end_to_end"]):
            has_image &= np.asarray(features.image_mask, dtype=bool)
        self.is_text = assign_modality(items, has_image, str(cfg["modality_rule"]), float(cfg["text_share"]),
                                       list(cfg.get("text_domains") or []), int(cfg["modality_seed"]))
        torch.manual_seed(ctx.seed)
        d = int(cfg["dim"])
        self.stats: dict[str, Any] = {"text_items": int(self.is_text.sum()), "image_items": int((~self.is_text).sum()),
                                      "modality_rule": cfg["modality_rule"], "stages": []}
        t0 = time.perf_counter()
        if bool(cfg["end_to_end"]):
            tokenizer, backbone, ident = load_text_backbone(str(cfg["text_encoder"]))
            n_layers = len(backbone.encoder.layer)
            n_top = min(int(cfg["text_trainable_layers"]), n_layers)
            text_items = np.flatnonzero(self.is_text)
            titles = [str(items.title[i]) if items.title is not None else "" for i in text_items]
            cache = TextTokenCache(backbone, tokenizer, titles, text_items, n, n_layers - n_top, int(cfg["max_tokens"]))
            text_tower = TextTower(backbone, n_layers - n_top, d, dropout=float(cfg["dropout"]))
            img_items = np.flatnonzero(~self.is_text)
            image_row = np.full(n, -1, dtype=np.int64)
            image_row[img_items] = np.arange(len(img_items))
            images = load_images([str(paths[i]) for i in img_items], int(cfg["image_size"]))
            image_tower, self.image_name = build_image_tower(d, cfg)
            tower = ItemTower(self.is_text, d, text_cache=cache, text_tower=text_tower, images=images,
                              image_row=image_row, image_tower=image_tower)
            self.text_name = f"{ident.split('@')[0]} (top {n_top} of {n_layers} layers trained)"
        else:
            if features.text is None:
                raise ConfigError("transrec.end_to_end=false needs the suite's text features")
            tower = ItemTower(self.is_text, d, text_features=features.text, image_features=features.image)
            self.text_name = f"frozen {features.text_encoder} features"
            self.image_name = f"frozen {features.image_encoder} features" if features.image is not None else "none"
        self.net = TransRecNet(tower, n, cfg).to(self.device)
        self.stats.update({"text_tower": self.text_name, "image_tower": self.image_name,
                           "seconds_prepare": round(time.perf_counter() - t0, 2),
                           "trainable_parameters": sum(p.numel() for p in self.net.parameters() if p.requires_grad)})

    # -- training ------------------------------------------------------------------------------
    def train_on(self, data: TrainView | ValidationCarve, ctx: RunContext, *, stage1: bool,
                 pool: np.ndarray | None = None, lr: float | None = None, epochs: int | None = None,
                 tag: str = "", max_steps: int | None = None, valid_every: int | None = None,
                 patience: int | None = None) -> None:
        """Stage 1 (when asked) then stage 2; negatives and validation over ``pool`` items.

        ``data``: a view (its validation carve-out is drawn from it), or a carve-out drawn
        elsewhere, whose ``fit`` trains: the transfer grid draws one from the full (100 %) view and
        trains each share on its part of ``fit``, so every share validates on the same cases.
        ``max_steps`` caps the steps per epoch of both stages of this call (default
        ``max_steps_per_epoch``): the transfer grid passes a cap scaled with the view's data share,
        so a smaller share trains on fewer sequences per epoch, never on as many as a larger one.
        ``valid_every``: stage 2 validates every this many optimizer steps (rounded up to whole
        epochs) and counts ``patience`` and the ``epochs`` cap in validations, so a share with short
        epochs gets the same stopping rule in steps as the full view (default: every epoch).
        ``epochs`` / ``patience`` replace the config's for this call's stage 2 (the transfer grid's
        source stage, ``transfer.source_epochs`` / ``source_patience``)."""
        cfg = self.cfg
        if not self.stats["stages"]:  # budgets follow the stages list (the transfer grid resets it per condition)
            self._budgets: list[TrainingBudget] = []
        carve = data if isinstance(data, ValidationCarve) else carve_validation(
            data, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        pool = np.arange(carve.fit.n_items) if pool is None else np.asarray(pool, dtype=np.int64)
        torch.manual_seed(int(ctx.seed) * 1000 + sum(map(ord, tag)))  # dropout: independent of earlier phases
        cap = int(max_steps if max_steps is not None else cfg["max_steps_per_epoch"])
        if stage1 and int(cfg["stage1_epochs"]) > 0:
            self._stage1(carve.fit, ctx, pool, tag, cap)
        self._stage2(carve, ctx, pool, float(lr if lr is not None else cfg["lr"]),
                     int(epochs if epochs is not None else cfg["epochs"]), tag, cap, valid_every,
                     int(patience if patience is not None else cfg["patience"]))

    def stage2_steps_per_epoch(self, view: TrainView, max_steps: int | None = None) -> int:
        """Optimizer steps of one stage-2 epoch on ``view`` (sequences of >= 2 items, batched, capped)."""
        rows = int((view.sequences.lengths >= 2).sum())
        cap = int(max_steps if max_steps is not None else self.cfg["max_steps_per_epoch"])
        return max(1, min(cap, math.ceil(rows / int(self.cfg["batch_size"]))))

    def _stage1(self, view: TrainView, ctx: RunContext, pool: np.ndarray, tag: str, max_steps: int) -> None:
        """User-encoder pretraining: causal next-item softmax over pool items; item tower fixed.

        ``stage1_epochs`` fixed epochs: the paper validates nothing here, so the stage's budget
        declares "none: fixed epochs" (its ``max_epochs`` is the plan, not a missed convergence)."""
        cfg, net, dev = self.cfg, self.net, self.device
        table = net.item_table(torch.arange(view.n_items, device=dev))
        inputs, targets, lengths = sequence_windows(view.sequences, int(cfg["max_len"]))
        pool_mask = torch.zeros(view.n_items, dtype=torch.bool, device=dev)
        pool_mask[torch.from_numpy(pool)] = True
        params = list(net.user.parameters()) + list(net.head.parameters())
        opt = torch.optim.Adam(params, lr=float(cfg["lr"]))
        # examples_seen counts sequences (one window each; stage 2 alike)
        budget = TrainingBudget(f"stage1{tag}", metric=FIXED_EPOCHS)
        budget.watch(opt)
        self._budgets.append(budget)
        gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 1)
        batch = int(cfg["batch_size"])
        net.user.causal = True
        net.train()
        t0 = time.perf_counter()
        for epoch in ctx.progress(range(int(cfg["stage1_epochs"])), desc=f"transrec{tag} stage 1"):
            order = torch.randperm(len(inputs), generator=gen)
            total = 0.0
            for step, s in enumerate(range(0, len(order), batch)):
                if step >= max_steps:
                    break
                idx = order[s : s + batch]
                n = lengths[idx]
                x, y = inputs[idx, : int(n.max())].to(dev), targets[idx, : int(n.max())].to(dev)
                h = net.user.hidden(table[x.clamp_min(0)] * (x >= 0).unsqueeze(-1), n.to(dev))
                real = y >= 0
                loss = uep_loss(h[real], y[real], net.head, pool_mask)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                budget.saw(len(idx))
            ctx.log_metric(f"transrec{tag}_stage1_loss", total / max(step + 1, 1), epoch)
            budget.epoch_done(epoch)
        net.user.causal = False
        self.stats["stages"].append({"stage": 1, "tag": tag, "windows": len(inputs), "sequences": len(inputs),
                                     "epochs": int(cfg["stage1_epochs"]), "max_steps_per_epoch": max_steps,
                                     "batch_size": batch, "examples_per_epoch": min(len(inputs), max_steps * batch),
                                     "seconds": round(time.perf_counter() - t0, 2)})

    def _stage2(self, carve: Any, ctx: RunContext, pool: np.ndarray, lr: float, epochs: int, tag: str,
                max_steps: int, valid_every: int | None = None, patience: int | None = None) -> None:
        """End-to-end CPC training to early stopping: next-item NDCG@10 over the pool on the
        validation carve-out, ``patience`` validations without a gain, best state restored;
        ``epochs`` validations are only the safety cap. Validation runs every epoch, or every
        ``every`` epochs, the fewest whose steps reach ``valid_every``."""
        cfg, net = self.cfg, self.net
        n_targets, n_neg = targets_and_negatives(cfg)
        seqs = carve.fit.sequences
        rows = np.flatnonzero(seqs.lengths >= 2)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
        budget = TrainingBudget(f"stage2{tag}")
        budget.watch(opt)
        self._budgets.append(budget)
        gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 2)
        rng = ctx.rng(0x7C0 + sum(map(ord, tag)))  # same stream whatever ran before (resumable grids)
        batch = int(cfg["batch_size"])
        patience = int(patience if patience is not None else cfg["patience"])
        per_epoch = self.stage2_steps_per_epoch(carve.fit, max_steps)
        every = 1 if not valid_every else max(1, math.ceil(int(valid_every) / per_epoch))
        stopper, done = EarlyStopping(patience, f"transrec{tag}", ctx.logger, budget=budget), 0
        t0 = time.perf_counter()
        for epoch in ctx.progress(range(epochs * every), desc=f"transrec{tag} stage 2", total=epochs * every):
            net.train()
            order = rows[torch.randperm(len(rows), generator=gen).numpy()]
            total, steps = 0.0, 0
            for s in range(0, len(order), batch):
                if steps >= max_steps:
                    break
                chunk = [seqs.sequence(int(r)) for r in order[s : s + batch]]
                b = stage2_batch(chunk, n_targets, int(cfg["max_len"]), sample_negatives(rng, pool, chunk, n_neg))
                loss = self._cpc_step(b)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + float(loss.detach()), steps + 1
                budget.saw(len(chunk))
            ctx.log_metric(f"transrec{tag}_stage2_loss", total / max(steps, 1), epoch)
            done = epoch + 1
            budget.epoch_done(epoch)
            if len(carve) == 0:
                budget.stop_reason = "no_validation"
                continue
            if done % every:
                continue
            score = self._validate(carve, pool)
            ctx.log_metric(f"transrec{tag}_valid_ndcg10", score, epoch)
            if stopper.update(score, net, epoch):
                break
        stopper.restore(net)
        best = stopper.best
        self.stats["stages"].append({"stage": 2, "tag": tag, "sequences": len(rows), "epochs": done, "lr": lr,
                                     "max_steps_per_epoch": max_steps, "batch_size": batch,
                                     "examples_per_epoch": min(len(rows), max_steps * batch), "patience": patience,
                                     "valid_every_epochs": every, "valid_every_steps": every * per_epoch,
                                     "targets": n_targets, "negatives": n_neg, "best_valid_ndcg10": best,
                                     "seconds": round(time.perf_counter() - t0, 2), **carve.describe()})

    def _cpc_step(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        dev, net = self.device, self.net
        hist, tgt, neg = b["history"], b["targets"], b["negatives"]
        every = torch.cat([hist[hist >= 0], tgt[tgt >= 0], neg.reshape(-1)])
        uniq, inverse = torch.unique(every, return_inverse=True)
        vecs = net.items(uniq.to(dev))
        lookup = torch.full((int(uniq.max()) + 1,), -1, dtype=torch.long)
        lookup[uniq] = torch.arange(len(uniq))

        def gather(ids: torch.Tensor) -> torch.Tensor:
            rows = lookup[ids.clamp_min(0)].to(dev)
            return vecs[rows] * (ids >= 0).to(dev).unsqueeze(-1)

        users = net.users(gather(hist), b["lengths"].to(dev))
        return cpc_loss(users, gather(tgt), (tgt >= 0).to(dev), gather(neg))

    def _validate(self, carve: Any, pool: np.ndarray) -> float:
        needed = torch.from_numpy(np.union1d(pool, carve.histories.items).astype(np.int64))
        table = torch.zeros(len(self.is_text), self.net.items.dim, device=self.device)
        table[needed] = self.net.item_table(needed.to(self.device))  # only the pool and history items
        users = self._users_from(table, carve.histories)
        pos = np.full(len(self.is_text), -1, dtype=np.int64)
        pos[pool] = np.arange(len(pool))
        keep = pos[carve.targets] >= 0
        return validation_ndcg(users[torch.from_numpy(keep)], table[torch.from_numpy(pool)],
                               torch.from_numpy(pos[carve.targets][keep]))

    # -- outputs -------------------------------------------------------------------------------
    def finish(self) -> None:
        """Freeze the item table for evaluation (all items through the trained item tower)."""
        if getattr(self, "_budgets", None):
            self.stats["training"] = combine_budgets(*self._budgets)  # the stages of this run (condition)
        self._table = self.net.item_table(torch.arange(len(self.is_text), device=self.device))

    @torch.no_grad()
    def _users_from(self, table: torch.Tensor, histories: Histories, batch: int = 2048) -> torch.Tensor:
        self.net.eval()
        ids, lengths = padded_ids(histories, int(self.cfg["max_len"]))
        if len(ids) == 0:
            return torch.zeros(0, table.shape[1])
        out = []
        for s in range(0, len(ids), batch):
            x = ids[s : s + batch].to(self.device)
            out.append(self.net.users(table[x.clamp_min(0)] * (x >= 0).unsqueeze(-1), lengths[s : s + batch].to(self.device)))
        return torch.cat(out)

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        with ctx.threads():
            self.prepare(train, features, cfg, ctx)
            self.train_on(train, ctx, stage1=True)
            self.finish()

    def item_embeddings(self) -> np.ndarray:
        emb = self._table.cpu().numpy().astype(np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def next_item_embeddings(self) -> np.ndarray:
        return self._table.cpu().numpy().astype(np.float32)

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        return self._users_from(self._table, histories).cpu().numpy().astype(np.float32)

    def display(self, features: ItemFeatures | None = None) -> str:
        return "TransRec (not in the paper)"


def image_label(name: str) -> str:
    """Short label of the image tower for tables (never 'ResNet' for the from-scratch CNN)."""
    return "small CNN" if name == SMALL_CNN else name
