"""The one SASRec-style sequence encoder every sequence method reuses, and its batching helpers.

UniSRec, VQ-Rec, MISSRec (its decoder side), UniM2Rec and TransRec all encode a user's item
sequence with a SASRec-like Transformer (Kang & McAuley, ICDM'18; RecBole's
``TransformerEncoder``): input ``LN(x_t + P_t [+ D_t])`` -> dropout -> post-LN layers, read at
the last real position. They differ only in what ``x_t`` is (an ID embedding, an MoE-adapted
text vector, a code-embedding mean, an item-tower output), so the encoder takes item *vectors*
and stays ignorant of where they came from.

Layout: sequences are left-aligned (item ``t`` at position ``t``, padding after the last real
item), as in RecBole, so position embeddings mean "t-th item of the window" and the output is
gathered at ``length - 1``.

How training examples reach a model: RecBole's every-prefix examples (:func:`prefix_examples`:
each (history -> next item) prefix is its own row), or causal windows (:func:`windows`)
[proposal, speed]: each sequence's last ``max_len + 1`` items are one causal window; the
encoder's output at position p is the prefix example "items 0..p -> item p+1", so one forward
computes all of a window's prefixes (about 8x fewer Transformer tokens on the twin). A batch is
a shuffled run of windows holding about ``batch_size`` prefixes, and every prefix is an anchor
with the batch's other targets as negatives -- the same loss, but a batch's anchors come from
fewer users, and prefixes of the first items of sequences longer than ``max_len + 1`` are not
examples (``Windows.dropped``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmark.data.model import Histories, Sequences

POOLINGS = ("last", "mean")


class SequenceEncoder(nn.Module):
    """Transformer over item vectors with positions, optional domain embeddings and padding masks.

    Args mirror RecBole's SASRec: ``dim`` (hidden size), ``n_layers``, ``n_heads``, ``inner``
    (feed-forward size), ``dropout`` (hidden and attention dropout), ``max_len`` (positions),
    ``n_domains`` (0 = no domain embeddings), ``causal`` (left-to-right attention),
    ``pooling`` ("last" real position or masked "mean"), ``layer_norm_eps``, ``init_std``.
    """

    def __init__(self, dim: int, n_layers: int = 2, n_heads: int = 2, inner: int = 256, dropout: float = 0.5,
                 max_len: int = 50, n_domains: int = 0, causal: bool = True, pooling: str = "last",
                 layer_norm_eps: float = 1e-12, init_std: float = 0.02, activation: str = "gelu") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not a multiple of the {n_heads} attention heads")
        self.dim, self.max_len, self.causal, self.pooling = int(dim), int(max_len), bool(causal), pooling
        self.position = nn.Embedding(max_len, dim)
        self.domain = nn.Embedding(n_domains, dim) if n_domains > 0 else None
        self.input_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.input_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=inner, dropout=dropout,
                                           activation=activation, layer_norm_eps=layer_norm_eps,
                                           batch_first=True, norm_first=False)
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.apply(lambda m: recbole_init(m, init_std))

    def hidden(self, x: torch.Tensor, lengths: torch.Tensor, domains: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states at every position, [B, L, d]; ``x`` is [B, L, d] left-aligned item vectors."""
        batch, length, _ = x.shape
        if length > self.max_len:
            raise ValueError(f"sequence window {length} exceeds the encoder's {self.max_len} positions")
        positions = torch.arange(length, device=x.device)
        h = x + self.position(positions).unsqueeze(0)
        if self.domain is not None:
            if domains is None:
                raise ValueError("this encoder has domain embeddings: pass the item domains")
            h = h + self.domain(domains.clamp_min(0))
        h = self.input_dropout(self.input_norm(h))
        pad = positions.unsqueeze(0) >= lengths.clamp_min(1).unsqueeze(1)  # True = padding
        mask = None
        if self.causal:
            mask = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=1)
        return self.layers(h, mask=mask, src_key_padding_mask=pad, is_causal=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, domains: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per sequence, [B, d]: the last real position (or the masked mean).

        An empty sequence (length 0) gets a zero vector.
        """
        h = self.hidden(x, lengths, domains)
        if self.pooling == "last":
            idx = (lengths.clamp_min(1) - 1).view(-1, 1, 1).expand(-1, 1, h.shape[-1])
            out = h.gather(1, idx).squeeze(1)
        else:
            real = (torch.arange(h.shape[1], device=h.device).unsqueeze(0) < lengths.unsqueeze(1)).to(h.dtype)
            out = (h * real.unsqueeze(-1)).sum(1) / real.sum(1, keepdim=True).clamp_min(1.0)
        return out * (lengths > 0).to(out.dtype).unsqueeze(1)


def recbole_init(module: nn.Module, std: float) -> None:
    """RecBole's SASRec initialisation: N(0, std) weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear | nn.Embedding):
        module.weight.data.normal_(0.0, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()


# ----------------------------------------------------------------------------- batching


def padded_ids(histories: Histories, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Last ``max_len`` items of each history as (ids int64 [C, L], lengths [C]); padding id = -1.

    Shift by one (``ids + 1``) to index an embedding table whose row 0 is the padding row.
    """
    ids, lengths = histories.padded(max_len, pad=-1)
    return torch.from_numpy(ids), torch.from_numpy(lengths)


@dataclass(frozen=True)
class PrefixExamples:
    """Every (history -> next item) example of some sequences, without materialising the prefixes.

    Example ``e`` predicts ``items[target[e]]`` from ``items[start[e]:target[e]]`` (at most
    ``max_len`` items, the most recent ones): the every-prefix augmentation of RecBole's sequential
    datasets and of UniSRec's pretraining data. ``row`` is the sequence each example comes from.
    """

    items: np.ndarray  # int32 [nnz], the sequences' flat items
    start: np.ndarray  # int64 [E]
    target: np.ndarray  # int64 [E]
    row: np.ndarray  # int64 [E]
    max_len: int

    def __len__(self) -> int:
        return len(self.target)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids int64 [B, L] with -1 padding, lengths [B], target items [B]) for examples ``idx``."""
        start, end = self.start[idx], self.target[idx]
        lengths = end - start
        width = max(int(lengths.max()) if len(idx) else 1, 1)
        col = np.arange(width)[None, :]
        keep = col < lengths[:, None]
        ids = np.full((len(idx), width), -1, dtype=np.int64)
        ids[keep] = self.items[(start[:, None] + col)[keep]]
        return (torch.from_numpy(ids), torch.from_numpy(lengths.astype(np.int64)),
                torch.from_numpy(self.items[end].astype(np.int64)))


def prefix_examples(sequences: Sequences, max_len: int, min_history: int = 1) -> PrefixExamples:
    """All examples (last <= ``max_len`` items before t) -> item t, for t >= ``min_history``."""
    lengths = sequences.lengths
    offsets = sequences.offsets
    n_per = np.maximum(lengths - min_history, 0)
    row = np.repeat(np.arange(len(lengths), dtype=np.int64), n_per)
    first = np.repeat(offsets[:-1] + min_history, n_per)
    step = np.arange(int(n_per.sum()), dtype=np.int64) - np.repeat(np.r_[0, np.cumsum(n_per)[:-1]], n_per)
    target = first + step
    start = np.maximum(target - max_len, np.repeat(offsets[:-1], n_per))
    return PrefixExamples(items=np.asarray(sequences.items), start=start, target=target, row=row,
                          max_len=int(max_len))


def sequence_windows(sequences: Sequences, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each sequence as one causal training window (SASRec's original objective).

    Input = the last ``max_len + 1`` items minus the final one, target at position t = item t+1;
    returns (inputs int64 [K, L] with -1 padding, targets int64 [K, L] with -1 padding, lengths [K])
    for the sequences with at least two items. With a causal encoder, position t's output sees
    items 0..t only, so one forward pass trains every prefix of the window at once.
    """
    lengths = sequences.lengths
    keep = np.flatnonzero(lengths >= 2)
    n = np.minimum(lengths[keep] - 1, max_len)
    ends = sequences.offsets[keep + 1]
    width = max(int(n.max()) if len(n) else 1, 1)
    col = np.arange(width)[None, :]
    valid = col < n[:, None]
    src = (ends - 1 - n)[:, None] + col
    inputs = np.full((len(keep), width), -1, dtype=np.int64)
    targets = np.full((len(keep), width), -1, dtype=np.int64)
    inputs[valid] = sequences.items[src[valid]]
    targets[valid] = sequences.items[src[valid] + 1]
    return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(n.astype(np.int64))


def bucketed_batches(lengths: np.ndarray, batch: int, rng: np.random.Generator, buckets: bool = False,
                  budget: int | None = None) -> list[np.ndarray]:
    """One epoch's example batches: a seeded shuffle, optionally the first ``budget`` examples only.

    ``buckets`` sorts each run of 64 batches by history length before cutting it into batches
    (then shuffles the batches): far less padding on CPU, the same examples per epoch
    [proposal, speed; MISSRec and VQ-Rec, off by default].
    """
    order = rng.permutation(len(lengths))
    if budget is not None:
        order = order[:budget]
    if not buckets:
        return [order[s : s + batch] for s in range(0, len(order), batch)]
    out: list[np.ndarray] = []
    chunk = batch * 64
    for s in range(0, len(order), chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out.extend(part[t : t + batch] for t in range(0, len(part), batch))
    return [out[i] for i in rng.permutation(len(out))]


@dataclass(frozen=True)
class Windows:
    """Causal windows: inputs/targets int64 [K, L] with -1 padding, lengths [K] (= prefixes per window)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor
    dropped: int  # prefix examples of long sequences that fall outside every window

    @property
    def n_examples(self) -> int:
        return int(self.lengths.sum())

    def batches(self, batch: int, rng: np.random.Generator, buckets: bool = False) -> Iterator[np.ndarray]:
        """Shuffled window indices, cut so each batch holds about ``batch`` prefixes (at least 2).

        ``buckets`` sorts each run of about 64 batches' windows by length before cutting, then
        shuffles the batches: the same windows per epoch with far less padding (a batch is padded
        to its longest window) [proposal, speed; off = the unbucketed order, bit for bit].
        """
        perm = rng.permutation(len(self.lengths))
        if not len(perm):
            return
        lens = self.lengths.numpy()
        if buckets:
            cum = np.cumsum(lens[perm])
            runs = np.searchsorted(cum, np.arange(batch * 64, int(cum[-1]), batch * 64), side="left") + 1
            perm = np.concatenate([r[np.argsort(lens[r], kind="stable")]
                                   for r in np.split(perm, np.unique(runs[runs < len(perm)]))])
        cum = np.cumsum(lens[perm])
        cuts = np.searchsorted(cum, np.arange(batch, int(cum[-1]), batch), side="left") + 1
        parts = [p for p in np.split(perm, np.unique(cuts[cuts < len(perm)])) if len(p) and int(lens[p].sum()) >= 2]
        order = rng.permutation(len(parts)) if buckets else range(len(parts))
        for i in order:
            yield parts[i]


def windows(sequences: Sequences, max_len: int) -> Windows:
    """The causal window of every sequence with >= 2 items (``sequence_windows``)."""
    inputs, targets, lengths = sequence_windows(sequences, max_len)
    prefixes = int(np.maximum(sequences.lengths - 1, 0).sum())
    return Windows(inputs, targets, lengths, dropped=prefixes - int(lengths.sum()))
