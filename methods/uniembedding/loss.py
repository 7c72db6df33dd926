"""Multi-domain contrastive loss (UniEmbedding section 3.4, Eqn 4).

Eqn 4:  L_B = sum_{a in B} -1/|P_a| sum_{p in P_a} log( exp(E_{u,a}^T E^A_p / tau)
                                                      / sum_{n in N_a} exp(E_{u,a}^T E^A_n / tau) )

The anchor a is seen from its user u (E_{u,a}, Eqn 3); positives and negatives are plain E^A.
P_a = the other items of u's sequence (intra- and cross-domain), N_a = items of other users'
sequences in the batch. Both are *sets* of items ("positive item set", "negative item set"), so
scores are taken against the batch's distinct items and an item counts once however often it
occurs. Same-item rule [proposal]: an item that u interacted with is never in N_a, even when it
also occurs in another user's sequence (it would be a false negative); rows of one user (the
single-domain ablation) share this exclusion. The anchor's own item is not its positive.

As written the denominator sums over negatives only, so per anchor
L_a = logsumexp_{n in N_a}(s_an) - mean_{p in P_a}(s_ap); ``form='infonce'`` adds the positive to
its own denominator: L_a = mean_p [logaddexp(s_ap, logsumexp_n s_an) - s_ap].

Cost: positives are a short list of (anchor, item) pairs; only the negatives' logsumexp touches
the dense anchors x items matrix, in row blocks with fused in-place masking, softmax and
gradient (:class:`MaskedLogSumExp`); only its softmax weights are kept for the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FORMS = ("as_written", "infonce")


@dataclass(eq=False)
class ContrastiveSets:
    """P_a as (anchor, column) pairs and N_a as 'every column not in owner_items[anchor_owner[a]]'."""

    pos_anchor: torch.Tensor  # int64 [P]
    pos_col: torch.Tensor  # int64 [P]
    anchor_owner: torch.Tensor  # int64 [A]
    owner_items: torch.Tensor  # bool [n_owners, U]: items each user has in the batch (never negatives)

    @property
    def n_anchors(self) -> int:
        return len(self.anchor_owner)

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean P_a and N_a masks [A, U] (for tests and reading; training never builds them)."""
        positive = torch.zeros(self.n_anchors, self.owner_items.shape[1], dtype=torch.bool,
                               device=self.owner_items.device)
        positive[self.pos_anchor, self.pos_col] = True
        return positive, ~self.owner_items[self.anchor_owner]


def contrastive_sets(anchor_row: torch.Tensor, anchor_col: torch.Tensor, column_of: torch.Tensor,
                     row_owner: torch.Tensor, n_cols: int, positive_of: torch.Tensor | None = None,
                     ) -> ContrastiveSets:
    """P_a and N_a for every anchor of a batch.

    ``column_of`` [B, L'] maps each row's positions to columns (-1 = padding); ``row_owner`` [B]
    gives each row's user (0..n_owners-1). P_a = the distinct columns of a's row except a's own,
    taken from ``positive_of`` when given (same shape, -1 = not a positive: the earlier-part
    variant keeps only the later part's items the encoder did not read); N_a always excludes
    every item of the user's rows (``column_of``).
    """
    positive_of = column_of if positive_of is None else positive_of
    n_rows, width = column_of.shape
    valid = column_of >= 0
    can = positive_of >= 0
    earlier = torch.tril(torch.ones(width, width, dtype=torch.bool, device=column_of.device), diagonal=-1)  # [l, l'] l' < l
    repeat = ((positive_of[:, :, None] == positive_of[:, None, :]) & earlier).any(-1)
    first = can & ~repeat  # first occurrence of each distinct positive item in its row
    candidate = first[anchor_row] & (positive_of[anchor_row] != anchor_col[:, None])  # [A, L']
    pos_anchor, pos_slot = torch.nonzero(candidate, as_tuple=True)
    r, p = torch.nonzero(valid, as_tuple=True)
    owner_items = torch.zeros(int(row_owner.max()) + 1, n_cols, dtype=torch.bool, device=column_of.device)
    owner_items[row_owner[r], column_of[r, p]] = True
    return ContrastiveSets(pos_anchor=pos_anchor, pos_col=positive_of[anchor_row[pos_anchor], pos_slot],
                           anchor_owner=row_owner[anchor_row], owner_items=owner_items)


def contrastive_masks(anchor_row: torch.Tensor, anchor_col: torch.Tensor, column_of: torch.Tensor,
                      row_owner: torch.Tensor, n_cols: int, positive_of: torch.Tensor | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense boolean P_a and N_a [A, U] (see :func:`contrastive_sets`)."""
    return contrastive_sets(anchor_row, anchor_col, column_of, row_owner, n_cols, positive_of).dense()


def sample_positives(sets: ContrastiveSets, k: int, generator: torch.Generator) -> ContrastiveSets:
    """Keep at most ``k`` positives per anchor, uniformly at random (cost cap, [proposal])."""
    keys = torch.rand(len(sets.pos_anchor), generator=generator).to(sets.pos_anchor.device)  # CPU stream
    order = torch.argsort(keys)
    order = order[torch.argsort(sets.pos_anchor[order], stable=True)]  # by anchor, random within
    anchor = sets.pos_anchor[order]
    start = torch.searchsorted(anchor, anchor, side="left")
    keep = order[torch.arange(len(anchor), device=anchor.device) - start < k]
    keep = torch.sort(keep).values
    return ContrastiveSets(sets.pos_anchor[keep], sets.pos_col[keep], sets.anchor_owner, sets.owner_items)


class MaskedLogSumExp(torch.autograd.Function):
    """log sum_{n in N_a} exp(q_a . k_n) for every row a, computed in row blocks.

    ``excluded`` = owner_items, ``row_owner`` = anchor_owner: column n is masked out of row a when
    ``excluded[row_owner[a], n]``. Every row must keep at least one column. The forward keeps the
    softmax weights of each block, the backward's only dense input (no recomputation).
    """

    @staticmethod
    def forward(ctx, queries, keys, excluded, row_owner, block):  # type: ignore[override]
        out = torch.empty(queries.shape[0], dtype=queries.dtype, device=queries.device)
        weights = []
        for s in range(0, queries.shape[0], block):
            scores = queries[s:s + block] @ keys.T
            scores.masked_fill_(excluded[row_owner[s:s + block]], float("-inf"))
            lse = torch.logsumexp(scores, dim=1)
            out[s:s + block] = lse
            weights.append(scores.sub_(lse[:, None]).exp_())  # softmax over N_a
        ctx.save_for_backward(queries, keys)
        ctx.weights, ctx.block = weights, block
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        queries, keys = ctx.saved_tensors
        grad_q, grad_k = torch.empty_like(queries), torch.zeros_like(keys)
        for i, weights in enumerate(ctx.weights):
            s = i * ctx.block
            scaled = weights * grad[s:s + ctx.block, None]
            grad_q[s:s + ctx.block] = scaled @ keys
            grad_k.addmm_(scaled.T, queries[s:s + ctx.block])
        return grad_q, grad_k, None, None, None


class ScoredSets(torch.autograd.Function):
    """:class:`MaskedLogSumExp` that also returns q_a . k_p of every positive pair (``pos_anchor``,
    ``pos_col``; the pairs sorted by anchor, as :func:`contrastive_sets` lists them).

    The positives' scores are read from each block's score matrix before it is masked (a
    positive is always one of its user's items, so masked out of N_a), and their gradient is
    added into the block's softmax weights, so one pair of matrix products carries both terms:
    no [pairs, d] gathers, products or scattered gradients. Every row must keep a column.
    """

    @staticmethod
    def forward(ctx, queries, keys, excluded, row_owner, pos_anchor, pos_col, block):  # type: ignore[override]
        n, n_cols = queries.shape[0], keys.shape[0]
        out = torch.empty(n, dtype=queries.dtype, device=queries.device)
        s_pos = torch.empty(len(pos_anchor), dtype=queries.dtype, device=queries.device)
        starts = torch.arange(0, n + block, block, device=queries.device).clamp(max=n)
        bounds = torch.searchsorted(pos_anchor, starts).tolist()
        weights, slots = [], []
        for i, s in enumerate(range(0, n, block)):
            scores = queries[s:s + block] @ keys.T
            slot = (pos_anchor[bounds[i]:bounds[i + 1]] - s) * n_cols + pos_col[bounds[i]:bounds[i + 1]]
            s_pos[bounds[i]:bounds[i + 1]] = scores.view(-1).index_select(0, slot)
            scores.masked_fill_(excluded[row_owner[s:s + block]], float("-inf"))
            top = scores.amax(dim=1, keepdim=True)  # finite: every row keeps a negative
            total = scores.sub_(top).exp_().sum(dim=1, keepdim=True)
            out[s:s + block] = (top + total.log()).squeeze(1)  # logsumexp, in place
            weights.append(scores.div_(total))  # softmax over N_a (0 at every positive)
            slots.append(slot)
        ctx.save_for_backward(queries, keys)
        ctx.weights, ctx.slots, ctx.bounds, ctx.block = weights, slots, bounds, block
        return out, s_pos

    @staticmethod
    def backward(ctx, grad, grad_pos):  # type: ignore[override]
        queries, keys = ctx.saved_tensors
        grad_q, grad_k = torch.empty_like(queries), torch.zeros_like(keys)
        for i, (weights, slot) in enumerate(zip(ctx.weights, ctx.slots, strict=True)):
            s = i * ctx.block
            scaled = weights * grad[s:s + ctx.block, None]
            scaled.view(-1).index_add_(0, slot, grad_pos[ctx.bounds[i]:ctx.bounds[i + 1]])
            grad_q[s:s + ctx.block] = scaled @ keys
            grad_k.addmm_(scaled.T, queries[s:s + ctx.block])
        return grad_q, grad_k, None, None, None, None, None


def multi_domain_contrastive_loss(anchors: torch.Tensor, items: torch.Tensor, sets: ContrastiveSets,
                                  tau: float, form: str = "as_written", block: int = 1024,
                                  reference: bool = False) -> tuple[torch.Tensor, int]:
    """L_B of Eqn 4 (a sum over anchors) and the number of anchors it sums over.

    anchors: E_{u,a} [A, d] in the anchor order of ``sets``; items: E^A of the batch's distinct
    items [U, d]. Anchors with no positive or no negative have no defined term and are skipped.
    ``reference``: positives' scores as row products (:class:`MaskedLogSumExp`), not read from
    the score matrix (:class:`ScoredSets`); the same values up to float rounding.
    """
    if form not in FORMS:
        raise ValueError(f"loss_form must be one of {FORMS}, got {form!r}")
    n_pos = torch.bincount(sets.pos_anchor, minlength=sets.n_anchors)
    has_negative = sets.owner_items.sum(1)[sets.anchor_owner] < items.shape[0]
    usable = (n_pos > 0) & has_negative
    n_usable = int(usable.sum())
    if n_usable == 0:
        return anchors.sum() * 0.0, 0
    pos_anchor, pos_col, owner = sets.pos_anchor, sets.pos_col, sets.anchor_owner
    if n_usable < sets.n_anchors:
        new_index = torch.cumsum(usable, 0) - 1
        keep_pair = usable[pos_anchor]
        pos_anchor, pos_col = new_index[pos_anchor[keep_pair]], pos_col[keep_pair]
        anchors, owner, n_pos = anchors[usable], owner[usable], n_pos[usable]
    queries = anchors / tau
    if reference:
        lse_neg = MaskedLogSumExp.apply(queries, items, sets.owner_items, owner, block)  # log sum_{N_a} exp
        s_pos = (queries[pos_anchor] * items[pos_col]).sum(1)  # E_{u,a}^T E^A_p / tau
    else:
        lse_neg, s_pos = ScoredSets.apply(queries, items, sets.owner_items, owner, pos_anchor, pos_col, block)
    if form == "as_written":
        per_pair = lse_neg[pos_anchor] - s_pos
    else:
        per_pair = torch.logaddexp(s_pos, lse_neg[pos_anchor]) - s_pos
    per_anchor = torch.zeros_like(lse_neg).index_add(0, pos_anchor, per_pair) / n_pos.to(lse_neg.dtype)
    return per_anchor.sum(), n_usable
