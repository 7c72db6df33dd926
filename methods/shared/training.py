"""Small training utilities the torch methods share: device choice, the validation metric and
early stopping on it."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

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


class EarlyStopping:
    """Model selection on a validation score with patience (RecBole's ``stopping_step`` rule).

    A score counts as a gain only when it beats the best by more than ``min_delta``; the best
    state is kept (a deep copy) and put back by :meth:`restore`. The authors' code of UniSRec,
    VQ-Rec and MISSRec and the other sequence methods here all select this way.
    """

    def __init__(self, patience: int, label: str, logger: logging.Logger | None = None,
                 min_delta: float = 1e-6) -> None:
        self.patience, self.label, self.logger, self.min_delta = int(patience), label, logger, min_delta
        self.best: float = -1.0
        self.waited = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, score: float, net: nn.Module, epoch: int) -> bool:
        """Record ``score`` of 0-based ``epoch``; True when training should stop now."""
        if score > self.best + self.min_delta:
            self.best, self.waited, self.best_state = score, 0, copy.deepcopy(net.state_dict())
            return False
        self.waited += 1
        if self.waited < self.patience:
            return False
        if self.logger is not None:
            self.logger.info("%s: early stop at epoch %d (best valid NDCG@10 %.4f)", self.label, epoch + 1, self.best)
        return True

    def restore(self, net: nn.Module) -> None:
        """Load the best state into ``net`` (no-op when no score was ever recorded)."""
        if self.best_state is not None:
            net.load_state_dict(self.best_state)
