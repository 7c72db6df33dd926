"""The UniSRec plugins: inductive (Table 1 column) and transductive fine-tuning (a variant).

Item embedding = n(MoE(x_i)) (inductive) or n(MoE(x_i) + e_i^ID) (transductive), as in the
authors' ``full_sort_predict`` (methods.md 0.1, 3.7); user vector = n(encoder over the last
``max_len`` history items); next-item scores are cosines.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.data.model import Histories, Sequences, TrainView
from benchmark.data.validation import ValidationCarve, carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import Method, RunContext
from methods.shared.contrastive import SAME_TARGET_RULES, SAME_USER_RULES
from methods.shared.sequence import prefix_examples, windows
from methods.shared.training import FIXED_EPOCHS, TrainingBudget, combine_budgets, resolve_device
from methods.unisrec.model import UniSRecNet
from methods.unisrec.training import eval_item_vectors, finetune, pretrain, user_vectors

NEEDED = ("dim", "n_layers", "n_heads", "inner", "dropout", "layer_norm_eps", "init_std", "max_len", "n_experts",
          "adaptor_dropout", "gate_noise", "tau", "lambda", "same_target", "same_user_negatives",
          "item_drop_coefficient", "item_drop_ratio",
          "word_drop_mix", "pretrain_epochs", "pretrain_batch_size", "pretrain_lr", "finetune_epochs",
          "finetune_batch_size", "finetune_lr", "patience", "fix_enc", "finetune_sequences", "weight_decay",
          "encode_chunk", "examples", "valid_fraction", "valid_max_cases")


def short_encoder(encoder_id: str | None) -> str:
    """'minilm:sentence-transformers/...@sha' -> 'minilm'; 'hf:bert-base-uncased@...' -> 'bert-base-uncased'."""
    if not encoder_id:
        return "no text"
    if encoder_id.startswith("hf:"):
        return encoder_id[3:].split("@", 1)[0]
    return encoder_id.split(":", 1)[0].split("@", 1)[0]


class UniSRec(Method):
    """UniSRec (inductive): MoE-adapted text vectors + SASRec encoder, contrastive pretraining, fine-tuning."""

    name = "unisrec"
    display_name = "UniSRec"
    paper_column = "UniSRec"
    requires = frozenset({"ids", "sequences", "text"})
    uses = frozenset({"text_word_drop"})
    next_item_scoring = "cosine"
    transductive: ClassVar[bool] = False

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        """Fail early, naming the key, on a config UniSRec cannot run."""
        missing = [k for k in NEEDED if k not in cfg]
        if missing:
            raise ConfigError(f"unisrec: config misses {missing}")
        checks = {
            "n_heads": int(cfg["dim"]) % int(cfg["n_heads"]) == 0,
            "tau": float(cfg["tau"]) > 0,
            "same_target": cfg["same_target"] in SAME_TARGET_RULES,
            "same_user_negatives": cfg["same_user_negatives"] in SAME_USER_RULES,
            "finetune_sequences": cfg["finetune_sequences"] in ("mixed", "single_domain"),
            "item_drop_coefficient": 0.0 <= float(cfg["item_drop_coefficient"]) <= 1.0,
            "item_drop_ratio": 0.0 <= float(cfg["item_drop_ratio"]) < 1.0,
            "word_drop_mix": 0.0 <= float(cfg["word_drop_mix"]) <= 1.0,
            "pretrain_batch_size": int(cfg["pretrain_batch_size"]) >= 2,
            "finetune_batch_size": int(cfg["finetune_batch_size"]) >= 1,
            "pretrain_epochs": int(cfg["pretrain_epochs"]) >= 0,
            "finetune_epochs": int(cfg["finetune_epochs"]) >= 0,
            "max_len": int(cfg["max_len"]) >= 1,
            "n_experts": int(cfg["n_experts"]) >= 1,
            "encode_chunk": int(cfg["encode_chunk"]) >= 1,
            "examples": cfg["examples"] in ("prefixes", "windows"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"unisrec: invalid value for {bad}")

    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        self.check_config(cfg)
        t0 = time.perf_counter()
        carve = carve_validation(train, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        single = carve.fit.single_domain_sequences()  # domains apart; mixed only in batches (3.4)
        ft_seqs = carve.fit.sequences if cfg["finetune_sequences"] == "mixed" else single
        self._train(single, ft_seqs, carve, features, cfg, ctx, t0)

    def fit_transfer(self, source: TrainView, target: TrainView, features: ItemFeatures, cfg: dict[str, Any],
                     ctx: RunContext) -> None:
        """The paper's own setting (4.1): pretrain on the source domains, fine-tune on the target.

        Pretraining reads the source domains' sequences (no validation, as the code); the target's
        validation carve-out drives fine-tuning's early stopping.
        """
        self.check_config(cfg)
        t0 = time.perf_counter()
        carve = carve_validation(target, float(cfg["valid_fraction"]), ctx.seed, int(cfg["valid_max_cases"]))
        self._train(source.single_domain_sequences(), carve.fit.sequences, carve, features, cfg, ctx, t0)
        self.stats["transfer"] = {"source_sequences": len(source.sequences), "target_sequences": len(target.sequences)}

    def _train(self, single: Sequences, ft_seqs: Sequences, carve: ValidationCarve, features: ItemFeatures,
               cfg: dict[str, Any], ctx: RunContext, t0: float) -> None:
        """Contrastive pretraining on ``single`` (domain-separate sequences), then fine-tuning on ``ft_seqs``."""
        device = resolve_device(cfg.get("device"))
        max_len = int(cfg["max_len"])
        if cfg["examples"] == "windows":
            pre_ex, ft_ex = windows(single, max_len), windows(ft_seqs, max_len)
            dropped = {"pretrain_prefixes_outside_windows": pre_ex.dropped,
                       "finetune_prefixes_outside_windows": ft_ex.dropped}
        else:
            pre_ex = prefix_examples(single, max_len, min_history=1)
            ft_ex = prefix_examples(ft_seqs, max_len, min_history=1)
            dropped = {}
        text = torch.from_numpy(np.array(features.text, dtype=np.float32)).to(device)
        aug = features.text_word_drop
        if aug is None:
            ctx.logger.warning("unisrec: no word-drop text view (features.word_drop is 0): the seq-seq task "
                               "uses item drop only")
        text_aug = torch.from_numpy(np.array(aug, dtype=np.float32)).to(device) if aug is not None else None
        torch.manual_seed(ctx.seed)
        self.net = UniSRecNet(text, cfg, text_aug).to(device)
        self.stats: dict[str, Any] = {**carve.describe(), "text_encoder": features.text_encoder,
                                      "word_drop_view": aug is not None, "word_drop": features.word_drop,
                                      "finetune_sequences": cfg["finetune_sequences"],
                                      "examples": cfg["examples"], **dropped,
                                      "stage": "transductive_ft" if self.transductive else "inductive_ft"}
        budgets = TrainingBudget("pretrain", metric=FIXED_EPOCHS), TrainingBudget("finetune")
        self.stats.update(pretrain(self.net, pre_ex, cfg, ctx, budgets[0]))
        if self.transductive:
            self.net.add_item_ids(float(cfg["init_std"]))
        self.stats.update(finetune(self.net, ft_ex, carve, cfg, ctx, budgets[1]))
        self.stats["seconds_fit"] = time.perf_counter() - t0
        self.stats["training"] = combine_budgets(*budgets)
        ctx.logger.info("unisrec: %s", {k: v for k, v in self.stats.items() if k not in ("pretrain_last", "training")})
        self.net.requires_grad_(False)
        self._emb = eval_item_vectors(self.net).cpu().numpy().astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        return self._emb

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        return user_vectors(self.net, histories).cpu().numpy().astype(np.float32)

    def display(self, features: ItemFeatures | None = None) -> str:
        if features is None or not features.text_encoder:
            return self.display_name
        return f"{self.display_name}[{short_encoder(features.text_encoder)}]"


class UniSRecTransductive(UniSRec):
    """UniSRec, transductive fine-tuning: item = MoE(x_i) + e_i^ID, the ID also added to the sequence input."""

    name = "unisrec-transductive"
    display_name = "UniSRec-T"
    paper_column = None
    transductive = True
