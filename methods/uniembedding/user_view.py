"""User-view projection (UniEmbedding section 3.3, Eqns 2 and 3).

Eqn 2:  M^u_j = P_j(T([E_1; ...; E_L])),   M^u_M = P_M(T([E_1; ...; E_L])),
        E_t = E^p_t + E^d_t + e_{i_t}  (position + domain + item-ID embedding of the t-th item)
Eqn 3:  E_{u,i} = (M^u_M + M^u_j) E^A_i + E^A_i,   j = domain of item i

T is a two-layer Transformer encoder over the user's last L mixed-domain items [seed]; its output
is pooled to one vector [proposal: the last valid position]. P_j (one per domain) and P_M (mixed
domain) are "multi-head projection layers" mapping that vector to a d x d matrix; [proposal] H
heads, head h reads slice h of the pooled vector and writes the h-th (d/H) x d row block.
P starts at zero, so E_{u,i} = E^A_i at initialisation.
"""

from __future__ import annotations

import torch
from torch import nn


class UserBehaviourEncoder(nn.Module):
    """T of Eqn 2 with its input tokens E_t = E^p_t + E^d_t + e_{i_t}; returns the pooled [B, d].

    Sequences are left-aligned (position 0 = oldest kept item), padded with -1 after ``length``;
    the padding mask keeps padded tokens out of attention and pooling. Post-LN encoder layers,
    GELU, no causal mask (the whole window describes the user) [proposal].
    """

    def __init__(self, n_items: int, n_domains: int, d: int, max_len: int, layers: int = 2,
                 heads: int = 2, ffn: int = 256, dropout: float = 0.1, pooling: str = "last"):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.n_items, self.n_domains, self.pooling = n_items, n_domains, pooling
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=n_items)  # e_i
        self.domain_embedding = nn.Embedding(n_domains + 1, d, padding_idx=n_domains)  # E^d
        self.position_embedding = nn.Embedding(max_len, d)  # E^p
        for emb in (self.item_embedding, self.domain_embedding, self.position_embedding):
            nn.init.normal_(emb.weight, std=0.02)
            if emb.padding_idx is not None:
                with torch.no_grad():
                    emb.weight[emb.padding_idx].zero_()
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=ffn, dropout=dropout,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, items: torch.Tensor, domain: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """items, domain: int64 [B, L'] (-1 = padding); length: int64 [B] >= 1. Returns [B, d]."""
        positions = torch.arange(items.shape[1], device=items.device)
        pad = positions[None, :] >= length[:, None]
        tokens = (self.position_embedding(positions)[None]
                  + self.domain_embedding(torch.where(pad, self.n_domains, domain))
                  + self.item_embedding(torch.where(pad, self.n_items, items)))
        out = self.encoder(tokens, src_key_padding_mask=pad)
        if self.pooling == "last":
            return out[torch.arange(len(length), device=items.device), length - 1]
        keep = (~pad).unsqueeze(-1).to(out.dtype)
        return (out * keep).sum(1) / keep.sum(1)


class MultiHeadProjection(nn.Module):
    """P_j or P_M of Eqn 2: pooled user vector [B, d] -> projection matrix [B, d, d].

    ``head_input='slice'`` (default): head h maps slice h (d/H values) of the vector to the h-th
    (d/H) x d row block; ``'full'``: every head reads the whole vector (then the H heads are one
    d -> d*d linear map). Weights and biases start at zero (E_{u,i} = E^A_i at step 0) [proposal].
    """

    def __init__(self, d: int, heads: int = 4, head_input: str = "slice"):
        super().__init__()
        if d % heads:
            raise ValueError(f"dim {d} is not divisible by projection_heads {heads}")
        if head_input not in ("slice", "full"):
            raise ValueError(f"projection_input must be 'slice' or 'full', got {head_input!r}")
        self.d, self.heads, self.head_input = d, heads, head_input
        d_head_in = d // heads if head_input == "slice" else d
        self.weight = nn.Parameter(torch.zeros(heads, d_head_in, (d // heads) * d))
        self.bias = nn.Parameter(torch.zeros(heads, (d // heads) * d))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        b = pooled.shape[0]
        if self.head_input == "slice":
            blocks = torch.einsum("bhk,hko->bho", pooled.view(b, self.heads, -1), self.weight)
        else:
            blocks = torch.einsum("bk,hko->bho", pooled, self.weight)
        return (blocks + self.bias).reshape(b, self.d, self.d)  # head h -> rows h*d/H .. (h+1)*d/H


class UserViewProjection(nn.Module):
    """Encoder T, the domain projections P_j, the mixed projection P_M, and Eqn 3."""

    def __init__(self, n_items: int, n_domains: int, d: int, max_len: int, layers: int = 2,
                 heads: int = 2, ffn: int = 256, dropout: float = 0.1, pooling: str = "last",
                 projection_heads: int = 4, projection_input: str = "slice"):
        super().__init__()
        self.n_domains = n_domains
        self.encoder = UserBehaviourEncoder(n_items, n_domains, d, max_len, layers, heads, ffn, dropout,
                                            pooling)
        self.domain_projections = nn.ModuleList(
            MultiHeadProjection(d, projection_heads, projection_input) for _ in range(n_domains))
        self.mixed_projection = MultiHeadProjection(d, projection_heads, projection_input)

    def matrices(self, pooled: torch.Tensor, j: int) -> torch.Tensor:
        """M^u_M + M^u_j for every user of ``pooled`` (Eqn 2), [B, d, d] (reference form)."""
        return self.mixed_projection(pooled) + self.domain_projections[j](pooled)

    def _project(self, pooled: torch.Tensor, adapted: torch.Tensor, j: int) -> torch.Tensor:
        """(M^u_M + M^u_j) E^A for users ``pooled`` [b, d] and their positions ``adapted`` [b, L', d].

        Same value as ``matrices(pooled, j) @ E``, computed head by head: P_M and P_j are linear in
        the pooled vector, so their weights are summed first and each user's d x d matrix is
        built once, as H blocks of (d/H) x d, without copying it into [b, d, d] layout.
        """
        mixed, own = self.mixed_projection, self.domain_projections[j]
        heads, d = mixed.heads, mixed.d
        b = pooled.shape[0]
        inputs = (pooled.view(b, heads, -1).transpose(0, 1) if mixed.head_input == "slice"
                  else pooled.expand(heads, b, d))
        blocks = torch.baddbmm((mixed.bias + own.bias)[:, None, :], inputs, mixed.weight + own.weight)
        blocks = blocks.view(heads, b, d // heads, d)  # head h: rows h*d/H .. (h+1)*d/H of M
        return torch.cat([torch.bmm(adapted, blocks[h].transpose(1, 2)) for h in range(heads)], dim=-1)

    def forward(self, items: torch.Tensor, domain: torch.Tensor, length: torch.Tensor,
                adapted: torch.Tensor, context_length: torch.Tensor | None = None) -> torch.Tensor:
        """E_{u,i} for every position of every user (Eqn 3), [B, L', d]; padded rows are junk.

        ``adapted`` [B, L', d] holds the normalised E^A of each position's item. Matrices are
        built only for the (user, domain) pairs present: one d x d matrix per pair, not per item.
        ``context_length`` [B] (the earlier-part variant [proposal]): T reads only each row's first
        ``context_length`` items (the rest is masked like padding); None = the whole window.
        """
        pooled = self.encoder(items, domain, length if context_length is None else context_length)
        valid = torch.arange(items.shape[1], device=items.device)[None, :] < length[:, None]
        delta = torch.zeros_like(adapted)
        for j in range(self.n_domains):
            in_j = (domain == j) & valid
            rows = torch.nonzero(in_j.any(1), as_tuple=True)[0]
            if len(rows) == 0:
                continue
            projected = self._project(pooled[rows], adapted[rows], j)
            delta = delta.index_add(0, rows, projected * in_j[rows].unsqueeze(-1).to(projected.dtype))
        return delta + adapted
