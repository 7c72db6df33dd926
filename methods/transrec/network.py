"""TransRec's two towers, its two losses and its negative sampler (seed 001 section 3.3).

DSSM: the item tower maps every item, by its one modality, to a d-vector; the user tower is a
Transformer over the history's item vectors + positions, read at the last history position, no
causal mask, no CLS (methods.md 15). Scores are raw inner products.

- Stage 1 (user-encoder pretraining, absent from the authors' code): left-to-right next-item
  prediction, y_t = softmax(ReLU(S'_t W + b)) over the pool's items [seed Eqns 8-9]; the encoder
  runs causally here (the paper's "unidirectional pre-training").
- Stage 2 (end-to-end, CPC-style): each of the l targets of a sequence is a positive, j random
  un-interacted pool items are its negatives, binary cross-entropy [seed Eqn 10].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from methods.shared.sequence import SequenceEncoder
from methods.transrec.encoders import TextTokenCache, TextTower, normalise_images


class ItemTower(nn.Module):
    """Item index -> d-vector by the item's modality (end-to-end encoders or frozen features)."""

    def __init__(self, is_text: np.ndarray, dim: int, *, text_cache: TextTokenCache | None = None,
                 text_tower: TextTower | None = None, images: torch.Tensor | None = None,
                 image_row: np.ndarray | None = None, image_tower: nn.Module | None = None,
                 text_features: np.ndarray | None = None, image_features: np.ndarray | None = None) -> None:
        super().__init__()
        self.dim = int(dim)
        self.is_text = torch.from_numpy(np.asarray(is_text, dtype=bool))
        self.end_to_end = text_tower is not None
        if self.end_to_end:
            self.text_cache, self.text_tower = text_cache, text_tower
            self.images = images
            self.image_row = torch.from_numpy(np.asarray(image_row, dtype=np.int64))
            self.image_tower = image_tower
        else:
            self.text_feat = torch.from_numpy(np.array(text_features, dtype=np.float32))
            self.text_proj = nn.Linear(self.text_feat.shape[1], dim)
            if image_features is not None:
                self.image_feat = torch.from_numpy(np.array(image_features, dtype=np.float32))
                self.image_proj = nn.Linear(self.image_feat.shape[1], dim)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """[U] item indices -> [U, d]."""
        text = self.is_text[items.cpu()].to(items.device)
        out = torch.zeros(len(items), self.dim, device=items.device)
        t_items, i_items = items[text], items[~text]
        if self.end_to_end:
            if len(t_items):
                rows = torch.from_numpy(self.text_cache.row[t_items.cpu().numpy()])
                out[text] = self.text_tower(self.text_cache.hidden[rows].to(items.device),
                                            self.text_cache.mask[rows].to(items.device))
            if len(i_items):
                pix = self.images[self.image_row[i_items.cpu()]].to(items.device)
                out[~text] = self._images(normalise_images(pix))
        else:
            if len(t_items):
                out[text] = self.text_proj(self.text_feat[t_items.cpu()].to(items.device))
            if len(i_items):
                out[~text] = self.image_proj(self.image_feat[i_items.cpu()].to(items.device))
        return out

    def _images(self, pix: torch.Tensor) -> torch.Tensor:
        """The image tower; a training batch holding one image item reads BatchNorm's running statistics.

        BatchNorm cannot take batch statistics over a single image (a trailing batch of a short
        epoch can hold just one), so for that call its layers run in eval mode, as at inference."""
        norms = [m for m in self.image_tower.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        if len(pix) != 1 or not norms:
            return self.image_tower(pix)
        for m in norms:
            m.eval()
        try:
            return self.image_tower(pix)
        finally:
            for m in norms:
                m.train()


class TransRecNet(nn.Module):
    """Item tower + user tower (+ the stage-1 softmax head over items)."""

    def __init__(self, item_tower: ItemTower, n_items: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        d = int(cfg["dim"])
        self.items = item_tower
        self.user = SequenceEncoder(d, int(cfg["n_layers"]), int(cfg["n_heads"]), int(cfg["inner"]),
                                    float(cfg["dropout"]), int(cfg["max_len"]), causal=False, pooling="last",
                                    layer_norm_eps=1e-12, init_std=0.02)
        self.head = nn.Linear(d, n_items)  # stage 1 only: W^U, b^U of Eqn 8

    def users(self, vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """User vector = the encoder's hidden state at the last history position (Eqn 7)."""
        return self.user(vectors, lengths)

    @torch.no_grad()
    def item_table(self, items: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Item-tower outputs for ``items`` in eval mode, [len(items), d]."""
        was = self.training
        self.eval()
        out = torch.cat([self.items(items[s : s + batch]) for s in range(0, len(items), batch)]) \
            if len(items) else torch.zeros(0, self.items.dim)
        self.train(was)
        return out


# ----------------------------------------------------------------------------- losses


def cpc_loss(users: torch.Tensor, positives: torch.Tensor, pos_mask: torch.Tensor,
             negatives: torch.Tensor) -> torch.Tensor:
    """Seed Eqn 10, averaged over users: -[sum_t log s(r_ut) + sum_g log(1 - s(r_ug))].

    ``users`` [B, d]; ``positives`` [B, l, d] with ``pos_mask`` [B, l] (False = no target there);
    ``negatives`` [B, j, d].
    """
    r_pos = torch.einsum("bd,bld->bl", users, positives)
    r_neg = torch.einsum("bd,bjd->bj", users, negatives)
    per_user = -(F.logsigmoid(r_pos) * pos_mask.to(r_pos.dtype)).sum(1) - F.logsigmoid(-r_neg).sum(1)
    return per_user.mean()


def uep_loss(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Linear, pool_mask: torch.Tensor) -> torch.Tensor:
    """Seed Eqns 8-9: cross-entropy of softmax(ReLU(S'_t W + b)) restricted to the pool's items."""
    logits = F.relu(head(hidden)).masked_fill(~pool_mask, float("-inf"))
    return F.cross_entropy(logits, targets)


# ----------------------------------------------------------------------------- batches


def split_sequence(seq: np.ndarray, n_targets: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(history C^u, targets C^e): the last l' = min(l, len - 1) items are targets, >= 1 history item."""
    l_real = min(int(n_targets), len(seq) - 1)
    return seq[: len(seq) - l_real][-int(max_len):], seq[len(seq) - l_real :]


def sample_negatives(rng: np.random.Generator, pool: np.ndarray, interacted: list[np.ndarray],
                     j: int) -> np.ndarray:
    """int64 [B, j]: per user, j distinct pool items the user never interacted with.

    Rejection sampling from the pool; a user who interacted with all but fewer than j pool items
    gets repeats of the ones left (never an interacted item).
    """
    out = np.empty((len(interacted), int(j)), dtype=np.int64)
    for b, seen in enumerate(interacted):
        seen_set = set(int(x) for x in seen)
        chosen: list[int] = []
        tries = 0
        while len(chosen) < j and tries < 50:
            for x in rng.choice(pool, size=2 * j + len(seen_set) // 4 + 1):
                if int(x) not in seen_set and int(x) not in chosen:
                    chosen.append(int(x))
                    if len(chosen) == j:
                        break
            tries += 1
        if len(chosen) < j:
            left = np.setdiff1d(pool, np.fromiter(seen_set, dtype=np.int64, count=len(seen_set)))
            if len(left) == 0:
                raise ValueError("no un-interacted pool item to sample as a negative")
            chosen += [int(x) for x in rng.choice(left, size=j - len(chosen))]
        out[b] = chosen
    return out


def stage2_batch(seqs: list[np.ndarray], n_targets: int, max_len: int, negatives: np.ndarray) -> dict[str, torch.Tensor]:
    """Padded history ids [B, L] (-1 pad), lengths, target ids [B, l] (-1 pad), negatives [B, j]."""
    parts = [split_sequence(s, n_targets, max_len) for s in seqs]
    width = max(len(h) for h, _ in parts)
    hist = np.full((len(seqs), width), -1, dtype=np.int64)
    tgt = np.full((len(seqs), int(n_targets)), -1, dtype=np.int64)
    for b, (h, t) in enumerate(parts):
        hist[b, : len(h)] = h
        tgt[b, : len(t)] = t
    return {"history": torch.from_numpy(hist), "lengths": torch.tensor([len(h) for h, _ in parts]),
            "targets": torch.from_numpy(tgt), "negatives": torch.from_numpy(negatives)}
