"""VQ-Rec (Hou et al., WWW'23): text -> OPQ/PQ codes -> code-embedding items -> SASRec-style encoder.

Fit = (1) codes from a faiss ``OPQ32,IVF1,PQ32x8`` index trained on the training items' text
vectors (codes.py); (2) pretraining with the seq-item InfoNCE plus one semi-synthetic hard
negative per anchor on domain-separate sequences mixed in batches; (3) inductive fine-tuning on
the mixed-domain training sequences: epochs ``0..reassign_steps-1`` train only the re-assignment
scores ``trans_matrix`` through Gumbel-Sinkhorn, then one sampled permutation is baked into the
code table, the Transformer and positions are frozen and the table (and input LayerNorm) train
with CE over all items / tau, early-stopped on the validation carve-out. The fine-tuning reuses
the pretraining index (one index for the whole run; methods.md 15).

Item embedding = ``n(mean_k E'[c_i^k])`` with the fine-tuned table (cold items included: their
codes come from the trained index); user embedding = the encoder's output, normalised.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.model import Histories, TrainView
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.contrastive import SAME_USER_RULES
from methods.shared.sequence import (
    PrefixExamples,
    Windows,
    bucketed_batches,
    padded_ids,
    prefix_examples,
    sequence_windows,
    windows,
)
from methods.shared.training import (
    FIXED_EPOCHS,
    EarlyStopping,
    TrainingBudget,
    combine_budgets,
    resolve_device,
    validation_ndcg,
)
from methods.vqrec.codes import build_codes, check_width, factory_string
from methods.vqrec.faiss_log import quiet_faiss
from methods.vqrec.model import ROUNDINGS, VQRecNet, fake_codes, pretrain_loss

PRETRAIN_SEQUENCES = ("single-domain", "mixed")
PRETRAIN_EXAMPLES = ("prefixes", "windows")


class VQRec(Method):
    """VQ-Rec: vector-quantised text codes -> code embeddings -> Transformer (inductive, text only)."""

    name = "vqrec"
    display_name = "VQRec"
    paper_column = "VQRec"
    requires = frozenset({"sequences", "text"})
    next_item_scoring = "cosine"

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        """Bad values -> ConfigError before any work."""
        if cfg["reassign_rounding"] not in ROUNDINGS:
            raise ConfigError(f"vqrec.reassign_rounding must be one of {ROUNDINGS}, got {cfg['reassign_rounding']!r}")
        if cfg["pretrain_sequences"] not in PRETRAIN_SEQUENCES:
            raise ConfigError(f"vqrec.pretrain_sequences must be one of {PRETRAIN_SEQUENCES}, "
                              f"got {cfg['pretrain_sequences']!r}")
        if cfg["pretrain_examples"] not in PRETRAIN_EXAMPLES:
            raise ConfigError(f"vqrec.pretrain_examples must be one of {PRETRAIN_EXAMPLES}, "
                              f"got {cfg['pretrain_examples']!r}")
        if not 0.0 <= float(cfg["fake_idx_ratio"]) <= 1.0:
            raise ConfigError(f"vqrec.fake_idx_ratio must be in [0, 1], got {cfg['fake_idx_ratio']!r}")
        if float(cfg["temperature"]) <= 0:
            raise ConfigError("vqrec.temperature must be > 0")
        if cfg.get("same_user_negatives") not in SAME_USER_RULES:
            raise ConfigError(f"vqrec.same_user_negatives must be one of {SAME_USER_RULES}, "
                              f"got {cfg.get('same_user_negatives')!r}")

    def display(self, features: ItemFeatures | None = None) -> str:
        enc = features.text_encoder if features is not None and features.text_encoder else None
        if not enc:
            return self.display_name
        # 'minilm:sentence-transformers/..@sha256:..' -> 'minilm'; 'hf:bert-base-uncased@..' -> 'hf:bert-base-uncased'
        short = enc.split("@", 1)[0] if enc.startswith(("clip:", "hf:")) else enc.split(":", 1)[0]
        return f"VQRec[{short}]"

    # ------------------------------------------------------------------ fit
    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        self.check_config(cfg)
        n_sub, n_bits = int(cfg["code_dim"]), int(cfg["code_bits"])
        if features.text is None:
            raise ConfigError("VQ-Rec needs text features (features.text)")
        check_width(features.text.shape[1], n_sub, features.text_encoder)
        device = resolve_device(cfg.get("device"))
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        t0 = time.perf_counter()
        # the index sees the training items of the fitted view only ("strict"); the rest are cold
        with quiet_faiss() as faiss_log:
            pq = build_codes(features.text, carve.fit.item_train_count > 0, n_sub, n_bits, threads=ctx.workers,
                             opq_niter=None if cfg["opq_niter"] is None else int(cfg["opq_niter"]),
                             polysemous=bool(cfg["polysemous"]))
        self.stats: dict[str, Any] = {
            "index": f"{factory_string(n_sub, n_bits)} inner product, trained once on the {pq.n_train} training "
                     "items (strict); the pretraining index is reused for fine-tuning; cold items added, no refit",
            "index_items_train": pq.n_train, "index_items_cold": int(len(pq.codes) - pq.n_train),
            "faiss_warnings": faiss_log.count, "seconds_index": time.perf_counter() - t0,
            "opq_niter": cfg["opq_niter"] or "faiss default (50)", "polysemous": bool(cfg["polysemous"]), "text_encoder": features.text_encoder, "text_dim": int(features.text.shape[1]), **carve.describe(),
        }
        torch.manual_seed(ctx.seed)
        self.net = VQRecNet(pq.codes, pq.n_sub, pq.ksub, cfg).to(device)
        self.device = device
        self._gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 17)
        budgets = TrainingBudget("pretrain", metric=FIXED_EPOCHS), TrainingBudget("finetune")  # examples_seen counts prefixes (positions)
        self._pretrain(carve.fit, cfg, ctx, budgets[0])
        self._finetune(carve, cfg, ctx, budgets[1])
        self.stats["seconds_train"] = time.perf_counter() - t0
        self.stats["training"] = combine_budgets(*budgets)
        with torch.no_grad():
            self._emb = F.normalize(self.net.all_items(), dim=-1).cpu().numpy().astype(np.float32)

    def _pretrain(self, view: TrainView, cfg: dict[str, Any], ctx: RunContext, budget: TrainingBudget) -> None:
        """Seq-item InfoNCE + semi-synthetic hard negative over every prefix (in-batch negatives).

        ``pretrain_examples: prefixes`` feeds each prefix as its own row (the code's data);
        ``windows`` computes all prefixes of a causal window in one forward (methods.shared.sequence).
        """
        epochs, max_len = int(cfg["pretrain_epochs"]), int(cfg["max_len"])
        seqs = view.single_domain_sequences() if cfg["pretrain_sequences"] == "single-domain" else view.sequences
        ex: PrefixExamples | Windows = (windows(seqs, max_len) if cfg["pretrain_examples"] == "windows"
                                        else prefix_examples(seqs, max_len))
        n_ex = ex.n_examples if isinstance(ex, Windows) else len(ex)
        self.stats.update({"pretrain_examples": n_ex, "pretrain_example_form": cfg["pretrain_examples"],
                           "pretrain_sequences": cfg["pretrain_sequences"], "pretrain_epochs": 0})
        if epochs <= 0 or n_ex == 0:
            return
        net, batch, tau = self.net, int(cfg["pretrain_batch_size"]), float(cfg["temperature"])
        params = [p for n, p in net.named_parameters() if n != "trans_matrix"]
        opt = budget.watch(torch.optim.Adam(params, lr=float(cfg["pretrain_lr"])))
        rng = ctx.rng(0x5EC)
        t0 = time.perf_counter()
        for epoch in ctx.progress(range(epochs), desc="vqrec pretrain", total=epochs):
            net.train()
            total, count = 0.0, 0
            remove_same_user = str(cfg["same_user_negatives"]) == "remove"
            for seq, target, groups in self._anchors(ex, batch, rng, bool(cfg["length_buckets"])):
                pos_codes = net.codes[target + 1]
                fake = net.mean_codes(fake_codes(pos_codes, float(cfg["fake_idx_ratio"]), net.ksub, self._gen))
                loss = pretrain_loss(seq, net.mean_codes(pos_codes), fake, target, tau,
                                     groups if remove_same_user else None)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(target)
                count += len(target)
                budget.saw(len(target))
            ctx.log_metric("vqrec_pretrain_loss", total / max(count, 1), epoch)
            self.stats["pretrain_epochs"] = epoch + 1
            budget.epoch_done(epoch)
        self.stats["seconds_pretrain"] = time.perf_counter() - t0

    def _anchors(self, ex: PrefixExamples | Windows, batch: int, rng: np.random.Generator,
                 buckets: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(sequence vectors [B, d], target items [B], window of each anchor [B] or None) of one shuffled
        epoch, about ``batch`` prefixes a step (random prefixes: one per window, so no groups)."""
        net, dev = self.net, self.device
        if isinstance(ex, Windows):
            for part in ex.batches(batch, rng, buckets):
                n = ex.lengths[part]
                width = int(n.max())
                x, y = ex.inputs[part, :width].to(dev), ex.targets[part, :width].to(dev)
                real = y >= 0
                window = torch.arange(len(part), device=dev).unsqueeze(1).expand_as(real)
                yield net.encoder.hidden(net.item_vectors(x), n.to(dev))[real], y[real], window[real]
            return
        order = rng.permutation(len(ex))
        for s in range(0, len(order), batch):
            ids, lengths, target = ex.batch(order[s : s + batch])
            yield net.users(ids.to(dev), lengths.to(dev)), target.to(dev), None

    def _finetune(self, carve: Any, cfg: dict[str, Any], ctx: RunContext, budget: TrainingBudget) -> None:
        """Inductive fine-tuning: code re-assignment epochs, then the baked table with CE / tau."""
        net, tau = self.net, float(cfg["temperature"])
        inputs, targets, lengths = sequence_windows(carve.fit.sequences, int(cfg["max_len"]))
        epochs, steps = int(cfg["finetune_epochs"]), int(cfg["reassign_steps"])
        batch, patience = int(cfg["finetune_batch_size"]), int(cfg["patience"])
        sink = dict(n_iters=int(cfg["sinkhorn_iter"]), temp=float(cfg["sinkhorn_temp"]),
                    rounding=str(cfg["reassign_rounding"]))
        vt = torch.from_numpy(carve.targets.astype(np.int64)).to(self.device)
        self.stats.update({"finetune_windows": len(inputs), "finetune_epochs": 0, "reassign_steps": steps,
                           "reassign_rounding": sink["rounding"], "baked": False})
        stopper = EarlyStopping(patience, "vqrec", ctx.logger, budget=budget)
        opt = None
        order_gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 23)
        buckets, win_len, bucket_rng = bool(cfg["length_buckets"]), lengths.numpy(), ctx.rng(0xF17E)
        for epoch in ctx.progress(range(epochs), desc="vqrec finetune", total=epochs):
            reassigning = epoch < steps
            if reassigning and opt is None:
                for p in net.parameters():
                    p.requires_grad_(False)
                net.trans_matrix.requires_grad_(True)
                opt = budget.watch(torch.optim.Adam([net.trans_matrix], lr=float(cfg["finetune_lr"])))
            elif not reassigning and not self.stats["baked"]:
                self._bake(sink)
                opt = budget.watch(torch.optim.Adam([p for p in net.parameters() if p.requires_grad],
                                                    lr=float(cfg["finetune_lr"])))
            net.train()
            if buckets:  # the same windows, batched by similar length [proposal, speed]
                parts = [torch.from_numpy(p) for p in bucketed_batches(win_len, batch, bucket_rng, True)]
            else:
                order = torch.randperm(len(inputs), generator=order_gen)
                parts = [order[s : s + batch] for s in range(0, len(order), batch)]
            total, count = 0.0, 0
            for idx in parts:
                n = lengths[idx]
                width = int(n.max())
                x, y = inputs[idx, :width].to(self.device), targets[idx, :width].to(self.device)
                if reassigning:  # fresh Gumbel noise every batch
                    net.table = net.permuted_table(net.permutations(generator=self._gen, **sink))
                h = net.encoder.hidden(net.item_vectors(x), n.to(self.device))
                real = y >= 0
                logits = F.normalize(h[real], dim=-1) @ F.normalize(net.all_items(), dim=-1).T / tau
                loss = F.cross_entropy(logits, y[real])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(real.sum())
                count += int(real.sum())
                budget.saw(int(real.sum()))
            ctx.log_metric("vqrec_finetune_loss", total / max(count, 1), epoch)
            self.stats["finetune_epochs"] = epoch + 1
            budget.epoch_done(epoch)
            if len(carve) == 0:
                budget.stop_reason = "no_validation"
                continue
            with torch.no_grad():
                score = validation_ndcg(F.normalize(self._users(carve.histories), dim=-1),
                                        F.normalize(net.all_items(), dim=-1), vt)
            ctx.log_metric("vqrec_valid_ndcg10", score, epoch)
            if reassigning:  # model selection starts once the assignment is fixed [proposal]
                continue
            if stopper.update(score, net, epoch):
                break
        if not self.stats["baked"]:  # fewer epochs than reassign_steps: bake the last state anyway
            self._bake(sink)
        stopper.restore(net)
        net.table = None
        self.stats["best_valid_ndcg10"] = stopper.best

    @torch.no_grad()
    def _bake(self, sink: dict[str, Any]) -> None:
        """One sampled permutation baked into the code table; freeze the Transformer and positions."""
        net = self.net
        # the forward value is hard + soft - soft, which float rounding leaves ~1e-7 off 0/1: round it back
        perms = torch.round(net.permutations(generator=self._gen, **sink).detach())
        table = net.permuted_table(perms)
        table[0] = 0.0
        net.code_emb.weight.copy_(table)
        net.table = None
        for p in net.parameters():
            p.requires_grad_(True)
        for p in [*net.encoder.position.parameters(), *net.encoder.layers.parameters(), net.trans_matrix]:
            p.requires_grad_(False)
        bijective = bool((perms.sum(1) == 1).all() and (perms.sum(2) == 1).all())
        self.stats.update({"baked": True, "baked_bijective": bijective})

    # ------------------------------------------------------------------ embeddings
    def _users(self, histories: Histories, batch: int = 4096) -> torch.Tensor:
        self.net.eval()
        ids, lengths = padded_ids(histories, self.net.encoder.max_len)
        with torch.no_grad():
            if not len(ids):
                return torch.zeros(0, self.net.dim)
            return torch.cat([self.net.users(ids[s : s + batch].to(self.device), lengths[s : s + batch].to(self.device))
                              for s in range(0, len(ids), batch)])

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        return F.normalize(self._users(histories), dim=-1).cpu().numpy().astype(np.float32)
