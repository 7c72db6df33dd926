"""UniSRec's two training stages (authors' ``pretrain.py`` / ``finetune.py``; methods.md 3.4-3.5, 15).

Pretraining: every-prefix examples of the domain-separate sequences, shuffled so that domains
mix only within batches; L = L_SI + lambda L_SS with in-batch negatives and the code's
same-target rule. Fine-tuning (``fix_enc``): position embeddings and Transformer frozen, the
MoE adaptor, the embedding LayerNorm (and, transductive, the item-ID table) trained with
cross-entropy over all items of cos / tau; early stopping on the validation carve-out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.model import Histories
from benchmark.data.validation import ValidationCarve
from benchmark.plugin import RunContext
from methods.shared.contrastive import seq_item_infonce, seq_seq_infonce
from methods.shared.sequence import PrefixExamples, Windows, padded_ids
from methods.shared.training import FIXED_EPOCHS, EarlyStopping, TrainingBudget, validation_ndcg
from methods.unisrec.augment import item_drop, word_drop_mask
from methods.unisrec.batching import aug_positions
from methods.unisrec.model import UniSRecNet


def pretrain_step(net: UniSRecNet, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                  cfg: dict[str, Any], rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """One pretraining batch: (L_SI + lambda L_SS, its parts). ``ids`` use -1 padding."""
    device = net.text.device
    use_item_drop = net.text_aug is None or rng.random() < float(cfg["item_drop_coefficient"])
    # The adaptor runs once per distinct item of the batch (inputs and targets share the draw).
    uniq = torch.unique(torch.cat([ids[ids >= 0], targets]))
    table = net.item_vectors(uniq.to(device))
    pos = torch.searchsorted(uniq, ids.clamp_min(0)).to(device)
    tpos = torch.searchsorted(uniq, targets).to(device)
    lengths_d = lengths.to(device)
    seq = net.encode(table, pos, lengths_d)
    ids_np, len_np = ids.numpy(), lengths.numpy()
    if use_item_drop:
        aug_ids, aug_len, _ = item_drop(ids_np, len_np, float(cfg["item_drop_ratio"]), rng)
        aug_ids_t = torch.from_numpy(aug_ids)
        aug = net.encode(table, torch.searchsorted(uniq, aug_ids_t.clamp_min(0)).to(device),
                         torch.from_numpy(aug_len).to(device))
    else:
        mix = torch.from_numpy(word_drop_mask(ids_np, len_np, float(cfg["word_drop_mix"]), rng)).to(device)
        alt = net.item_vectors(uniq.to(device), aug=True)
        aug = net.encode(table, pos, lengths_d, alt=alt, mix=mix)
    t = targets.to(device)
    si = seq_item_infonce(seq, table[tpos], float(cfg["tau"]), t, same_target=str(cfg["same_target"]))
    ss = seq_seq_infonce(seq, aug, float(cfg["tau"]), t, same_target=str(cfg["same_target"]))
    loss = si + float(cfg["lambda"]) * ss
    return loss, {"si": float(si.detach()), "ss": float(ss.detach()), "item_drop": float(use_item_drop)}


def pretrain_step_windows(net: UniSRecNet, inputs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                          cfg: dict[str, Any], rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """``pretrain_step`` on causal windows: every real position is a prefix example (an anchor)."""
    device = net.text.device
    use_item_drop = net.text_aug is None or rng.random() < float(cfg["item_drop_coefficient"])
    real = targets >= 0
    uniq = torch.unique(torch.cat([inputs[inputs >= 0], targets[real]]))
    table = net.item_vectors(uniq.to(device))
    pos = torch.searchsorted(uniq, inputs.clamp_min(0)).to(device)
    lengths_d, real_d = lengths.to(device), real.to(device)
    seq = net.hidden(table, pos, lengths_d)[real_d]
    t = targets[real]
    in_np, len_np = inputs.numpy(), lengths.numpy()
    if use_item_drop:
        aug_ids, aug_len, keep = item_drop(in_np, len_np, float(cfg["item_drop_ratio"]), rng)
        ha = net.hidden(table, torch.searchsorted(uniq, torch.from_numpy(aug_ids).clamp_min(0)).to(device),
                        torch.from_numpy(aug_len).to(device))
        rows = np.broadcast_to(np.arange(len(in_np))[:, None], in_np.shape)
        at = aug_positions(keep)  # prefix p of a window <-> position cumsum(keep[:p+1]) - 1 of its view
        mask = real.numpy()
        aug = ha[torch.from_numpy(rows[mask]).to(device), torch.from_numpy(at[mask]).to(device)]
    else:
        mix = torch.from_numpy(word_drop_mask(in_np, len_np, float(cfg["word_drop_mix"]), rng)).to(device)
        aug = net.hidden(table, pos, lengths_d, alt=net.item_vectors(uniq.to(device), aug=True), mix=mix)[real_d]
    t_d = t.to(device)
    # each anchor's window: its own earlier/later items are not negatives (SAME_USER_RULES)
    groups = torch.arange(len(in_np)).unsqueeze(1).expand_as(real)[real].to(device) \
        if str(cfg["same_user_negatives"]) == "remove" else None
    si = seq_item_infonce(seq, table[torch.searchsorted(uniq, t).to(device)], float(cfg["tau"]), t_d,
                          same_target=str(cfg["same_target"]), groups=groups)
    ss = seq_seq_infonce(seq, aug, float(cfg["tau"]), t_d, same_target=str(cfg["same_target"]), groups=groups)
    loss = si + float(cfg["lambda"]) * ss
    return loss, {"si": float(si.detach()), "ss": float(ss.detach()), "item_drop": float(use_item_drop)}


def _batches(data: PrefixExamples | Windows, batch: int,
             rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """(ids, lengths, targets, examples) per batch: targets [B] for prefixes, [B, L] for windows."""
    if isinstance(data, Windows):
        for part in data.batches(batch, rng):
            idx = torch.from_numpy(part)
            n = data.lengths[idx]
            width = max(int(n.max()), 1)
            yield data.inputs[idx, :width], n, data.targets[idx, :width], int(n.sum())
        return
    perm = rng.permutation(len(data))
    for s in range(0, len(perm), batch):
        idx = perm[s : s + batch]
        if len(idx) < 2:  # a lone example has no in-batch negative
            continue
        ids, lengths, targets = data.batch(idx)
        yield ids, lengths, targets, len(idx)


def n_examples(data: PrefixExamples | Windows) -> int:
    return data.n_examples if isinstance(data, Windows) else len(data)


def pretrain(net: UniSRecNet, examples: PrefixExamples | Windows, cfg: dict[str, Any], ctx: RunContext,
             budget: TrainingBudget | None = None) -> dict[str, Any]:
    """Contrastive pretraining for ``pretrain_epochs`` epochs (no early stopping, as the code).

    ``budget`` records the stage's steps, examples (prefixes: a window counts its positions) and epochs."""
    epochs, batch = int(cfg["pretrain_epochs"]), int(cfg["pretrain_batch_size"])
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["pretrain_lr"]), weight_decay=float(cfg["weight_decay"]))
    budget = budget if budget is not None else TrainingBudget("pretrain", metric=FIXED_EPOCHS)
    budget.watch(opt)
    order_rng, aug_rng = ctx.rng(101), ctx.rng(102)
    t0, seen, last = time.perf_counter(), 0, {}
    for epoch in ctx.progress(range(epochs), desc="unisrec pretrain", total=epochs):
        net.train()
        sums = {"loss": 0.0, "si": 0.0, "ss": 0.0, "item_drop": 0.0}
        steps = 0
        step = pretrain_step_windows if isinstance(examples, Windows) else pretrain_step
        for ids, lengths, targets, count in _batches(examples, batch, order_rng):
            loss, parts = (step(net, ids, targets, lengths, cfg, aug_rng) if step is pretrain_step_windows
                           else step(net, ids, lengths, targets, cfg, aug_rng))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums["loss"] += float(loss.detach())
            for k, v in parts.items():
                sums[k] += v
            steps += 1
            seen += count
            budget.saw(count)
        budget.epoch_done(epoch)
        last = {k: v / max(steps, 1) for k, v in sums.items()}
        for k, v in last.items():
            ctx.log_metric(f"unisrec_pretrain_{k}", v, epoch)
    seconds = time.perf_counter() - t0
    return {"pretrain_epochs": epochs, "pretrain_examples": n_examples(examples), "pretrain_seconds": seconds,
            "pretrain_examples_per_s": seen / max(seconds, 1e-9), "pretrain_last": last}


def trainable_for_finetune(net: UniSRecNet, fix_enc: bool) -> list[torch.nn.Parameter]:
    """``fix_enc``: freeze positions and Transformer layers; the adaptor, the embedding LayerNorm
    and the ID table (if any) stay trainable (``finetune.py``)."""
    frozen = {id(p) for p in [*net.encoder.position.parameters(), *net.encoder.layers.parameters()]} if fix_enc else set()
    params = []
    for p in net.parameters():
        p.requires_grad_(id(p) not in frozen)
        if p.requires_grad:
            params.append(p)
    return params


@torch.no_grad()
def eval_item_vectors(net: UniSRecNet, batch: int = 8192) -> torch.Tensor:
    """n(v_i) for every item, evaluation mode (no gate noise, no dropout)."""
    net.eval()
    items = torch.arange(net.n_items, device=net.text.device)
    return F.normalize(torch.cat([net.item_vectors(items[s : s + batch]) for s in range(0, net.n_items, batch)]), dim=-1)


@torch.no_grad()
def user_vectors(net: UniSRecNet, histories: Histories, batch: int = 4096) -> torch.Tensor:
    """n(s) of each history's last ``max_len`` items, evaluation mode; empty history -> zero vector."""
    net.eval()
    device = net.text.device
    table = torch.cat([net.item_vectors(torch.arange(s, min(s + 8192, net.n_items), device=device))
                       for s in range(0, net.n_items, 8192)])
    ids, lengths = padded_ids(histories, net.encoder.max_len)
    out = [net.encode(table, ids[s : s + batch].clamp_min(0).to(device), lengths[s : s + batch].to(device))
           for s in range(0, len(ids), batch)]
    return F.normalize(torch.cat(out), dim=-1) if out else torch.zeros(0, net.encoder.dim, device=device)


def validation_score(net: UniSRecNet, carve: ValidationCarve) -> float:
    """Next-item NDCG@10 (cosine) of the carve-out: the model-selection signal."""
    if len(carve) == 0:
        return float("nan")
    targets = torch.from_numpy(carve.targets.astype(np.int64)).to(net.text.device)
    return validation_ndcg(user_vectors(net, carve.histories), eval_item_vectors(net), targets)


def finetune(net: UniSRecNet, examples: PrefixExamples | Windows, carve: ValidationCarve, cfg: dict[str, Any],
             ctx: RunContext, budget: TrainingBudget | None = None) -> dict[str, Any]:
    """CE over all items of n(s).n(v)/tau; early stopping on validation NDCG@10, best epoch restored.

    ``budget`` records the stage's steps, examples (as in :func:`pretrain`), epochs, curve and stop reason."""
    epochs, batch, patience = int(cfg["finetune_epochs"]), int(cfg["finetune_batch_size"]), int(cfg["patience"])
    params = trainable_for_finetune(net, bool(cfg["fix_enc"]))
    opt = torch.optim.Adam(params, lr=float(cfg["finetune_lr"]), weight_decay=float(cfg["weight_decay"]))
    budget = budget if budget is not None else TrainingBudget("finetune")
    budget.watch(opt)
    order_rng = ctx.rng(201)
    device, tau = net.text.device, float(cfg["tau"])
    all_items = torch.arange(net.n_items, device=device)
    # Recorded, not a candidate: the code selects among fine-tuning epochs only.
    stats: dict[str, Any] = {"valid_ndcg10_pretrained": validation_score(net, carve), "finetune_epochs_run": 0}
    stopper, seen = EarlyStopping(patience, "unisrec fine-tune", ctx.logger, budget=budget), 0
    t0 = time.perf_counter()
    for epoch in ctx.progress(range(epochs), desc="unisrec fine-tune", total=epochs):
        net.train()
        total, steps = 0.0, 0
        for ids, lengths, targets, count in _batches(examples, batch, order_rng):
            table = net.item_vectors(all_items)  # train mode: one adaptor draw per item per step
            pos, lengths_d = ids.clamp_min(0).to(device), lengths.to(device)
            if targets.dim() == 2:  # windows: every real position is an example
                real = (targets >= 0).to(device)
                seq, targets = net.hidden(table, pos, lengths_d)[real], targets.to(device)[real]
            else:
                seq = net.encode(table, pos, lengths_d)
            logits = F.normalize(seq, dim=-1) @ F.normalize(table, dim=-1).T / tau
            loss = F.cross_entropy(logits, targets.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
            seen += count
            budget.saw(count)
        ctx.log_metric("unisrec_finetune_loss", total / max(steps, 1), epoch)
        stats["finetune_epochs_run"] = epoch + 1
        budget.epoch_done(epoch)
        if len(carve) == 0:  # no validation: the last state is the model
            budget.stop_reason = "no_validation"
            continue
        score = validation_score(net, carve)
        ctx.log_metric("unisrec_valid_ndcg10", score, epoch)
        if stopper.update(score, net, epoch):
            break
    stopper.restore(net)
    seconds = time.perf_counter() - t0
    stats.update({"finetune_examples": n_examples(examples), "finetune_seconds": seconds,
                  "best_valid_ndcg10": stopper.best,
                  "finetune_examples_per_s": seen / max(seconds, 1e-9)})
    return stats
