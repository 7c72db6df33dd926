"""Small training utilities the torch methods share: device choice and the validation metric."""

from __future__ import annotations

import torch

from benchmark.devices import check_device


def resolve_device(name: str | None) -> torch.device:
    """``cpu`` (default) or ``cuda[:k]`` when asked for and present; anything else is a config error.

    The runner has already checked every run's ``device`` (benchmark/devices.py) before any work.
    """
    return torch.device(check_device(name))


@torch.no_grad()
def validation_ndcg(users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, k: int = 10,
                    batch: int = 1024) -> float:
    """Mean next-item NDCG@k of ``targets`` under raw inner products (model selection only).

    rank = 1 + #(items scoring strictly higher than the target): a quick full-ranking estimate for
    early stopping; the reported metrics come from the evaluator's exact ranks.
    """
    if len(users) == 0:
        return 0.0
    total = 0.0
    for s in range(0, len(users), batch):
        scores = users[s : s + batch] @ items.T
        t = targets[s : s + batch]
        target_score = scores.gather(1, t.view(-1, 1))
        rank = 1 + (scores > target_score).sum(1)
        total += float(torch.where(rank <= k, 1.0 / torch.log2(rank.double() + 1), torch.zeros_like(rank.double())).sum())
    return total / len(users)
