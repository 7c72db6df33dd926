"""The seq-seq view of MISSRec's pretraining: UniSRec's augmentation (methods.md 3.4 and 15).

Per *batch* (``random.random()`` in the authors' transform), with probability
``item_drop_coefficient`` (0.9) every item is kept w.p. ``1 - item_drop_ratio`` (0.8), the first
position always, and the kept items are re-packed to the left; otherwise the text vector at each
position is replaced w.p. ``item_drop_ratio`` (0.2) by its word-drop view (``feat2CLS``). Without a
word-drop view (``features.text_word_drop`` is None) only item drop is used.

After item drop the authors' code pairs the re-packed text with the ORIGINAL positions' image
embeddings and masks, and builds the view's interest set from the re-packed text clusters and the
original image clusters (``seq_seq_contrastive_task`` + ``PLMImgInterestEmb``; methods.md 15).
``image_alignment="replicate"`` reproduces that; ``"fix"`` takes every token from the re-packed items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALIGNMENTS = ("fix", "replicate")


@dataclass
class View:
    """An augmented batch: ids/lengths for the decoder, and what the model needs beyond them."""

    kind: str  # "item_drop" | "word_drop"
    ids: torch.Tensor  # [B, L], -1 padding
    lengths: torch.Tensor  # [B]
    keep: torch.Tensor  # [B, L] bool, the Bernoulli(1 - drop_ratio) draw
    image_ids: torch.Tensor | None = None  # whose image sits at each position (replicate)
    text_x: torch.Tensor | None = None  # [B, L, d_text] mixed text vectors (word drop)


def item_drop(ids: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the items where ``keep`` (position 0 always), re-packed to the left; (ids, lengths)."""
    real = ids >= 0
    keep = keep.clone()
    keep[:, 0] = True
    kept = keep & real
    lengths = kept.sum(1)
    slot = kept.long().cumsum(1) - 1
    out = torch.full_like(ids, -1)
    rows = torch.arange(len(ids), device=ids.device).unsqueeze(1).expand_as(ids)
    out[rows[kept], slot[kept]] = ids[kept]
    return out, lengths


def augment(ids: torch.Tensor, lengths: torch.Tensor, text: torch.Tensor, word_drop: torch.Tensor | None,
            gen: torch.Generator, coefficient: float, drop_ratio: float, alignment: str) -> View:
    """One augmented view of a batch (``text``/``word_drop`` are the [N, d_text] feature tables)."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"image alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    keep = torch.rand(ids.shape, generator=gen) < (1.0 - drop_ratio)
    coin = float(torch.rand((), generator=gen))
    keep = keep.to(ids.device)
    if word_drop is None or coin < coefficient:
        aug, aug_len = item_drop(ids, keep)
        return View("item_drop", aug, aug_len, keep, image_ids=ids if alignment == "replicate" else None)
    safe = ids.clamp_min(0)
    mixed = torch.where(keep.unsqueeze(-1), text[safe], word_drop[safe])
    return View("word_drop", ids, lengths, keep, text_x=mixed)
