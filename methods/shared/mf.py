"""Matrix factorisation with sampled softmax: the user-item model two methods share.

PGG's confidence step (docs/methods.md 9.1) scores (user, item) pairs with it, and UAE's fixed
pretrained user tower (docs/methods.md 11.3) is its user side; it lives here so neither borrows the
other's package.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark.data.model import Sequences
from benchmark.plugin import RunContext
from methods.shared.kernels import standard_cpu_kernels
from methods.shared.training import TrainingBudget


def interaction_pairs(sequences: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(sequence row, item) for every training interaction, in sequence order."""
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), sequences.lengths)
    return rows, sequences.items.astype(np.int64)


def unigram_distribution(items: np.ndarray, n_items: int, power: float) -> np.ndarray:
    """word2vec's negative-sampling distribution: training frequency ** power, normalised."""
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    weights = np.power(counts, power, where=counts > 0, out=np.zeros_like(counts))
    total = weights.sum()
    return weights / total if total > 0 else np.full(n_items, 1.0 / n_items)


def train_user_item_mf(
    sequences: Sequences,
    n_items: int,
    cfg: dict[str, Any],
    seed: int = 0,
    ctx: RunContext | None = None,
    prefix: str = "mf",
    device: torch.device | str = "cpu",
    budget: TrainingBudget | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Matrix factorisation p_u . q_i with sampled softmax over items (logQ-corrected).

    Per batch of (user, item) interactions, ``cfg['negatives']`` items are drawn once from the
    unigram^0.75 distribution and shared by the batch; every logit is corrected by -log Q(j)
    (Bengio & Senecal; Jean et al.), accidental hits are masked. Sparse embeddings + SparseAdam
    ("lazy Adam") so untouched rows do not drift. cfg keys: dim, epochs, lr, batch_size,
    negatives, l2. Returns (P float32 [n_sequences, dim], Q float32 [n_items, dim]).
    ``device``: where the tables train; initialisation and sampling stay on the CPU generator, so
    the random streams do not depend on the device. ``budget`` (optional) records optimizer steps,
    epochs and, as examples, the (user, item) interactions; a fixed number of epochs, no validation,
    so its stop reason stays ``max_epochs``.
    """
    device = torch.device(device)
    rows, items = interaction_pairs(sequences)
    dim, epochs = int(cfg["dim"]), int(cfg["epochs"])
    batch, n_neg, l2 = int(cfg["batch_size"]), int(cfg["negatives"]), float(cfg["l2"])
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 17)
    user_emb = torch.nn.Embedding(len(sequences), dim, sparse=True)
    item_emb = torch.nn.Embedding(n_items, dim, sparse=True)
    with torch.no_grad():
        user_emb.weight.normal_(0.0, 0.1, generator=gen)
        item_emb.weight.normal_(0.0, 0.1, generator=gen)
    if len(items) == 0:
        return user_emb.weight.detach().numpy().copy(), item_emb.weight.detach().numpy().copy()
    user_emb, item_emb = user_emb.to(device), item_emb.to(device)
    opt = torch.optim.SparseAdam(list(user_emb.parameters()) + list(item_emb.parameters()), lr=float(cfg["lr"]))
    if budget is not None:
        budget.watch(opt)
    q = torch.from_numpy(unigram_distribution(items, n_items, 0.75)).float()
    log_q = torch.log(q.clamp_min(1e-12)).to(device)
    rows_t, items_t = torch.from_numpy(rows).to(device), torch.from_numpy(items).to(device)
    n = len(items)
    bar = ctx.progress(range(epochs), desc=f"{prefix} epochs", total=epochs) if ctx else range(epochs)
    with standard_cpu_kernels(device):
        for epoch in bar:
            order = torch.randperm(n, generator=gen).to(device)
            total, steps = 0.0, 0
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                u, i = rows_t[idx], items_t[idx]
                neg = torch.multinomial(q, n_neg, replacement=True, generator=gen).to(device)
                pu, qi, qn = user_emb(u), item_emb(i), item_emb(neg)
                pos_logit = (pu * qi).sum(-1, keepdim=True) - log_q[i].unsqueeze(1)
                neg_logit = pu @ qn.T - log_q[neg].unsqueeze(0)
                neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == i.unsqueeze(1), float("-inf"))
                logits = torch.cat([pos_logit, neg_logit], dim=1)
                loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(idx), dtype=torch.long, device=device))
                if l2 > 0:
                    loss = loss + l2 * (pu.pow(2).sum(-1).mean() + qi.pow(2).sum(-1).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                steps += len(idx)
            if budget is not None:
                budget.saw(steps)
                budget.epoch_done(epoch)
            if ctx is not None:
                ctx.log_metric(f"{prefix}_loss", total / max(steps, 1), epoch)
    return user_emb.weight.detach().cpu().numpy().copy(), item_emb.weight.detach().cpu().numpy().copy()
