"""Batches of user sequences for the Eqn 4 loss (UniEmbedding 3.1 and 3.4).

All sequences are padded once to ``[K, L]`` (the last L items of each sequence, left-aligned,
-1 = padding). A batch is a set of rows (users); its distinct items are the columns of the
anchors x items score matrix, so the loss is masked matrix algebra with no per-user loop. Rows
are also cut into length-sorted chunks so the Transformer and the d x d products pad each chunk
only to its own longest sequence (the result is identical; only padding waste goes away).

Earlier-part user view [proposal] (``context_fraction``, the ``uniembedding-earlier-view``
variant): each window is cut in two; the behaviour encoder reads only the earlier part (its
first ``context_length`` items), anchors are the later part's positions, and an anchor's
positives are the later part's other distinct items that are not in the earlier part, so no
positive is ever an input of the encoder. The earlier part's items stay excluded from the user's
negatives (the same-item rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.data.model import Sequences


@dataclass(frozen=True, eq=False)
class PaddedSequences:
    """Every training sequence as a padded row; ``owner`` = the user (rows of one user share it)."""

    items: np.ndarray  # int64 [K, L], -1 = padding
    domain: np.ndarray  # int64 [K, L], -1 = padding
    length: np.ndarray  # int64 [K]
    owner: np.ndarray  # int64 [K]

    def __len__(self) -> int:
        return len(self.length)

    @property
    def n_tokens(self) -> int:
        return int(self.length.sum())


def pad_sequences(seqs: Sequences, item_domain: np.ndarray, max_len: int, min_len: int = 2) -> PaddedSequences:
    """Keep each sequence's last ``max_len`` items (paper's L) and drop rows shorter than ``min_len``.

    A row needs two items for an anchor to have a positive (3.4), hence ``min_len = 2``.
    """
    offsets = np.asarray(seqs.offsets, dtype=np.int64)
    ends = offsets[1:]
    starts = np.maximum(offsets[:-1], ends - max_len)
    length = ends - starts
    keep = length >= min_len
    starts, length = starts[keep], length[keep]
    pos = np.arange(max_len, dtype=np.int64)
    valid = pos[None, :] < length[:, None]
    flat = np.minimum(starts[:, None] + pos[None, :], max(len(seqs.items) - 1, 0))
    all_items = np.asarray(seqs.items, dtype=np.int64)
    items = np.where(valid, all_items[flat] if len(all_items) else 0, -1)
    domain = np.where(valid, np.asarray(item_domain, dtype=np.int64)[np.maximum(items, 0)], -1)
    return PaddedSequences(items=items, domain=domain, length=length,
                           owner=np.asarray(seqs.users, dtype=np.int64)[keep])


def context_lengths(length: np.ndarray, fraction: float) -> np.ndarray:
    """Items of each window the behaviour encoder reads in the earlier-part variant [proposal].

    ``floor(fraction * length)``, kept within ``[1, length - 2]``: the encoder needs one item and the
    later part two (an anchor and a positive), so the variant trains on windows of >= 3 items.
    """
    length = np.asarray(length, dtype=np.int64)
    return np.clip(np.floor(fraction * length).astype(np.int64), 1, np.maximum(length - 2, 1))


def length_chunks(length: np.ndarray, chunk_tokens: int, shrink: float = 0.7) -> list[np.ndarray]:
    """Row indices sorted by length (longest first), cut into chunks padded to their first row.

    A chunk closes when it would exceed ``chunk_tokens`` padded tokens or when a row is shorter
    than ``shrink`` x the chunk's width, so padding stays below ~1/shrink and few calls are made.
    """
    order = np.argsort(-length, kind="stable")
    sorted_length = length[order]
    chunks, start = [], 0
    while start < len(order):
        width = int(sorted_length[start])
        stop = min(len(order), start + max(1, chunk_tokens // width))
        short = np.flatnonzero(sorted_length[start:stop] < shrink * width)
        if len(short):
            stop = start + int(short[0])
        chunks.append(order[start:stop])
        start = stop
    return chunks


@dataclass(eq=False)
class Batch:
    """One batch B of sequences and everything the loss needs, as tensors.

    Anchors (3.4: "each interacted item a") are the valid positions of every row, listed chunk by
    chunk, row by row (``anchor_row``, ``anchor_col``); columns are the batch's distinct items.
    The whole window is the encoder's input (``context_length == length``, ``anchor_from == 0``,
    ``positive_of == column_of``) except in the earlier-part variant (module docstring).
    """

    items: torch.Tensor  # int64 [B, L'] item index, -1 = padding
    domain: torch.Tensor  # int64 [B, L']
    length: torch.Tensor  # int64 [B]
    owner: torch.Tensor  # int64 [B], 0..n_owners-1 within the batch
    columns: torch.Tensor  # int64 [U], the distinct items of the batch
    column_of: torch.Tensor  # int64 [B, L'], column of each position, -1 = padding
    chunks: list[torch.Tensor]  # row indices per chunk (rows sorted by length, longest first)
    anchor_row: torch.Tensor  # int64 [A]
    anchor_col: torch.Tensor  # int64 [A]
    context_length: torch.Tensor  # int64 [B], items the behaviour encoder reads (a prefix of the row)
    anchor_from: torch.Tensor  # int64 [B], first anchor position of each row
    positive_of: torch.Tensor  # int64 [B, L'], column of each position that can be a positive, -1 = none

    @property
    def anchor_mask(self) -> torch.Tensor:
        """bool [B, L']: the anchor positions (valid and from ``anchor_from`` on)."""
        positions = torch.arange(self.column_of.shape[1], device=self.column_of.device)
        return (self.column_of >= 0) & (positions[None, :] >= self.anchor_from[:, None])

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device`` (no copy when it is already there)."""
        return Batch(**{name: ([t.to(device) for t in value] if isinstance(value, list) else value.to(device))
                        for name, value in vars(self).items()})


def make_batch(padded: PaddedSequences, rows: np.ndarray, chunk_tokens: int = 4096,
               context_fraction: float | None = None) -> Batch:
    """Gather ``rows`` of ``padded`` into a :class:`Batch` (vectorised; the chunk loop is tiny).

    ``context_fraction`` (the earlier-part variant [proposal]) cuts every row with
    :func:`context_lengths`; rows must then hold >= 3 items. None = the whole window (the paper's).
    """
    rows = np.asarray(rows, dtype=np.int64)
    length = padded.length[rows]
    width = int(length.max())
    items = padded.items[rows, :width]
    valid = items >= 0
    columns, inverse = np.unique(items[valid], return_inverse=True)
    column_of = np.full(items.shape, -1, dtype=np.int64)
    column_of[valid] = inverse
    _, owner = np.unique(padded.owner[rows], return_inverse=True)
    if context_fraction is None:
        context, anchor_from, positive_of = length.copy(), np.zeros_like(length), column_of
    else:
        if len(length) and int(length.min()) < 3:
            raise ValueError("the earlier-part user view needs windows of >= 3 items (pad_sequences min_len=3)")
        context = context_lengths(length, float(context_fraction))
        anchor_from = context
        earlier = np.arange(width)[None, :] < context[:, None]
        seen = np.zeros((len(rows), len(columns)), dtype=bool)  # columns each row's encoder reads
        r, p = np.nonzero(earlier & valid)
        seen[r, column_of[r, p]] = True
        later = valid & ~earlier
        unseen = ~seen[np.arange(len(rows))[:, None], np.maximum(column_of, 0)]
        positive_of = np.where(later & unseen, column_of, -1)
    anchors = valid & (np.arange(width)[None, :] >= anchor_from[:, None])
    chunks = length_chunks(length, chunk_tokens)
    anchor_row, anchor_col = [], []
    for chunk in chunks:
        r, p = np.nonzero(anchors[chunk])
        anchor_row.append(chunk[r])
        anchor_col.append(column_of[chunk[r], p])
    t = torch.from_numpy
    return Batch(
        items=t(np.ascontiguousarray(items)), domain=t(np.ascontiguousarray(padded.domain[rows, :width])),
        length=t(length.copy()), owner=t(owner.astype(np.int64)), columns=t(columns.astype(np.int64)),
        column_of=t(column_of), chunks=[t(c.copy()) for c in chunks],
        anchor_row=t(np.concatenate(anchor_row)), anchor_col=t(np.concatenate(anchor_col)),
        context_length=t(np.ascontiguousarray(context, dtype=np.int64)),
        anchor_from=t(np.ascontiguousarray(anchor_from, dtype=np.int64)),
        positive_of=t(np.ascontiguousarray(positive_of)),
    )


def epoch_batches(n_rows: int, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """A fresh random partition of the rows into batches of ``batch_size`` users (an epoch = all users).

    A trailing batch of one row is merged into the previous one: it would have no negatives.
    """
    perm = torch.randperm(n_rows, generator=generator).numpy()
    batches = [perm[s:s + batch_size] for s in range(0, n_rows, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches
