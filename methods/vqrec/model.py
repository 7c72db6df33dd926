"""VQ-Rec's network: code-embedding items, the shared SASRec-style encoder, the code re-assignment.

Equations -> code (methods.md 4.2-4.5, 15; RUCAIBox/VQ-Rec ``vqrec.py``):
- item vector ``e_i = mean_k E[c_i^k]`` -> :meth:`VQRecNet.item_vectors` (``embedding_bag`` mean;
  code 0 = padding contributes nothing, a padding item is the zero vector).
- user vector = encoder output at the last position, ``LN(e_t + P_t)`` input -> :meth:`users`.
- pretraining loss (seq-item InfoNCE, same-target logits set to 0, one semi-synthetic hard
  negative whose codes are each replaced w.p. rho) -> :func:`pretrain_loss`, :func:`fake_codes`.
- code re-assignment ``Pi_k = round(GumbelSinkhorn(exp(T_k)))`` -> :func:`gumbel_sinkhorn`,
  :func:`round_permutation`, :meth:`VQRecNet.permuted_table`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from methods.shared.contrastive import seq_item_infonce
from methods.shared.sequence import SequenceEncoder

ROUNDINGS = ("hungarian", "top1")


def gumbel_sinkhorn(log_alpha: torch.Tensor, n_iters: int, temp: float, generator: torch.Generator | None = None,
                    eps: float = 1e-6) -> torch.Tensor:
    """Doubly-stochastic relaxation of a permutation per matrix ([K, n, n] scores -> [K, n, n]).

    As the authors' ``gumbel_sinkhorn(exp(T))``: ``log(exp(T) + eps)`` plus Gumbel noise
    ``-log(-log(u + eps) + eps)``, divided by the temperature, then ``n_iters`` alternating row and
    column normalisations in log space, exponentiated.
    """
    r = torch.log(torch.exp(log_alpha) + eps)
    u = torch.rand(r.shape, generator=generator, dtype=r.dtype).to(r.device)
    r = (r - torch.log(-torch.log(u + eps) + eps)) / temp
    for _ in range(n_iters):
        r = r - torch.logsumexp(r, dim=2, keepdim=True)
        r = r - torch.logsumexp(r, dim=1, keepdim=True)
    return torch.exp(r)


def round_permutation(soft: torch.Tensor, rounding: str = "hungarian") -> torch.Tensor:
    """Hard 0/1 matrices from doubly-stochastic ones ([K, n, n]).

    ``hungarian``: the permutation maximising the summed soft entries (a bijection, always).
    ``top1``: the authors' ``ceil(top1(.))`` per row -- each row keeps its arg-max column, which is
    a bijection only when no two rows pick the same column.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    hard = torch.zeros_like(soft)
    if rounding == "top1":
        return hard.scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    mats = soft.detach().cpu().double().numpy()
    for k, m in enumerate(mats):
        rows, cols = linear_sum_assignment(m, maximize=True)
        hard[k, torch.from_numpy(rows), torch.from_numpy(cols)] = 1.0
    return hard


def fake_codes(codes: torch.Tensor, ratio: float, ksub: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Semi-synthetic hard negative codes: each code replaced by a random one of its sub-codebook w.p. ``ratio``.

    ``codes`` are flat offset codes [B, n_sub]; a random code of sub-codebook k is
    ``k*(ksub+1) + 1 + randint(ksub)`` (never a padding slot), as ``generate_fake_neg_item_emb``.
    """
    n_sub = codes.shape[1]
    rand = torch.randint(ksub, codes.shape, generator=generator).to(codes.device)
    rand = rand + 1 + torch.arange(n_sub, device=codes.device).unsqueeze(0) * (ksub + 1)
    swap = torch.rand(codes.shape, generator=generator).to(codes.device) < ratio
    return torch.where(swap, rand, codes)


def pretrain_loss(seq: torch.Tensor, pos: torch.Tensor, fake: torch.Tensor, targets: torch.Tensor,
                  tau: float, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Seq-item InfoNCE with in-batch negatives (same-target logits -> 0) plus one hard negative each.

    ``-log exp(s.e+/tau) / (sum_b exp(s.e_b/tau) [same target: e^0] + exp(s.e~/tau))``, all normalised.
    ``groups``: each anchor's window (windows batching): the anchor's own items are not negatives.
    """
    s = F.normalize(seq, dim=-1)
    fake_logits = (s * F.normalize(fake, dim=-1)).sum(-1, keepdim=True) / tau
    return seq_item_infonce(seq, pos, tau, targets=targets, same_target="zero", extra_logits=fake_logits,
                            groups=groups)


class VQRecNet(nn.Module):
    """Code table ``E`` [n_sub*(ksub+1), dim], the sequence encoder and the re-assignment scores."""

    def __init__(self, codes: np.ndarray, n_sub: int, ksub: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        dim = int(cfg["dim"])
        self.n_sub, self.ksub, self.dim = int(n_sub), int(ksub), dim
        # row 0 = the padding item (all codes 0); item i is row i + 1
        padded = np.concatenate([np.zeros((1, n_sub), dtype=np.int64), codes.astype(np.int64)])
        self.register_buffer("codes", torch.from_numpy(padded), persistent=True)
        self.code_emb = nn.Embedding(n_sub * (ksub + 1), dim, padding_idx=0)
        self.encoder = SequenceEncoder(dim, int(cfg["n_layers"]), int(cfg["n_heads"]), int(cfg["inner"]),
                                       float(cfg["dropout"]), int(cfg["max_len"]), causal=True, pooling="last",
                                       layer_norm_eps=float(cfg["layer_norm_eps"]), init_std=float(cfg["init_std"]))
        nn.init.normal_(self.code_emb.weight, 0.0, float(cfg["init_std"]))
        with torch.no_grad():
            self.code_emb.weight[0].zero_()
        self.trans_matrix = nn.Parameter(torch.randn(n_sub, ksub + 1, ksub + 1))
        self.table: torch.Tensor | None = None  # the permuted code table during re-assignment epochs

    def code_table(self) -> torch.Tensor:
        return self.code_emb.weight if self.table is None else self.table

    def mean_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``mean_k E[c^k]`` for flat codes [B, n_sub] (code 0 = padding, excluded; all-padding -> 0)."""
        return F.embedding_bag(codes, self.code_table(), mode="mean", padding_idx=0)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Item vectors for item ids of any shape (-1 = padding -> zero vector), [..., dim]."""
        flat = ids.reshape(-1)
        uniq, inverse = torch.unique(flat, return_inverse=True)
        vec = self.mean_codes(self.codes[uniq + 1])
        return vec[inverse].reshape(*ids.shape, self.dim)

    def all_items(self) -> torch.Tensor:
        """Every item's vector [n_items, dim] (row = item index)."""
        return self.mean_codes(self.codes[1:])

    def users(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.item_vectors(ids), lengths)

    def permutations(self, n_iters: int, temp: float, rounding: str,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Sampled hard permutations [n_sub, ksub+1, ksub+1] with a straight-through gradient.

        Forward = the rounded matrix; backward = the Gumbel-Sinkhorn matrix's gradient
        (``hard + soft - soft.detach()``) [proposal: the authors' ``ceil`` has zero gradient].
        """
        soft = gumbel_sinkhorn(self.trans_matrix, n_iters, temp, generator)
        hard = round_permutation(soft, rounding)
        return hard + soft - soft.detach()

    def permuted_table(self, perms: torch.Tensor) -> torch.Tensor:
        """``Pi_k E_k`` per sub-codebook: new row r of block k = old row argmax_c Pi_k[r, c]."""
        blocks = self.code_emb.weight.reshape(self.n_sub, self.ksub + 1, self.dim)
        return torch.bmm(perms, blocks).reshape(-1, self.dim)
