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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.uniembedding.batching import Batch


@dataclass(eq=False)
class PackedTokens:
    """The tokens T reads in a batch, packed with no padding: chunk by chunk, row by row, oldest first.

    The linear maps, norms and feed-forward of T act on each token alone, so they run once per
    batch on these rows; only attention needs a chunk's rows padded to its width (``slots``).
    """

    rows: torch.Tensor  # int64 [R] batch rows in chunk order (the order of the pooled output)
    items: torch.Tensor  # int64 [T]
    domain: torch.Tensor  # int64 [T]
    position: torch.Tensor  # int64 [T]
    last: torch.Tensor  # int64 [R] packed index of each row's last read token
    spans: list[tuple[int, int, int, int]]  # per chunk: first token, end token, first row, end row
    slots: list[torch.Tensor]  # per chunk: local row * width + position of each of its tokens
    padding: list[torch.Tensor]  # per chunk: bool [rows, width], True = not read (masked like padding)


def pack_tokens(items: torch.Tensor, domain: torch.Tensor, context_length: torch.Tensor,
                chunks: list[torch.Tensor]) -> PackedTokens:
    """Pack the first ``context_length`` items of every row of ``chunks`` (see :class:`PackedTokens`)."""
    parts: dict[str, list[torch.Tensor]] = {"items": [], "domain": [], "position": [], "last": [], "slots": []}
    spans, padding = [], []
    tokens = rows = 0
    for chunk in chunks:
        read = context_length[chunk]
        width = int(read.max())
        pad = torch.arange(width, device=items.device)[None, :] >= read[:, None]
        local, pos = torch.nonzero(~pad, as_tuple=True)
        rows_of = chunk[local]
        parts["items"].append(items[rows_of, pos])
        parts["domain"].append(domain[rows_of, pos])
        parts["position"].append(pos)
        parts["slots"].append(local * width + pos)
        parts["last"].append(tokens + torch.cumsum(read, 0) - 1)
        spans.append((tokens, tokens + len(local), rows, rows + len(chunk)))
        padding.append(pad)
        tokens, rows = tokens + len(local), rows + len(chunk)
    cat = {k: torch.cat(v) for k, v in parts.items() if k != "slots"}
    return PackedTokens(rows=torch.cat(chunks), spans=spans, slots=parts["slots"], padding=padding, **cat)


def _packed_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, packed: PackedTokens,
                  last_only: bool) -> torch.Tensor:
    """One post-LN encoder layer (``nn.TransformerEncoderLayer``'s training path, dropout 0) on
    packed tokens; ``last_only``: its output at each row's last token only, all that ``pooling:
    last`` reads of the final layer (queries there only; keys and values from every token)."""
    attn = layer.self_attn
    e, h = attn.embed_dim, attn.num_heads
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    token_sizes = [t1 - t0 for t0, t1, _, _ in packed.spans]  # split, not slices: one backward copy, not one per chunk
    if last_only:
        x_out = x.index_select(0, packed.last)
        queries = F.linear(x_out, weight[:e], bias[:e]).split([r1 - r0 for _, _, r0, r1 in packed.spans])
        keys_values = F.linear(x, weight[e:], bias[e:]).split(token_sizes)
    else:
        x_out = x
        keys_values = F.linear(x, weight, bias).split(token_sizes)  # q, k, v of every token
    outs = []
    for k, (slots, pad) in enumerate(zip(packed.slots, packed.padding, strict=True)):
        b, width = pad.shape
        parts = keys_values[k].shape[1] // e
        padded = keys_values[k].new_zeros(b * width, parts * e).index_copy(0, slots, keys_values[k])
        padded = padded.view(b, width, parts, h, e // h).permute(2, 0, 3, 1, 4)  # [q,] k, v: [b, h, width, e/h]
        q = queries[k].view(b, 1, h, e // h).transpose(1, 2) if last_only else padded[0]
        mask = torch.zeros(b, width, dtype=x.dtype, device=x.device).masked_fill_(pad, float("-inf"))
        mask = mask.view(b, 1, 1, width).expand(-1, h, -1, -1).reshape(b, h, 1, width)  # as nn.MultiheadAttention
        out = F.scaled_dot_product_attention(q, padded[-2], padded[-1], attn_mask=mask).transpose(1, 2)
        outs.append(out.reshape(b, e) if last_only else out.reshape(b * width, e).index_select(0, slots))
    x = layer.norm1(x_out + F.linear(torch.cat(outs), attn.out_proj.weight, attn.out_proj.bias))
    return layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))


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

    @property
    def packs(self) -> bool:
        """True when :meth:`pooled_packed` computes :meth:`forward`'s pooled vectors (to float
        rounding): ``pooling: last``, post-LN layers and no dropout (a dropout draw per padded
        token could not be reproduced without the padding)."""
        layers = self.encoder.layers
        return (self.pooling == "last" and all(not layer.norm_first for layer in layers)
                and all(m.p == 0 for m in self.modules() if isinstance(m, nn.Dropout))
                and all(layer.self_attn.dropout == 0 for layer in layers))

    def pooled_packed(self, packed: PackedTokens) -> torch.Tensor:
        """:meth:`forward` (``pooling: last``) for the rows ``packed.rows``, [R, d], in that order.

        The same computation without the padding: token embeddings, linear maps, norms and
        feed-forward run once per batch on the read tokens only, attention per chunk, and the last
        layer's queries, attention output and feed-forward only at each row's last token (the one
        pooled). Sums run in another order, so values agree to float rounding. See :attr:`packs`.
        """
        tokens = (self.position_embedding.weight.index_select(0, packed.position)
                  + self.domain_embedding.weight.index_select(0, packed.domain)
                  + self.item_embedding.weight.index_select(0, packed.items))
        layers = self.encoder.layers
        for k, layer in enumerate(layers):
            tokens = _packed_layer(layer, tokens, packed, last_only=k == len(layers) - 1)
        return tokens


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

    def anchor_views(self, batch: Batch, adapted: torch.Tensor) -> torch.Tensor:
        """E_{u,a} (Eqn 3) of every anchor of ``batch``, [A, d] in its anchor order; ``adapted`` [U, d]
        = E^A of the batch's columns. For ``encoder.packs`` configs only (the model checks).

        The values of :meth:`forward` chunk by chunk, with less work: T on packed tokens
        (:meth:`UserBehaviourEncoder.pooled_packed`); per domain, P_M + P_j summed once and every
        (user, domain) pair's blocks built in one call (:class:`PairProjection`); Eqn 3 kept only
        where an anchor of that domain is (no masked sum over domains).
        """
        packed = pack_tokens(batch.items, batch.domain, batch.context_length, batch.chunks)
        pooled = self.encoder.pooled_packed(packed)  # rows in chunk order
        mixed = self.mixed_projection
        heads, d = mixed.heads, mixed.d
        found: list[list[tuple]] = [[] for _ in range(self.n_domains)]  # per domain: (rows, anchors, ids, cols)
        n_anchors = 0
        for chunk, (_, _, r0, _) in zip(batch.chunks, packed.spans, strict=True):
            width = int(batch.length[chunk].max())
            anchor = batch.anchor_mask[chunk, :width]
            index = (n_anchors + torch.cumsum(anchor.flatten(), 0) - 1).view(anchor.shape)
            n_anchors += int(anchor.sum())
            domain, cols = batch.domain[chunk, :width], batch.column_of[chunk, :width].clamp(min=0)
            for j in range(self.n_domains):
                in_j = anchor & (domain == j)
                local = torch.nonzero(in_j.any(1), as_tuple=True)[0]
                if len(local):
                    found[j].append((r0 + local, in_j[local], index[local][in_j[local]], cols[local]))
        values, ids = [], []
        for j, parts in enumerate(found):
            if not parts:
                continue
            own = self.domain_projections[j]
            user = pooled.index_select(0, torch.cat([p[0] for p in parts]))
            inputs = (user.view(len(user), heads, -1).transpose(0, 1) if mixed.head_input == "slice"
                      else user.expand(heads, len(user), d))
            layout, r, t = [], 0, 0
            for rows, _, _, col in parts:
                layout.append((r, r + len(rows), col.shape[1], t, t + col.numel()))
                r, t = r + len(rows), t + col.numel()
            positions = adapted.index_select(0, torch.cat([p[3].flatten() for p in parts]))
            out = PairProjection.apply(inputs, mixed.weight + own.weight, (mixed.bias + own.bias)[:, None, :],
                                       positions, layout)
            keep = torch.nonzero(torch.cat([p[1].flatten() for p in parts]), as_tuple=True)[0]
            values.append(out.index_select(0, keep))
            ids.append(torch.cat([p[2] for p in parts]))
        delta = adapted.new_zeros(n_anchors, d).index_copy(0, torch.cat(ids), torch.cat(values))
        return delta + adapted.index_select(0, batch.anchor_col)


class PairProjection(torch.autograd.Function):
    """(M^u_M + M^u_j) E for one domain's (user, domain) pairs and their positions (Eqn 3, no + E).

    Inputs: the pairs' head inputs [H, n, k] (as :class:`MultiHeadProjection` reads them), the
    summed weight [H, k, (d/H) d] and bias [H, 1, (d/H) d], and the positions' E^A, [P, d],
    laid out part by part: ``layout`` holds (first pair, end pair, width, first position, end
    position), a part's positions being its pairs' rows x width. Each pair's H blocks are built
    once for the domain (one batched product) and applied head by head as
    :meth:`UserViewProjection._project` does; the backward writes every gradient straight into
    its final buffer (the autograd graph of the same steps copies the [n, d, d] blocks and their
    gradient several times over).
    """

    @staticmethod
    def forward(ctx, inputs, weight, bias, positions, layout):  # type: ignore[override]
        heads, d = weight.shape[0], positions.shape[1]
        blocks = torch.baddbmm(bias, inputs, weight)  # [H, n, (d/H) d]: head h's rows of each pair's M
        out = positions.new_empty(positions.shape)
        for r0, r1, width, t0, t1 in layout:
            e = positions[t0:t1].view(r1 - r0, width, d)
            parts = [torch.bmm(e, blocks[h, r0:r1].view(r1 - r0, d // heads, d).transpose(1, 2))
                     for h in range(heads)]
            torch.cat(parts, dim=-1, out=out[t0:t1].view(r1 - r0, width, d))
        ctx.save_for_backward(inputs, weight, positions, blocks)
        ctx.layout = layout
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        inputs, weight, positions, blocks = ctx.saved_tensors
        heads, d = weight.shape[0], positions.shape[1]
        grad_blocks, grad_positions = torch.empty_like(blocks), torch.empty_like(positions)
        for r0, r1, width, t0, t1 in ctx.layout:
            b, dh = r1 - r0, d // heads
            g, e = grad[t0:t1].view(b, width, d), positions[t0:t1].view(b, width, d)
            grad_e = grad_positions[t0:t1].view(b, width, d)
            for h in range(heads):
                g_h = g[:, :, h * dh:(h + 1) * dh]
                torch.bmm(g_h.transpose(1, 2), e, out=grad_blocks[h, r0:r1].view(b, dh, d))
                block = blocks[h, r0:r1].view(b, dh, d)
                if h == 0:
                    torch.bmm(g_h, block, out=grad_e)
                else:
                    grad_e.baddbmm_(g_h, block)
        grad_inputs = torch.bmm(grad_blocks, weight.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(inputs.transpose(1, 2), grad_blocks) if ctx.needs_input_grad[1] else None
        grad_bias = grad_blocks.sum(1, keepdim=True) if ctx.needs_input_grad[2] else None
        return grad_inputs, grad_weight, grad_bias, grad_positions, None
