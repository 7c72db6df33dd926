"""The CB2CF multiview network g(x) (docs/methods.md 10.2, 10.4).

One component per view (text -> 512, image -> 512, categories -> 256, numeric -> 64), each a
Linear + ReLU + dropout; their concatenation goes through the combiner MLP (-> 512 -> d_CF).
The category component is an EmbeddingBag(sum), i.e. a Linear layer on the multi-hot vector.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout))


class MultiviewRegressor(nn.Module):
    """g(x): per-view components, concatenated, then the combiner; output is *not* normalised."""

    def __init__(self, dense_dims: dict[str, int], view_widths: dict[str, int], n_categories: int,
                 hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.dense = nn.ModuleDict({name: _block(d, view_widths[name], dropout) for name, d in dense_dims.items()})
        self.has_categories = n_categories > 0
        width = sum(view_widths[name] for name in dense_dims)
        if self.has_categories:
            self.category_bag = nn.EmbeddingBag(n_categories, view_widths["categories"], mode="sum")
            self.category_bias = nn.Parameter(torch.zeros(view_widths["categories"]))
            self.category_post = nn.Sequential(nn.ReLU(), nn.Dropout(dropout))
            width += view_widths["categories"]
        self.combiner = nn.Sequential(_block(width, hidden, dropout), nn.Linear(hidden, out_dim))

    def forward(self, dense: dict[str, torch.Tensor], cat_ids: torch.Tensor | None = None,
                cat_offsets: torch.Tensor | None = None) -> torch.Tensor:
        parts = [self.dense[name](dense[name]) for name in self.dense]
        if self.has_categories:
            bag = self.category_bag(cat_ids, cat_offsets) + self.category_bias
            parts.append(self.category_post(bag))
        return self.combiner(torch.cat(parts, dim=1))
