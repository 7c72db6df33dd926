"""UAE's two towers (docs/methods.md 11.3).

The content (item) tower replaces the paper's mel-spectrogram CNN with an MLP over frozen
content vectors. The user tower is a fixed pretrained CF vector as in the paper; the
``mean_pool`` variant jointly trains item-ID embeddings and averages them over the user's
other liked items (leave-the-positive-out, so the positive's own ID cannot leak into its score).
"""

from __future__ import annotations

import torch
from torch import nn


class ContentTower(nn.Module):
    """f(x_i): Linear -> ReLU -> dropout -> Linear (e.g. -> 512 -> 128); output not normalised."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MeanPoolUserTower(nn.Module):
    """u = mean of ID embeddings over the user's liked items except the positive being scored."""

    def __init__(self, n_items: int, dim: int, generator: torch.Generator):
        super().__init__()
        self.items = nn.Embedding(n_items, dim)
        with torch.no_grad():
            self.items.weight.normal_(0.0, 0.1, generator=generator)

    def forward(self, history: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor,
                positive: torch.Tensor) -> torch.Tensor:
        total = nn.functional.embedding_bag(history, self.items.weight, offsets, mode="sum")
        return (total - self.items(positive)) / (lengths - 1).clamp_min(1).unsqueeze(1).float()
