"""MISSRec (Wang et al., ACM MM'23): pretraining + fine-tuning on the suite's training sequences.

Stage 1 (pretrain, ``pretrain_epochs``): every-prefix examples of the training sequences,
``L = CE(agg/tau, in-batch) + lambda CE(s s~^T/tau) + gamma (R + R_aug)`` with interest discovery
(k-means, ratio 0.02) before every epoch. Stage 2 (fine-tune, ``finetune_epochs``): CE of the fused
scores over all items + gamma R, encoder/decoder/positions frozen (``fix_enc``), interest ratio
0.5, early stopping on the validation carve-out's NDCG@10 under the fused scores, best epoch
restored. The transductive variant adds ID embeddings in stage 2 (the code's default).

Evaluation (methods.md 15): item-to-item uses the static item vector
``[n(e_id);] n(W_t t); n(W_v v)`` / sqrt(#parts) (missing image: text only, via the mask).
Next-item uses the decoder output against the static-fusion candidates ``(n_t + n_v)/2``
(transductive ``(n_id + 2 agg)/3``) under raw inner products: exactly the code's fused score
when beta = 0; the learned beta is reported, and ``fused_scores`` gives the dynamic scores.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.model import Histories, TrainView
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.missrec.augment import ALIGNMENTS, augment
from methods.missrec.interest import discover_interests
from methods.missrec.model import MISSRecNet, zero_cold_ids
from methods.shared.sequence import bucketed_batches, padded_ids, prefix_examples
from methods.shared.training import (
    FIXED_EPOCHS,
    EarlyStopping,
    TrainingBudget,
    combine_budgets,
    resolve_device,
)

FUSIONS = ("dynamic", "static")


def _short(encoder: str | None) -> str:
    """'minilm:sentence-transformers/..@sha256:..' -> 'minilm'; 'offline-descriptor:..' -> 'descr.';
    'clip:ViT-B-32/openai@..' -> 'clip:ViT-B-32/openai' (the CLIP baseline's naming)."""
    if not encoder:
        return "?"
    if encoder.startswith(("clip:", "hf:")):
        return encoder.split("@", 1)[0]
    name = encoder.split(":", 1)[0]
    return "descr." if name == "offline-descriptor" else name


class MISSRec(Method):
    """MISSRec: interest-aware multi-modal sequence encoder-decoder (inductive fine-tuning)."""

    name = "missrec"
    display_name = "MISSRec"
    paper_column = "MISSRec"
    requires = frozenset({"ids", "sequences", "text"})
    uses = frozenset({"image", "text_word_drop"})
    next_item_scoring = "dot"
    transductive = False

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        """Reject a bad config in one line before any work (benchmark.errors.ConfigError)."""
        positive = ("dim", "n_heads", "inner", "max_len", "tau", "kmeans_niter", "pretrain_batch_size",
                    "finetune_batch_size", "pretrain_interest_ratio", "finetune_interest_ratio")
        for key in positive:
            if float(cfg[key]) <= 0:
                raise ConfigError(f"missrec.{key} must be > 0, got {cfg[key]!r}")
        for key in ("pretrain_epochs", "finetune_epochs", "patience", "lambda", "gamma"):
            if float(cfg[key]) < 0:
                raise ConfigError(f"missrec.{key} must be >= 0, got {cfg[key]!r}")
        for key in ("dropout", "item_drop_ratio", "item_drop_coefficient"):
            if not 0.0 <= float(cfg[key]) <= 1.0:
                raise ConfigError(f"missrec.{key} must be in [0, 1], got {cfg[key]!r}")
        if int(cfg["dim"]) % int(cfg["n_heads"]):
            raise ConfigError(f"missrec.dim {cfg['dim']} is not a multiple of n_heads {cfg['n_heads']}")
        if cfg["aug_image_alignment"] not in ALIGNMENTS:
            raise ConfigError(f"missrec.aug_image_alignment must be one of {ALIGNMENTS}, got {cfg['aug_image_alignment']!r}")
        if cfg.get("examples_per_epoch") is not None and int(cfg["examples_per_epoch"]) <= 0:
            raise ConfigError(f"missrec.examples_per_epoch must be > 0 or null, got {cfg['examples_per_epoch']!r}")
        if cfg["fusion"] not in FUSIONS:
            raise ConfigError(f"missrec.fusion must be one of {FUSIONS}, got {cfg['fusion']!r}")

    def display(self, features: ItemFeatures | None = None) -> str:
        if features is None:
            return self.display_name
        if "image" in features.modalities:
            return f"{self.display_name}[{_short(features.text_encoder)}+{_short(features.image_encoder)}]"
        return f"{self.display_name}[{_short(features.text_encoder)}, text only]"

    # ------------------------------------------------------------------------------------- fit
    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        self.check_config(cfg)
        device = resolve_device(cfg.get("device"))
        log = ctx.logger
        if features.text is None:
            raise ConfigError("missrec needs text features (features.text_encoder)")
        with_image = "image" in features.modalities
        if not with_image:
            log.warning("missrec: no image features in this dataset -> text only (column %s)", self.display(features))
        word_drop = features.text_word_drop
        if word_drop is None:
            log.warning("missrec: no word-drop text view (features.word_drop = 0) -> seq-seq view = item drop only")
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        fit_view = carve.fit
        max_len = int(cfg["max_len"])
        examples = prefix_examples(fit_view.sequences, max_len, min_history=1)
        torch.manual_seed(ctx.seed)
        net = MISSRecNet(features.text, features.image if with_image else None,
                         features.image_mask if with_image else None, cfg, transductive=self.transductive).to(device)
        if cfg["fusion"] == "static" and with_image:
            net.beta.requires_grad_(False)
        self.net, self.device, self.cfg = net, device, cfg
        self._word_drop = torch.from_numpy(np.asarray(word_drop, dtype=np.float32)).to(device) \
            if word_drop is not None else None
        self._gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 17)
        self._rng = ctx.rng(17)
        self.stats: dict[str, Any] = {"examples": len(examples), "modalities": sorted(features.modalities),
                                      "word_drop_view": word_drop is not None, "kmeans_s": 0.0, "kmeans_cpu_s": 0.0,
                                      "aug_image_alignment": cfg["aug_image_alignment"], **carve.describe()}
        t0, c0 = time.perf_counter(), time.process_time()
        budgets = TrainingBudget("pretrain", metric=FIXED_EPOCHS), TrainingBudget("finetune")  # examples_seen counts prefix examples
        self._pretrain(examples, cfg, ctx, budgets[0])
        self._finetune(examples, carve, cfg, ctx, budgets[1])
        self.stats["training"] = combine_budgets(*budgets)
        zero_cold_ids(net, fit_view.item_train_count)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        self.stats.update({"seconds_fit": fit_s, "cpu_seconds_fit": fit_cpu,
                           "kmeans_share": self.stats["kmeans_s"] / max(fit_s, 1e-9),
                           "kmeans_cpu_share": self.stats["kmeans_cpu_s"] / max(fit_cpu, 1e-9),
                           "beta": float(net.beta.detach()) if with_image else None})
        msg = (f"missrec: fit {fit_s:.1f}s wall / {fit_cpu:.1f}s CPU; k-means {self.stats['kmeans_s']:.1f}s wall "
               f"({100 * self.stats['kmeans_share']:.1f}% of the fit) / {self.stats['kmeans_cpu_s']:.1f}s CPU "
               f"({100 * self.stats['kmeans_cpu_share']:.1f}%); K {self.stats.get('k')}; beta {self.stats['beta']}")
        log.info(msg)
        net.eval()
        self._item_emb = net.static_item_embeddings()
        self._candidates = net.static_candidates()

    def _discover(self, ratio: float, ctx: RunContext, epoch: int, stage: str) -> None:
        self.net.eval()
        text, image = self.net.adapted_tokens()
        mask = self.net.image_present.cpu().numpy() if self.net.has_image else None
        found = discover_interests(text, image, mask, ratio, int(self.cfg["kmeans_niter"]),
                                   seed=int(ctx.seed) * 1009 + epoch + (100_000 if stage == "finetune" else 0),
                                   threads=ctx.workers)
        self.net.set_interests(found)
        self.stats["kmeans_s"] += found.seconds
        ctx.log_metric(f"missrec_{stage}_kmeans_s", found.seconds, epoch)
        self.stats["kmeans_cpu_s"] += found.cpu_seconds
        self.stats["k"] = found.k

    def _batches(self, examples, batch: int) -> list[np.ndarray]:
        lengths = examples.target - examples.start
        budget = self.cfg.get("examples_per_epoch")
        return bucketed_batches(lengths, batch, self._rng, bool(self.cfg["length_buckets"]),
                             int(budget) if budget else None)

    def _pretrain(self, examples, cfg: dict[str, Any], ctx: RunContext, budget: TrainingBudget) -> None:
        epochs, batch = int(cfg["pretrain_epochs"]), int(cfg["pretrain_batch_size"])
        if epochs == 0 or len(examples) == 0:
            return
        net, device = self.net, self.device
        opt = budget.watch(torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=float(cfg["pretrain_lr"])))
        for epoch in ctx.progress(range(epochs), desc="missrec pretrain", total=epochs):
            self._discover(float(cfg["pretrain_interest_ratio"]), ctx, epoch, "pretrain")
            net.train()
            sums = np.zeros(4)
            steps = 0
            for idx in self._batches(examples, batch):
                ids, lengths, targets = (t.to(device) for t in examples.batch(idx))
                parts = pretrain_losses(net, ids, lengths, targets, self._word_drop, self._gen, cfg)
                loss = parts[0] + float(cfg["lambda"]) * parts[1] + float(cfg["gamma"]) * (parts[2] + parts[3])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sums += [float(p.detach()) for p in parts]
                steps += 1
                budget.saw(len(idx))
            budget.epoch_done(epoch)
            for name, value in zip(("seq_item", "seq_seq", "reg", "reg_aug"), sums / max(steps, 1), strict=True):
                ctx.log_metric(f"missrec_pretrain_{name}", float(value), epoch)
        self.stats["pretrain_epochs"] = epochs

    def _finetune(self, examples, carve, cfg: dict[str, Any], ctx: RunContext, budget: TrainingBudget) -> None:
        net, device = self.net, self.device
        epochs, batch, patience = int(cfg["finetune_epochs"]), int(cfg["finetune_batch_size"]), int(cfg["patience"])
        self.stats["finetune_epochs"] = 0
        if epochs == 0 or len(examples) == 0:
            return
        if self.transductive:
            net.use_ids = True
        if cfg["fix_enc"]:
            for module in (net.encoder, net.decoder, net.position):
                for p in module.parameters():
                    p.requires_grad_(False)
        opt = budget.watch(torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=float(cfg["finetune_lr"])))
        tau, gamma = float(cfg["tau"]), float(cfg["gamma"])
        targets_v = torch.from_numpy(carve.targets.astype(np.int64)).to(device)
        stopper = EarlyStopping(patience, "missrec", ctx.logger, budget=budget)
        for epoch in ctx.progress(range(epochs), desc="missrec fine-tune", total=epochs):
            self._discover(float(cfg["finetune_interest_ratio"]), ctx, epoch, "finetune")
            net.train()
            total, steps = 0.0, 0
            for idx in self._batches(examples, batch):
                ids, lengths, targets = (t.to(device) for t in examples.batch(idx))
                seq, reg = net(ids, lengths)
                logits = net.scores(seq, net.candidate_parts()) / tau
                loss = F.cross_entropy(logits, targets) + gamma * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
                budget.saw(len(idx))
            ctx.log_metric("missrec_finetune_loss", total / max(steps, 1), epoch)
            if net.has_image:
                ctx.log_metric("missrec_beta", float(net.beta.detach()), epoch)
            self.stats["finetune_epochs"] = epoch + 1
            budget.epoch_done(epoch)
            if len(carve) == 0:
                budget.stop_reason = "no_validation"
                continue
            score = self._valid_ndcg(carve.histories, targets_v)
            ctx.log_metric("missrec_valid_ndcg10", score, epoch)
            if stopper.update(score, net, epoch):
                break
        stopper.restore(net)
        self.stats["best_valid_ndcg10"] = stopper.best

    # ----------------------------------------------------------------------------- inference
    @torch.no_grad()
    def _users(self, histories: Histories, batch: int = 1024, by_length: bool = False) -> torch.Tensor:
        """Sequence vectors of ``histories`` (zero for an empty one), ``batch`` rows per forward.

        ``by_length`` [proposal, speed; validation only]: rows sorted by history length (stable),
        so a batch is padded to its own longest history instead of (nearly always) ``max_len``;
        2.5x less work on the small twin's validation. The vectors are the same up to the last bit
        (other GEMM shapes: measured |diff| <= 7e-8), so the test-time user vectors keep the plain order.
        """
        net = self.net
        net.eval()
        ids, lengths = padded_ids(histories, net.max_len)
        out = torch.zeros(len(ids), net.dim, device=self.device)
        n = lengths.numpy()
        order = np.argsort(n, kind="stable") if by_length else np.arange(len(n))
        rows = torch.from_numpy(order[n[order] > 0])
        for s in range(0, len(rows), batch):
            r = rows[s : s + batch]
            width = max(int(lengths[r].max()), 1)
            seq, _ = net(ids[r, :width].to(self.device), lengths[r].to(self.device))
            out[r.to(self.device)] = seq
        return out

    @torch.no_grad()
    def fused_scores(self, histories: Histories) -> torch.Tensor:
        """The code's dynamic-fusion scores [len(histories), n_items] (learned beta)."""
        self.net.eval()
        return self.net.scores(self._users(histories), self.net.candidate_parts())

    @torch.no_grad()
    def _valid_ndcg(self, histories: Histories, targets: torch.Tensor, batch: int = 256) -> float:
        users = self._users(histories, by_length=True)
        parts = self.net.candidate_parts()
        total = 0.0
        for s in range(0, len(users), batch):
            total += ndcg_at_10(self.net.scores(users[s : s + batch], parts), targets[s : s + batch]) \
                * len(users[s : s + batch])
        return total / max(len(users), 1)

    def item_embeddings(self) -> np.ndarray:
        return self._item_emb

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        return self._users(histories).cpu().numpy().astype(np.float32)

    def next_item_embeddings(self) -> np.ndarray:
        return self._candidates


class MISSRecTransductive(MISSRec):
    """MISSRec with transductive fine-tuning (ID embeddings added; the authors' default)."""

    name = "missrec-transductive"
    display_name = "MISSRec-T"
    paper_column = None
    transductive = True


def pretrain_losses(net: MISSRecNet, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                    word_drop: torch.Tensor | None, gen: torch.Generator, cfg: dict[str, Any]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(seq-item CE, seq-seq CE, R, R_aug) of one pretraining batch; labels arange(B), no masking."""
    tau = float(cfg["tau"])
    seq, reg = net(ids, lengths)
    labels = torch.arange(len(ids), device=ids.device)
    seq_item = F.cross_entropy(net.scores(seq, net.candidate_parts(targets)) / tau, labels)
    view = augment(ids, lengths, net.text_feat, word_drop, gen, float(cfg["item_drop_coefficient"]),
                   float(cfg["item_drop_ratio"]), cfg["aug_image_alignment"])
    interest = None
    if view.image_ids is not None:  # replicate the code: original images and their clusters
        interest = net.interests(view.ids, view.image_ids)[0]
    seq_aug, reg_aug = net(view.ids, view.lengths, text_x=view.text_x, image_ids=view.image_ids,
                           interest_ids=interest)
    seq_seq = F.cross_entropy(seq @ seq_aug.T / tau, labels)
    return seq_item, seq_seq, reg, reg_aug


def ndcg_at_10(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean NDCG@10, rank = 1 + #(items scoring strictly higher than the target) (model selection)."""
    if len(scores) == 0:
        return 0.0
    rank = 1 + (scores > scores.gather(1, targets.view(-1, 1))).sum(1)
    gain = torch.where(rank <= 10, 1.0 / torch.log2(rank.double() + 1), torch.zeros_like(rank, dtype=torch.double))
    return float(gain.mean())


__all__ = ["MISSRec", "MISSRecTransductive", "ndcg_at_10", "pretrain_losses"]
