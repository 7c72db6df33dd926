"""UniM2Rec's network: per-view projectors into one universal space, view fusion, mixed-flow encoder.

Seed 003, components 2-3:
- multi-domain item projector: parametric whitening + mixture of experts per view (UniSRec's
  MoE adaptor, methods.shared.moe), or one linear layer for the "linear" ablation;
- fusion of the projected views [proposal]: each view's output is L2-normalised, then the
  available views are averaged ("mean": the paper weighs modalities equally, seed open question 2)
  or weighted by a learned additive attention ("attention"); a missing view gets weight 0;
- mixed user behaviour flow encoder: the shared SASRec-style Transformer over the fused item
  vectors of a user's all-domain, time-ordered flow, with domain embeddings added to the input.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.shared.moe import MoEAdaptor
from methods.shared.sequence import SequenceEncoder
from methods.unim2rec.views import ItemViews

PROJECTORS = ("moe", "linear")
FUSIONS = ("mean", "attention")


class LinearProjector(nn.Module):
    """The ablation's projector: dropout then one linear layer (bias, N(0, 0.02) weights)."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.lin = nn.Linear(d_in, d_out)
        nn.init.normal_(self.lin.weight, 0.0, 0.02)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.dropout(x))


class ViewFusion(nn.Module):
    """Weights over the available views, [n, V] summing to 1 on each item's available views."""

    def __init__(self, dim: int, mode: str = "mean") -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {mode!r}")
        self.mode = mode
        if mode == "attention":
            self.key = nn.Linear(dim, dim)
            self.query = nn.Parameter(torch.randn(dim) * 0.02)

    def weights(self, views: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``views`` [n, V, d], ``mask`` bool [n, V] -> weights [n, V] (all 0 for an item with no view)."""
        if self.mode == "mean":
            w = mask.to(views.dtype)
            return w / w.sum(1, keepdim=True).clamp_min(1.0)
        scores = torch.tanh(self.key(views)) @ self.query  # [n, V]
        scores = scores.masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=1)
        return torch.nan_to_num(w, nan=0.0)  # rows without any view: -inf everywhere -> 0

    def forward(self, views: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.weights(views, mask).unsqueeze(-1) * views).sum(1)


class UniM2RecNet(nn.Module):
    """Projectors (one per view) + fusion + the mixed-flow Transformer."""

    def __init__(self, view_dims: dict[str, int], n_domains: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        d = int(cfg["dim"])
        self.views = tuple(view_dims)
        self.dim = d
        if cfg["projector"] == "moe":
            make = lambda d_in: MoEAdaptor(d_in, d, int(cfg["n_experts"]), float(cfg["adaptor_dropout"]))  # noqa: E731
        else:
            make = lambda d_in: LinearProjector(d_in, d, float(cfg["adaptor_dropout"]))  # noqa: E731
        self.projectors = nn.ModuleDict({v: make(k) for v, k in view_dims.items()})
        self.fusion = ViewFusion(d, str(cfg["fusion"]))
        self.encoder = SequenceEncoder(
            d, int(cfg["n_layers"]), int(cfg["n_heads"]), int(cfg["inner"]), float(cfg["dropout"]),
            int(cfg["max_len"]), n_domains=n_domains if cfg["domain_embeddings"] else 0, causal=True,
            pooling="last", layer_norm_eps=float(cfg["layer_norm_eps"]), init_std=float(cfg["init_std"]))

    def projected(self, items: ItemViews, idx: torch.Tensor, alt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised per-view vectors [n, V, d] of items ``idx`` and their availability [n, V].

        ``alt``: use the word-drop inputs where a view has them (seq-seq augmentation).
        """
        outs, masks = [], []
        for v in self.views:
            source = items.alt.get(v, items.inputs[v]) if alt else items.inputs[v]
            outs.append(F.normalize(self.projectors[v](source[idx]), dim=-1))
            masks.append(items.masks[v][idx])
        return torch.stack(outs, dim=1), torch.stack(masks, dim=1)

    def item_vectors(self, items: ItemViews, idx: torch.Tensor, alt: bool = False) -> torch.Tensor:
        """Fused item content vectors [n, d] (the encoder's inputs; normalised = the item embedding)."""
        return self.fusion(*self.projected(items, idx, alt))

    def users(self, vectors: torch.Tensor, lengths: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """Sequence representation [B, d] from left-aligned item vectors [B, L, d]."""
        return self.encoder(vectors, lengths, domains if self.encoder.domain is not None else None)

    def hidden(self, vectors: torch.Tensor, lengths: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        return self.encoder.hidden(vectors, lengths, domains if self.encoder.domain is not None else None)
