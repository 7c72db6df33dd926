"""UniEmbedding (Dai et al., CIKM'24): the network, the training loop and the Method plugins.

Pretraining (Figure 4): the adapter (Eqn 1) maps each item's frozen text/image vectors to E^A;
the user behaviour encoder and the multi-head projections (Eqn 2) turn a user's mixed-domain
sequence into d x d matrices that give the user-view item embeddings (Eqn 3); the multi-domain
contrastive loss (Eqn 4) trains everything end to end. The downstream item embedding is the
normalised E^A (end of 3.3). Variants (Table 1, section 5.2.1, and our earlier-part user view
[proposal]) are subclasses with a fixed config.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from benchmark.data.model import TrainView
from benchmark.data.validation import ValidationCarve, carve_validation
from benchmark.errors import ConfigError, MissingRequirementError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.kernels import unfilled_new_tensors
from methods.shared.training import (
    EarlyStopping,
    TrainingBudget,
    combine_budgets,
    resolve_device,
    validation_ndcg,
)
from methods.uniembedding.adapter import MultiModalAdapter
from methods.uniembedding.batching import (
    Batch,
    PaddedSequences,
    context_lengths,
    epoch_batches,
    length_chunks,
    make_batch,
    pad_sequences,
)
from methods.uniembedding.loss import (
    FORMS,
    ContrastiveSets,
    contrastive_sets,
    multi_domain_contrastive_loss,
    sample_positives,
)
from methods.uniembedding.user_view import UserViewProjection

MODALITIES = ("text", "image")


@dataclass(eq=False)
class ItemInputs:
    """The adapter's inputs for every item: m_i per modality, which items have it, and domains."""

    vectors: dict[str, torch.Tensor]  # modality -> float32 [N, d_m]
    masks: dict[str, torch.Tensor | None]  # modality -> bool [N] (None = every item has it)
    domain: torch.Tensor  # int64 [N]
    rule: str  # how missing images were handled, for the log and the card

    def take(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor | None], torch.Tensor]:
        masks = {m: (None if k is None else k[idx]) for m, k in self.masks.items()}
        return {m: v[idx] for m, v in self.vectors.items()}, masks, self.domain[idx]

    def to(self, device: torch.device) -> ItemInputs:
        """The same inputs on ``device`` (no copy when they are already there)."""
        return ItemInputs({m: v.to(device) for m, v in self.vectors.items()},
                          {m: (None if k is None else k.to(device)) for m, k in self.masks.items()},
                          self.domain.to(device), self.rule)


def item_inputs(features: ItemFeatures, domain: np.ndarray, modalities: list[str], input_norm: str) -> ItemInputs:
    """Select the modalities and apply the missing-image rule.

    Paper 4.3: items without an image use their (CLIP) text embedding as image embedding. That is
    only meaningful when text and image share a space, so it is applied only when
    ``features.joint_space``; otherwise an item without an image averages over its text alone.
    """
    if features.text is None:
        raise MissingRequirementError("uniembedding needs text features (features.text is None)")

    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.array(x, dtype=np.float32, copy=True))
        return F.normalize(t, dim=1) if input_norm == "l2" else t

    vectors: dict[str, torch.Tensor] = {"text": prep(features.text)}
    masks: dict[str, torch.Tensor | None] = {"text": None}
    rule = "text only"
    if "image" in modalities:
        if "image" not in features.modalities:
            rule = "text only (the features have no image vectors)"
        elif features.joint_space and features.text.shape[1] == features.image.shape[1]:
            vectors["image"] = prep(features.image_or_text())
            masks["image"] = None
            rule = "joint space: the text vector stands in for a missing image (paper 4.3)"
        else:
            vectors["image"] = prep(features.image)
            masks["image"] = torch.from_numpy(np.array(features.image_mask, dtype=bool, copy=True))
            rule = "not a joint space: items without an image average over text only"
    return ItemInputs(vectors, masks, torch.from_numpy(np.array(domain, dtype=np.int64, copy=True)), rule)


class UniEmbeddingNet(nn.Module):
    """Adapter (Eqn 1) + optional user-view projection (Eqns 2-3)."""

    def __init__(self, input_dims: dict[str, int], n_items: int, n_domains: int, cfg: dict[str, Any]):
        super().__init__()
        self.reference = False  # True: the chunk-by-chunk reference path (tests and the speed bench)
        d = int(cfg["dim"])
        self.adapter = MultiModalAdapter(
            input_dims, d, n_domains, n_domain_experts=int(cfg["n_domain_experts"]),
            n_shared_experts=int(cfg["n_shared_experts"]), expert=str(cfg["expert"]),
            hidden=int(cfg["expert_hidden"]), dropout=float(cfg["adapter_dropout"]))
        self.user_view: UserViewProjection | None = None
        if cfg["user_view"]:
            self.user_view = UserViewProjection(
                n_items, n_domains, d, int(cfg["max_len"]), layers=int(cfg["encoder_layers"]),
                heads=int(cfg["encoder_heads"]), ffn=int(cfg["encoder_ffn"]),
                dropout=float(cfg["encoder_dropout"]), pooling=str(cfg["pooling"]),
                projection_heads=int(cfg["projection_heads"]), projection_input=str(cfg["projection_input"]))

    def adapted(self, inputs: ItemInputs, idx: torch.Tensor) -> torch.Tensor:
        """Normalised E^A of items ``idx`` (Eqn 1, modality average, L2)."""
        return self.adapter(*inputs.take(idx))

    def anchor_embeddings(self, batch: Batch, adapted: torch.Tensor) -> torch.Tensor:
        """E_{u,a} for every anchor of ``batch`` in its anchor order (Eqn 3); E^A w/o user view."""
        if self.user_view is None:
            return adapted[batch.anchor_col]
        if self.user_view.encoder.packs and not self.reference:
            return self.user_view.anchor_views(batch, adapted)
        parts = []
        for chunk in batch.chunks:
            length = batch.length[chunk]
            width = int(length.max())
            col = batch.column_of[chunk, :width]
            view = self.user_view(batch.items[chunk, :width], batch.domain[chunk, :width], length,
                                  adapted[col.clamp(min=0)], batch.context_length[chunk])
            parts.append(view[batch.anchor_mask[chunk, :width]])
        return torch.cat(parts)


def batch_sets(batch: Batch, cfg: dict[str, Any], generator: torch.Generator) -> ContrastiveSets:
    """P_a and N_a of Eqn 4 for the batch's anchors (positives from ``batch.positive_of``, sampled to
    ``max_positives`` when set); what :func:`batch_loss` trains on."""
    sets = contrastive_sets(batch.anchor_row, batch.anchor_col, batch.column_of, batch.owner,
                            len(batch.columns), batch.positive_of)
    if cfg.get("max_positives"):
        sets = sample_positives(sets, int(cfg["max_positives"]), generator)
    return sets


def batch_loss(net: UniEmbeddingNet, inputs: ItemInputs, batch: Batch, cfg: dict[str, Any],
               generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """L_B (Eqn 4) of one batch and its number of anchors (E_{u,a} normalised when ``user_view_norm``)."""
    adapted = net.adapted(inputs, batch.columns)
    anchors = net.anchor_embeddings(batch, adapted)
    if cfg.get("user_view_norm"):
        anchors = F.normalize(anchors, dim=-1)
    sets = batch_sets(batch, cfg, generator)
    return multi_domain_contrastive_loss(anchors, adapted, sets, float(cfg["tau"]), str(cfg["loss_form"]),
                                         reference=net.reference)


def context_fraction(cfg: dict[str, Any]) -> float | None:
    """The share of each window the behaviour encoder reads in the earlier-part variant [proposal];
    None = the whole window (the paper's, and every config without ``user_view_input``)."""
    return float(cfg["context_fraction"]) if cfg.get("user_view_input", "window") == "earlier" else None


def training_sequences(train: TrainView, cfg: dict[str, Any]) -> PaddedSequences:
    """Mixed-domain sequences (3.1), or single-domain ones for the w/o cross-domain ablation (5.2.1).

    The earlier-part variant keeps windows of >= 3 items (encoder input + anchor + positive).
    """
    seqs = train.sequences if cfg["cross_domain"] else train.single_domain_sequences()
    return pad_sequences(seqs, train.item_domain, int(cfg["max_len"]),
                         min_len=2 if context_fraction(cfg) is None else 3)


def validation_cases(carve: ValidationCarve) -> tuple[torch.Tensor, torch.Tensor]:
    """Item-to-item validation cases of the carve-out [proposal]: query = the user's training item
    just before the held-out one, target = the held-out item (the matching protocol's kind of case)."""
    queries = carve.histories.items[carve.histories.offsets[1:] - 1]
    return (torch.from_numpy(queries.astype(np.int64)), torch.from_numpy(carve.targets.astype(np.int64)))


def evaluation_embeddings(net: UniEmbeddingNet, inputs: ItemInputs, padded: PaddedSequences,
                          cfg: dict[str, Any]) -> np.ndarray:
    """The item embeddings ``item_embeddings()`` returns (``eval_embedding``), L2-normalised rows."""
    if cfg["eval_embedding"] == "user_view":
        return user_view_embeddings(net, inputs, padded, int(cfg["chunk_tokens"]))
    return adapted_embeddings(net, inputs)


def validation_score(net: UniEmbeddingNet, inputs: ItemInputs, padded: PaddedSequences, cfg: dict[str, Any],
                     queries: torch.Tensor, targets: torch.Tensor) -> float:
    """Item-to-item NDCG@10 of the carve-out on the evaluation embeddings (model selection only).

    Scores are cosines (the rows are unit length, as the evaluator scores them); unlike the
    evaluator, the query item itself stays a candidate (``validation_ndcg`` has one pool for all
    cases), so a case's rank is one worse than the evaluator's whenever query != target, in
    every epoch alike.
    """
    emb = torch.from_numpy(evaluation_embeddings(net, inputs, padded, cfg))
    return validation_ndcg(emb[queries], emb, targets)


def train_uniembedding(train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext,
                       device: torch.device | str = "cpu", budget: TrainingBudget | None = None,
                       carve: ValidationCarve | None = None, reference: bool = False,
                       ) -> tuple[UniEmbeddingNet, ItemInputs, PaddedSequences]:
    """Pretrain UniEmbedding; deterministic per ``ctx.seed`` (global seeds + a torch generator).

    The generator (batch order, positive sampling) stays on the CPU whatever ``device`` is.
    ``budget`` (optional) records optimizer steps, epochs and, as examples, the anchors of Eqn 4
    (each anchor is one term of the loss), with the validation curve and the stop reason.

    Early stopping [proposal; the paper trains a fixed 300 epochs]: with a ``carve``, training
    runs on ``carve.fit`` (``train`` minus the held-out last items), every ``valid_every`` epochs
    (and after the last one) the item-to-item NDCG@10 of the carve-out is taken on the evaluation
    embeddings, training stops after ``patience`` validations without gain and the best state is
    restored; ``epochs`` is only the safety cap. Without a carve (or with an empty one) it trains
    the ``epochs`` on ``train`` (stop reason ``max_epochs`` / ``no_validation``).

    ``reference``: the straightforward kernels (chunk-by-chunk encoder and Eqn 3, positives as
    row products), kept for tests and the speed bench; the default computes the same values with
    less work (card.md, "Speed"), up to float rounding.
    """
    device = torch.device(device)
    ctx.seed_everything()
    generator = torch.Generator().manual_seed(int(ctx.seed))
    view = carve.fit if carve is not None else train
    inputs = item_inputs(features, view.item_domain, list(cfg["modalities"]), str(cfg["input_norm"])).to(device)
    padded = training_sequences(view, cfg)
    net = UniEmbeddingNet({m: v.shape[1] for m, v in inputs.vectors.items()}, view.n_items,
                          len(view.domains), cfg).to(device)
    net.reference = reference
    fraction = context_fraction(cfg)
    n_anchors = padded.n_tokens - (0 if fraction is None else int(context_lengths(padded.length, fraction).sum()))
    ctx.logger.info("uniembedding: modalities %s (%s); %d training sequences, %d anchors per epoch%s; "
                    "%d parameters; %d validation cases", sorted(inputs.vectors), inputs.rule, len(padded),
                    n_anchors, "" if fraction is None else f" (earlier-part user view, f = {fraction:g})",
                    sum(p.numel() for p in net.parameters()), 0 if carve is None else len(carve))
    if len(padded) < 2:
        ctx.logger.warning("uniembedding: fewer than two usable sequences; the adapter stays untrained")
        return net, inputs, padded
    # fused: the same Adam update in one kernel per tensor (the last bit may differ from the loop)
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]),
                                 fused=None if reference or device.type != "cpu" else True)
    if budget is not None:
        budget.watch(optimizer)
    epochs = int(cfg["epochs"])
    validate = carve is not None and len(carve) > 0
    if carve is not None and not validate and budget is not None:
        budget.stop_reason = "no_validation"
    stopper = EarlyStopping(int(cfg.get("patience") or 1), "uniembedding", ctx.logger, budget=budget)
    if validate:
        queries, targets = validation_cases(carve)
    every = int(cfg.get("valid_every") or 1)
    with contextlib.nullcontext() if reference else unfilled_new_tensors():
        for epoch in ctx.progress(range(epochs), desc="uniembedding epochs", total=epochs):
            net.train()
            started, total, anchors = time.perf_counter(), 0.0, 0
            for rows in epoch_batches(len(padded), int(cfg["batch_size"]), generator):
                batch = make_batch(padded, rows, int(cfg["chunk_tokens"]), context_fraction(cfg)).to(device)
                loss, n = batch_loss(net, inputs, batch, cfg, generator)
                if n == 0:
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.get("grad_clip"):
                    nn.utils.clip_grad_norm_(net.parameters(), float(cfg["grad_clip"]))
                optimizer.step()
                total += float(loss.detach())
                anchors += n
            if budget is not None:
                budget.saw(anchors)
                budget.epoch_done(epoch)
            ctx.log_metric("uniembedding_loss", total / max(anchors, 1), epoch)
            ctx.log_metric("uniembedding_epoch_seconds", time.perf_counter() - started, epoch)
            if validate and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
                score = validation_score(net, inputs, padded, cfg, queries, targets)
                ctx.log_metric("uniembedding_valid_ndcg10", score, epoch)
                if stopper.update(score, net, epoch):
                    break
    stopper.restore(net)
    net.eval()
    return net, inputs, padded


@torch.no_grad()
def adapted_embeddings(net: UniEmbeddingNet, inputs: ItemInputs, chunk: int = 8192) -> np.ndarray:
    """Normalised E^A of every item, float32 [N, d]: the paper's downstream embedding (3.3 end)."""
    net.eval()
    n = len(inputs.domain)
    device = inputs.domain.device
    parts = [net.adapted(inputs, torch.arange(s, min(s + chunk, n), device=device)) for s in range(0, n, chunk)]
    return torch.cat(parts).cpu().numpy().astype(np.float32) if parts else np.zeros((0, net.adapter.d), np.float32)


@torch.no_grad()
def user_view_embeddings(net: UniEmbeddingNet, inputs: ItemInputs, padded: PaddedSequences,
                         chunk_tokens: int = 4096) -> np.ndarray:
    """Option ``eval_embedding: user_view`` [proposal]: item i's vector is the mean of E_{u,i} (Eqn 3)
    over the training sequences whose last-L window holds i, L2-normalised; items in no window
    fall back to E^A. (The paper found E^A better downstream, 3.3.)"""
    if net.user_view is None:
        raise ConfigError("eval_embedding 'user_view' needs the user view (user_view: true)")
    device = inputs.domain.device
    adapted = torch.as_tensor(adapted_embeddings(net, inputs)).to(device)
    total, count = torch.zeros_like(adapted), torch.zeros(len(adapted), device=device)
    for rows in length_chunks(padded.length, chunk_tokens):
        length = torch.as_tensor(padded.length[rows]).to(device)
        width = int(length.max())
        items = torch.as_tensor(padded.items[rows, :width]).to(device)
        valid = items >= 0
        view = net.user_view(items, torch.as_tensor(padded.domain[rows, :width]).to(device), length,
                             adapted[items.clamp(min=0)])
        total.index_add_(0, items[valid], view[valid])
        count.index_add_(0, items[valid], torch.ones(int(valid.sum()), device=device))
    seen = count > 0
    out = adapted.clone()
    out[seen] = F.normalize(total[seen] / count[seen, None], dim=-1)
    return out.cpu().numpy().astype(np.float32)


class UniEmbedding(Method):
    """UniEmbedding: domain-aware multi-modal MoE adapter pretrained by user-view contrastive learning."""

    name = "uniembedding"
    display_name = "UniEmb"
    paper_column = "UniEmb"
    requires = frozenset({"ids", "sequences", "text"})
    uses = frozenset({"image"})
    #: What makes a variant a variant; applied over any suite or --set value (with a warning).
    fixed_config: ClassVar[dict[str, Any]] = {}
    #: True on an instance: train with the reference kernels (``train_uniembedding(reference=...)``;
    #: the speed bench's "before"). Not a config key, so never part of a run key.
    reference_path: bool = False

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {**super().default_config(), **cls.fixed_config}

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        """Fail early, with the key's name, on a config the model cannot run."""
        cfg = {**cfg, **cls.fixed_config}  # the variant's keys, as fit applies them
        need = ("dim", "tau", "batch_size", "epochs", "lr", "weight_decay", "modalities", "input_norm", "expert",
                "n_domain_experts", "n_shared_experts", "expert_hidden", "adapter_dropout", "max_len",
                "encoder_layers", "encoder_heads", "encoder_ffn", "encoder_dropout", "pooling", "projection_heads",
                "projection_input", "user_view", "user_view_norm", "cross_domain", "loss_form", "eval_embedding", "chunk_tokens",
                "patience", "valid_fraction", "valid_max_cases", "valid_every")
        missing = [k for k in need if k not in cfg]
        if missing:
            raise ConfigError(f"uniembedding: config misses {missing}")
        checks = {
            "modalities": set(cfg["modalities"]) <= set(MODALITIES) and "text" in cfg["modalities"],
            "input_norm": cfg["input_norm"] in ("l2", "none"),
            "expert": cfg["expert"] in ("whitening", "mlp"),
            "pooling": cfg["pooling"] in ("last", "mean"),
            "projection_input": cfg["projection_input"] in ("slice", "full"),
            "projection_heads": int(cfg["dim"]) % int(cfg["projection_heads"]) == 0,
            "encoder_heads": int(cfg["dim"]) % int(cfg["encoder_heads"]) == 0,
            "loss_form": cfg["loss_form"] in FORMS,
            "eval_embedding": cfg["eval_embedding"] in ("adapter", "user_view"),
            "tau": float(cfg["tau"]) > 0,
            "batch_size": int(cfg["batch_size"]) >= 2,
            "max_len": int(cfg["max_len"]) >= 2,
            "epochs": int(cfg["epochs"]) >= 1,
            "patience": int(cfg["patience"]) >= 1,
            "valid_fraction": 0.0 <= float(cfg["valid_fraction"]) < 1.0,
            "valid_max_cases": int(cfg["valid_max_cases"]) >= 1,
            "valid_every": int(cfg["valid_every"]) >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"uniembedding: invalid value for {bad}")
        if cfg["eval_embedding"] == "user_view" and not cfg["user_view"]:
            raise ConfigError("uniembedding: eval_embedding 'user_view' needs user_view: true")
        if cfg.get("user_view_input", "window") not in ("window", "earlier"):
            raise ConfigError("uniembedding: invalid value for ['user_view_input'] (window | earlier)")
        if cfg.get("user_view_input") == "earlier":
            if not 0.0 < float(cfg.get("context_fraction", 0.0)) < 1.0:
                raise ConfigError("uniembedding: invalid value for ['context_fraction'] (0 < f < 1)")
            if not cfg["user_view"] or cfg["eval_embedding"] != "adapter":
                raise ConfigError("uniembedding: user_view_input 'earlier' needs user_view: true and "
                                  "eval_embedding: adapter")

    def resolve(self, cfg: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        """The config with the variant's fixed keys enforced (logged when they override a value)."""
        out = dict(cfg)
        for key, value in self.fixed_config.items():
            if key in out and out[key] != value:
                ctx.logger.warning("%s: config %s=%r overridden by the variant to %r", self.name, key, out[key], value)
            out[key] = value
        self.check_config(out)
        return out

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        cfg = self.resolve(cfg, ctx)
        device = resolve_device(cfg.get("device"))
        threads_before = torch.get_num_threads()
        if cfg.get("torch_threads"):
            torch.set_num_threads(int(cfg["torch_threads"]))
        try:
            carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
            budget = TrainingBudget("pretrain", metric="valid NDCG@10 item-to-item (previous item -> held-out item)")
            net, inputs, padded = train_uniembedding(train, features, cfg, ctx, device, budget, carve,
                                                     reference=self.reference_path)
            self.stats = {"unit": "anchors", **carve.describe(), "training": combine_budgets(budget)}
            self._emb = evaluation_embeddings(net, inputs, padded, cfg)
        finally:
            torch.set_num_threads(threads_before)
        self.net, self.inputs = net, inputs

    def item_embeddings(self) -> np.ndarray:
        return self._emb


class UniEmbeddingText(UniEmbedding):
    """UniEmb_Text: UniEmbedding on the item text modality only (Table 1)."""

    name = "uniembedding-text"
    display_name = "UniEmb_Text"
    paper_column = "UniEmb_Text"
    uses = frozenset()
    fixed_config = {"modalities": ["text"]}


class UniEmbeddingWithoutUserView(UniEmbedding):
    """UniEmb w/o user view: contrastive learning directly on E^A, no behaviour encoder (5.2.1)."""

    name = "uniembedding-wo-user-view"
    display_name = "UniEmb w/o user view"
    paper_column = None
    fixed_config = {"user_view": False, "eval_embedding": "adapter"}


class UniEmbeddingEarlierView(UniEmbedding):
    """UniEmb, earlier-part user view [proposal]: the encoder reads a window's earlier part, anchors
    and positives come from its later part, so no positive is an encoder input (card.md)."""

    name = "uniembedding-earlier-view"
    display_name = "UniEmb earlier-view"
    paper_column = None
    fixed_config = {"user_view": True, "user_view_input": "earlier", "eval_embedding": "adapter"}
    #: The variant's own keys and presets, beside config.yaml (whose keys and presets it inherits);
    #: kept out of config.yaml so the paper's variants keep their run keys.
    own_config_file: ClassVar[str] = "earlier_view.yaml"

    @classmethod
    def _config_file(cls) -> dict[str, Any]:
        """config.yaml, plus the variant's keys; its presets are UniEmbedding's, updated per scale by its own."""
        base = super()._config_file()
        own = yaml.safe_load((cls.home() / cls.own_config_file).read_text()) or {}
        base_scales, own_scales = base.pop("scales", None) or {}, own.pop("scales", None) or {}
        scales = {scale: {**(base_scales.get(scale) or {}), **(own_scales.get(scale) or {})}
                  for scale in {**base_scales, **own_scales}}
        return {**base, **own, "scales": scales}


class UniEmbeddingWithoutCrossDomain(UniEmbedding):
    """UniEmb w/o cross-domain: each user contributes single-domain sequences only (5.2.1)."""

    name = "uniembedding-wo-cross-domain"
    display_name = "UniEmb w/o cross-domain"
    paper_column = None
    fixed_config = {"cross_domain": False}
