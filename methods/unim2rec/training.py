"""UniM2Rec's objectives and training loop (seed 003, component 4; UniSRec's losses, methods.md 3.4).

- Sequence-item InfoNCE: the flow's representation at every position against the next item's
  fused content vector, in-batch negatives from all domains, tau 0.07, same-target logits set to 0
  (UniSRec's code). One causal window per training sequence trains all its prefixes in one pass
  (as the shared SASRec does) [proposal].
- Sequence-sequence InfoNCE between a window's representation and an augmented copy's: per batch,
  item drop (keep each item w.p. 0.8) with probability 0.9, else the word-drop text view mixed in
  per position w.p. 0.2 (UniSRec's scheme; item drop only when the features lack the word-drop view).
- L = L_SI + lambda L_SS. Early stopping on next-item NDCG@10 (cosine) of the validation carve-out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.model import Histories, Sequences
from benchmark.data.validation import ValidationCarve
from benchmark.plugin import RunContext
from methods.shared.contrastive import seq_item_infonce, seq_seq_infonce
from methods.shared.sequence import padded_ids, sequence_windows
from methods.shared.training import EarlyStopping, TrainingBudget, validation_ndcg
from methods.unim2rec.network import UniM2RecNet
from methods.unim2rec.views import ItemViews


def _lookup(uniq: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (one per id of the sorted ``uniq``) for ``ids`` (-1 = padding -> zero)."""
    pos = torch.searchsorted(uniq, ids.clamp_min(0)).clamp_max(len(uniq) - 1)
    return table[pos] * (ids >= 0).unsqueeze(-1).to(table.dtype)


def item_drop(ids: torch.Tensor, keep_prob: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep each real item w.p. ``keep_prob`` and re-pack left-aligned; a row losing all keeps all."""
    real = ids >= 0
    keep = (torch.rand(ids.shape, generator=generator) < keep_prob).to(ids.device) & real
    empty = keep.sum(1) == 0
    keep[empty] = real[empty]
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    packed = torch.gather(ids, 1, order)
    lengths = keep.sum(1)
    packed[torch.arange(ids.shape[1], device=ids.device).unsqueeze(0) >= lengths.unsqueeze(1)] = -1
    return packed, lengths


def length_batches(lengths: torch.Tensor, batch: int, generator: torch.Generator, pool: int = 32) -> list[torch.Tensor]:
    """Shuffled batches of windows of similar length (speed only: far less padding) [proposal].

    A random permutation is cut into pools of ``pool`` batches; each pool is sorted by length and
    cut into batches; the batches of all pools are shuffled. Every window is used once per epoch.
    """
    order = torch.randperm(len(lengths), generator=generator)
    out = []
    for s in range(0, len(order), batch * pool):
        chunk = order[s : s + batch * pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        out.extend(chunk[k : k + batch] for k in range(0, len(chunk), batch))
    return [out[i] for i in torch.randperm(len(out), generator=generator).tolist()]


def batch_loss(net: UniM2RecNet, items: ItemViews, x: torch.Tensor, y: torch.Tensor, n: torch.Tensor,
               cfg: dict[str, Any], generator: torch.Generator, seq_seq: bool = True) -> tuple[torch.Tensor, dict]:
    """L_SI (+ lambda L_SS) of one batch of windows (inputs ``x``, targets ``y`` [B, L], lengths ``n``)."""
    uniq = torch.unique(torch.cat([x[x >= 0], y[y >= 0]]))
    vec = net.item_vectors(items, uniq)
    h = net.hidden(_lookup(uniq, vec, x), n, items.domain[x.clamp_min(0)])
    real = y >= 0
    targets = y[real]
    # each anchor's window: its own earlier/later items are not negatives (SAME_USER_RULES)
    groups = torch.arange(len(n), device=y.device).unsqueeze(1).expand_as(real)[real] \
        if str(cfg["same_user_negatives"]) == "remove" else None
    loss_si = seq_item_infonce(h[real], _lookup(uniq, vec, targets), float(cfg["tau"]), targets=targets,
                               same_target=str(cfg["same_target"]), groups=groups)
    parts = {"si": float(loss_si.detach()), "ss": 0.0}
    lam = float(cfg["seq_seq_weight"])
    if not seq_seq or lam <= 0:
        return loss_si, parts
    s = h[torch.arange(len(n), device=h.device), n - 1]
    use_word_drop = bool(items.alt) and float(torch.rand(1, generator=generator)) >= float(cfg["item_drop_prob"])
    if use_word_drop:
        alt = net.item_vectors(items, uniq, alt=True)
        swap = (torch.rand(x.shape, generator=generator) < float(cfg["word_drop_mix"])).to(x.device).unsqueeze(-1)
        x2, n2 = x, n
        v2 = torch.where(swap, _lookup(uniq, alt, x), _lookup(uniq, vec, x))
    else:
        x2, n2 = item_drop(x, 1.0 - float(cfg["item_drop_ratio"]), generator)
        v2 = _lookup(uniq, vec, x2)
    s2 = net.users(v2, n2, items.domain[x2.clamp_min(0)])
    loss_ss = seq_seq_infonce(s, s2, float(cfg["tau"]))
    parts["ss"] = float(loss_ss.detach())
    return loss_si + lam * loss_ss, parts


@torch.no_grad()
def all_item_vectors(net: UniM2RecNet, items: ItemViews, chunk: int = 8192) -> torch.Tensor:
    """Fused (not normalised) content vectors of every item, [N, d], in eval mode."""
    net.eval()
    n = len(items.domain)
    dev = items.domain.device
    parts = [net.item_vectors(items, torch.arange(s, min(s + chunk, n), device=dev)) for s in range(0, n, chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, net.dim, device=dev)


@torch.no_grad()
def user_vectors(net: UniM2RecNet, items: ItemViews, vectors: torch.Tensor, histories: Histories,
                 batch: int = 2048) -> torch.Tensor:
    """Normalised flow representations [C, d] of ``histories`` (the last max_len items each)."""
    net.eval()
    ids, lengths = padded_ids(histories, net.encoder.max_len)
    dev = vectors.device
    out = []
    for s in range(0, len(ids), batch):
        x, n = ids[s : s + batch].to(dev), lengths[s : s + batch].to(dev)
        v = vectors[x.clamp_min(0)] * (x >= 0).unsqueeze(-1).to(vectors.dtype)
        out.append(F.normalize(net.users(v, n, items.domain[x.clamp_min(0)]), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, net.dim, device=dev)


def validation_score(net: UniM2RecNet, items: ItemViews, carve: ValidationCarve) -> float:
    """Next-item NDCG@10 of the carve-out under cosine scores (model selection only)."""
    vectors = all_item_vectors(net, items)
    users = user_vectors(net, items, vectors, carve.histories)
    targets = torch.from_numpy(carve.targets.astype(np.int64)).to(vectors.device)
    return validation_ndcg(users, F.normalize(vectors, dim=-1), targets)


def train_stage(net: UniM2RecNet, items: ItemViews, sequences: Sequences, carve: ValidationCarve,
                cfg: dict[str, Any], ctx: RunContext, params: Iterable[torch.nn.Parameter], *, stage: str,
                epochs: int, lr: float, seq_seq: bool, budget: TrainingBudget | None = None) -> dict[str, Any]:
    """Train ``params`` on every window of ``sequences``; keep the best epoch on the carve-out.

    ``budget`` (one per stage) records the steps, windows seen, epochs, curve and stop reason."""
    inputs, targets, lengths = sequence_windows(sequences, int(cfg["max_len"]))
    optimizer = torch.optim.Adam(list(params), lr=lr, weight_decay=float(cfg["weight_decay"]))
    budget = budget if budget is not None else TrainingBudget(stage)  # examples_seen counts windows
    budget.watch(optimizer)
    generator = torch.Generator().manual_seed(int(ctx.seed) * 7919 + (17 if stage == "pretrain" else 29))
    batch, patience = int(cfg["batch_size"]), int(cfg["patience"])
    dev = items.domain.device
    stopper, done = EarlyStopping(patience, f"unim2rec {stage}", ctx.logger, budget=budget), 0
    t0 = time.perf_counter()
    for epoch in ctx.progress(range(epochs), desc=f"unim2rec {stage}", total=epochs):
        net.train()
        totals = {"loss": 0.0, "si": 0.0, "ss": 0.0}
        steps = 0
        for idx in length_batches(lengths, batch, generator):
            n = lengths[idx]
            width = int(n.max())
            loss, parts = batch_loss(net, items, inputs[idx, :width].to(dev), targets[idx, :width].to(dev),
                                     n.to(dev), cfg, generator, seq_seq)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals["loss"] += float(loss.detach())
            totals["si"] += parts["si"]
            totals["ss"] += parts["ss"]
            steps += 1
            budget.saw(len(idx))
        for key, value in totals.items():
            ctx.log_metric(f"unim2rec_{stage}_{key}", value / max(steps, 1), epoch)
        done = epoch + 1
        budget.epoch_done(epoch)
        if len(carve) == 0:
            budget.stop_reason = "no_validation"
            continue
        score = validation_score(net, items, carve)
        ctx.log_metric(f"unim2rec_{stage}_valid_ndcg10", score, epoch)
        if stopper.update(score, net, epoch):
            break
    stopper.restore(net)
    return {f"{stage}_epochs": done, f"{stage}_best_valid_ndcg10": stopper.best, f"{stage}_windows": len(inputs),
            f"{stage}_seconds": round(time.perf_counter() - t0, 2)}
