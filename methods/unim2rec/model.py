"""UniM2Rec (Sun et al., arXiv 2311.01831; seed 003): the Method plugins and the fine-tuning hook.

Pretraining (``fit``): three frozen item views -> per-view whitening MoE into one universal space
-> fusion over the available views -> a Transformer over each user's mixed, time-ordered flow of
all domains (with domain embeddings), trained by sequence-item and sequence-sequence contrastive
learning. Fine-tuning (``fine_tune``) adapts the projectors and fusion to a target domain's view
with the Transformer frozen (UniSRec's ``fix_enc``). Item embedding (item-to-item and next-item
candidates) = the L2-normalised fused item content vector, the encoder's input space (methods.md
6.2); user vector = the flow encoder's output at the last history item; cosine scoring.

No public code exists: everything beyond the seed is a [proposal] (card.md, config.yaml).
Variants for claim C12 are subclasses with a fixed config, like UniEmbedding's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.model import Histories, TrainView
from benchmark.data.validation import carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.training import TrainingBudget, combine_budgets, resolve_device
from methods.unim2rec.network import FUSIONS, PROJECTORS, UniM2RecNet
from methods.unim2rec.training import all_item_vectors, train_stage, user_vectors
from methods.unim2rec.views import VIEWS, build_views

FLOWS = ("mixed", "single-domain")
NEEDED = ("views", "projector", "fusion", "flow", "domain_embeddings", "dim", "n_experts", "adaptor_dropout",
          "n_layers", "n_heads", "inner", "dropout", "layer_norm_eps", "init_std", "max_len", "tau", "same_target", "same_user_negatives",
          "seq_seq_weight", "item_drop_prob", "item_drop_ratio", "word_drop_mix", "lr", "weight_decay",
          "batch_size", "epochs", "patience", "finetune_epochs", "finetune_lr", "valid_fraction",
          "valid_max_cases")


def short_encoder(encoder_id: str) -> str:
    """'minilm:sentence-...@sha' -> 'minilm'; 'offline-descriptor:...' -> 'descr.'; CLIP keeps its arch."""
    name = encoder_id.split("@", 1)[0] if encoder_id.startswith(("clip:", "hf:")) else encoder_id.split(":", 1)[0]
    return "descr." if name == "offline-descriptor" else name


class UniM2Rec(Method):
    """UniM2Rec: multi-modal (text, image, cross) multi-domain pretraining over mixed behaviour flows."""

    name = "unim2rec"
    display_name = "UniM2Rec"
    paper_column = None  # not in the UniEmbedding paper (methods.md 15)
    requires = frozenset({"sequences", "text"})
    uses = frozenset({"image", "text_word_drop"})
    next_item_scoring = "cosine"
    tags = {"not_in_paper": "true", "paper": "arXiv 2311.01831 (no public code)"}
    #: What makes a variant a variant; applied over any suite or --set value (with a warning).
    fixed_config: ClassVar[dict[str, Any]] = {}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {**super().default_config(), **cls.fixed_config}

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        """Fail before any training, naming the key, on a config the model cannot run."""
        cfg = {**cfg, **cls.fixed_config}  # the variant's keys, as fit applies them
        missing = [k for k in NEEDED if k not in cfg]
        if missing:
            raise ConfigError(f"unim2rec: config misses {missing}")
        views = cfg["views"]
        checks = {
            "views": isinstance(views, list) and bool(views) and set(views) <= set(VIEWS) and "text" in views,
            "projector": cfg["projector"] in PROJECTORS,
            "fusion": cfg["fusion"] in FUSIONS,
            "flow": cfg["flow"] in FLOWS,
            "same_target": cfg["same_target"] in ("zero", "remove", "none"),
            "same_user_negatives": cfg["same_user_negatives"] in ("remove", "keep"),
            "n_heads": int(cfg["dim"]) % int(cfg["n_heads"]) == 0,
            "tau": float(cfg["tau"]) > 0,
            "seq_seq_weight": float(cfg["seq_seq_weight"]) >= 0,
            "item_drop_prob": 0.0 <= float(cfg["item_drop_prob"]) <= 1.0,
            "item_drop_ratio": 0.0 <= float(cfg["item_drop_ratio"]) < 1.0,
            "word_drop_mix": 0.0 <= float(cfg["word_drop_mix"]) <= 1.0,
            "batch_size": int(cfg["batch_size"]) >= 2,
            "max_len": int(cfg["max_len"]) >= 1,
            "epochs": int(cfg["epochs"]) >= 1,
            "finetune_epochs": int(cfg["finetune_epochs"]) >= 0,
            "n_experts": int(cfg["n_experts"]) >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"unim2rec: invalid value for {bad} ({', '.join(f'{k}={cfg[k]!r}' for k in bad)})")

    def resolve(self, cfg: dict[str, Any], ctx: RunContext | None = None) -> dict[str, Any]:
        out = dict(cfg)
        for key, value in self.fixed_config.items():
            if key in out and out[key] != value and ctx is not None:
                ctx.logger.warning("%s: config %s=%r overridden by the variant to %r", self.name, key, out[key], value)
            out[key] = value
        self.check_config(out)
        return out

    def display(self, features: ItemFeatures | None = None) -> str:
        if features is None:
            return f"{self.display_name} (not in paper)"
        views = self.default_config().get("views", list(VIEWS))
        encoders = features.encoder_ids()
        label = short_encoder(encoders.get("text", "text"))
        if any(v in views for v in ("image", "cross")):
            if "image" in features.modalities and "image" in encoders:
                label += "+" + short_encoder(encoders["image"])
            else:
                label += ", text only: no images"
        return f"{self.display_name}[{label}] (not in paper)"

    # -- pretraining ---------------------------------------------------------------------------
    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        cfg = self.resolve(cfg, ctx)
        device = resolve_device(cfg.get("device"))
        ctx.seed_everything()
        items = build_views(features, train.item_domain, cfg["views"]).to(device)
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        flow = carve.fit.sequences if cfg["flow"] == "mixed" else carve.fit.single_domain_sequences()
        torch.manual_seed(ctx.seed)
        self.net = UniM2RecNet(items.dims(), len(train.domains), cfg).to(device)
        self.domains = tuple(train.domains)
        ctx.logger.info("unim2rec: %s; cross view: %s; projector %s, fusion %s, %s flow (%d sequences), %d parameters",
                        items.note, items.cross or "off", cfg["projector"], cfg["fusion"], cfg["flow"], len(flow),
                        sum(p.numel() for p in self.net.parameters()))
        self.stats: dict[str, Any] = {"views": list(items.names), "cross_view": items.cross, "note": items.note,
                                      **carve.describe()}
        self._budgets = [TrainingBudget("pretrain")]
        self.stats.update(train_stage(self.net, items, flow, carve, cfg, ctx, self.net.parameters(), stage="pretrain",
                                      epochs=int(cfg["epochs"]), lr=float(cfg["lr"]), seq_seq=True,
                                      budget=self._budgets[0]))
        self.items, self.cfg = items, cfg
        if int(cfg["finetune_epochs"]) > 0:
            # [proposal] inside the matching suite the three domains are source and target at once:
            # fine-tuning, when switched on, continues on the same training view with the encoder frozen.
            self.fine_tune(train, features, cfg, ctx)
        else:
            self._finish()
        ctx.logger.info("unim2rec: %s", {k: v for k, v in self.stats.items() if k != "training"})

    # -- fine-tuning on a target domain --------------------------------------------------------
    def fine_tune(self, target: TrainView, features: ItemFeatures, cfg: dict[str, Any] | None = None,
                  ctx: RunContext | None = None, epochs: int | None = None) -> dict[str, Any]:
        """Fine-tune the pretrained model on ``target`` (its items' ``features``): seed 003's
        "pre-trained on source domains and fine-tuned on target domains".

        As UniSRec's fine-tuning (methods.md 3.5, 15): the Transformer layers and position
        embeddings are frozen; the view projectors, the fusion, the input LayerNorm and the domain
        embeddings train, on the sequence-item loss only, with early stopping on the target's own
        validation carve-out. Target domains unknown to the pretrained model get new domain
        embeddings initialised to the mean of the pretrained ones [proposal]. Afterwards the
        item/user embeddings are those of ``target``'s items. Returns the stage's statistics.
        """
        if not hasattr(self, "net"):
            raise ConfigError("unim2rec.fine_tune: fit (pretrain) the model first")
        cfg = self.resolve(cfg if cfg is not None else self.cfg, ctx)
        ctx = ctx or RunContext()
        device = next(self.net.parameters()).device
        self._map_domains(target.domains)
        domain = np.array([self.domains.index(d) for d in target.domains], dtype=np.int64)[target.item_domain]
        items = build_views(features, domain, [v for v in cfg["views"] if v in self.net.views]).to(device)
        if items.names != self.net.views:
            raise ConfigError(f"unim2rec.fine_tune: target features give views {items.names}, "
                              f"the pretrained model has {self.net.views}")
        carve = carve_validation(target, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        flow = carve.fit.sequences if cfg["flow"] == "mixed" else carve.fit.single_domain_sequences()
        frozen = list(self.net.encoder.layers.parameters()) + list(self.net.encoder.position.parameters())
        for p in frozen:
            p.requires_grad_(False)
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        budget = TrainingBudget("finetune")
        self._budgets = [*getattr(self, "_budgets", []), budget]
        try:
            stats = train_stage(self.net, items, flow, carve, cfg, ctx, trainable, stage="finetune",
                                epochs=int(epochs if epochs is not None else cfg["finetune_epochs"]),
                                lr=float(cfg["finetune_lr"]), seq_seq=False, budget=budget)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        self.items, self.cfg = items, cfg
        self.stats = {**getattr(self, "stats", {}), **stats, "finetune_validation": carve.describe()}
        self._finish()
        return stats

    def _map_domains(self, names: tuple[str, ...]) -> None:
        new = [d for d in names if d not in self.domains]
        emb = self.net.encoder.domain
        if not new or emb is None:
            self.domains = self.domains + tuple(new)
            return
        with torch.no_grad():
            grown = torch.nn.Embedding(emb.num_embeddings + len(new), emb.embedding_dim).to(emb.weight.device)
            grown.weight[: emb.num_embeddings] = emb.weight
            grown.weight[emb.num_embeddings :] = emb.weight.mean(0, keepdim=True)
        self.net.encoder.domain = grown
        self.domains = self.domains + tuple(new)

    def _finish(self) -> None:
        self.stats["training"] = combine_budgets(*self._budgets)  # every stage run so far
        self._vectors = all_item_vectors(self.net, self.items)
        self._emb = F.normalize(self._vectors, dim=-1).cpu().numpy().astype(np.float32)

    # -- outputs -------------------------------------------------------------------------------
    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        return user_vectors(self.net, self.items, self._vectors, histories).cpu().numpy().astype(np.float32)


class UniM2RecText(UniM2Rec):
    """UniM2Rec text-only: the text view alone (C12: multi-modal > text-only)."""

    name = "unim2rec-text"
    display_name = "UniM2Rec text-only"
    uses = frozenset({"text_word_drop"})
    fixed_config = {"views": ["text"]}


class UniM2RecLinear(UniM2Rec):
    """UniM2Rec with one linear layer per view instead of the whitening MoE (C12: MoE > linear)."""

    name = "unim2rec-linear"
    display_name = "UniM2Rec linear projector"
    fixed_config = {"projector": "linear"}


class UniM2RecSingleDomain(UniM2Rec):
    """UniM2Rec trained on single-domain flows instead of the mixed flow (C12: mixed > single-domain)."""

    name = "unim2rec-single-domain"
    display_name = "UniM2Rec single-domain flow"
    fixed_config = {"flow": "single-domain"}
