"""MISSRec's network: linear adaptors, interest encoder, item decoder, dynamic modality fusion.

Follows ``missrec.py`` of gimpong/MM23-MISSRec (methods.md 5.2-5.5 and 15):

- adaptors ``W_t``, ``W_v``: ``nn.Linear`` with bias into d;
- encoder (1 layer, non-causal, key padding) over the interest tokens = centroids of the
  sequence's unique clusters, no positions;
- decoder (1 layer, non-causal self-attention with key padding + cross-attention to the encoder
  memory) over ``LN(W_t t + W_v v + P_t [+ e_ID])`` -> dropout, read at position len-1 and
  L2-normalised. A missing image adds nothing (the code adds ``b_v``; section 15: use the mask);
- diversity regulariser as the code computes it: ``sum_b ||sum_k share_b * m_bk||^2 / d`` with
  ``share_b`` the share of real interest tokens and the sum over *all* memory positions,
  padding included;
- dynamic fusion: ``s_m = <s_u, n(W_m x^m)>``, ``agg = sum_m s_m softmax_m(beta s_m)`` (beta a
  scalar, init 0; a missing image leaves text alone); transductive ``(s_id + 2 agg) / 3``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from methods.missrec.interest import Interests, interest_sets
from methods.shared.sequence import recbole_init


def diversity_regulariser(memory: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """The code's "interest orthogonal regularisation" (methods.md 15), summed over the batch.

    ``memory`` [B, K, d] encoder outputs, ``padding`` [B, K] True = padding slot. Every slot,
    padding included, is weighted by the row's share of real slots, then summed.
    """
    share = (~padding).to(memory.dtype).mean(1, keepdim=True).unsqueeze(-1)  # [B, 1, 1]
    pooled = (memory * share).sum(1)
    return (pooled * pooled).sum() / pooled.shape[1]


def fuse_scores(text_scores: torch.Tensor, image_scores: torch.Tensor | None, image_present: torch.Tensor | None,
                beta: torch.Tensor | None) -> torch.Tensor:
    """``sum_m s_m softmax_m(beta s_m)`` over the modalities a candidate has ([..., C] each).

    ``image_present`` [C] masks candidates without an image out of the softmax (text alone). With two
    modalities the softmax is ``w = sigmoid(beta (s_t - s_v))`` and the sum ``s_v + w (s_t - s_v)``: the
    same function, computed on [B, C] instead of a stacked [B, C, 2] softmax (its ``_softmax`` alone was 28 %
    of a validation's CPU; the change made a fine-tuning step ~1.25x faster: issue 25, the card; equal to the
    stacked form within float rounding, test).
    """
    if image_scores is None:
        return text_scores
    missing = ~image_present.expand_as(image_scores)
    image = image_scores.masked_fill(missing, 0.0)
    gap = text_scores - image
    w = torch.sigmoid(gap * beta) if beta is not None else torch.full_like(gap, 0.5)
    return image + w.masked_fill(missing, 1.0) * gap


def fuse_scores_stacked(text_scores: torch.Tensor, image_scores: torch.Tensor | None,
                        image_present: torch.Tensor | None, beta: torch.Tensor | None) -> torch.Tensor:
    """:func:`fuse_scores` as the paper writes it (a softmax over the stacked [..., C, 2] modality scores):
    the reference the tests and the speed bench's "before" compare with."""
    if image_scores is None:
        return text_scores
    scores = torch.stack([text_scores, image_scores], dim=-1)
    gate = scores * (beta if beta is not None else 0.0)
    missing = ~image_present.expand_as(image_scores)
    gate = torch.stack([gate[..., 0], gate[..., 1].masked_fill(missing, float("-inf"))], dim=-1)
    weights = torch.softmax(gate, dim=-1)
    return (weights * scores.masked_fill(torch.stack([torch.zeros_like(missing), missing], -1), 0.0)).sum(-1)


class MISSRecNet(nn.Module):
    """The interest-aware encoder-decoder with its adaptors and item feature tables (buffers)."""

    #: True: score with :func:`fuse_scores_stacked` (the speed bench's "before"). Not a config key, so
    #: never part of a run key.
    reference_fusion: bool = False

    def __init__(self, text: np.ndarray, image: np.ndarray | None, image_mask: np.ndarray | None,
                 cfg: dict[str, Any], transductive: bool = False) -> None:
        super().__init__()
        d, eps = int(cfg["dim"]), float(cfg["layer_norm_eps"])
        self.dim, self.max_len, self.transductive = d, int(cfg["max_len"]), bool(transductive)
        n = len(text)
        self.register_buffer("text_feat", torch.tensor(np.asarray(text), dtype=torch.float32), persistent=False)
        self.text_adaptor = nn.Linear(text.shape[1], d)
        self.has_image = image is not None
        if image is not None:
            self.register_buffer("image_feat", torch.tensor(np.asarray(image), dtype=torch.float32),
                                 persistent=False)
            self.register_buffer("image_present", torch.tensor(np.asarray(image_mask), dtype=torch.bool),
                                 persistent=False)
            self.image_adaptor = nn.Linear(image.shape[1], d)
            self.beta = nn.Parameter(torch.zeros(()))  # 'dynamic_shared', init 0
        self.position = nn.Embedding(self.max_len, d)
        self.item_id = nn.Embedding(n + 1, d, padding_idx=0) if transductive else None
        self.use_ids = False  # the code adds ID embeddings in transductive fine-tuning only
        self.input_norm = nn.LayerNorm(d, eps=eps)
        self.input_dropout = nn.Dropout(float(cfg["dropout"]))
        kw = dict(dim_feedforward=int(cfg["inner"]), dropout=float(cfg["dropout"]), activation="gelu",
                  layer_norm_eps=eps, batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoderLayer(d, int(cfg["n_heads"]), **kw)
        self.decoder = nn.TransformerDecoderLayer(d, int(cfg["n_heads"]), **kw)
        self.apply(lambda m: recbole_init(m, float(cfg["init_std"])))
        if self.item_id is not None:
            with torch.no_grad():
                self.item_id.weight[0].zero_()
        # interest discovery state (non-learned buffers), 0 = padding
        self.register_buffer("centroids", torch.zeros(2, d))
        self.register_buffer("text_cluster", torch.zeros(n, dtype=torch.long))
        self.register_buffer("image_cluster", torch.zeros(n, dtype=torch.long))

    # ---------------------------------------------------------------- interests
    @torch.no_grad()
    def adapted_tokens(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``W_t t_i + b_t`` and ``W_v v_i + b_v`` of every item (the k-means input)."""
        text = self.text_adaptor(self.text_feat).cpu().numpy()
        image = self.image_adaptor(self.image_feat).cpu().numpy() if self.has_image else None
        return text, image

    def set_interests(self, interests: Interests) -> None:
        dev = self.text_feat.device
        self.centroids = torch.from_numpy(interests.centroids).to(dev)
        self.text_cluster = torch.from_numpy(interests.text_cluster).to(dev)
        self.image_cluster = torch.from_numpy(interests.image_cluster).to(dev)

    def interests(self, text_ids: torch.Tensor, image_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interest set of each row from the items whose text (``text_ids``) and image tokens it uses."""
        t = torch.where(text_ids >= 0, self.text_cluster[text_ids.clamp_min(0)], 0)
        v = torch.where(image_ids >= 0, self.image_cluster[image_ids.clamp_min(0)], 0) if self.has_image \
            else torch.zeros_like(t)
        return interest_sets(t, v)

    # ---------------------------------------------------------------- sequence side
    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, text_x: torch.Tensor | None = None,
                image_ids: torch.Tensor | None = None, interest_ids: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised sequence vectors [B, d], regulariser R) for left-aligned ``ids`` [B, L] (-1 pad).

        ``text_x`` [B, L, d_text] overrides the text features (word-drop view); ``image_ids``
        [B, L] chooses whose image sits at each position (default ``ids``; the replicated
        augmentation bug passes the original positions' items); ``interest_ids`` [B, K] overrides
        the interest set (default: from the text and image items used).
        """
        batch, length = ids.shape
        real = ids >= 0
        safe = ids.clamp_min(0)
        if text_x is None:
            text_x = self.text_feat[safe]
        x = self.text_adaptor(text_x)
        image_ids = ids if image_ids is None else image_ids
        if self.has_image:
            img_safe = image_ids.clamp_min(0)
            present = (image_ids >= 0) & self.image_present[img_safe]
            x = x + self.image_adaptor(self.image_feat[img_safe]) * present.unsqueeze(-1).to(x.dtype)
        x = x + self.position(torch.arange(length, device=ids.device)).unsqueeze(0)
        if self.item_id is not None and self.use_ids:
            x = x + self.item_id(torch.where(real, ids + 1, 0))
        x = self.input_dropout(self.input_norm(x))
        if interest_ids is None:
            interest_ids, _ = self.interests(ids, image_ids)
        mem_pad = interest_ids == 0
        memory = self.encoder(self.centroids[interest_ids], src_key_padding_mask=mem_pad)
        reg = diversity_regulariser(memory, mem_pad)
        pad = torch.arange(length, device=ids.device).unsqueeze(0) >= lengths.clamp_min(1).unsqueeze(1)
        h = self.decoder(x, memory, tgt_key_padding_mask=pad, memory_key_padding_mask=mem_pad)
        out = h[torch.arange(batch, device=ids.device), lengths.clamp_min(1) - 1]
        return F.normalize(out, dim=-1), reg

    # ---------------------------------------------------------------- item side
    def candidate_parts(self, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Normalised per-modality candidate vectors (all items, or ``items``)."""
        sel = slice(None) if items is None else items
        parts = {"text": F.normalize(self.text_adaptor(self.text_feat[sel]), dim=-1)}
        if self.has_image:
            present = self.image_present[sel]
            parts["image"] = F.normalize(self.image_adaptor(self.image_feat[sel]), dim=-1) \
                * present.unsqueeze(-1).to(parts["text"].dtype)
            parts["present"] = present
        if self.item_id is not None and self.use_ids:
            rows = torch.arange(len(self.text_feat), device=self.text_feat.device)[sel] + 1
            parts["id"] = F.normalize(self.item_id(rows), dim=-1)
        return parts

    def scores(self, seq: torch.Tensor, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Dynamic-fusion scores [B, C] of normalised sequences against candidates ``parts``."""
        text = seq @ parts["text"].T
        image = seq @ parts["image"].T if "image" in parts else None
        fuse = fuse_scores_stacked if self.reference_fusion else fuse_scores
        agg = fuse(text, image, parts.get("present"), getattr(self, "beta", None))
        if "id" in parts:
            agg = (seq @ parts["id"].T + 2 * agg) / 3
        return agg

    @torch.no_grad()
    def static_item_embeddings(self) -> np.ndarray:
        """Section 15's item-to-item vector: ``[n(e_id);] n(W_t t); n(W_v v)`` over the parts an item has,
        divided by sqrt(#parts) (unit norm; its inner products are the static fusion)."""
        parts = self.candidate_parts()
        blocks = [parts["id"]] if "id" in parts else []
        blocks.append(parts["text"])
        count = torch.full((len(parts["text"]),), float(len(blocks)), device=parts["text"].device)
        if "image" in parts:
            blocks.append(parts["image"])
            count = count + parts["present"].to(count.dtype)
        if "id" in parts:
            count = count - (parts["id"].norm(dim=-1) == 0).to(count.dtype)
        emb = torch.cat(blocks, dim=1) / count.clamp_min(1).sqrt().unsqueeze(1)
        return emb.cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def static_candidates(self) -> np.ndarray:
        """Candidates whose inner product with a sequence vector is the fused score at beta = 0.

        Inductive: ``(n_t + n_v) / 2`` (``n_t`` without an image); transductive
        ``(n_id + 2 agg) / 3`` with that ``agg``.
        """
        parts = self.candidate_parts()
        agg = parts["text"]
        if "image" in parts:
            present = parts["present"].unsqueeze(-1).to(agg.dtype)
            agg = present * (parts["text"] + parts["image"]) / 2 + (1 - present) * parts["text"]
        if "id" in parts:
            agg = (parts["id"] + 2 * agg) / 3
        return agg.cpu().numpy().astype(np.float32)


def zero_cold_ids(net: MISSRecNet, item_train_count: np.ndarray) -> None:
    """ID rows of items never in the fitted training data carry nothing learned: zero them."""
    if net.item_id is None:
        return
    with torch.no_grad():
        cold = torch.from_numpy(np.flatnonzero(item_train_count == 0) + 1).to(net.item_id.weight.device)
        net.item_id.weight[cold] = 0.0
