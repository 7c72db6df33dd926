"""How training examples reach the model: RecBole's every-prefix examples, or causal windows.

``examples: prefixes`` (the code's data): each (history -> next item) prefix is its own row,
shuffled, ``batch_size`` rows a batch. ``examples: windows`` [proposal, speed]: each sequence's
last ``max_len + 1`` items are one causal window; the encoder's output at position p is the
prefix example "items 0..p -> item p+1", so one forward computes all of a window's prefixes
(about 8x fewer Transformer tokens on the twin). A batch is a shuffled run of windows holding
about ``batch_size`` prefixes, and every prefix is an anchor with the batch's other targets as
negatives -- the same loss, but a batch's anchors come from fewer users, and prefixes of the
first items of sequences longer than ``max_len + 1`` are not examples (``windows_dropped``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.data.model import Sequences
from methods.shared.sequence import sequence_windows


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

    def batches(self, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Shuffled window indices, cut so each batch holds about ``batch`` prefixes (at least 2)."""
        perm = rng.permutation(len(self.lengths))
        if not len(perm):
            return
        cum = np.cumsum(self.lengths.numpy()[perm])
        cuts = np.searchsorted(cum, np.arange(batch, int(cum[-1]), batch), side="left") + 1
        for part in np.split(perm, np.unique(cuts[cuts < len(perm)])):
            if len(part) and int(self.lengths[part].sum()) >= 2:
                yield part


def windows(sequences: Sequences, max_len: int) -> Windows:
    """The causal window of every sequence with >= 2 items (``sequence_windows``)."""
    inputs, targets, lengths = sequence_windows(sequences, max_len)
    prefixes = int(np.maximum(sequences.lengths - 1, 0).sum())
    return Windows(inputs, targets, lengths, dropped=prefixes - int(lengths.sum()))


def aug_positions(keep: np.ndarray) -> np.ndarray:
    """For an item-dropped window: position of prefix p's augmented output, cumsum(keep[:p+1]) - 1."""
    return np.cumsum(keep, axis=1) - 1
