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

    Candidates are all rows of ``items`` (nothing is excluded, as in the next-item protocol of
    ``benchmark/evaluation/next_item.py``). The rank uses the evaluator's exact-rank tie rule
    (``benchmark/evaluation/exact.py``, ``_ranks_in_pool``; docs/protocol.md 0.2):

        rank = 1 + #(items scoring strictly higher) + #(items scoring equal with a smaller index),

    so a constant scorer gets chance level, never NDCG 1.0. As there, when every item row is
    the same vector, or a user vector is all zeros, every item ties with the target and the
    index rule decides alone (a float32 GEMM need not give identical rows bitwise-equal scores).
    Unlike the evaluator, other ties are decided on the float32 GEMM scores (no float64 reference
    re-scoring), so a near-tie a few ulps apart may rank differently; the reported metrics come
    from the evaluator's exact ranks. A case whose target score is not finite is a miss, and
    non-finite item vectors (which the evaluator refuses) give 0.0: a diverged model is never
    selected as the best.
    """
    if len(users) == 0:
        return 0.0
    if not bool(torch.isfinite(items).all()):
        return 0.0
    n = items.shape[0]
    all_tied = bool((items == items[:1]).all())  # a constant scorer: every candidate ties
    index = torch.arange(n, device=items.device)
    total = 0.0
    for s in range(0, len(users), batch):
        u = users[s : s + batch]
        t = targets[s : s + batch].to(items.device).long()
        index_rule = torch.full((len(u),), all_tied, dtype=torch.bool, device=items.device)
        index_rule |= ~u.any(1)
        rank = 1 + t  # the index rule: every candidate ties, the smaller indices come first
        finite = torch.ones(len(u), dtype=torch.bool, device=items.device)
        rows = torch.nonzero(~index_rule).flatten()
        if len(rows):
            scores = u[rows] @ items.T
            tr = t[rows]
            target_score = scores.gather(1, tr.view(-1, 1))
            finite[rows] = torch.isfinite(target_score).flatten()
            higher = (scores > target_score).sum(1)
            tied = scores == target_score  # includes the target itself
            extra = torch.nonzero(tied.sum(1) > 1).flatten()  # rows where another item ties
            if len(extra):
                before = index[None, :] < tr[extra, None]
                higher[extra] += (tied[extra] & before).sum(1)
            rank[rows] = 1 + higher
        hit = finite & (rank <= k)
        gain = torch.where(hit, 1.0 / torch.log2(rank.double() + 1), torch.zeros_like(rank, dtype=torch.double))
        total += float(gain.sum())
    return total / len(users)


class EarlyStopping:
    """Model selection on a validation score with patience (RecBole's ``stopping_step`` rule).

    A score counts as a gain only when it beats the best by more than ``min_delta``; the best
    state is kept (a deep copy) and put back by :meth:`restore`. The authors' code of UniSRec,
    VQ-Rec and MISSRec and the other sequence methods here all select this way.
    """

    def __init__(self, patience: int, label: str, logger: logging.Logger | None = None,
                 min_delta: float = 1e-6, budget: TrainingBudget | None = None) -> None:
        self.patience, self.label, self.logger, self.min_delta = int(patience), label, logger, min_delta
        self.best: float = -1.0
        self.waited = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.budget = budget

    def update(self, score: float, net: nn.Module, epoch: int) -> bool:
        """Record ``score`` of 0-based ``epoch``; True when training should stop now."""
        improved = score > self.best + self.min_delta
        if self.budget is not None:
            self.budget.epoch_done(epoch)
            self.budget.validated(score, epoch, improved)
        if improved:
            self.best, self.waited, self.best_state = score, 0, copy.deepcopy(net.state_dict())
            return False
        self.waited += 1
        if self.waited < self.patience:
            return False
        if self.budget is not None:
            self.budget.stop_reason = "converged"
        if self.logger is not None:
            self.logger.info("%s: early stop at epoch %d (best valid NDCG@10 %.4f)", self.label, epoch + 1, self.best)
        return True

    def restore(self, net: nn.Module) -> None:
        """Load the best state into ``net`` (no-op when no score was ever recorded)."""
        if self.best_state is not None:
            net.load_state_dict(self.best_state)


#: Why a training stage ended. ``converged``: early stopping on validation; ``max_epochs``: the
#: safety cap (the stage did not converge); ``time_limit``: a wall-clock cap; ``no_validation``:
#: nothing to validate on (an empty carve-out), so the cap decided.
STOP_REASONS = ("converged", "max_epochs", "time_limit", "no_validation")

#: The ``metric`` of a stage that validates nothing by design (pretraining as the authors' code does
#: it, an MF warm start): its ``max_epochs`` is the plan, not a missed convergence.
FIXED_EPOCHS = "none: fixed epochs, no validation"


class TrainingBudget:
    """What one training stage spent and why it stopped: the evidence that a method converged.

    :meth:`watch` counts every ``optimizer.step()`` (a post-step hook, so no training loop can
    forget one); :meth:`saw` adds training examples; :meth:`epoch_done` counts epochs. Passed to
    :class:`EarlyStopping`, it also records the validation curve (optimizer steps -> score), the
    best epoch and, when patience ran out, ``stop_reason = "converged"``. A stage that runs to its
    ``max_epochs`` keeps ``"max_epochs"``: it did not converge, and the report says so.
    """

    def __init__(self, stage: str = "train", metric: str = "valid NDCG@10") -> None:
        self.stage, self.metric = stage, metric
        self.optimizer_steps = 0
        self.examples_seen = 0
        self.epochs = 0
        self.best_epoch: int | None = None
        self.stop_reason = "max_epochs"
        self.curve: list[tuple[int, float]] = []

    def watch(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Count this optimizer's steps; returns it for chaining."""
        def count(*_: object) -> None:
            self.optimizer_steps += 1

        optimizer.register_step_post_hook(count)
        return optimizer

    def saw(self, n: int) -> None:
        """``n`` more training examples (sequences, pairs, windows: the unit the method's loss counts)."""
        self.examples_seen += int(n)

    def epoch_done(self, epoch: int) -> None:
        self.epochs = max(self.epochs, int(epoch) + 1)

    def validated(self, score: float, epoch: int, improved: bool) -> None:
        self.curve.append((self.optimizer_steps, float(score)))
        if improved:
            self.best_epoch = int(epoch)

    def as_dict(self) -> dict:
        return {"stage": self.stage, "optimizer_steps": self.optimizer_steps, "examples_seen": self.examples_seen,
                "epochs": self.epochs, "best_epoch": self.best_epoch, "stop_reason": self.stop_reason,
                "metric": self.metric, "curve": [[s, v] for s, v in self.curve]}


def combine_budgets(*budgets: TrainingBudget) -> dict:
    """One ``training`` object for a method of several stages (pretraining, fine-tuning, ...).

    Steps, examples and epochs add up; the best epoch, stop reason and curve are the last
    stage's (the one whose weights become the embeddings); every stage is kept under ``stages``.
    """
    stages = [b.as_dict() for b in budgets]
    last = stages[-1]
    return {"optimizer_steps": sum(s["optimizer_steps"] for s in stages),
            "examples_seen": sum(s["examples_seen"] for s in stages),
            "epochs": sum(s["epochs"] for s in stages), "best_epoch": last["best_epoch"],
            "stop_reason": last["stop_reason"], "metric": last["metric"], "curve": last["curve"],
            "stages": stages}
