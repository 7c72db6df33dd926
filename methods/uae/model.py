"""UAE (Chen, Liang, Ma, Gu; ICASSP'21): user-audio embedding, reimplemented on item content.

A fixed, pretrained user embedding UE_u and a content tower AE_i = f(x_i) are matched with
R(u, i) = cos(UE_u, AE_i) and P(i+ | u) = softmax_gamma over {i+} U N_u (docs/methods.md 11.2), where
N_u = 4 negatives (the user's disliked items first, then random) plus the batch's other
positives. The item embedding is n(f(x_i)) for every item (11.3).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.model import TrainView
from benchmark.data.validation import carve_validation
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.content import content_input
from methods.shared.mf import train_user_item_mf
from methods.shared.training import FIXED_EPOCHS, TrainingBudget, combine_budgets, resolve_device
from methods.uae.negatives import build_examples, sample_negatives
from methods.uae.towers import ContentTower, MeanPoolUserTower

USER_TOWERS = ("pretrained_mf", "mean_pool")


def contrastive_loss(user: torch.Tensor, f_pos: torch.Tensor, f_neg: torch.Tensor, pos: torch.Tensor,
                     neg: torch.Tensor, gamma: float, in_batch: bool) -> torch.Tensor:
    """-log P(i+ | u) over {i+} U sampled negatives (U in-batch positives), cosine * gamma (11.2).

    All inputs are L2-normalised. A negative equal to the positive item is masked out.
    """
    logits_pos = (user * f_pos).sum(-1, keepdim=True)
    logits_neg = torch.einsum("bd,bkd->bk", user, f_neg).masked_fill(neg == pos.unsqueeze(1), float("-inf"))
    parts = [logits_pos, logits_neg]
    if in_batch:
        same = pos.unsqueeze(0) == pos.unsqueeze(1)  # includes the diagonal
        parts.append((user @ f_pos.T).masked_fill(same, float("-inf")))
    logits = gamma * torch.cat(parts, dim=1)
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))


def _ranges(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat positions of the CSR rows ``rows``, their bag offsets and lengths."""
    lengths = offsets[rows + 1] - offsets[rows]
    bag = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    flat = np.arange(lengths.sum(), dtype=np.int64) + np.repeat(offsets[rows] - bag, lengths)
    return flat, bag, lengths


class UAE(Method):
    """UAE: content tower trained against fixed CF user vectors with liked/disliked contrast."""

    name = "uae"
    display_name = "UAE"
    paper_column = "UAE"
    requires = frozenset({"text", "sequences"})
    uses = frozenset({"image", "ratings"})
    tags: dict[str, str] = {}

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        ctx.seed_everything()
        log, n = ctx.logger, train.n_items
        if cfg["user_tower"] not in USER_TOWERS:
            raise ValueError(f"uae: user_tower must be one of {USER_TOWERS}, got {cfg['user_tower']!r}")
        self.device = device = resolve_device(cfg.get("device"))

        x, has_image = content_input(features)
        log.info("uae: content tower input %d-d (%s)", x.shape[1],
                 "text + image + missing flag" if has_image else "text only: no image features")
        self.inputs = torch.from_numpy(x).to(device)
        ex = build_examples(train.sequences, float(cfg["disliked_max_rating"]), bool(cfg["disliked_negatives"]))
        has_ratings = bool(np.isfinite(train.sequences.rating).any())
        log.info("uae: %d positives; %d disliked interactions (rating <= %s) used as hard negatives%s",
                 len(ex.item), ex.n_disliked, cfg["disliked_max_rating"],
                 "" if has_ratings else " (no ratings in the data: random negatives only)")

        # Early stopping data: the suite's one carve-out (last training item of a share of training
        # users); the user MF never sees those items.
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed)
        held_out = np.isin(ex.position, carve.positions)
        gen = torch.Generator().manual_seed(int(ctx.seed) * 1_000_003 + 53)
        self.user_tower, self.seconds_user_mf = None, 0.0
        # Stages: the pretrained user MF (fixed epochs; examples: interactions), then the content
        # tower (early stopping on the held-out loss; examples: positives).
        stages = ([TrainingBudget("user_mf", metric=FIXED_EPOCHS)]
                  if cfg["user_tower"] == "pretrained_mf" else [])
        budget = TrainingBudget("content_tower", metric="valid loss (lower is better)")
        if cfg["user_tower"] == "pretrained_mf":
            t0 = time.perf_counter()
            mf_cfg = {**cfg["user_mf"], "dim": int(cfg["dim"])}  # the user vector lives in the tower's space
            user_vec, _ = train_user_item_mf(carve.fit.sequences, n, mf_cfg, seed=ctx.seed, ctx=ctx,
                                             prefix="uae_user_mf", device=device, budget=stages[0])
            self.user_vectors = F.normalize(torch.from_numpy(user_vec), dim=1).to(device)
            self.seconds_user_mf = time.perf_counter() - t0
            keep = np.arange(len(ex.item))
        else:
            self.user_tower = MeanPoolUserTower(n, int(cfg["dim"]), gen).to(device)
            self.liked_offsets = np.r_[0, np.cumsum(np.bincount(ex.user, minlength=len(train.sequences)))]
            keep = np.flatnonzero(np.diff(self.liked_offsets)[ex.user] >= 2)  # need another liked item
            log.info("uae: mean-pool user tower; %d of %d positives have another liked item", len(keep), len(ex.item))
        self.examples = ex

        self.tower = ContentTower(x.shape[1], int(cfg["hidden"]), int(cfg["dim"]), float(cfg["dropout"])).to(device)
        valid, fit_rows = keep[held_out[keep]], keep[~held_out[keep]]
        self.stats: dict[str, Any] = {"examples_per_epoch": len(fit_rows), "epochs": 0, "unit": "positives",
                                      "disliked_negative_share": 0.0, "losses": [],
                                      "seconds_user_mf": self.seconds_user_mf, **carve.describe(),
                                      "validation_positives": len(valid)}
        t0 = time.perf_counter()
        if len(valid) == 0:
            budget.stop_reason = "no_validation"
        if len(fit_rows):
            self._train(fit_rows, valid, cfg, ctx, n, budget)
        self.stats["seconds_train"] = time.perf_counter() - t0
        self.stats["training"] = combine_budgets(*stages, budget)
        with torch.no_grad():
            self.tower.eval()
            self._emb = torch.cat([F.normalize(self.tower(self.inputs[s : s + 8192]), dim=1)
                                   for s in range(0, n, 8192)]).cpu().numpy().astype(np.float32)

    # -- training ----------------------------------------------------------------------------
    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device)

    def _users(self, rows: np.ndarray) -> torch.Tensor:
        ex, t = self.examples, self._tensor
        if self.user_tower is None:
            return self.user_vectors[t(ex.user[rows])]
        flat, bag, lengths = _ranges(self.liked_offsets, ex.user[rows])
        vec = self.user_tower(t(ex.item[flat]), t(bag), t(lengths), t(ex.item[rows]))
        return F.normalize(vec, dim=1)

    def _loss(self, rows: np.ndarray, neg: np.ndarray, cfg: dict[str, Any]) -> torch.Tensor:
        pos = self.examples.item[rows]
        uniq, inv = np.unique(np.concatenate([pos, neg.ravel()]), return_inverse=True)
        t = self._tensor
        emb = F.normalize(self.tower(self.inputs[t(uniq)]), dim=1)[t(inv)]
        f_pos, f_neg = emb[: len(rows)], emb[len(rows) :].view(len(rows), neg.shape[1], -1)
        return contrastive_loss(self._users(rows), f_pos, f_neg, t(pos), t(neg),
                                1.0 / float(cfg["tau"]), bool(cfg["in_batch_negatives"]))

    def _train(self, fit_rows: np.ndarray, valid: np.ndarray, cfg: dict[str, Any], ctx: RunContext, n: int,
               budget: TrainingBudget) -> None:
        params = list(self.tower.parameters()) + (list(self.user_tower.parameters()) if self.user_tower else [])
        opt = budget.watch(torch.optim.Adam(params, lr=float(cfg["lr"])))
        batch, epochs, patience, k = int(cfg["batch_size"]), int(cfg["epochs"]), int(cfg["patience"]), int(cfg["negatives"])
        rng = ctx.rng(2)
        valid_rng = ctx.rng(3)  # negatives drawn once: the held-out loss is comparable across epochs
        valid_batches = [(valid[s : s + batch], sample_negatives(self.examples, valid[s : s + batch], n, k, valid_rng)[0])
                         for s in range(0, len(valid), batch)]
        best, best_state, waited, hard, slots = np.inf, None, 0, 0, 0
        for epoch in ctx.progress(range(epochs), desc="uae epochs", total=epochs):
            self.tower.train()
            order = fit_rows[rng.permutation(len(fit_rows))]
            total = 0.0
            for s in range(0, len(order), batch):
                rows = order[s : s + batch]
                neg, is_hard = sample_negatives(self.examples, rows, n, k, rng)
                hard, slots = hard + int(is_hard.sum()), slots + is_hard.size
                loss = self._loss(rows, neg, cfg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                budget.saw(len(rows))
                total += float(loss.detach()) * len(rows)
            epoch_loss = total / len(order)
            ctx.log_metric("uae_loss", epoch_loss, epoch)
            self.stats["losses"].append(epoch_loss)
            self.stats["epochs"] = epoch + 1
            self.stats["disliked_negative_share"] = hard / max(slots, 1)
            budget.epoch_done(epoch)
            if not valid_batches:
                continue
            with torch.no_grad():
                self.tower.eval()
                v = sum(float(self._loss(r, ng, cfg)) * len(r) for r, ng in valid_batches) / len(valid)
            ctx.log_metric("uae_valid_loss", v, epoch)
            budget.validated(v, epoch, v < best - 1e-5)
            if v < best - 1e-5:
                best, waited = v, 0
                best_state = (copy.deepcopy(self.tower.state_dict()),
                              copy.deepcopy(self.user_tower.state_dict()) if self.user_tower else None)
            else:
                waited += 1
                if waited >= patience:
                    budget.stop_reason = "converged"
                    ctx.logger.info("uae: early stop at epoch %d (best valid loss %.4f)", epoch + 1, best)
                    break
        if best_state is not None:
            self.tower.load_state_dict(best_state[0])
            if self.user_tower is not None:
                self.user_tower.load_state_dict(best_state[1])
        ctx.logger.info("uae: %.1f%% of negative slots were the user's disliked items",
                        100 * self.stats["disliked_negative_share"])

    def item_embeddings(self) -> np.ndarray:
        return self._emb

