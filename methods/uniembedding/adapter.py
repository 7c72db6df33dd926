"""Domain-aware multi-modal adapter (UniEmbedding section 3.2, Eqn 1).

Eqn 1:  E^A_i = [E^j_1(m_i); ...; E^j_{n_j}(m_i); E^S_1(m_i); ...; E^S_{n_S}(m_i)] . Softmax(G^j(m_i))

with j the domain of item i: n_j experts private to domain j, n_S experts shared by every domain
and one gate network G^j per domain. The paper then L2-normalises E^A_i and, when an item has
several modality-specific adapted embeddings, averages them (end of 3.2). The expert type is not
given; the default is UniSRec's parametric whitening W(x - b) (docs/methods.md 3.2), the option a
1-hidden-layer MLP. One adapter per modality, because text and image inputs differ in size.

Vectorised over items: experts are stacked in one tensor per bank, so a bank is one matmul; the
only Python loop is over the (few) domains, never over items.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ExpertBank(nn.Module):
    """K experts applied to the same input at once: [n, d_in] -> [n, K, d].

    ``kind='whitening'``: E_k(x) = W_k (x - b_k) (UniSRec's PWLayer: W_k ~ N(0, 0.02), b_k = 0,
    no bias on the linear map). ``kind='mlp'``: E_k(x) = W2_k GELU(W1_k x + c1_k) + c2_k.
    """

    def __init__(self, d_in: int, d: int, n_experts: int, kind: str = "whitening", hidden: int = 256,
                 dropout: float = 0.0):
        super().__init__()
        if kind not in ("whitening", "mlp"):
            raise ValueError(f"expert kind must be 'whitening' or 'mlp', got {kind!r}")
        self.kind, self.d_in, self.d, self.k = kind, d_in, d, n_experts
        self.dropout = nn.Dropout(dropout)
        if kind == "whitening":
            self.weight = nn.Parameter(torch.randn(n_experts, d_in, d) * 0.02)
            self.bias = nn.Parameter(torch.zeros(n_experts, d_in))
        else:
            b1, b2 = 1.0 / math.sqrt(d_in), 1.0 / math.sqrt(hidden)
            self.w1 = nn.Parameter(torch.empty(n_experts, d_in, hidden).uniform_(-b1, b1))
            self.c1 = nn.Parameter(torch.empty(n_experts, hidden).uniform_(-b1, b1))
            self.w2 = nn.Parameter(torch.empty(n_experts, hidden, d).uniform_(-b2, b2))
            self.c2 = nn.Parameter(torch.empty(n_experts, d).uniform_(-b2, b2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        n = x.shape[0]
        if self.kind == "whitening":
            # W_k (x - b_k) = x W_k - b_k W_k: one matmul for all K experts, then a [K, d] offset.
            flat = self.weight.permute(1, 0, 2).reshape(self.d_in, self.k * self.d)
            offset = torch.einsum("ki,kio->ko", self.bias, self.weight)
            return (x @ flat).view(n, self.k, self.d) - offset
        hidden = x @ self.w1.permute(1, 0, 2).reshape(self.d_in, -1)
        hidden = F.gelu(hidden.view(n, self.k, -1) + self.c1)
        return torch.einsum("nkh,khd->nkd", hidden, self.w2) + self.c2


class DomainAwareAdapter(nn.Module):
    """One modality's adapter: Eqn 1 (before the L2 normalisation).

    ``gate_weights`` returns Softmax(G^j(m_i)) over the n_j + n_S experts, domain-specific experts
    first then shared ones (the order of the concatenation in Eqn 1). The gate is a linear layer
    with bias per domain (PyTorch's default init) [proposal].
    """

    def __init__(self, d_in: int, d: int, n_domains: int, n_domain_experts: int = 4,
                 n_shared_experts: int = 4, expert: str = "whitening", hidden: int = 256,
                 dropout: float = 0.0):
        super().__init__()
        self.n_domains, self.d = n_domains, d
        self.domain_experts = nn.ModuleList(
            ExpertBank(d_in, d, n_domain_experts, expert, hidden, dropout) for _ in range(n_domains))
        self.shared_experts = ExpertBank(d_in, d, n_shared_experts, expert, hidden, dropout)
        self.gates = nn.ModuleList(nn.Linear(d_in, n_domain_experts + n_shared_experts)
                                   for _ in range(n_domains))

    def _per_domain(self, x: torch.Tensor, domain: torch.Tensor, fn) -> torch.Tensor:
        """Apply ``fn(j, x_j)`` to each domain's rows and put the results back in item order."""
        parts, index = [], []
        for j in range(self.n_domains):
            rows = torch.nonzero(domain == j, as_tuple=True)[0]
            if len(rows):
                parts.append(fn(j, x[rows]))
                index.append(rows)
        if not parts:
            raise ValueError("no item has a domain in range")
        order = torch.cat(index)
        if len(order) != len(domain):
            raise ValueError(f"item domains must lie in [0, {self.n_domains})")
        return torch.cat(parts)[torch.argsort(order)]

    def gate_weights(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Softmax(G^j(m_i)) [n, n_j + n_S] with j = domain[i] (Eqn 1)."""
        return self._per_domain(x, domain, lambda j, xj: torch.softmax(self.gates[j](xj), dim=-1))

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """E^A_i of Eqn 1, [n, d], not yet normalised."""

        def adapt(j: int, xj: torch.Tensor) -> torch.Tensor:
            experts = torch.cat([self.domain_experts[j](xj), self.shared_experts(xj)], dim=1)
            gate = torch.softmax(self.gates[j](xj), dim=-1)
            return torch.einsum("nk,nkd->nd", gate, experts)

        return self._per_domain(x, domain, adapt)


class MultiModalAdapter(nn.Module):
    """Per-modality domain-aware adapters, L2-normalised and averaged over the item's modalities.

    Section 3.2: the L2-normalised E^A is what the user view, the loss and downstream use; "when an
    item has multiple modality-specific domain-adapted embeddings, the average of these embeddings
    is used". Order [proposal]: normalise each modality's E^A, average over the modalities the item
    has, normalise again (so modalities of different input scale weigh equally and E^A is unit).
    """

    def __init__(self, input_dims: dict[str, int], d: int, n_domains: int, **adapter_kwargs):
        super().__init__()
        self.modalities = tuple(input_dims)
        self.adapters = nn.ModuleDict(
            {m: DomainAwareAdapter(dim, d, n_domains, **adapter_kwargs) for m, dim in input_dims.items()})
        self.d = d

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor | None],
                domain: torch.Tensor) -> torch.Tensor:
        """Normalised E^A [n, d]. ``masks[m]`` (bool [n] or None = all) marks items having modality m."""
        n = len(domain)
        total = torch.zeros(n, self.d, dtype=torch.float32, device=domain.device)
        count = torch.zeros(n, dtype=torch.float32, device=domain.device)
        for m in self.modalities:
            mask = masks.get(m)
            if mask is None:
                total = total + F.normalize(self.adapters[m](inputs[m], domain), dim=-1)
                count = count + 1.0
                continue
            rows = torch.nonzero(mask, as_tuple=True)[0]
            if len(rows) == 0:
                continue
            adapted = F.normalize(self.adapters[m](inputs[m][rows], domain[rows]), dim=-1)
            total = total.index_add(0, rows, adapted)
            count = count.index_add(0, rows, torch.ones(len(rows), device=domain.device))
        if bool((count == 0).any()):
            raise ValueError("an item has none of the adapter's modalities")
        return F.normalize(total / count[:, None], dim=-1)
