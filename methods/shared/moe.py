"""UniSRec's MoE adaptor of parametric-whitening experts (docs/methods.md 3.2), shared by UniSRec and UniM2Rec.

    PW_k(x) = W_k (Dropout_p(x) - b_k)                      W_k: d_in -> d, no bias; b_k init 0
    g(x)    = softmax(x W_gate + 1[train] * eps * (softplus(x W_noise) + 1e-2)),  eps ~ N(0, 1)
    v       = sum_k g_k(x) PW_k(x)                          (dense softmax over all experts)

As in the authors' ``PWLayer``/``MoEAdaptorLayer``: each expert applies its own dropout to the
input, W_k ~ N(0, 0.02), W_gate and W_noise start at zero (so the gate starts uniform), and the
gate noise is on only in training mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PWLayer(nn.Module):
    """One parametric-whitening expert: W (dropout(x) - b)."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.2, init_std: float = 0.02) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(d_in))
        self.lin = nn.Linear(d_in, d_out, bias=False)
        nn.init.normal_(self.lin.weight, 0.0, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.dropout(x) - self.bias)


class MoEAdaptor(nn.Module):
    """Noisy-gated mixture of ``n_experts`` whitening experts (no top-k, despite the name)."""

    def __init__(self, d_in: int, d_out: int, n_experts: int = 8, dropout: float = 0.2, noise: bool = True) -> None:
        super().__init__()
        self.experts = nn.ModuleList(PWLayer(d_in, d_out, dropout) for _ in range(n_experts))
        self.w_gate = nn.Parameter(torch.zeros(d_in, n_experts))
        self.w_noise = nn.Parameter(torch.zeros(d_in, n_experts))
        self.noise = bool(noise)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gate weights [..., n_experts], summing to 1; Gaussian noise only in training mode."""
        logits = x @ self.w_gate
        if self.training and self.noise:
            std = F.softplus(x @ self.w_noise) + 1e-2
            logits = logits + torch.randn_like(logits) * std
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gates(x)  # [..., E]
        out = torch.stack([expert(x) for expert in self.experts], dim=-2)  # [..., E, d]
        return (g.unsqueeze(-1) * out).sum(dim=-2)
